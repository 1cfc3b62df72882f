//! The production loop: plan a slot, build, import, store, finalize; and the recovery
//! that puts Geth back on our chain after a fault.
//!
//! The one rule everything rests on: a block is written to our store *before* Geth is told
//! it is the head. So Geth is never ahead of the store because of us, and whatever Geth
//! loses can be replayed from it.
//!
//! This file is Part 2's loop as a leader runs it while it holds the lease: the lease is
//! checked while waiting for the slot, before building and again before storing
//! ([`Sequencer::lease_problem`]), the
//! store takes a block only while our term holds its fence ([`Sequencer::store`]), and a
//! node that cannot produce for `--el-outage-ms` steps down ([`Sequencer::cannot_produce`]).
//! The store is shared, so a block is stored only once Geth found it VALID.
//!
//! Beside it, `sequencer/recovery.rs` puts Geth back on our chain after a fault.

mod recovery;

use std::{sync::Arc, time::Instant};

use common::{EngineClient, payload::ExecutableBlock};
use single_node::{
    clock::{self, unix_time},
    fault::Fault,
    round::{self, Verdict},
    slot,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    block_log::{AppendError, PRUNE_EVERY, Store},
    config::Config,
    election::{self, LeaseView},
    follower::Follower,
    server::Status,
    step_down::StepDown,
};

/// What one production step did.
#[derive(Debug)]
enum Outcome {
    /// A block was stored and finalized.
    Produced(Box<ExecutableBlock>),
    /// Geth found its own block invalid; it was dropped.
    Invalid(String),
    /// We must stop leading; nothing was stored by this step.
    StepDown(StepDown),
    /// Shutdown was asked for before the block was taken from Geth; nothing was changed.
    Cancelled,
}

/// How the wait for the next slot ended ([`Sequencer::plan`]).
#[derive(Debug)]
enum Planned {
    /// The slot's build is due.
    Due(slot::Slot),
    /// Shutdown was asked for.
    Cancelled,
    /// The lease is gone, for this reason.
    LeaseGone(StepDown),
}

/// The leader's state: the client, the store, the follower that keeps its Geth's head,
/// and its lease.
#[derive(Debug)]
pub struct Sequencer<'f> {
    engine: Arc<EngineClient>,
    store: Store,
    config: &'f Config,
    status: Arc<Status>,
    follower: &'f mut Follower,
    /// The lease as the renewal last saw it, and its term (the fence our writes need).
    lease: watch::Receiver<LeaseView>,
    term: u64,
    /// Told when a block is made, so the renewal knows we still produce.
    made_block: &'f watch::Sender<tokio::time::Instant>,
    /// Since when this node has failed to produce; cleared by every block.
    trouble: Option<Instant>,
}

impl<'f> Sequencer<'f> {
    /// A leader on `follower`'s Geth with the lease `term`; [`Sequencer::run`] produces.
    pub fn new(
        config: &'f Config,
        follower: &'f mut Follower,
        lease: watch::Receiver<LeaseView>,
        term: u64,
        made_block: &'f watch::Sender<tokio::time::Instant>,
    ) -> Self {
        let (engine, store, status) = follower.parts();
        Self { engine, store, config, status, follower, lease, term, made_block, trouble: None }
    }

    /// Produces blocks until the lease ends, the store fences us off, or `cancel` fires.
    /// Returns why it stopped; `Err` only for faults no retry can fix.
    pub async fn run(&mut self, cancel: &CancellationToken) -> anyhow::Result<StepDown> {
        if let Some(reason) = self.recover(cancel).await? {
            return Ok(reason);
        }
        info!(term = self.term, number = self.follower.head().number, "leading: Geth is at the stored head");
        while !cancel.is_cancelled() {
            match self.produce(cancel).await {
                Ok(Outcome::Produced(block)) => {
                    self.trouble = None;
                    self.made_block.send_replace(tokio::time::Instant::now());
                    self.status.metrics.blocks_produced.inc();
                    self.status.metrics.block_transactions.observe(block.transaction_count() as f64);
                    info!(
                        number = block.number(),
                        hash = %block.hash(),
                        txs = block.transaction_count(),
                        timestamp = block.timestamp(),
                        term = self.term,
                        "block produced"
                    );
                }
                Ok(Outcome::Invalid(reason)) => {
                    self.status.metrics.engine.count("invalid_payload");
                    warn!(%reason, "Geth rejected the block it built; dropped it, building again");
                    if let Some(step_down) = self.cannot_produce(&format!("Geth rejects its own blocks: {reason}")) {
                        return Ok(step_down);
                    }
                    // Built again at once, not after a slot as in Part 2: its second has
                    // passed, and `cannot_produce` bounds how long this may go on.
                }
                Ok(Outcome::StepDown(reason)) => return Ok(reason),
                Ok(Outcome::Cancelled) => break,
                Err(Fault::Passing(error)) => {
                    warn!(error = %format!("{error:#}"), "fault; recovering");
                    if let Some(step_down) = self.cannot_produce(&format!("{error:#}")) {
                        return Ok(step_down);
                    }
                    if let Some(reason) = self.recover(cancel).await? {
                        return Ok(reason);
                    }
                }
                Err(Fault::Fatal(error)) => return Err(error),
            }
        }
        Ok(StepDown::Shutdown)
    }

    // ANCHOR: produce
    /// One block: plan the slot and build, import and store, finalize. The lease is
    /// checked while waiting for the slot, before building and again before storing; the
    /// store is fenced.
    async fn produce(&mut self, cancel: &CancellationToken) -> Result<Outcome, Fault> {
        let slot = match self.plan(cancel).await {
            Planned::Due(slot) => slot,
            Planned::Cancelled => return Ok(Outcome::Cancelled),
            // The lease failed while we waited: we stop, even if a late renewal came since.
            Planned::LeaseGone(reason) => return Ok(Outcome::StepDown(reason)),
        };
        if let Some(reason) = self.lease_problem() {
            return Ok(Outcome::StepDown(reason));
        }
        let (head, fee_recipient) = (self.follower.head(), self.config.block.fee_recipient);
        let built = round::build(&self.engine, &head, slot.timestamp, fee_recipient, slot.build_time, cancel).await?;
        let Some(block) = built else { return Ok(Outcome::Cancelled) };

        // The write-ahead rule: the block is stored before anything makes it head. From
        // here on a shutdown waits for the step to end. Geth's verdict, the lease, the
        // store's fence or a fault can still end it, and then before Geth is told the
        // block is head.
        if let Verdict::Invalid(reason) = round::execute(&self.engine, &block).await? {
            return Ok(Outcome::Invalid(reason));
        }
        if let Some(reason) = self.lease_problem() {
            return Ok(Outcome::StepDown(reason));
        }
        if let Some(reason) = self.store(&block).await? {
            return Ok(Outcome::StepDown(reason));
        }
        self.finalize(&block).await?;
        Ok(Outcome::Produced(Box::new(block)))
    }
    // ANCHOR_END: produce

    // ANCHOR: plan
    /// Plans the next slot and sleeps until its build should start, planning again at
    /// least every second (a clock stepped meanwhile moves the plan). Ends early on
    /// shutdown, and once the lease is gone (a clock stepped back must not keep us asleep).
    async fn plan(&self, cancel: &CancellationToken) -> Planned {
        // (No `--skip-empty` here, so no earliest timestamp beyond the parent's next second.)
        let (parent, earliest, schedule) = (self.follower.head().timestamp, 0, self.config.block.schedule());
        let mut slot = slot::next_slot(parent, earliest, unix_time(), &schedule);
        let due = |now| {
            slot = slot::next_slot(parent, earliest, now, &schedule);
            slot.build_at
        };
        tokio::select! {
            slept = clock::sleep_until(due, cancel) => if slept { Planned::Due(slot) } else { Planned::Cancelled },
            reason = election::lease_gone(self.lease.clone()) => Planned::LeaseGone(reason),
        }
    }
    // ANCHOR_END: plan

    // ANCHOR: lease_problem
    /// Why we may not act as leader now, if so ([`LeaseView::problem`]).
    fn lease_problem(&self) -> Option<StepDown> {
        self.lease.borrow().problem(tokio::time::Instant::now())
    }

    /// Records a failure to produce; once failures have lasted `--el-outage-ms`, the reason
    /// to step down.
    fn cannot_produce(&mut self, reason: &str) -> Option<StepDown> {
        let since = *self.trouble.get_or_insert_with(Instant::now);
        (since.elapsed() >= self.config.el_outage())
            .then(|| StepDown::CannotProduce(format!("for {} ms: {reason}", since.elapsed().as_millis())))
    }
    // ANCHOR_END: lease_problem

    // ANCHOR: store
    /// Appends `block` to the store, fenced by our term: `None` once it is stored, or why
    /// we must step down.
    async fn store(&self, block: &ExecutableBlock) -> Result<Option<StepDown>, Fault> {
        let started = Instant::now();
        match self.store.append(block, self.term, &self.config.instance_id).await {
            Ok(()) => {}
            Err(AppendError::Unconfirmed { number, source }) => {
                // The commit may have happened. Only a read can tell; until then the
                // block must not be finalized, and recovery will find out.
                return Err(Fault::Passing(source.context(format!("storing block {number}"))));
            }
            Err(refused) => return Ok(Some(StepDown::refused(&refused))),
        }
        self.status.metrics.store_append_seconds.observe(started.elapsed().as_secs_f64());
        self.prune_behind(block.number());
        Ok(None)
    }
    // ANCHOR_END: store

    /// With `--retain-blocks`, drops the blocks that fell out of the window every
    /// [`PRUNE_EVERY`] blocks, beside the production loop (it never holds up a block), in
    /// as many calls as it takes.
    fn prune_behind(&self, number: u64) {
        let retain = self.config.retain_blocks;
        if retain == 0 || !number.is_multiple_of(PRUNE_EVERY) {
            return;
        }
        let (store, term) = (self.store.clone(), self.term);
        tokio::spawn(async move {
            loop {
                match store.prune(retain, term).await {
                    Ok(Some(anchor)) => info!(anchor, "dropped the log's blocks below the window"),
                    Ok(None) => return,
                    Err(error) => return warn!(error = %format!("{error:#}"), "cannot drop old blocks from the log"),
                }
            }
        });
    }

    /// Makes `block` head, safe and final on our Geth.
    async fn finalize(&mut self, block: &ExecutableBlock) -> Result<(), Fault> {
        self.follower.advance(block.head());
        round::finalize(&self.engine, block.hash()).await?;
        self.status.set_lag(block.number(), 0, 0.0);
        Ok(())
    }
}
