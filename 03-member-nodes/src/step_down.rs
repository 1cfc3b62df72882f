//! Why a leader stops leading: the production loop returns it, the node logs it, counts it
//! and reports it on `/status`, and decides from it when to try for the lease again.

use std::time::Duration;

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDown {
    /// The lease could not be renewed in time (Redis unreachable or slow).
    LeaseExpired,
    /// Redis says someone else holds the lease.
    LeaseLost,
    /// The store refused our write: a newer leader claimed it, or stored this height.
    Fenced(String),
    /// Our clock runs ahead of PostgreSQL's: the store refused a block from the future.
    ClockAhead(String),
    /// A stored block cannot be applied, so nothing can be built on the stored chain.
    Halted(String),
    /// This node could not produce for longer than `--el-outage-ms`: its Geth is down,
    /// SYNCING, too slow or rejecting its blocks (or the store failed). A standby takes over.
    CannotProduce(String),
    /// No block for this long: the lease renewal stopped and gave the lease up, even while
    /// the production loop still waited on a call.
    Stalled(Duration),
    /// Shutdown was asked for.
    Shutdown,
}

impl StepDown {
    /// Why the store's refusal of our block ends our term.
    pub fn refused(refusal: &crate::block_log::AppendError) -> Self {
        match refusal {
            crate::block_log::AppendError::AheadOfClock { .. } => Self::ClockAhead(refusal.to_string()),
            _ => Self::Fenced(refusal.to_string()),
        }
    }
}

impl std::fmt::Display for StepDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LeaseExpired => f.write_str("the lease could not be renewed in time"),
            Self::LeaseLost => f.write_str("another node holds the lease"),
            Self::Fenced(reason) => write!(f, "the store refused our block: {reason}"),
            Self::ClockAhead(reason) => write!(f, "our clock is ahead of the cluster's: {reason}"),
            Self::Halted(reason) => write!(f, "the stored chain cannot be applied: {reason}"),
            Self::CannotProduce(reason) => write!(f, "this node cannot produce: {reason}"),
            Self::Stalled(quiet) => write!(f, "no block for {} ms: the lease was given up", quiet.as_millis()),
            Self::Shutdown => f.write_str("shutting down"),
        }
    }
}
