//! Recovery: after a fault, and when leading begins, Geth is brought to the stored head
//! by catching up with the store as a follower does, retried with a backoff while the
//! lease lasts and this node can still produce.

use single_node::fault::{Fault, Retry};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Sequencer;
use crate::{follower::FollowError, step_down::StepDown};

impl Sequencer<'_> {
    // ANCHOR: recover
    /// Brings Geth to the stored head (applying whatever it lacks, including a block a
    /// previous leader stored but did not finalize, or our own write whose commit we did
    /// not see) and finalizes it there. Retried with backoff while the lease lasts.
    /// Returns a reason to step down, or `None` once Geth is at the stored head.
    pub(super) async fn recover(&mut self, cancel: &CancellationToken) -> anyhow::Result<Option<StepDown>> {
        let mut retry = Retry::new(cancel);
        loop {
            if let Some(reason) = self.lease_problem() {
                return Ok(Some(reason));
            }
            // Whatever failed, Geth may have restarted: start from its real head.
            self.follower.mark_stale();
            // Marked stale, the catch-up starts by making Geth's own head (once it is found
            // stored) head again, and it finalizes every batch it applies: once it returns,
            // Geth's head is the stored head, made head by us.
            let (fault, geth_failed) = match self.follower.catch_up().await {
                Ok(()) => {
                    self.status.set_el_reachable(true);
                    return Ok(None);
                }
                Err(FollowError::Halted(reason)) => return Ok(Some(StepDown::Halted(reason))),
                Err(FollowError::Store(error)) => (Fault::Passing(error), false),
                Err(FollowError::Engine(fault)) => (fault, true),
                Err(FollowError::Syncing(reason)) => (Fault::Passing(anyhow::anyhow!(reason)), true),
            };
            let reason = if geth_failed {
                self.status.set_el_reachable(false);
                "Geth fails"
            } else {
                self.status.set_store_reachable(false);
                "the store fails"
            };
            if let Fault::Passing(error) = &fault
                && let Some(step_down) = self.cannot_produce(&format!("{reason}: {error:#}"))
            {
                return Ok(Some(step_down));
            }
            let again = retry
                .failed(fault, |waiting| {
                    warn!(attempts = waiting.attempts, error = %format!("{:#}", waiting.error), "{reason}; retrying");
                })
                .await?;
            if !again {
                return Ok(Some(StepDown::Shutdown));
            }
        }
    }
    // ANCHOR_END: recover
}
