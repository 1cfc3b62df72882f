//! The loop's steps, made fast without changing what they do (the chapter's "Making it
//! fast"):
//! - the store commits a block while Geth executes it, and takes it out again when Geth
//!   does not find it VALID ([`Sequencer::import_and_store`]);
//! - when the next block is due at once (back to back, or catching up with the clock), the
//!   forkchoiceUpdated that makes a block head also starts the next build
//!   ([`Sequencer::make_head`], [`Sequencer::start_build`]);
//! - a stopwatch says where each step's time went ([`Build::take`], `timing.rs`).

use std::time::{Duration, Instant};

use anyhow::anyhow;
use common::{EngineClient, payload::ExecutableBlock};
use tokio_util::sync::CancellationToken;

use super::Sequencer;
use crate::{
    clock::unix_time,
    fault::Fault,
    round::{self, Verdict},
    slot,
    timing::{Stopwatch, Timing},
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

/// A block made, and where the time went while making it.
#[derive(Debug)]
pub(super) struct Produced {
    pub(super) block: ExecutableBlock,
    pub(super) timing: Timing,
}

/// A block Geth is building for us, how long it may build, and the step's stopwatch.
#[derive(Debug)]
pub(super) struct Build {
    building: round::Building,
    build_time: Duration,
    /// Where the step's time goes ([`Timing`](crate::timing::Timing)).
    pub(super) stopwatch: Stopwatch,
}

impl Sequencer {
    // ANCHOR: start_build
    /// Plans the next slot, waits for it, and asks Geth to start building the block; or
    /// takes the build that finalizing the last block already started. `None` on shutdown.
    pub(super) async fn start_build(&mut self, cancel: &CancellationToken) -> Result<Option<Build>, Fault> {
        let engine_metrics = &self.status.metrics.engine;
        if let Some((building, build_time)) = self.next.take() {
            debug_assert_eq!(building.parent, self.head.hash, "make_head started this build on our head");
            return Ok(Some(Build { building, build_time, stopwatch: Stopwatch::start(engine_metrics) }));
        }
        let Some(slot) = self.plan(cancel).await else { return Ok(None) };
        let stopwatch = Stopwatch::start(engine_metrics);
        let building = round::start(&self.engine, &self.head, slot.timestamp, self.config.block.fee_recipient).await?;
        Ok(Some(Build { building, build_time: slot.build_time, stopwatch }))
    }
    // ANCHOR_END: start_build

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
    /// back, or catching up with the clock), the same forkchoiceUpdated starts its build.
    pub(super) async fn make_head(&mut self, block: &ExecutableBlock) -> Result<(), Fault> {
        self.head = block.head();
        self.earliest = 0;
        self.last_block_at = Instant::now();
        let next = slot::next_slot(self.head.timestamp, 0, unix_time(), &self.config.block.schedule());
        if next.build_at > unix_time() {
            return round::finalize(&self.engine, self.head.hash).await;
        }
        let building = round::start(&self.engine, &self.head, next.timestamp, self.config.block.fee_recipient).await?;
        self.next = Some((building, next.build_time));
        Ok(())
    }
    // ANCHOR_END: make_head
}

impl Build {
    /// [`round::take`], timed: the wait for the build deadline is Geth filling the block,
    /// not our own time.
    pub(super) async fn take(
        &mut self,
        engine: &EngineClient,
        cancel: &CancellationToken,
    ) -> Result<Option<ExecutableBlock>, Fault> {
        self.stopwatch.wait_until(self.building.started + self.build_time);
        round::take(engine, &self.building, self.build_time, cancel).await
    }
}
