//! The checks a consensus layer makes before it drives an execution client.
//!
//! Failing here, with a sentence that names the fix, beats failing on the first block with
//! "method not found" or, worse, building on the wrong chain.

use alloy_primitives::Address;
use anyhow::{Context, bail};
use tracing::warn;

use crate::{
    ElForks,
    engine::{EngineClient, REQUIRED_CAPABILITIES},
    error::RpcErrorKind,
    fork::BlobParams,
    types::BlockTag,
};

/// Checks that the EL answers with our JWT, serves every Engine API method we call, and is
/// on the chain our genesis describes.
pub async fn check_execution_client(client: &EngineClient) -> anyhow::Result<()> {
    let served = client
        .exchange_capabilities(&REQUIRED_CAPABILITIES)
        .await
        .with_context(|| format!("cannot talk to the execution client at {}", client.url()))?;
    let missing = missing_capabilities(&served);
    if !missing.is_empty() {
        bail!(
            "the execution client at {} does not serve {}; it needs Engine API support through Osaka (Geth v1.16+)",
            client.url(),
            missing.join(", ")
        );
    }
    let chain_id = client.chain_id().await.context("cannot read the execution client's chain id")?;
    let expected = client.forks().chain_id;
    if chain_id != expected {
        bail!(
            "the execution client at {} is on chain {chain_id}, but the genesis file says {expected}; point --genesis at the file the EL was initialised with",
            client.url()
        );
    }
    check_fork_schedule(client).await
}

/// Checks that the EL's fork schedule is the genesis file's: the file's fork times choose
/// the Engine API versions we call, and an EL on another schedule would refuse them, or
/// build and check blocks by other rules than the other nodes. Block 0 need not differ (a
/// fork after it is not in it, nor are some at it), and the chain id does not, so neither
/// check above sees it. Three comparisons with what the EL says (`eth_config`): the fork id
/// of its last fork, which covers every fork's time after block 0; for a fork at block 0,
/// which the fork id leaves out, whether Prague and Osaka are in force in its current fork,
/// by its precompiles; and the blob parameters of its current, next and last forks, which
/// the fork id leaves out too (a BPO fork at block 0 among them). An EL that does not serve
/// `eth_config` is not checked, with a warning.
async fn check_fork_schedule(client: &EngineClient) -> anyhow::Result<()> {
    let url = client.url();
    let el = match client.config().await {
        Ok(el) => el,
        Err(err) if err.rpc_kind() == Some(RpcErrorKind::MethodNotFound) => {
            warn!(%url, "the execution client does not serve eth_config (EIP-7910): its fork times are not checked against the genesis file's");
            return Ok(());
        }
        Err(err) => return Err(err).context("cannot read the execution client's fork schedule (eth_config)"),
    };
    let forks = client.forks();
    let block0 = client.block(BlockTag::Number(0)).await?.context("the execution client has no block 0")?;
    let Some(theirs) = el.latest() else {
        bail!(
            "the execution client at {url} schedules no fork after the Merge (eth_config names none); \
             this consensus layer needs Prague: point --genesis at the file the EL was initialised with"
        );
    };
    let ours = forks.fork_id(block0.hash, block0.timestamp);
    if theirs.fork_id != ours {
        let after = forks.forks_after_block_0(block0.timestamp);
        bail!(
            "the execution client at {url} has another fork schedule than the genesis file: its fork id is {} \
             (its forks: {}), where the file's forks after block 0 (at blocks {:?}, times {:?}) give {ours}; \
             point --genesis at the file the EL was initialised with",
            theirs.fork_id,
            describe(&el),
            after.blocks,
            after.times,
        );
    }
    // The fork id leaves out the forks at block 0's time. The fork in force at Geth's head
    // (`current`, none before Shanghai) says by its precompiles whether the two forks we
    // speak are in force; the file must say the same at the time that fork began.
    let (since, precompiles) = match &el.current {
        Some(current) => (current.activation_time.max(block0.timestamp), current.precompiles.as_ref()),
        None => (block0.timestamp, Some(&Default::default())),
    };
    match precompiles {
        None => {
            warn!(%url, "the execution client's eth_config names no precompiles: its forks at block 0 are not checked")
        }
        Some(precompiles) => {
            for (fork, time, precompile) in
                [("Prague", forks.prague_time, BLS12_G1ADD), ("Osaka", forks.osaka_time, P256VERIFY)]
            {
                let theirs = precompiles.values().any(|address| *address == precompile);
                let ours = time.is_some_and(|time| time <= since);
                if theirs != ours {
                    let (is, says) = if theirs { ("is", "says it is not") } else { ("is not", "says it is") };
                    bail!(
                        "the execution client at {url} {is} in {fork} in its current fork (in force from time {since}), \
                         where the genesis file {says}; point --genesis at the file the EL was initialised with"
                    );
                }
            }
        }
    }
    // Nor do they cover a fork's blob parameters, which Geth takes from the file as well
    // (a BPO fork at block 0 changes nothing else): for each fork `eth_config` names (its
    // current one, the next and the last), the file must give the ones Geth does at the time
    // that fork comes. A fork in between is not named, so not compared; nor is one from
    // Amsterdam on, which this consensus layer does not build (and where Geth may take the
    // parameters of a BPO fork the file does not schedule).
    for (which, fork) in [("current", &el.current), ("next", &el.next), ("last", &el.last)] {
        let Some(fork) = fork else { continue };
        let since = fork.activation_time.max(block0.timestamp);
        if forks.amsterdam_time.is_some_and(|amsterdam| since >= amsterdam) {
            continue;
        }
        let Some(theirs) = fork.blob_schedule else {
            warn!(%url, which, "the execution client's eth_config names no blob parameters for a fork: they are not checked");
            continue;
        };
        let ours = forks.blob_params_at(since);
        if theirs != ours {
            let say = |params: Option<BlobParams>| params.map_or("none".to_string(), |params| params.to_string());
            bail!(
                "the execution client at {url} has other blob parameters than the genesis file in its {which} fork \
                 (from time {since}): {}, where the file gives {}; point --genesis at the file the EL was initialised with",
                say(theirs),
                say(ours),
            );
        }
    }
    Ok(())
}

/// Prague's first precompile (EIP-2537's BLS12-381 G1 addition).
const BLS12_G1ADD: Address = Address::with_last_byte(0x0b);

/// Osaka's precompile (EIP-7951's secp256r1 signature check), at 0x100.
const P256VERIFY: Address = Address::new([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);

/// The EL's forks as `eth_config` gives them: when the current one came, and when the next
/// and the last come.
fn describe(el: &ElForks) -> String {
    let at = |fork: &Option<crate::fork::ElFork>| fork.as_ref().map(|fork| fork.activation_time);
    match (at(&el.current), at(&el.next), at(&el.last)) {
        (current, None, _) => format!("the current one from time {}, none ahead", current.unwrap_or_default()),
        (current, Some(next), last) => format!(
            "the current one from time {}, the next at {next}, the last at {}",
            current.unwrap_or_default(),
            last.unwrap_or(next)
        ),
    }
}

/// The methods we need that the EL did not list.
pub fn missing_capabilities(served: &[String]) -> Vec<&'static str> {
    REQUIRED_CAPABILITIES.into_iter().filter(|m| !served.iter().any(|s| s == m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_exactly_the_missing_methods() {
        let served: Vec<String> =
            ["engine_forkchoiceUpdatedV3", "engine_getPayloadV4", "engine_newPayloadV4"].map(String::from).to_vec();
        assert_eq!(missing_capabilities(&served), vec!["engine_getPayloadV5"]);
        let all: Vec<String> = REQUIRED_CAPABILITIES.map(String::from).to_vec();
        assert!(missing_capabilities(&all).is_empty());
    }
}
