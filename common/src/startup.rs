//! The checks a consensus layer makes before it drives an execution client.
//!
//! Failing here, with a sentence that names the fix, beats failing on the first block with
//! "method not found" or, worse, building on the wrong chain.

use anyhow::{Context, bail};
use tracing::warn;

use crate::{
    engine::{EngineClient, REQUIRED_CAPABILITIES},
    error::RpcErrorKind,
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
/// the Engine API versions we call, and an EL on another schedule would refuse them at its
/// first fork the file does not have, or build by other rules than the other nodes from
/// then on. Block 0 is the same either way (a fork ahead is not in it), and so is the chain
/// id, so neither check above sees it. The EL's last fork id covers its whole schedule
/// (`eth_config`); an EL that does not serve `eth_config` is not checked, with a warning.
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
    let block0 = client.block(BlockTag::Number(0)).await?.context("the execution client has no block 0")?;
    let ours = client.forks().fork_id(block0.hash, block0.timestamp);
    let theirs = el.latest().context("the execution client names no fork it is in (eth_config)")?;
    if theirs.fork_id != ours {
        let ahead = match &el.next {
            Some(next) => format!("its next fork at time {}", next.activation_time),
            None => "no fork ahead".into(),
        };
        let after = client.forks().forks_after_block_0(block0.timestamp);
        let file = match (&after.blocks[..], &after.times[..]) {
            ([], []) => "the file, with every fork in block 0, gives".to_string(),
            ([], times) => format!("the file's forks at times {times:?} give"),
            (blocks, times) => format!("the file's forks at blocks {blocks:?} and times {times:?} give"),
        };
        bail!(
            "the execution client at {url} has another fork schedule than the genesis file: its fork id is {} ({ahead}), \
             where {file} {ours}; point --genesis at the file the EL was initialised with",
            theirs.fork_id
        );
    }
    Ok(())
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
