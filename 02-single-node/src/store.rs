//! A consensus layer's own record of its chain, in an embedded database (redb: one file,
//! no server, crash-safe commits). Part 2's sequencer and Part 4's ABCI app keep one.
//!
//! Why keep blocks, when Geth has them? Because Geth may lose them. Killed with
//! SIGKILL, Geth v1.17 restarts from the last state it flushed to disk: with the default
//! path scheme that can be genesis, the blocks above deleted; with the hash scheme the
//! project runs, it can be dozens of blocks back, the blocks above kept or not, and the
//! lowest of them without its state. So each block is written here *before*
//! Geth is told it is the head, and [`replay_into`] gives Geth what it lacks when it
//! comes back.
//!
//! Only the newest blocks are needed for that, so the store can keep a window of them
//! ([`Store::retaining`]): its file then stops growing once the window is full (redb
//! reuses the pages of the blocks it drops). A Geth further behind than the window cannot
//! be given its blocks back from here; it needs a copy of a datadir that has them.

use std::path::Path;

use common::{BlockTag, EngineClient, Head, payload::ExecutableBlock};
use tracing::info;

use crate::{fault::Fault, round};
use alloy_primitives::B256;
use anyhow::{Context, anyhow, bail, ensure};
use redb::{Builder, Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Blocks by height, as JSON [`ExecutableBlock`]s.
const BLOCKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("blocks");
/// `genesis` (hash of block 0 of the chain this store belongs to) and `head`.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// The store's page cache. redb's default is 1 GiB, and every page written stays cached
/// until the cache is full: a sequencer's memory would grow with its chain, to a gigabyte.
/// Blocks are written once and read back only on recovery, so a small cache loses nothing:
/// it holds the tree's branch pages and, while a commit is in progress, up to half of it
/// buffers written pages (redb writes the rest through at once).
pub const CACHE_BYTES: usize = 1024 * 1024;

/// The smallest window a store may keep: well above the dozens of blocks Geth was seen to
/// lose in a crash, so that a crash never leaves Geth behind the window.
pub const MIN_RETAIN: u64 = 128;

/// The most blocks one append drops: a window set on a store that kept a long chain is
/// reached over the next appends, never in one long commit on the block path.
pub const MAX_DROP: u64 = 1_000;

/// Checks a `--retain-blocks` value: 0 (every block) or at least [`MIN_RETAIN`].
pub fn check_retain(retain: u64) -> anyhow::Result<()> {
    ensure!(
        retain == 0 || retain >= MIN_RETAIN,
        "--retain-blocks must be 0 (keep every block) or at least {MIN_RETAIN}, not {retain}"
    );
    Ok(())
}

/// The embedded store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    /// How many of the newest blocks to keep; 0 keeps every block.
    retain: u64,
}

impl Store {
    /// Opens (or creates) the store file. Fails clearly if another process holds it.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create state directory {}", dir.display()))?;
        }
        let db = Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                anyhow!("{} is in use by another process", path.display())
            }
            other => anyhow!("cannot open the block store {}: {other}", path.display()),
        })?;
        let txn = db.begin_write()?;
        txn.open_table(BLOCKS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db, retain: 0 })
    }

    /// Keeps only the newest `retain` blocks from now on (0: every block): each append
    /// drops the block that falls out of the window, and older ones too (at most
    /// [`MAX_DROP`] an append) when the window was set on a store that kept more.
    pub fn retaining(self, retain: u64) -> anyhow::Result<Self> {
        check_retain(retain)?;
        Ok(Self { retain, ..self })
    }

    /// The genesis hash recorded at first start, if any.
    pub fn genesis(&self) -> anyhow::Result<Option<B256>> {
        self.meta("genesis")?.map(|bytes| B256::try_from(bytes.as_slice()).context("corrupt genesis entry")).transpose()
    }

    /// The head, if any.
    pub fn head(&self) -> anyhow::Result<Option<Head>> {
        self.meta("head")?
            .map(|bytes| serde_json::from_slice(&bytes).context("corrupt head entry in the block store"))
            .transpose()
    }

    /// First start on a chain: records its genesis and the head to continue from.
    pub fn init(&self, genesis: B256, head: Head) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            ensure!(meta.get("genesis")?.is_none(), "the block store is already initialised");
            meta.insert("genesis", genesis.as_slice())?;
            meta.insert("head", serde_json::to_vec(&head)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    // ANCHOR: append
    /// Stores `block` as the new head, in one transaction, if it extends the current head.
    pub fn append(&self, block: &ExecutableBlock) -> anyhow::Result<()> {
        let head = block.head();
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let current = stored_head(&meta)?;
            ensure!(
                block.number() == current.number + 1 && block.parent_hash() == current.hash,
                "block {} ({}) does not extend the stored head {} ({})",
                block.number(),
                block.hash(),
                current.number,
                current.hash
            );
            let mut blocks = txn.open_table(BLOCKS)?;
            blocks.insert(block.number(), serde_json::to_vec(block)?.as_slice())?;
            if let Some(last_dropped) = block.number().checked_sub(self.retain).filter(|_| self.retain > 0) {
                let first = blocks.first()?.map(|(number, _)| number.value());
                if let Some(first) = first.filter(|first| *first <= last_dropped) {
                    blocks.retain_in(first..=last_dropped.min(first + MAX_DROP - 1), |_, _| false)?;
                }
            }
            meta.insert("head", serde_json::to_vec(&head)?.as_slice())?;
        }
        txn.commit().context("cannot commit the block to the block store")?;
        Ok(())
    }

    /// Takes `block` out again, if it is the head, and makes `parent` the head: for a block
    /// that was stored while Geth executed it, and that Geth did not find VALID.
    pub fn revert(&self, block: &ExecutableBlock, parent: Head) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let current = stored_head(&meta)?;
            ensure!(
                current == block.head() && parent.hash == block.parent_hash(),
                "block {} ({}) is not the stored head on {}; cannot take it out",
                block.number(),
                block.hash(),
                parent.hash
            );
            txn.open_table(BLOCKS)?.remove(block.number())?;
            meta.insert("head", serde_json::to_vec(&parent)?.as_slice())?;
        }
        txn.commit().context("cannot commit the block store")?;
        Ok(())
    }
    // ANCHOR_END: append

    /// Moves the head to a block we have no payload for (Geth was ahead of us).
    pub fn adopt(&self, head: Head) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert("head", serde_json::to_vec(&head)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Checks that this store belongs to the chain whose block 0 is `genesis`; a fresh
    /// store passes.
    pub fn check_genesis(&self, genesis: B256) -> anyhow::Result<()> {
        match self.genesis()? {
            Some(stored) if stored != genesis => bail!(
                "the block store belongs to a chain with genesis {stored}, but Geth's genesis is {genesis}; use another --state-dir, or delete it to start over"
            ),
            _ => Ok(()),
        }
    }

    /// The stored block at `number`, if this store has it.
    pub fn block(&self, number: u64) -> anyhow::Result<Option<ExecutableBlock>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOCKS)?;
        let Some(bytes) = table.get(number)? else { return Ok(None) };
        let block: ExecutableBlock = serde_json::from_slice(bytes.value())
            .with_context(|| format!("stored block {number} is corrupt and cannot be replayed"))?;
        ensure!(block.number() == number, "stored block {number} holds block {}", block.number());
        Ok(Some(block))
    }

    /// The lowest block the store holds, if any: below it, blocks were dropped or never
    /// stored (the store began later).
    pub fn first(&self) -> anyhow::Result<Option<u64>> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(BLOCKS)?.first()?.map(|(number, _)| number.value()))
    }

    fn meta(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(META)?.get(key)?.map(|v| v.value().to_vec()))
    }
}

/// The head recorded in `meta`, inside a write transaction.
fn stored_head(meta: &redb::Table<'_, &str, &[u8]>) -> anyhow::Result<Head> {
    match meta.get("head")? {
        Some(bytes) => serde_json::from_slice(bytes.value()).context("corrupt head entry"),
        None => bail!("the block store has no head"),
    }
}

/// A replay makes the blocks at multiples of this height Geth's head as it goes.
pub const REPLAY_HEAD_EVERY: u64 = 64;

// ANCHOR: replay_into
/// Gives Geth the stored blocks above its head `geth`, up to height `to`, each checked to
/// extend the one before; the caller finalizes. Returns how many it gave.
///
/// Each block whose height is a multiple of [`REPLAY_HEAD_EVERY`] is made head once given
/// (it is stored, so final): Geth's head rises while a long replay runs, instead of staying
/// at the old height until the end, and a replay cut short leaves Geth at the last of them.
pub async fn replay_into(
    engine: &EngineClient,
    store: &Store,
    geth: &common::Block,
    to: u64,
) -> Result<u64, round::ReplayError> {
    let mut parent = geth.hash;
    for number in geth.number + 1..=to {
        let Some(block) = store.block(number).map_err(Fault::Fatal)? else {
            return Err(Fault::Fatal(behind_the_store(store, geth.number, number)).into());
        };
        round::replay(engine, &block, parent).await?;
        parent = block.hash();
        if number % REPLAY_HEAD_EVERY == 0 && number < to {
            round::finalize(engine, parent).await?;
        }
    }
    Ok(to.saturating_sub(geth.number))
}
// ANCHOR_END: replay_into

/// Why a Geth at `geth` cannot be given block `missing`, and what to do about it.
fn behind_the_store(store: &Store, geth: u64, missing: u64) -> anyhow::Error {
    let first = store.first().ok().flatten();
    let holds = first
        .filter(|first| *first > missing)
        .map_or_else(|| "it began later".to_owned(), |first| format!("it holds blocks from {first} on"));
    anyhow!(
        "Geth is at height {geth} but the block store has no block {missing} to give it ({holds}); {}",
        restore_hint(first)
    )
}

/// How to give Geth a chain the store (whose lowest block is `first`) can bring to its
/// head: from genesis while the store holds every block from 1 on, otherwise from a copy
/// of a datadir that reaches the store.
fn restore_hint(first: Option<u64>) -> String {
    match first {
        Some(first) if first > 1 => {
            format!("start Geth from a copy of a datadir of this chain at block {} or above", first - 1)
        }
        _ => "wipe Geth's datadir and let it replay".to_owned(),
    }
}

/// Where Geth stood against the stored head, and what [`reconcile`] did about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// Geth's head is the stored head.
    InStep,
    /// Geth was behind, and was given this many stored blocks.
    Replayed(u64),
    /// Geth is ahead of the store, on the stored chain: its head (blocks another driver
    /// made while we were stopped). The caller decides what to do.
    Ahead(Head),
}

// ANCHOR: reconcile
/// Brings Geth to the stored head `ours`: a Geth behind it gets the stored blocks it
/// lacks; a Geth at or above it must hold `ours` at that height, or it is on another chain,
/// which is fatal (only a person can say which chain is right). The caller sends the
/// forkchoice state afterwards. Parts 2 and 4 run this at start and after every fault.
pub async fn reconcile(engine: &EngineClient, store: &Store, ours: Head) -> Result<Reconciled, round::ReplayError> {
    let geth = engine.head().await.map_err(Fault::from)?;
    if geth.number < ours.number {
        // Geth's own head first, once it is known to be ours (the stored block above it
        // names it as parent): a Geth that has just started counts itself not synced until
        // it takes an update, and until then ignores one naming a block its index holds
        // above its head, which is what the replay sends to repair a block kept without
        // its state.
        if store.block(geth.number + 1).map_err(Fault::Fatal)?.is_some_and(|b| b.parent_hash() == geth.hash) {
            round::finalize(engine, geth.hash).await?;
        }
        info!(geth = geth.number, ours = ours.number, "Geth is behind the store; replaying");
        return replay_into(engine, store, &geth, ours.number).await.map(Reconciled::Replayed);
    }
    let at_ours = engine.block(BlockTag::Number(ours.number)).await.map_err(Fault::from)?.map(|b| b.hash);
    if at_ours != Some(ours.hash) {
        let theirs = at_ours.map_or_else(|| "no block".to_owned(), |hash| hash.to_string());
        return Err(Fault::Fatal(anyhow!(
            "Geth's chain differs from the stored one at height {}: Geth has {theirs} there, the store has {}; {}",
            ours.number,
            ours.hash,
            restore_hint(store.first().ok().flatten())
        ))
        .into());
    }
    Ok(if geth.hash == ours.hash { Reconciled::InStep } else { Reconciled::Ahead(Head::from(&geth)) })
}
// ANCHOR_END: reconcile

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, Bytes, U256};
    use alloy_rpc_types_engine::{ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3};

    use super::*;

    fn hash(number: u64) -> B256 {
        B256::from(U256::from(number + 1))
    }

    /// Block `number` of a made-up chain, carrying `bytes` of transaction data (the store
    /// checks only that each block names the one below it).
    fn block(number: u64, bytes: usize) -> ExecutableBlock {
        ExecutableBlock {
            execution_payload: ExecutionPayloadV3 {
                payload_inner: ExecutionPayloadV2 {
                    payload_inner: ExecutionPayloadV1 {
                        parent_hash: hash(number - 1),
                        fee_recipient: Address::ZERO,
                        state_root: B256::ZERO,
                        receipts_root: B256::ZERO,
                        logs_bloom: Default::default(),
                        prev_randao: B256::ZERO,
                        block_number: number,
                        gas_limit: 60_000_000,
                        gas_used: 0,
                        timestamp: number,
                        extra_data: Bytes::new(),
                        base_fee_per_gas: U256::from(7),
                        block_hash: hash(number),
                        transactions: vec![Bytes::from(vec![0xab; bytes])],
                    },
                    withdrawals: Vec::new(),
                },
                blob_gas_used: 0,
                excess_blob_gas: 0,
            },
            execution_requests: Vec::new(),
        }
    }

    fn fresh(dir: &Path) -> Store {
        let store = Store::open(&dir.join("store.redb")).expect("open");
        store.init(hash(0), Head { number: 0, hash: hash(0), timestamp: 0 }).expect("init");
        store
    }

    fn append_up_to(store: &Store, from: u64, to: u64, bytes: usize) {
        for number in from..=to {
            store.append(&block(number, bytes)).expect("append");
        }
    }

    #[test]
    fn a_store_keeps_the_newest_blocks_of_its_window_and_drops_the_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let store = fresh(dir.path()).retaining(MIN_RETAIN).expect("window");
        append_up_to(&store, 1, 300, 100);
        let first = 300 - MIN_RETAIN + 1;
        assert_eq!(store.first().expect("read"), Some(first));
        assert!(store.block(first - 1).expect("read").is_none(), "block {} was dropped", first - 1);
        assert_eq!(store.block(first).expect("read").map(|b| b.hash()), Some(hash(first)));
        assert_eq!(store.head().expect("read").map(|h| h.number), Some(300));
    }

    #[test]
    fn a_window_set_on_a_store_that_kept_everything_is_reached_a_thousand_blocks_an_append() {
        let dir = tempfile::tempdir().expect("dir");
        append_up_to(&fresh(dir.path()), 1, 2_500, 10);
        let store = Store::open(&dir.path().join("store.redb")).expect("reopen").retaining(MIN_RETAIN).expect("window");
        assert_eq!(store.first().expect("read"), Some(1), "nothing is dropped before an append");
        store.append(&block(2_501, 10)).expect("append");
        assert_eq!(store.first().expect("read"), Some(1 + MAX_DROP), "one append drops at most {MAX_DROP}");
        append_up_to(&store, 2_502, 2_503, 10);
        assert_eq!(store.first().expect("read"), Some(2_503 - MIN_RETAIN + 1), "and the window is reached");
    }

    #[test]
    fn a_store_with_a_window_stops_growing_once_the_window_is_full() {
        let dir = tempfile::tempdir().expect("dir");
        let store = fresh(dir.path()).retaining(MIN_RETAIN).expect("window");
        let size = || std::fs::metadata(dir.path().join("store.redb")).expect("file").len();
        append_up_to(&store, 1, 4 * MIN_RETAIN, 8_000);
        let full = size();
        append_up_to(&store, 4 * MIN_RETAIN + 1, 40 * MIN_RETAIN, 8_000);
        let later = size();
        assert!(later <= full, "the file grew from {full} to {later} bytes with ten times the blocks through it");
    }

    #[test]
    fn a_window_too_small_to_outlast_a_geth_crash_is_refused() {
        let error = check_retain(MIN_RETAIN - 1).expect_err("too small");
        assert!(error.to_string().contains("at least 128"), "{error}");
        assert!(check_retain(0).is_ok() && check_retain(MIN_RETAIN).is_ok());
    }
}
