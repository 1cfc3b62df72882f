//! Why a step of block production stopped, sorted by what the caller should do next.
//!
//! Every long-running step (the sequencer, a leader, a member) branches on this: a passing
//! fault goes through recovery and is retried; a fatal one ends the process with its reason.

use crate::error::{EngineError, RpcErrorKind};

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

    /// The error, whichever kind it is.
    pub fn into_error(self) -> anyhow::Error {
        match self {
            Self::Passing(error) | Self::Fatal(error) => error,
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
}
