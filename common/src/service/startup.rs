//! What a long-running service does before it drives Geth: wait for it, as long as
//! `--el-wait` allows, and fail at once on what no wait can fix.

use std::time::Duration;

use anyhow::bail;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::shutdown::sleep_or_cancel;
use crate::{EngineClient, error::EngineError, startup::check_execution_client};

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
