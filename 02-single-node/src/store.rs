//! The sequencer's own record of its chain, in an embedded database (redb: one file, no
//! server, crash-safe commits).
//!
//! Why keep every block, when Geth has them? Because Geth may lose them. Killed with
//! SIGKILL, Geth v1.17 restarts from the last state it flushed to disk and deletes the
//! blocks above it: on a quiet devnet that can be genesis. The sequencer is the chain's
//! source of truth, so it writes each block here *before* making it Geth's head, and
//! replays what Geth lacks when it comes back.

use std::path::Path;

use alloy_primitives::B256;
use anyhow::{Context, bail, ensure};
use common::{Head, payload::ExecutableBlock};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Blocks by height, as JSON [`ExecutableBlock`]s.
const BLOCKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("blocks");
/// `genesis` (hash of block 0 of the chain this store belongs to) and `head`.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

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
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                anyhow::anyhow!("{} is in use by another sequencer process", path.display())
            }
            other => anyhow::anyhow!("cannot open the sequencer store {}: {other}", path.display()),
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
            .map(|bytes| serde_json::from_slice(&bytes).context("corrupt head entry in the sequencer store"))
            .transpose()
    }

    /// First start on a chain: records its genesis and the head to continue from.
    pub fn init(&self, genesis: B256, head: Head) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            ensure!(meta.get("genesis")?.is_none(), "the sequencer store is already initialised");
            meta.insert("genesis", genesis.as_slice())?;
            meta.insert("head", serde_json::to_vec(&head)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Stores `block` as the new head, in one transaction, if it extends the current head.
    pub fn append(&self, block: &ExecutableBlock) -> anyhow::Result<()> {
        let head = block.head();
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let current: Head = match meta.get("head")? {
                Some(bytes) => serde_json::from_slice(bytes.value()).context("corrupt head entry")?,
                None => bail!("the sequencer store has no head"),
            };
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
        txn.commit().context("cannot commit the block to the sequencer store")?;
        Ok(())
    }

    /// Moves the head to a block we have no payload for (Geth was ahead of us).
    pub fn adopt(&self, head: Head) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert("head", serde_json::to_vec(&head)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The stored block at `number`, if this sequencer produced it.
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
