//! The checks a consensus layer makes before it drives an execution client.
//!
//! Failing here, with a sentence that names the fix, beats failing on the first block with
//! "method not found" or, worse, building on the wrong chain.

use anyhow::{Context, bail};

use crate::engine::{EngineClient, REQUIRED_CAPABILITIES};

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
