//! The production loop: plan a slot, build, import, store, finalize; and the recovery
//! that puts Geth back on our chain after a fault.
//!
//! The one rule everything rests on: a block is written to our store *before* Geth is told
//! it is the head. So Geth is never ahead of the store because of us, and whatever Geth
//! loses can be replayed from it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use common::{
    BlockTag, EngineClient, EngineError, PayloadStatus, RpcErrorKind,
    payload::{self, ExecutableBlock, finalized_at},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::Config,
    server::Status,
    slot::{self, Schedule},
    store::{Head, Store},
};

/// Backoff between recovery attempts: doubles from the first value up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// How often newPayload is retried on SYNCING/ACCEPTED before going through recovery.
const IMPORT_ATTEMPTS: u32 = 3;

/// Why a step stopped. The loop branches on it: a passing fault is retried through
/// recovery, a fatal one ends the process with its message.
#[derive(Debug)]
pub enum Fault {
    /// Geth unreachable, restarting, or on a head we did not expect: recover and go on.
    Passing(anyhow::Error),
    /// A fault no retry can fix (our JWT refused, a forked chain, a broken store).
    Fatal(anyhow::Error),
}

impl From<EngineError> for Fault {
    fn from(error: EngineError) -> Self {
        // -38003 (timestamp not after the parent) and -38001 (payload gone) mean Geth's
        // head or builder is not where we left it, typically after a restart.
        let stale =
            matches!(error.rpc_kind(), Some(RpcErrorKind::InvalidPayloadAttributes | RpcErrorKind::UnknownPayload));
        if error.is_retryable() || stale { Self::Passing(error.into()) } else { Self::Fatal(error.into()) }
    }
}

/// What one production step did.
#[derive(Debug)]
enum Outcome {
    /// A block was stored and finalized.
    Produced(Box<ExecutableBlock>),
    /// An empty block was dropped (`--skip-empty`).
    Skipped,
    /// Geth found its own block invalid; it was dropped.
    Invalid(String),
    /// Shutdown was asked for before the block was imported; nothing was changed.
    Cancelled,
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
                Ok(Outcome::Produced(block)) => {
                    self.status.block_produced();
                    self.status.metrics.blocks_produced.inc();
                    self.status.metrics.head_number.set(i64::try_from(block.number()).unwrap_or(i64::MAX));
                    self.status.metrics.block_transactions.observe(block.transaction_count() as f64);
                    info!(number = block.number(), hash = %block.hash(), txs = block.transaction_count(), timestamp = block.timestamp(), "block produced");
                }
                Ok(Outcome::Skipped) => {}
                Ok(Outcome::Invalid(reason)) => {
                    self.status.metrics.count("invalid_payload");
                    warn!(%reason, "Geth rejected the block it built; dropped it, building again");
                    sleep_or_cancel(self.config.slot(), cancel).await;
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

    /// One block: plan, build, import, store, finalize.
    async fn produce(&mut self, cancel: &CancellationToken) -> Result<Outcome, Fault> {
        let schedule = Schedule {
            block_time: self.config.block_time,
            build_time: self.config.build_time(),
            back_to_back: self.config.back_to_back,
        };
        let slot = slot::next_slot(self.head.timestamp, self.earliest, unix_time(), &schedule);
        if !sleep_or_cancel(slot.build_at.saturating_sub(unix_time()), cancel).await {
            return Ok(Outcome::Cancelled);
        }

        // Build: forkchoiceUpdated with attributes on our head, then give Geth the deadline.
        let attributes = payload::attributes(self.head.hash, slot.timestamp, self.config.fee_recipient);
        let updated = self.engine.forkchoice_updated_v3(finalized_at(self.head.hash), Some(attributes)).await?;
        let payload_id = match (&updated.payload_status, updated.payload_id) {
            (PayloadStatus::Valid { .. }, Some(id)) => id,
            (PayloadStatus::Invalid { .. }, _) => {
                return Err(Fault::Fatal(anyhow!(
                    "Geth calls our head {} invalid: {}",
                    self.head.hash,
                    updated.payload_status
                )));
            }
            (status, _) => return Err(Fault::Passing(anyhow!("Geth did not start a build on our head ({status})"))),
        };
        if !sleep_or_cancel(self.config.build_time(), cancel).await {
            return Ok(Outcome::Cancelled);
        }
        let built = self.engine.get_payload(payload_id, slot.timestamp).await.map_err(anyhow_fault)?;
        payload::built_versioned_hashes(&built).map_err(|e| Fault::Fatal(e.into()))?;
        let block = ExecutableBlock::from(built);
        let idle = self.last_block_at.elapsed();
        if !slot::keep_block(
            block.transaction_count(),
            idle,
            self.config.skip_empty,
            Duration::from_secs(self.config.max_idle),
        ) {
            self.earliest = slot.timestamp + 1;
            return Ok(Outcome::Skipped);
        }

        // Import: Geth executes the block. From here on we finish the block even if asked
        // to stop, so the store and Geth agree when we exit.
        match self.import(&block).await? {
            PayloadStatus::Valid { .. } => {}
            PayloadStatus::Invalid { validation_error, .. } | PayloadStatus::InvalidBlockHash { validation_error } => {
                return Ok(Outcome::Invalid(validation_error));
            }
            status => return Err(Fault::Passing(anyhow!("Geth did not execute block {}: {status}", block.number()))),
        }

        // Store, then finalize: the write-ahead rule.
        self.store.append(&block).map_err(Fault::Fatal)?;
        self.head = Head { number: block.number(), hash: block.hash(), timestamp: block.timestamp() };
        self.earliest = 0;
        self.last_block_at = Instant::now();
        self.set_forkchoice().await?;
        Ok(Outcome::Produced(Box::new(block)))
    }

    /// newPayload, retried a few times while Geth says SYNCING or ACCEPTED.
    async fn import(&self, block: &ExecutableBlock) -> Result<PayloadStatus, Fault> {
        let mut delay = BACKOFF_FIRST;
        for attempt in 1..=IMPORT_ATTEMPTS {
            let status = self.engine.import(block).await.map_err(anyhow_fault)?;
            if !status.is_pending() || attempt == IMPORT_ATTEMPTS {
                return Ok(status);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF_CAP);
        }
        unreachable!("the last attempt returns")
    }

    /// forkchoiceUpdated to our head as head, safe and finalized.
    async fn set_forkchoice(&self) -> Result<(), Fault> {
        let updated = self.engine.forkchoice_updated_v3(finalized_at(self.head.hash), None).await?;
        match updated.payload_status {
            PayloadStatus::Valid { .. } => Ok(()),
            PayloadStatus::Invalid { .. } | PayloadStatus::InvalidBlockHash { .. } => {
                Err(Fault::Fatal(anyhow!("Geth refuses our head {}: {}", self.head.hash, updated.payload_status)))
            }
            status => Err(Fault::Passing(anyhow!("Geth cannot make {} head yet: {status}", self.head.hash))),
        }
    }

    /// Retries [`Sequencer::reconcile`] with capped backoff until it succeeds, a fatal
    /// fault occurs, or shutdown is asked for. `/ready` reports 503 meanwhile.
    async fn recover(&mut self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let mut delay = BACKOFF_FIRST;
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
            if !sleep_or_cancel(delay, cancel).await {
                return Ok(());
            }
            delay = (delay * 2).min(BACKOFF_CAP);
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
            self.status.metrics.count("geth_ahead");
        }
        self.set_forkchoice().await
    }

    /// Feeds Geth the stored blocks it lacks, from its head up to ours.
    async fn replay(&self, geth: &common::Block) -> Result<(), Fault> {
        info!(geth = geth.number, ours = self.head.number, "Geth is behind our store; replaying");
        let mut parent = geth.hash;
        for number in geth.number + 1..=self.head.number {
            let block = self.store.block(number).map_err(Fault::Fatal)?.ok_or_else(|| {
                Fault::Fatal(anyhow!(
                    "Geth is at height {} but our store has no block {number} to replay (it was produced before this store began); restore Geth's datadir",
                    geth.number
                ))
            })?;
            if block.parent_hash() != parent {
                return Err(Fault::Fatal(anyhow!(
                    "Geth's block {} is {parent}, not the parent of our block {number}: Geth is on another chain",
                    number - 1
                )));
            }
            match self.import(&block).await? {
                PayloadStatus::Valid { .. } => {}
                status => return Err(Fault::Fatal(anyhow!("Geth will not re-import our block {number}: {status}"))),
            }
            self.status.metrics.replayed_blocks.inc();
            parent = block.hash();
        }
        Ok(())
    }
}

/// Classifies an error that may wrap an [`EngineError`].
fn anyhow_fault(error: anyhow::Error) -> Fault {
    match error.downcast::<EngineError>() {
        Ok(engine) => Fault::from(engine),
        Err(other) => Fault::Fatal(other),
    }
}

/// Time since the Unix epoch.
fn unix_time() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Sleeps for `duration`; false if `cancel` fired first.
async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = cancel.cancelled() => false,
    }
}
