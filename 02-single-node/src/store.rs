//! A consensus layer's own record of its chain, in an embedded database (redb: one file,
//! no server, crash-safe commits). Part 2's sequencer and Part 4's ABCI app keep one.
//!
//! Why keep every block, when Geth has them? Because Geth may lose them. Killed with
//! SIGKILL, Geth v1.17 restarts from the last state it flushed to disk and deletes the
//! blocks above it: with the default path scheme that can be genesis, and even with the
//! hash scheme it can be dozens of blocks back. So each block is written here *before*
//! Geth is told it is the head, and [`replay_into`] gives Geth what it lacks when it
//! comes back.

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

/// The embedded store.
#[derive(Debug)]
pub struct Store {
    db: Database,
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
        Ok(Self { db })
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
            txn.open_table(BLOCKS)?.insert(block.number(), serde_json::to_vec(block)?.as_slice())?;
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
        let block = store.block(number).map_err(Fault::Fatal)?.ok_or_else(|| {
            Fault::Fatal(anyhow!(
                "Geth is at height {} but the block store has no block {number} to give it (it began later); restore Geth's datadir",
                geth.number
            ))
        })?;
        round::replay(engine, &block, parent).await?;
        parent = block.hash();
        if number % REPLAY_HEAD_EVERY == 0 && number < to {
            round::finalize(engine, parent).await?;
        }
    }
    Ok(to.saturating_sub(geth.number))
}
// ANCHOR_END: replay_into

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
            "Geth's chain differs from the stored one at height {}: Geth has {theirs} there, the store has {}; wipe Geth's datadir and let it replay",
            ours.number,
            ours.hash
        ))
        .into());
    }
    Ok(if geth.hash == ours.hash { Reconciled::InStep } else { Reconciled::Ahead(Head::from(&geth)) })
}
// ANCHOR_END: reconcile
