//! The production loop: plan a slot, build, import, store, make the block head.
//!
//! The one rule everything rests on: a block is written to our store *before* Geth is told
//! it is the head. So Geth is never ahead of the store because of us, and whatever Geth
//! loses can be replayed from it.
//!
//! This file is the loop itself. `sequencer/fast.rs` holds its last steps, made fast
//! without changing what they do (the store beside newPayload, one forkchoiceUpdated
//! fewer when the next block is due at once), and `timing.rs` the stopwatch that says
//! where each block's time went.
//!
//! Beside it, `sequencer/recovery.rs` puts Geth back on our chain after a fault.

mod fast;
mod recovery;

use std::{sync::Arc, time::Instant};

use common::{EngineClient, Head, payload::ExecutableBlock};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::fast::Imported;
use crate::{
    clock::{self, sleep_or_cancel, unix_time},
    config::Config,
    fault::Fault,
    round,
    server::Status,
    slot,
    store::Store,
    timing::{Stopwatch, Timing},
};

// ANCHOR: outcome
/// What one production step did.
#[derive(Debug)]
enum Outcome {
    /// A block was stored and made head, safe and final (or left for the next build's
    /// forkchoiceUpdated to make so: [`Sequencer::make_head`]).
    Produced(Box<Produced>),
    /// An empty block was dropped (`--skip-empty`).
    Skipped,
    /// Geth found its own block invalid; it was dropped.
    Invalid(String),
    /// Shutdown was asked for before the block was taken from Geth; nothing was stored.
    Cancelled,
}

/// A block made, and where the time went while making it.
#[derive(Debug)]
struct Produced {
    block: ExecutableBlock,
    timing: Timing,
}
// ANCHOR_END: outcome

// ANCHOR: sequencer
/// The sequencer's state: the client, the store, and the head it stands on.
#[derive(Debug)]
pub struct Sequencer {
    engine: EngineClient,
    store: Arc<Store>,
    config: Config,
    status: Arc<Status>,
    head: Head,
    /// Lowest timestamp for the next block; raised past a skipped slot.
    earliest: u64,
    /// When this process last produced a block (or started), for `--max-idle`.
    last_block_at: Instant,
    /// [`Sequencer::make_head`] left making our head Geth's head to the next build's
    /// forkchoiceUpdated (which may have come since); `run` makes it so on shutdown.
    head_pending: bool,
}
// ANCHOR_END: sequencer

impl Sequencer {
    /// A sequencer on the store's head. Call [`Sequencer::run`] to start producing.
    pub fn new(engine: EngineClient, store: Arc<Store>, config: Config, status: Arc<Status>, head: Head) -> Self {
        Self { engine, store, config, status, head, earliest: 0, last_block_at: Instant::now(), head_pending: false }
    }

    // ANCHOR: run
    /// Produces blocks until `cancel` fires, recovering from passing faults.
    pub async fn run(&mut self, cancel: &CancellationToken) -> anyhow::Result<()> {
        self.recover(cancel).await?;
        while !cancel.is_cancelled() {
            match self.produce(cancel).await {
                Ok(Outcome::Produced(produced)) => {
                    let Produced { block, timing } = *produced;
                    self.status.block_produced();
                    self.status.metrics.blocks_produced.inc();
                    self.status.set_head(block.head());
                    self.status.metrics.block_transactions.observe(block.transaction_count() as f64);
                    info!(
                        number = block.number(),
                        hash = %block.hash(),
                        txs = block.transaction_count(),
                        timestamp = block.timestamp(),
                        engine_us = timing.engine.as_micros(),
                        overhead_us = timing.overhead.as_micros(),
                        store_us = timing.store.as_micros(),
                        "block produced"
                    );
                }
                Ok(Outcome::Skipped) => {}
                Ok(Outcome::Invalid(reason)) => {
                    self.status.metrics.engine.count("invalid_payload");
                    warn!(%reason, "Geth rejected the block it built; dropped it, building again");
                    sleep_or_cancel(self.config.block.slot(), cancel).await;
                }
                Ok(Outcome::Cancelled) => break,
                Err(Fault::Passing(error)) => {
                    warn!(error = %format!("{error:#}"), "fault; recovering");
                    self.recover(cancel).await?;
                }
                Err(Fault::Fatal(error)) => return Err(error),
            }
        }
        // On shutdown the store and Geth agree: a head left to the next build's
        // forkchoiceUpdated is made head now.
        if self.head_pending
            && let Err(fault) = round::finalize(&self.engine, self.head.hash).await
        {
            warn!(error = %fault, "could not make the stored head Geth's head; the next start will");
        }
        info!(number = self.head.number, hash = %self.head.hash, "stopped; head is stored");
        Ok(())
    }
    // ANCHOR_END: run

    // ANCHOR: produce
    /// One block: plan the slot and build, import and store, make it head.
    async fn produce(&mut self, cancel: &CancellationToken) -> Result<Outcome, Fault> {
        let Some(slot) = self.plan(cancel).await else { return Ok(Outcome::Cancelled) };
        let mut stopwatch = Stopwatch::start(&self.status.metrics.engine);
        let building = round::start(&self.engine, &self.head, slot.timestamp, self.config.block.fee_recipient).await?;
        stopwatch.not_ours_until(building.started + slot.build_time);
        let Some(block) = round::take(&self.engine, &building, slot.build_time, cancel).await? else {
            return Ok(Outcome::Cancelled);
        };
        if self.skips(&block) {
            return Ok(Outcome::Skipped);
        }

        // The write-ahead rule: the block is stored before anything makes it head. From
        // here on the block is finished even if asked to stop, so the store and Geth
        // agree when we exit.
        let store_time = match self.import_and_store(&block).await? {
            Imported::Valid(store_time) => store_time,
            Imported::Invalid(reason) => return Ok(Outcome::Invalid(reason)),
        };
        self.make_head(&block).await?;

        let timing = stopwatch.stop(&self.status.metrics.engine, store_time);
        Ok(Outcome::Produced(Box::new(Produced { block, timing })))
    }
    // ANCHOR_END: produce

    // ANCHOR: plan
    /// Plans the next slot and sleeps until its build should start, planning again at
    /// least every second (a clock stepped meanwhile moves the plan). `None` on shutdown.
    async fn plan(&self, cancel: &CancellationToken) -> Option<slot::Slot> {
        let (parent, earliest, schedule) = (self.head.timestamp, self.earliest, self.config.block.schedule());
        let mut slot = slot::next_slot(parent, earliest, unix_time(), &schedule);
        // The plan is made again from each reading of the clock and kept, so the slot
        // returned is the one that came due.
        let due = |now| {
            slot = slot::next_slot(parent, earliest, now, &schedule);
            slot.build_at
        };
        clock::sleep_until(due, cancel).await.then_some(slot)
    }
    // ANCHOR_END: plan

    /// `--skip-empty`: whether to drop `block` (it is empty, and `--max-idle` has not
    /// passed). The next block then takes a later second.
    fn skips(&mut self, block: &ExecutableBlock) -> bool {
        let idle = self.last_block_at.elapsed();
        let keep = slot::keep_block(block.transaction_count(), idle, self.config.skip_empty, self.config.max_idle());
        if !keep {
            self.earliest = block.timestamp() + 1;
        }
        !keep
    }
}
