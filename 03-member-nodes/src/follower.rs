//! Following the store: every node replays the block log into its own Geth.
//!
//! Members do only this. A leader candidate does it until it is promoted, and once more
//! on promotion, to bring its Geth to the stored head before it builds on it.
//!
//! Each stored block is checked before Geth sees it: its payload must decode, match its
//! row, hash to its own block hash (`StoredRow::block`), and extend this node's head.
//! A block that fails, or that Geth finds INVALID, halts the follower there: it applies
//! neither that block nor anything after it, and says why on `/ready`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use anyhow::anyhow;
use common::{EngineClient, Head};
use single_node::{fault::Fault, round};
use tracing::{info, warn};

use crate::{
    block_log::{Chain, Store, StoredRow},
    server::Status,
};

/// Stored blocks fetched per query while catching up; Geth's head moves once per batch
/// (and where `round::replay` repairs a block whose state Geth lost).
pub const BATCH: u32 = 64;
/// Stored payload fetched per query, as JSON text: a batch takes a block while the blocks
/// before it come to less (so it passes this by one block at most): 64 blocks of a
/// hundred-odd transfers, or three full ones. A batch's rows are in memory at once, so this
/// bounds what catching up costs the node in memory.
pub const BATCH_BYTES: u32 = 2 * 1024 * 1024;

/// Why a catch-up stopped early.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// A stored block cannot be applied; nothing after it will be.
    #[error("{0}")]
    Halted(String),
    /// PostgreSQL failed or did not answer: retry later.
    #[error("block store: {0:#}")]
    Store(anyhow::Error),
    /// Geth failed: the fault says whether a retry can help.
    #[error("execution client: {0}")]
    Engine(Fault),
    /// Geth is below where the log begins, and syncing from its peers: retry later.
    #[error("{0}")]
    Syncing(String),
}

/// A node's Geth, following the stored chain.
#[derive(Debug)]
pub struct Follower {
    engine: Arc<EngineClient>,
    store: Store,
    status: Arc<Status>,
    head: Head,
    /// The block a Geth below the log's anchor is syncing to from its peers (kept across
    /// tries: a new target would restart Geth's sync).
    syncing_to: Option<Head>,
    /// Geth failed since we last read its head: read it again before going on.
    stale: bool,
}

impl Follower {
    /// A follower of `chain`, not yet attached to this node's Geth.
    pub const fn new(engine: Arc<EngineClient>, store: Store, status: Arc<Status>, chain: &Chain) -> Self {
        Self { engine, store, status, head: chain.anchor, syncing_to: None, stale: true }
    }

    /// Checks that this node's Geth is on the stored chain, and follows from its head.
    /// A Geth on another chain, or with blocks the store does not have, is a fatal fault:
    /// only a person can say which chain is right. Retried on the same follower while it
    /// fails otherwise (a Geth syncing from its peers is asked for the same block each time).
    pub async fn attach(&mut self, chain: &Chain) -> Result<(), FollowError> {
        // Block 0 from Geth; the chain id, fork id, genesis forks and blob schedule from
        // `--genesis`, which the start checks found Geth to have (of the forks at block 0,
        // Prague and Osaka by name; of the blob parameters, those of its current, next and
        // last fork).
        let ours = self.engine.el_chain().await.map_err(engine_fault)?;
        if !chain.el.admits(&ours) {
            return Err(fatal(anyhow!(
                "this node's Geth is on another chain than the store's: it has {ours}, the store holds {}; \
                 Geth was initialised from another genesis file, or started on another chain's datadir: \
                 initialise it again from the cluster's, give this node that file as --genesis, then restart it",
                chain.el
            )));
        }
        let unnamed = chain.el.unnamed();
        if !unnamed.is_empty() {
            let unnamed = unnamed.join(", ");
            warn!(store = %chain.el, unnamed, "the store's chain names less than this version writes (it was made before): this node's Geth is checked on what it names");
        }
        self.resync().await
    }

    // ANCHOR: resync
    /// Reads Geth's head, checks it is a stored block, and sends the forkchoice state
    /// again. Done at start and after every Geth failure: a Geth that was killed can come
    /// back behind where we left it (we saw one lose the block we had just made head),
    /// and after a restart it takes payloads only on top of a head it was told about.
    async fn resync(&mut self) -> Result<(), FollowError> {
        let mut geth = self.engine.head().await.map_err(engine_fault)?;
        let anchor = self.store.anchor().await.map_err(FollowError::Store)?;
        if geth.number < anchor.number {
            self.sync_from_peers(geth.number, anchor).await?;
            geth = self.engine.head().await.map_err(engine_fault)?;
        } else {
            // Geth is within the log (a sync from its peers ended, or took it past the
            // anchor before it held its target): the log gives it the rest.
            self.syncing_to = None;
        }
        match self.store.hash_at(geth.number).await.map_err(FollowError::Store)? {
            Some(hash) if hash == geth.hash => {}
            Some(hash) => {
                return Err(fatal(anyhow!(
                    "this node's Geth has block {} {}, the store has {hash}: it is on another fork; wipe its datadir and let it replay",
                    geth.number,
                    geth.hash
                )));
            }
            None => {
                // A prune may have moved the anchor past Geth's head since we read it (or
                // Geth synced to an older anchor): then the next try syncs it further.
                let anchor = self.store.anchor().await.map_err(FollowError::Store)?;
                if geth.number < anchor.number {
                    return Err(FollowError::Syncing(format!(
                        "the log now begins at block {}, above this node's Geth at {}",
                        anchor.number, geth.number
                    )));
                }
                return Err(fatal(anyhow!(
                    "this node's Geth has block {} {}, which the store does not: it has blocks no leader stored",
                    geth.number,
                    geth.hash
                )));
            }
        }
        round::finalize(&self.engine, geth.hash).await.map_err(FollowError::Engine)?;
        if geth.number < self.head.number {
            info!(geth = geth.number, ours = self.head.number, "Geth came back behind where we left it; replaying");
        }
        self.head = Head::from(&geth);
        self.stale = false;
        self.status.set_head(self.head);
        Ok(())
    }
    // ANCHOR_END: resync

    // ANCHOR: sync_from_peers
    /// Brings a Geth that is below where the log begins (`anchor`: the log dropped the
    /// blocks it lacks) up to the log's newest block from its peers: a forkchoiceUpdated
    /// naming a block Geth does not have makes it fetch that block's header from its peers
    /// and sync to it over devp2p, executing every block on the way (its own beacon sync).
    /// Until Geth holds the block it answers SYNCING, and the follower asks again later,
    /// for the same block however far the log moves on (a new target would restart Geth's
    /// sync). Once Geth has it, the log holds the blocks after it (unless the window passed
    /// it meanwhile: then the next target is the newest block of then, much nearer).
    async fn sync_from_peers(&mut self, geth: u64, anchor: Head) -> Result<(), FollowError> {
        let target = match self.syncing_to.filter(|target| target.number > geth) {
            Some(target) => target,
            None => self.store.head().await.map_err(FollowError::Store)?.unwrap_or(anchor),
        };
        self.syncing_to = Some(target);
        match round::sync_to(&self.engine, target.hash).await {
            Ok(round::Sync::Done) => {
                self.syncing_to = None;
                info!(block = target.number, "Geth synced from its peers");
                Ok(())
            }
            Ok(round::Sync::Syncing(answer)) => Err(FollowError::Syncing(format!(
                "this node's Geth is at block {geth}, below block {} where the log begins: it is syncing from its peers (devp2p) to block {} (Geth: {answer}); a Geth without peers needs a copy of a datadir that has block {}",
                anchor.number, target.number, anchor.number
            ))),
            Err(fault) => Err(FollowError::Engine(fault)),
        }
    }
    // ANCHOR_END: sync_from_peers

    /// Makes the next catch-up read Geth's head again first (after a Geth failure seen
    /// by someone else, such as the leader's production loop).
    pub const fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// The client, the store and the status this follower works with, for the leader that
    /// builds on it.
    pub fn parts(&self) -> (Arc<EngineClient>, Store, Arc<Status>) {
        (self.engine.clone(), self.store.clone(), self.status.clone())
    }

    /// This node's Geth head, as far as we made it.
    pub const fn head(&self) -> Head {
        self.head
    }

    /// Records that the leader made `head` this node's Geth head.
    pub fn advance(&mut self, head: Head) {
        self.head = head;
        self.status.set_head(head);
    }

    // ANCHOR: catch_up
    /// Applies every stored block above our head, in batches, each batch finalized on
    /// Geth at its last block. Returns when a query finds nothing new.
    pub async fn catch_up(&mut self) -> Result<(), FollowError> {
        let mut result = if self.stale { self.resync().await } else { Ok(()) };
        if result.is_ok() {
            result = self.apply_all().await;
        }
        if let Err(FollowError::Engine(_)) = result {
            self.stale = true;
        }
        // The catch-up's own verdict comes first: a halt or a Geth failure is not to be
        // hidden behind a store error from reading the lag.
        let lag = self.refresh_lag().await;
        result.and(lag)
    }

    async fn apply_all(&mut self) -> Result<(), FollowError> {
        loop {
            let rows =
                self.store.blocks_after(self.head.number, BATCH, BATCH_BYTES).await.map_err(FollowError::Store)?;
            if rows.is_empty() {
                return Ok(());
            }
            if rows[0].number != self.head.number + 1 {
                // The log dropped the blocks above our head while we were behind: start
                // again from Geth's head, which finds it below the anchor.
                self.stale = true;
                return Err(FollowError::Syncing(format!(
                    "the log no longer holds block {}: it begins further up",
                    self.head.number + 1
                )));
            }
            let fetched = Instant::now();
            let mut applied: Vec<(Head, Duration)> = Vec::with_capacity(rows.len());
            let mut stopped = Ok(());
            for row in &rows {
                let parent = applied.last().map_or(self.head, |(head, _)| *head);
                match self.apply(row, parent.hash).await {
                    Ok(head) => applied.push((head, row.age)),
                    Err(error) => {
                        stopped = Err(error);
                        break;
                    }
                }
            }
            // What was applied before a failure stays applied: finalize it first.
            self.finalize(&applied, fetched).await?;
            stopped?;
        }
    }
    // ANCHOR_END: catch_up

    // ANCHOR: apply
    /// Checks one stored block and gives it to Geth on top of `parent`.
    async fn apply(&self, row: &StoredRow, parent: B256) -> Result<Head, FollowError> {
        let block = row.block().map_err(|e| FollowError::Halted(e.to_string()))?;
        round::replay(&self.engine, &block, parent).await.map_err(|e| match e {
            round::ReplayError::Call(fault) => FollowError::Engine(fault),
            refused => FollowError::Halted(refused.to_string()),
        })?;
        Ok(block.head())
    }
    // ANCHOR_END: apply

    /// Makes the last applied block head (and final), and accounts for the batch.
    async fn finalize(&mut self, applied: &[(Head, Duration)], fetched: Instant) -> Result<(), FollowError> {
        let Some((last, last_age)) = applied.last() else { return Ok(()) };
        round::finalize(&self.engine, last.hash).await.map_err(FollowError::Engine)?;
        let since_fetch = fetched.elapsed();
        for (_, age) in applied {
            self.status.metrics.apply_delay_seconds.observe((*age + since_fetch).as_secs_f64());
        }
        self.status.metrics.blocks_applied.inc_by(applied.len() as u64);
        if applied.len() > 1 {
            info!(from = applied[0].0.number, to = last.number, "applied stored blocks");
        } else {
            // The delay from the block's write to the store (its `stored_at`, just before
            // the commit) to its finalization here, and its first part: until PostgreSQL
            // read it for this node (both ages by the database's clock).
            let (delay_us, read_us) = ((*last_age + since_fetch).as_micros(), last_age.as_micros());
            info!(number = last.number, hash = %last.hash, delay_us, read_us, "applied stored block");
        }
        self.advance(*last);
        Ok(())
    }

    /// Reads how far behind the store we are, for `/ready` and `/metrics`.
    pub async fn refresh_lag(&self) -> Result<(), FollowError> {
        let (store_head, oldest_age) = self.store.lag(self.head.number).await.map_err(FollowError::Store)?;
        let lag_blocks = store_head.saturating_sub(self.head.number);
        self.status.set_lag(store_head, lag_blocks, oldest_age.map_or(0.0, |a| a.as_secs_f64()));
        Ok(())
    }
}

fn engine_fault(error: common::EngineError) -> FollowError {
    FollowError::Engine(Fault::from(error))
}

fn fatal(error: anyhow::Error) -> FollowError {
    FollowError::Engine(Fault::Fatal(error))
}
