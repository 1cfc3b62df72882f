//! The checks a consensus layer makes before it drives an execution client.
//!
//! Failing here, with a sentence that names the fix, beats failing on the first block with
//! "method not found" or, worse, building on the wrong chain.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    clock::sleep_or_cancel,
    engine::{EngineClient, REQUIRED_CAPABILITIES},
    error::EngineError,
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
    Ok(())
}

/// [`check_execution_client`] for a long-running service: an unreachable Geth is waited
/// for up to `limit`, with a message every few seconds; a Geth that answers but refuses our
/// JWT or is on another chain fails at once. Returns early, with `Ok`, if `cancel` fires.
pub async fn wait_for_execution_client(
    engine: &EngineClient,
    limit: Duration,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    let mut last_message = None::<tokio::time::Instant>;
    loop {
        let error = match check_execution_client(engine).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let passing = error.downcast_ref::<EngineError>().is_some_and(EngineError::is_retryable);
        if !passing {
            return Err(error);
        }
        if started.elapsed() >= limit {
            bail!("Geth at {} did not answer within --el-wait {}s: {error:#}", engine.url(), limit.as_secs());
        }
        if last_message.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            info!(url = engine.url(), waited_secs = started.elapsed().as_secs(), "waiting for the execution client");
            last_message = Some(tokio::time::Instant::now());
        }
        if !sleep_or_cancel(Duration::from_millis(500), cancel).await {
            return Ok(());
        }
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
