//! Recovery: after a fault, and at start, Geth is brought back to our stored head
//! ([`store::reconcile`]), retried with a backoff until it succeeds or a fault no retry can
//! fix ends the process.

use anyhow::anyhow;
use common::{BlockTag, EngineClient, Head};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Sequencer;
use crate::{
    fault::{Fault, retry},
    round::{self, ReplayError},
    server::Status,
    store::{self, Reconciled, Store},
};

impl Sequencer {
    /// Retries [`reconcile`] until it succeeds, a fatal fault occurs, or shutdown is asked
    /// for. `/ready` reports 503 meanwhile.
    pub(super) async fn recover(&mut self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let (engine, store, status, head) = (&self.engine, &*self.store, &*self.status, self.head);
        let recovered = retry(
            cancel,
            || reconcile(engine, store, status, head),
            |waiting| {
                status.set_el_reachable(false);
                if waiting.worth_logging() {
                    warn!(attempts = waiting.attempts, error = %format!("{:#}", waiting.error), "waiting for Geth");
                }
            },
        )
        .await?;
        if let Some(head) = recovered {
            self.head = head;
            self.head_pending = false;
            self.status.set_el_reachable(true);
        }
        Ok(())
    }
}

// ANCHOR: reconcile
/// Brings Geth to our stored head `ours` ([`store::reconcile`]) and sends the forkchoice
/// state again; returns the head we stand on afterwards. A Geth ahead of us on our own
/// chain is followed.
///
/// Our head is the one block that can be in the store without Geth ever having found it
/// VALID: it is stored while Geth executes it, and a process that died before Geth
/// answered left it there. If Geth now rejects it, it never became head anywhere, and it
/// is taken out of the store; the next block is built in its place.
async fn reconcile(engine: &EngineClient, store: &Store, status: &Status, ours: Head) -> Result<Head, Fault> {
    let head = match store::reconcile(engine, store, ours).await {
        Ok(Reconciled::InStep) => ours,
        Ok(Reconciled::Replayed(replayed)) => {
            status.metrics.replayed_blocks.inc_by(replayed);
            ours
        }
        Ok(Reconciled::Ahead(geth)) => {
            warn!(
                ours = ours.number,
                geth = geth.number,
                "Geth is ahead of our store on our chain; continuing from its head (blocks in between cannot be replayed from our store)"
            );
            store.adopt(geth).map_err(Fault::Fatal)?;
            status.metrics.engine.count("geth_ahead");
            geth
        }
        Err(ReplayError::Rejected { number, status: answer }) if number == ours.number => {
            let parent = stored_or_geths(engine, store, number - 1).await?;
            warn!(number, %answer, "our stored head was never VALID (the process died while Geth executed it): taking it out of the store");
            if let Some(block) = store.block(number).map_err(Fault::Fatal)? {
                store.revert(&block, parent).map_err(Fault::Fatal)?;
            }
            parent
        }
        Err(other) => return Err(other.into_fault()),
    };
    round::finalize(engine, head.hash).await?;
    Ok(head)
}
// ANCHOR_END: reconcile

/// The block at `number`: the stored one, or Geth's where the store begins above it.
async fn stored_or_geths(engine: &EngineClient, store: &Store, number: u64) -> Result<Head, Fault> {
    if let Some(block) = store.block(number).map_err(Fault::Fatal)? {
        return Ok(block.head());
    }
    let block = engine.block(BlockTag::Number(number)).await?;
    block.map(|b| Head::from(&b)).ok_or_else(|| Fault::Fatal(anyhow!("neither the store nor Geth has block {number}")))
}
