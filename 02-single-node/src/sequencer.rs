//! The production loop: plan a slot, build, import, store, finalize; and the recovery
//! that puts Geth back on our chain after a fault.
//!
//! The one rule everything rests on: a block is written to our store *before* Geth is told
//! it is the head. So Geth is never ahead of the store because of us, and whatever Geth
//! loses can be replayed from it. The write happens while Geth executes the block; both
//! finish before the forkchoiceUpdated that makes it head.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use common::{BlockTag, EngineClient, Head, PayloadStatus, payload::ExecutableBlock};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    clock::{self, sleep_or_cancel, unix_time},
    config::Config,
    fault::{Fault, retry},
    round::{self, ReplayError},
    server::Status,
    slot,
    store::{self, Reconciled, Store},
    timing::{Stopwatch, Timing},
};

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

/// A block made, and where the time went while making it ([`Timing`]).
#[derive(Debug)]
struct Produced {
    block: ExecutableBlock,
    timing: Timing,
}

/// The sequencer's state: the client, the store, and the head it stands on.
#[derive(Debug)]
pub struct Sequencer<'a> {
    engine: &'a EngineClient,
    store: Arc<Store>,
    config: &'a Config,
    status: &'a Status,
    head: Head,
    /// Lowest timestamp for the next block; raised past a skipped slot.
    earliest: u64,
    /// When this process last produced a block (or started), for `--max-idle`.
    last_block_at: Instant,
    /// The next block's build, when the forkchoiceUpdated that made the last block head
    /// already started it (the next slot was due at once), with its build time.
    building: Option<(round::Building, Duration)>,
}

impl<'a> Sequencer<'a> {
    /// A sequencer on the store's head. Call [`Sequencer::run`] to start producing.
    pub fn new(
        engine: &'a EngineClient,
        store: Arc<Store>,
        config: &'a Config,
        status: &'a Status,
        head: Head,
    ) -> Self {
        Self { engine, store, config, status, head, earliest: 0, last_block_at: Instant::now(), building: None }
    }

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
        info!(number = self.head.number, hash = %self.head.hash, "stopped; head is stored");
        Ok(())
    }

    // ANCHOR: produce
    /// One block: plan, build, import and store at once, finalize.
    async fn produce(&mut self, cancel: &CancellationToken) -> Result<Outcome, Fault> {
        let block_args = &self.config.block;

        // Build: the build the last forkchoiceUpdated started, if it is for our head; else
        // plan the slot, wait for it, and ask Geth to start one.
        let (building, build_time, stopwatch) = match self.building.take() {
            Some((building, build_time)) if building.parent == self.head.hash => {
                (building, build_time, Stopwatch::start(&self.status.metrics.engine))
            }
            _ => {
                let Some(slot) = self.plan(cancel).await else { return Ok(Outcome::Cancelled) };
                let stopwatch = Stopwatch::start(&self.status.metrics.engine);
                let building = round::start(self.engine, &self.head, slot.timestamp, block_args.fee_recipient).await?;
                (building, slot.build_time, stopwatch)
            }
        };
        let build_wait = (building.started + build_time).saturating_duration_since(Instant::now());
        let Some(block) = round::take(self.engine, &building, build_time, cancel).await? else {
            return Ok(Outcome::Cancelled);
        };
        let idle = self.last_block_at.elapsed();
        if !slot::keep_block(block.transaction_count(), idle, self.config.skip_empty, self.config.max_idle()) {
            self.earliest = block.timestamp() + 1;
            return Ok(Outcome::Skipped);
        }

        // Import and store at once: Geth executes the block while the store commits it.
        // From here on we finish the block even if asked to stop, so the store and Geth
        // agree when we exit. A block Geth does not find VALID is taken out of the store
        // again before anything else happens.
        let (imported, stored) = tokio::join!(round::import(self.engine, &block), self.store_in_background(&block));
        let store = stored?;
        match imported {
            Ok(PayloadStatus::Valid { .. }) => {}
            Ok(
                PayloadStatus::Invalid { validation_error, .. } | PayloadStatus::InvalidBlockHash { validation_error },
            ) => {
                self.unstore(&block)?;
                return Ok(Outcome::Invalid(validation_error));
            }
            not_valid => {
                self.unstore(&block)?;
                let status = not_valid?;
                return Err(Fault::Passing(anyhow!("Geth did not execute block {}: {status}", block.number())));
            }
        }
        self.head = block.head();
        self.earliest = 0;
        self.last_block_at = Instant::now();

        // Finalize: the block becomes head, safe and final. When the next block is due at
        // once (back to back, or catching up with the clock), the same forkchoiceUpdated
        // starts its build.
        let next = slot::next_slot(self.head.timestamp, 0, unix_time(), &block_args.schedule());
        if next.build_at <= unix_time() {
            let building = round::start(self.engine, &self.head, next.timestamp, block_args.fee_recipient).await?;
            self.building = Some((building, next.build_time));
        } else {
            round::finalize(self.engine, self.head.hash).await?;
        }
        let timing = stopwatch.stop(&self.status.metrics.engine, build_wait, store);
        Ok(Outcome::Produced(Box::new(Produced { block, timing })))
    }
    // ANCHOR_END: produce

    /// Plans the next slot and sleeps until its build should start, planning again at
    /// least every second (a clock stepped meanwhile moves the plan). `None` on shutdown.
    async fn plan(&self, cancel: &CancellationToken) -> Option<slot::Slot> {
        let (parent, earliest, schedule) = (self.head.timestamp, self.earliest, self.config.block.schedule());
        let mut slot = slot::next_slot(parent, earliest, unix_time(), &schedule);
        let due = |now| {
            slot = slot::next_slot(parent, earliest, now, &schedule);
            slot.build_at
        };
        clock::sleep_until(due, cancel).await.then_some(slot)
    }

    /// Appends `block` to the store on a blocking thread (the commit waits for the disk);
    /// how long the commit took.
    async fn store_in_background(&self, block: &ExecutableBlock) -> Result<Duration, Fault> {
        let (store, block) = (self.store.clone(), block.clone());
        tokio::task::spawn_blocking(move || {
            let storing = Instant::now();
            store.append(&block).map(|()| storing.elapsed())
        })
        .await
        .map_err(|e| Fault::Fatal(anyhow!("the store write did not finish: {e}")))?
        .map_err(Fault::Fatal)
    }

    /// Takes `block` out of the store again: Geth did not find it VALID, so it never
    /// becomes head, and the store goes back to our head.
    fn unstore(&self, block: &ExecutableBlock) -> Result<(), Fault> {
        self.store.revert(block, self.head).map_err(Fault::Fatal)
    }

    /// Retries [`reconcile`] until it succeeds, a fatal fault occurs, or shutdown is asked
    /// for. `/ready` reports 503 meanwhile.
    async fn recover(&mut self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let (engine, store, status, head) = (self.engine, &*self.store, self.status, self.head);
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
        Err(ReplayError::Rejected { number, status: verdict }) if number == ours.number && !verdict.is_pending() => {
            let parent = stored_or_geths(engine, store, number - 1).await?;
            warn!(number, %verdict, "our stored head was never VALID (the process died while Geth executed it): taking it out of the store");
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
