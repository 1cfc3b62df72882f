//! Why a step of block production stopped, sorted by what the caller should do next.
//!
//! Every long-running step (the sequencer, a leader, a member, a validator) branches on
//! this: a passing fault goes through recovery and is retried ([`Retry`], [`retry`]); a fatal one
//! ends the process with its reason.

use common::error::{EngineError, RpcErrorKind};
use tokio_util::sync::CancellationToken;

use crate::clock::{Backoff, sleep_or_cancel};

// ANCHOR: fault
/// A failed step.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// Geth unreachable, restarting, or on a head we did not expect: recover and go on.
    #[error("{0:#}")]
    Passing(anyhow::Error),
    /// A fault no retry can fix (our JWT refused, a forked chain, a broken store).
    #[error("{0:#}")]
    Fatal(anyhow::Error),
}

impl Fault {
    /// Classifies an error that may wrap an [`EngineError`]; anything else is fatal.
    pub fn from_anyhow(error: anyhow::Error) -> Self {
        match error.downcast::<EngineError>() {
            Ok(engine) => Self::from(engine),
            Err(other) => Self::Fatal(other),
        }
    }
}

impl From<EngineError> for Fault {
    fn from(error: EngineError) -> Self {
        // -38003 (timestamp not after the parent) and -38001 (payload gone) mean Geth's
        // head or builder is not where we left it, typically after a restart.
        let stale =
            matches!(error.rpc_kind(), Some(RpcErrorKind::InvalidPayloadAttributes | RpcErrorKind::UnknownPayload));
        if error.is_retryable() || stale { Self::Passing(error.into()) } else { Self::Fatal(error.into()) }
    }
}
// ANCHOR_END: fault

// ANCHOR: retry
/// A passing fault [`retry`] is waiting out.
#[derive(Debug)]
pub struct Waiting<'a> {
    /// Failed attempts so far, this one included.
    pub attempts: u32,
    /// What the last one failed with.
    pub error: &'a anyhow::Error,
}

impl Waiting<'_> {
    /// Whether to say so in the log: the first failure, then every tenth.
    pub const fn worth_logging(&self) -> bool {
        self.attempts == 1 || self.attempts.is_multiple_of(10)
    }
}

/// The one retry policy every step uses: after a failed attempt, a fatal fault ends the
/// retries; a passing one is counted, told to `waiting` (to log it and say so on
/// `/ready`), and waited out with [`Backoff::DEFAULT`].
#[derive(Debug)]
pub struct Retry<'c> {
    cancel: &'c CancellationToken,
    backoff: Backoff,
    attempts: u32,
}

impl<'c> Retry<'c> {
    /// No attempt has failed yet.
    pub const fn new(cancel: &'c CancellationToken) -> Self {
        Self { cancel, backoff: Backoff::DEFAULT, attempts: 0 }
    }

    /// An attempt failed with `fault`. `Err` for a fatal fault; otherwise sleeps the next
    /// backoff and returns whether to try again (`false`: `cancel` fired).
    pub async fn failed(&mut self, fault: Fault, waiting: impl FnOnce(&Waiting<'_>)) -> anyhow::Result<bool> {
        let error = match fault {
            Fault::Fatal(error) => return Err(error),
            Fault::Passing(error) => error,
        };
        self.attempts += 1;
        waiting(&Waiting { attempts: self.attempts, error: &error });
        Ok(sleep_or_cancel(self.backoff.next_delay(), self.cancel).await)
    }

    /// An attempt succeeded: the next failure starts the backoff and the count afresh.
    pub const fn succeeded(&mut self) {
        self.backoff.reset();
        self.attempts = 0;
    }
}

/// Runs `step` until it succeeds, under [`Retry`]'s policy. `Ok(None)` if `cancel` fired
/// first.
pub async fn retry<T, F, Fut>(
    cancel: &CancellationToken,
    mut step: F,
    mut waiting: impl FnMut(&Waiting<'_>),
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Fault>>,
{
    let mut retry = Retry::new(cancel);
    loop {
        match step().await {
            Ok(done) => return Ok(Some(done)),
            Err(fault) => {
                if !retry.failed(fault, &mut waiting).await? {
                    return Ok(None);
                }
            }
        }
    }
}
// ANCHOR_END: retry

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_faults_are_the_ones_a_retry_can_fix() {
        let transport = EngineError::Transport { method: "m", url: "u".into(), reason: "refused".into() };
        assert!(matches!(Fault::from(transport), Fault::Passing(_)));
        let gone =
            EngineError::Rpc { method: "m", code: -38001, kind: RpcErrorKind::UnknownPayload, message: String::new() };
        assert!(matches!(Fault::from(gone), Fault::Passing(_)));
        let auth = EngineError::Unauthorized { method: "m", status: 401, body: String::new() };
        assert!(matches!(Fault::from_anyhow(auth.into()), Fault::Fatal(_)));
        assert!(matches!(Fault::from_anyhow(anyhow::anyhow!("disk full")), Fault::Fatal(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_out_passing_faults_and_stops_at_a_fatal_one() {
        let cancel = CancellationToken::new();
        let mut calls = 0;
        let mut seen = Vec::new();
        let done = retry(
            &cancel,
            || {
                calls += 1;
                let outcome = if calls < 3 { Err(Fault::Passing(anyhow::anyhow!("down"))) } else { Ok(calls) };
                async move { outcome }
            },
            |waiting| seen.push((waiting.attempts, waiting.worth_logging())),
        )
        .await
        .expect("no fatal fault");
        assert_eq!(done, Some(3));
        assert_eq!(seen, [(1, true), (2, false)]);

        let fatal = retry(&cancel, || async { Err::<(), _>(Fault::Fatal(anyhow::anyhow!("refused"))) }, |_| {}).await;
        assert!(fatal.is_err());
        cancel.cancel();
        let cancelled =
            retry(&cancel, || async { Err::<(), _>(Fault::Passing(anyhow::anyhow!("down"))) }, |_| {}).await;
        assert!(matches!(cancelled, Ok(None)));
    }
}
