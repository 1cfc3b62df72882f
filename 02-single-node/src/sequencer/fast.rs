//! The loop's last steps, made fast without changing what they do (the chapter's "Making
//! it fast"):
//! - the store commits a block while Geth executes it, and takes it out again when Geth
//!   does not find it VALID ([`Sequencer::import_and_store`]);
//! - when the next block is due at once (back to back, or catching up with the clock), no
//!   forkchoiceUpdated of its own makes a block head: the next build's, which comes next,
//!   does ([`Sequencer::make_head`]).

use std::time::{Duration, Instant};

use anyhow::anyhow;
use common::payload::ExecutableBlock;

use super::Sequencer;
use crate::{
    clock::unix_time,
    fault::Fault,
    round::{self, Verdict},
    slot,
};

// ANCHOR: imported
/// What became of a block we imported and stored.
pub(super) enum Imported {
    /// VALID, and stored; the store's commit took this long.
    Valid(Duration),
    /// INVALID, with Geth's reason; it is no longer in the store.
    Invalid(String),
}
// ANCHOR_END: imported

impl Sequencer {
    // ANCHOR: import_and_store
    /// Imports `block` into Geth and stores it, at once: Geth executes the block while the
    /// store commits it. A block Geth does not find VALID is taken out of the store again
    /// before anything else happens.
    pub(super) async fn import_and_store(&self, block: &ExecutableBlock) -> Result<Imported, Fault> {
        let (verdict, stored) = tokio::join!(round::execute(&self.engine, block), self.store_in_background(block));
        let stored = stored?;
        let not_valid = match verdict {
            Ok(Verdict::Valid) => return Ok(Imported::Valid(stored)),
            Ok(Verdict::Invalid(reason)) => Ok(Imported::Invalid(reason)),
            Err(fault) => Err(fault),
        };
        // The block never becomes head: the store goes back to our head.
        self.store.revert(block, self.head).map_err(Fault::Fatal)?;
        not_valid
    }

    /// Appends `block` to the store on a blocking thread (the commit waits for the disk);
    /// how long the commit took.
    pub(super) async fn store_in_background(&self, block: &ExecutableBlock) -> Result<Duration, Fault> {
        let (store, block) = (self.store.clone(), block.clone());
        tokio::task::spawn_blocking(move || {
            let storing = Instant::now();
            store.append(&block).map(|()| storing.elapsed())
        })
        .await
        .map_err(|e| Fault::Fatal(anyhow!("the store write did not finish: {e}")))?
        .map_err(Fault::Fatal)
    }
    // ANCHOR_END: import_and_store

    // ANCHOR: make_head
    /// Makes `block` head, safe and final. When the next block is due at once (back to
    /// back, or catching up with the clock), its build's forkchoiceUpdated, the next call
    /// the loop makes, does that too, so this one is left out.
    pub(super) async fn make_head(&mut self, block: &ExecutableBlock) -> Result<(), Fault> {
        self.head = block.head();
        self.earliest = 0;
        self.last_block_at = Instant::now();
        let next = slot::next_slot(self.head.timestamp, 0, unix_time(), &self.config.block.schedule());
        self.head_pending = next.build_at <= unix_time();
        if self.head_pending {
            return Ok(());
        }
        round::finalize(&self.engine, self.head.hash).await
    }
    // ANCHOR_END: make_head
}
