//! Flags, each with an environment variable, and the checks made before anything starts.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use alloy_primitives::Address;
use anyhow::ensure;
use common::config::ElArgs;

/// A single-node sequencer: keeps a Geth chain going, one block per slot.
#[derive(Debug, Clone, clap::Parser)]
#[command(version)]
pub struct Config {
    #[command(flatten)]
    pub el: ElArgs,

    /// Seconds between blocks (whole seconds: block timestamps are seconds).
    #[arg(long, env = "BLOCK_TIME", default_value_t = 1)]
    pub block_time: u64,

    /// How long Geth may fill a block with pending transactions before we take it (ms);
    /// must leave room in the slot for newPayload and forkchoiceUpdated.
    #[arg(long, env = "BUILD_TIME_MS", default_value_t = 500)]
    pub build_time_ms: u64,

    /// Produce blocks back to back, without waiting for the wall clock (benchmarks only):
    /// timestamps still rise by one second per block, so chain time runs ahead of the clock.
    #[arg(long, env = "BACK_TO_BACK")]
    pub back_to_back: bool,

    /// Skip empty blocks: produce only when Geth's block has transactions, or when
    /// `--max-idle` has passed since the last block.
    #[arg(long, env = "SKIP_EMPTY")]
    pub skip_empty: bool,

    /// With `--skip-empty`: the longest time without a block, in seconds.
    #[arg(long, env = "MAX_IDLE", default_value_t = 60)]
    pub max_idle: u64,

    /// Address that receives the priority fees.
    #[arg(long, env = "FEE_RECIPIENT", default_value_t = Address::ZERO)]
    pub fee_recipient: Address,

    /// Directory of the sequencer's own store (every block it produced, and its head).
    #[arg(long, env = "STATE_DIR", default_value = ".devnet/single-node")]
    pub state_dir: PathBuf,

    /// Address of the /health, /ready and /metrics server.
    #[arg(long, env = "HEALTH_ADDR", default_value = "127.0.0.1:9100")]
    pub health_addr: SocketAddr,

    /// How long to wait at start for an unreachable Geth before giving up (seconds).
    /// A Geth that answers but refuses our JWT, or is on another chain, fails at once.
    #[arg(long, env = "EL_WAIT", default_value_t = 60)]
    pub el_wait: u64,
}

impl Config {
    /// Rejects values that parse but make no sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.block_time >= 1, "--block-time must be at least 1 second (timestamps are whole seconds)");
        ensure!(
            self.build_time() < self.slot(),
            "--build-time-ms ({} ms) must be shorter than --block-time ({} s): the block has to be imported in the same slot",
            self.build_time_ms,
            self.block_time
        );
        ensure!(!self.skip_empty || self.max_idle >= self.block_time, "--max-idle must be at least --block-time");
        Ok(())
    }

    /// The slot length.
    pub const fn slot(&self) -> Duration {
        Duration::from_secs(self.block_time)
    }

    /// The build deadline within a slot.
    pub const fn build_time(&self) -> Duration {
        Duration::from_millis(self.build_time_ms)
    }

    /// The path of the embedded store.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("sequencer.redb")
    }
}
