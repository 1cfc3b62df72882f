//! The production loop: plan a slot, build, import, store, finalize; and the recovery
//! that puts Geth back on our chain after a fault.
//!
//! The one rule everything rests on: a block is written to our store *before* Geth is told
//! it is the head. So Geth is never ahead of the store because of us, and whatever Geth
//! loses can be replayed from it.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use common::{
    BlockTag, EngineClient, Fault, Head, PayloadStatus,
    clock::{self, Backoff, sleep_or_cancel, unix_time},
    payload::ExecutableBlock,
    round, slot,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use common::store::{self, Store};

use crate::{config::Config, server::Status};

/// What one production step did.
#[derive(Debug)]
enum Outcome {
    /// A block was stored and finalized.
    Produced(Box<Produced>),
    /// An empty block was dropped (`--skip-empty`).
    Skipped,
    /// Geth found its own block invalid; it was dropped.
    Invalid(String),
    /// Shutdown was asked for before the block was imported; nothing was changed.
    Cancelled,
}

/// A block made, and where the time went while making it.
#[derive(Debug)]
struct Produced {
    block: ExecutableBlock,
    /// Waiting on Engine API calls.
    engine: Duration,
    /// Our own work: the step's time minus the Engine API calls and the build deadline
    /// (storing the block, encoding, scheduling). The benchmarks read it from the log.
    overhead: Duration,
    /// Of the overhead: committing the block to the store.
    store: Duration,
}

/// The sequencer's state: the client, the store, and the head it stands on.
#[derive(Debug)]
pub struct Sequencer<'a> {
    engine: &'a EngineClient,
    store: &'a Store,
    config: &'a Config,
    status: &'a Status,
    head: Head,
    /// Lowest timestamp for the next block; raised past a skipped slot.
    earliest: u64,
    /// When this process last produced a block (or started), for `--max-idle`.
    last_block_at: Instant,
}

impl<'a> Sequencer<'a> {
    /// A sequencer on the store's head. Call [`Sequencer::run`] to start producing.
    pub fn new(engine: &'a EngineClient, store: &'a Store, config: &'a Config, status: &'a Status, head: Head) -> Self {
        Self { engine, store, config, status, head, earliest: 0, last_block_at: Instant::now() }
    }

    /// Produces blocks until `cancel` fires, recovering from passing faults.
    pub async fn run(&mut self, cancel: &CancellationToken) -> anyhow::Result<()> {
        self.recover(cancel).await?;
        while !cancel.is_cancelled() {
            match self.produce(cancel).await {
                Ok(Outcome::Produced(produced)) => {
                    let Produced { block, engine, overhead, store } = *produced;
                    self.status.block_produced();
                    self.status.metrics.blocks_produced.inc();
                    self.status.metrics.head_number.set(i64::try_from(block.number()).unwrap_or(i64::MAX));
                    self.status.metrics.block_transactions.observe(block.transaction_count() as f64);
                    info!(
                        number = block.number(),
                        hash = %block.hash(),
                        txs = block.transaction_count(),
                        timestamp = block.timestamp(),
                        engine_us = engine.as_micros(),
                        overhead_us = overhead.as_micros(),
                        store_us = store.as_micros(),
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
        info!(number = self.head.number, hash = %self.head.hash, "stopped; head is stored");
        Ok(())
    }

    // ANCHOR: produce
    /// One block: plan, build, import, store, finalize.
    async fn produce(&mut self, cancel: &CancellationToken) -> Result<Outcome, Fault> {
        let block_args = &self.config.block;
        let (parent, earliest, schedule) = (self.head.timestamp, self.earliest, block_args.schedule());
        let mut slot = slot::next_slot(parent, earliest, unix_time(), &schedule);
        // Planned again at least every second: a clock stepped meanwhile moves the plan.
        let due = |now| {
            slot = slot::next_slot(parent, earliest, now, &schedule);
            slot.build_at
        };
        if !clock::sleep_until(due, cancel).await {
            return Ok(Outcome::Cancelled);
        }
        let (started, engine_before) = (Instant::now(), self.status.metrics.engine.time_in_calls());

        // Build: forkchoiceUpdated with attributes on our head, then give Geth the deadline.
        let built =
            round::build(self.engine, &self.head, slot.timestamp, block_args.fee_recipient, slot.build_time, cancel)
                .await?;
        let Some(block) = built else { return Ok(Outcome::Cancelled) };
        let idle = self.last_block_at.elapsed();
        if !slot::keep_block(block.transaction_count(), idle, self.config.skip_empty, self.config.max_idle()) {
            self.earliest = slot.timestamp + 1;
            return Ok(Outcome::Skipped);
        }

        // Import: Geth executes the block. From here on we finish the block even if asked
        // to stop, so the store and Geth agree when we exit.
        match round::import(self.engine, &block).await? {
            PayloadStatus::Valid { .. } => {}
            PayloadStatus::Invalid { validation_error, .. } | PayloadStatus::InvalidBlockHash { validation_error } => {
                return Ok(Outcome::Invalid(validation_error));
            }
            status => return Err(Fault::Passing(anyhow!("Geth did not execute block {}: {status}", block.number()))),
        }

        // Store, then finalize: the write-ahead rule.
        let storing = Instant::now();
        self.store.append(&block).map_err(Fault::Fatal)?;
        let store = storing.elapsed();
        self.head = block.head();
        self.earliest = 0;
        self.last_block_at = Instant::now();
        round::finalize(self.engine, self.head.hash).await?;
        let engine = self.status.metrics.engine.time_in_calls().saturating_sub(engine_before);
        let overhead = started.elapsed().saturating_sub(engine).saturating_sub(slot.build_time);
        Ok(Outcome::Produced(Box::new(Produced { block, engine, overhead, store })))
    }
    // ANCHOR_END: produce

    /// Retries [`Sequencer::reconcile`] with capped backoff until it succeeds, a fatal
    /// fault occurs, or shutdown is asked for. `/ready` reports 503 meanwhile.
    async fn recover(&mut self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Backoff::DEFAULT;
        let mut attempts = 0_u32;
        loop {
            match self.reconcile().await {
                Ok(()) => {
                    self.status.set_el_reachable(true);
                    return Ok(());
                }
                Err(Fault::Fatal(error)) => return Err(error),
                Err(Fault::Passing(error)) => {
                    self.status.set_el_reachable(false);
                    attempts += 1;
                    if attempts == 1 || attempts.is_multiple_of(10) {
                        warn!(attempts, error = %format!("{error:#}"), "waiting for Geth");
                    }
                }
            }
            if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                return Ok(());
            }
        }
    }

    /// Brings Geth to our stored head: equal heads get the forkchoice state again; a Geth
    /// behind us gets the missing blocks replayed from the store; a Geth ahead of us on our
    /// own chain is followed. A Geth on another chain is a fatal fault.
    async fn reconcile(&mut self) -> Result<(), Fault> {
        let geth = self.engine.head().await?;
        let ours = self.head;
        if geth.number < ours.number {
            self.replay(&geth).await?;
        } else if geth.hash != ours.hash {
            let at_ours = self.engine.block(BlockTag::Number(ours.number)).await?;
            if at_ours.map(|b| b.hash) != Some(ours.hash) {
                return Err(Fault::Fatal(anyhow!(
                    "Geth's chain differs from ours at height {}: Geth has {} there, we finalized {}",
                    ours.number,
                    geth.hash,
                    ours.hash
                )));
            }
            warn!(
                ours = ours.number,
                geth = geth.number,
                "Geth is ahead of our store on our chain; continuing from its head (blocks in between cannot be replayed from our store)"
            );
            self.head = Head::from(&geth);
            self.store.adopt(self.head).map_err(Fault::Fatal)?;
            self.status.metrics.engine.count("geth_ahead");
        }
        round::finalize(self.engine, self.head.hash).await
    }

    /// Feeds Geth the stored blocks it lacks, from its head up to ours.
    async fn replay(&self, geth: &common::Block) -> Result<(), Fault> {
        info!(geth = geth.number, ours = self.head.number, "Geth is behind our store; replaying");
        let replayed = store::replay_into(self.engine, self.store, geth, self.head.number).await?;
        self.status.metrics.replayed_blocks.inc_by(replayed);
        Ok(())
    }
}
