//! Flags, each with an environment variable, and the checks made before anything starts.

use std::{path::PathBuf, time::Duration};

use anyhow::ensure;
use common::config::{ElArgs, ServiceArgs};

use crate::slot::BlockArgs;

/// A single-node sequencer: keeps a Geth chain going, one block per slot.
#[derive(Debug, Clone, clap::Parser)]
#[command(version)]
pub struct Config {
    #[command(flatten)]
    pub el: ElArgs,

    #[command(flatten)]
    pub block: BlockArgs,

    /// Skip empty blocks: produce only when Geth's block has transactions, or when
    /// `--max-idle` has passed since the last block.
    #[arg(long, env = "SKIP_EMPTY")]
    pub skip_empty: bool,

    /// With `--skip-empty`: the longest time without a block, in seconds.
    #[arg(long, env = "MAX_IDLE", default_value_t = 60)]
    pub max_idle: u64,

    /// Directory of the sequencer's own store (the blocks it produced, and its head).
    #[arg(long, env = "STATE_DIR", default_value = ".devnet/single-node")]
    pub state_dir: PathBuf,

    /// How many of the newest blocks the store keeps, to give back to a Geth that lost
    /// them in a crash (0: every block). Geth keeps the whole chain itself.
    #[arg(long, env = "RETAIN_BLOCKS", default_value_t = 10_000)]
    pub retain_blocks: u64,

    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Config {
    /// Rejects values that parse but make no sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.block.validate()?;
        ensure!(!self.skip_empty || self.max_idle >= self.block.block_time, "--max-idle must be at least --block-time");
        crate::store::check_retain(self.retain_blocks)?;
        Ok(())
    }

    /// The longest time without a block under `--skip-empty`.
    pub const fn max_idle(&self) -> Duration {
        Duration::from_secs(self.max_idle)
    }

    /// How long without a block before `/ready` says not ready: three slots, or with
    /// `--skip-empty` the longest idle time plus two slots.
    pub fn stale_after(&self) -> Duration {
        let slots = self.block.slot() * 2;
        if self.skip_empty { self.max_idle() + slots } else { self.block.slot() + slots }
    }

    /// The path of the embedded store.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("sequencer.redb")
    }
}
