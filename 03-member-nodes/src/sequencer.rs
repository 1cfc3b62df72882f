//! The leader's production loop: plan a slot, build, import, store, finalize, for as long
//! as the lease lasts; and the recovery that puts Geth back on the stored chain.
//!
//! Part 2's write-ahead rule holds, with PostgreSQL as the store: a block is stored before
//! any Geth makes it head. Three checks are added:
//! - before it builds and again before it stores, the leader checks its lease by its own
//!   clock; a leader that could not renew stops before Redis can give the lease away;
//! - the store refuses the write unless the leader's term still holds the fence, so a
//!   leader that was paused past its lease stores nothing, whatever it believes;
//! - a leader leads only while it can produce: when its Geth fails (unreachable, SYNCING,
//!   too slow, rejecting its blocks) for longer than `--el-outage-ms`, it steps down, and
//!   the lease renewal stops by itself when no block came for a slot plus that bound, so
//!   a standby with a healthy Geth takes over.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use common::{PayloadStatus, payload::ExecutableBlock};
use single_node::{
    clock::{self, sleep_or_cancel, unix_time},
    fault::{Fault, Retry},
    round, slot,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::Config,
    election::LeaseView,
    follower::{FollowError, Follower},
    node::Node,
    server::Status,
    store::{AppendError, Store},
};

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDown {
    /// The lease could not be renewed in time (Redis unreachable or slow).
    LeaseExpired,
    /// Redis says someone else holds the lease.
    LeaseLost,
    /// The store refused our write: a newer leader claimed it, or stored this height.
    Fenced(String),
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

impl std::fmt::Display for StepDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LeaseExpired => f.write_str("the lease could not be renewed in time"),
            Self::LeaseLost => f.write_str("another node holds the lease"),
            Self::Fenced(reason) => write!(f, "the store refused our block: {reason}"),
            Self::Halted(reason) => write!(f, "the stored chain cannot be applied: {reason}"),
            Self::CannotProduce(reason) => write!(f, "this node cannot produce: {reason}"),
            Self::Stalled(quiet) => write!(f, "no block for {} ms: the lease was given up", quiet.as_millis()),
            Self::Shutdown => f.write_str("shutting down"),
        }
    }
}

/// What one production step did.
#[derive(Debug)]
enum Outcome {
    /// A block was stored and finalized.
    Produced(Box<ExecutableBlock>),
    /// Geth found its own block invalid; it was dropped.
    Invalid(String),
    /// We must stop leading; nothing was stored by this step.
    StepDown(StepDown),
}

/// The leader's state: a follower (its Geth and head), the store, and its lease.
#[derive(Debug)]
pub struct Sequencer<'a, 'f> {
    follower: &'f mut Follower<'a>,
    engine: &'a common::EngineClient,
    store: &'a Store,
    config: &'a Config,
    status: &'a Status,
    lease: watch::Receiver<LeaseView>,
    term: u64,
    /// When the last block was made (or leading began), for the lease renewal.
    progress: &'f watch::Sender<tokio::time::Instant>,
    /// Since when, and why, this node has failed to produce; cleared by every block.
    trouble: Option<Instant>,
}

impl<'a, 'f> Sequencer<'a, 'f> {
    /// `node`'s leader with the lease `term`, building on `follower`'s Geth, telling the
    /// lease renewal through `progress` when it makes a block.
    pub fn new(
        node: &Node<'a>,
        follower: &'f mut Follower<'a>,
        lease: watch::Receiver<LeaseView>,
        term: u64,
        progress: &'f watch::Sender<tokio::time::Instant>,
    ) -> Self {
        let (engine, store, config, status) = (node.engine, node.store, node.config, node.status);
        Self { follower, engine, store, config, status, lease, term, progress, trouble: None }
    }

    /// Produces blocks until the lease ends, the store fences us off, or `cancel` fires.
    /// Returns why it stopped; `Err` only for faults no retry can fix.
    pub async fn run(&mut self, cancel: &CancellationToken) -> anyhow::Result<StepDown> {
        if let Some(reason) = self.recover(cancel).await? {
            return Ok(reason);
        }
        info!(term = self.term, number = self.follower.head().number, "leading: Geth is at the stored head");
        loop {
            if cancel.is_cancelled() {
                return Ok(StepDown::Shutdown);
            }
            match self.produce(cancel).await {
                Ok(Outcome::Produced(block)) => {
                    self.trouble = None;
                    self.progress.send_replace(tokio::time::Instant::now());
                    self.status.metrics.blocks_produced.inc();
                    self.status.metrics.block_transactions.observe(block.transaction_count() as f64);
                    info!(number = block.number(), hash = %block.hash(), txs = block.transaction_count(), timestamp = block.timestamp(), term = self.term, "block produced");
                }
                Ok(Outcome::Invalid(reason)) => {
                    self.status.metrics.engine.count("invalid_payload");
                    warn!(%reason, "Geth rejected the block it built; dropped it");
                    if let Some(step_down) = self.cannot_produce(&format!("Geth rejects its own blocks: {reason}")) {
                        return Ok(step_down);
                    }
                    sleep_or_cancel(self.config.block.slot(), cancel).await;
                }
                Ok(Outcome::StepDown(reason)) => return Ok(reason),
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
    }

    /// Records a failure to produce; once failures have lasted `--el-outage-ms`, the reason
    /// to step down.
    fn cannot_produce(&mut self, reason: &str) -> Option<StepDown> {
        let since = *self.trouble.get_or_insert_with(Instant::now);
        let outage = self.config.el_outage();
        (since.elapsed() >= outage)
            .then(|| StepDown::CannotProduce(format!("for {} ms: {reason}", since.elapsed().as_millis())))
    }

    /// Why we may not act as leader now, if so.
    fn lease_problem(&self) -> Option<StepDown> {
        let view = *self.lease.borrow();
        if let Some(quiet) = view.given_up {
            Some(StepDown::Stalled(quiet))
        } else if view.lost {
            Some(StepDown::LeaseLost)
        } else if !view.is_valid(tokio::time::Instant::now()) {
            Some(StepDown::LeaseExpired)
        } else {
            None
        }
    }

    // ANCHOR: produce
    /// One block: plan, build, import, store (fenced), finalize.
    async fn produce(&mut self, cancel: &CancellationToken) -> Result<Outcome, Fault> {
        let head = self.follower.head();
        let block_args = &self.config.block;
        let schedule = block_args.schedule();
        let mut slot = slot::next_slot(head.timestamp, 0, unix_time(), &schedule);
        let due = |now| {
            slot = slot::next_slot(head.timestamp, 0, now, &schedule);
            slot.build_at
        };
        if !clock::sleep_until(due, cancel).await {
            return Ok(Outcome::StepDown(StepDown::Shutdown));
        }
        if let Some(reason) = self.lease_problem() {
            return Ok(Outcome::StepDown(reason));
        }

        // Build and import, as in Part 2.
        let built =
            round::build(self.engine, &head, slot.timestamp, block_args.fee_recipient, slot.build_time, cancel).await?;
        let Some(block) = built else { return Ok(Outcome::StepDown(StepDown::Shutdown)) };
        match round::import(self.engine, &block).await? {
            PayloadStatus::Valid { .. } => {}
            PayloadStatus::Invalid { validation_error, .. } | PayloadStatus::InvalidBlockHash { validation_error } => {
                return Ok(Outcome::Invalid(validation_error));
            }
            status => return Err(Fault::Passing(anyhow!("Geth did not execute block {}: {status}", block.number()))),
        }

        // Store, fenced by our term, then finalize: the write-ahead rule. The lease is
        // checked once more right before the write; the fence covers a pause after it.
        if let Some(reason) = self.lease_problem() {
            return Ok(Outcome::StepDown(reason));
        }
        let started = Instant::now();
        match self.store.append(&block, self.term, &self.config.instance_id).await {
            Ok(()) => {}
            Err(refused @ (AppendError::Fenced { .. } | AppendError::Conflict { .. })) => {
                return Ok(Outcome::StepDown(StepDown::Fenced(refused.to_string())));
            }
            Err(AppendError::Unconfirmed { number, source }) => {
                // The commit may have happened. Only a read can tell; until then the
                // block must not be finalized, and recovery will find out.
                return Err(Fault::Passing(source.context(format!("storing block {number}"))));
            }
        }
        self.status.metrics.store_append_seconds.observe(started.elapsed().as_secs_f64());
        self.follower.advance(block.head());
        round::finalize(self.engine, block.hash()).await?;
        self.status.set_lag(block.number(), 0, 0.0);
        Ok(Outcome::Produced(Box::new(block)))
    }
    // ANCHOR_END: produce

    // ANCHOR: recover
    /// Brings Geth to the stored head (applying whatever it lacks, including a block a
    /// previous leader stored but did not finalize, or our own write whose commit we did
    /// not see) and finalizes it there. Retried with backoff while the lease lasts.
    /// Returns a reason to step down, or `None` once Geth is at the stored head.
    async fn recover(&mut self, cancel: &CancellationToken) -> anyhow::Result<Option<StepDown>> {
        let mut retry = Retry::new(cancel);
        loop {
            if let Some(reason) = self.lease_problem() {
                return Ok(Some(reason));
            }
            // Whatever failed, Geth may have restarted: start from its real head.
            self.follower.mark_stale();
            let (fault, geth_failed) = match self.follower.catch_up().await {
                Ok(()) => match round::finalize(self.engine, self.follower.head().hash).await {
                    Ok(()) => {
                        self.status.set_el_reachable(true);
                        return Ok(None);
                    }
                    Err(fault) => (fault, true),
                },
                Err(FollowError::Halted(reason)) => return Ok(Some(StepDown::Halted(reason))),
                Err(FollowError::Store(error)) => (Fault::Passing(error), false),
                Err(FollowError::Engine(fault)) => (fault, true),
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
