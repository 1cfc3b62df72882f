//! Flags, each with an environment variable, and the checks made before anything starts.
//! `BlockArgs` and `ServiceArgs` are the flags every long-running step has; Parts 3 and 4
//! take them from here.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use alloy_primitives::Address;
use anyhow::ensure;
use common::config::ElArgs;

use crate::slot::Schedule;

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

    /// Directory of the sequencer's own store (every block it produced, and its head).
    #[arg(long, env = "STATE_DIR", default_value = ".devnet/single-node")]
    pub state_dir: PathBuf,

    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Config {
    /// Rejects values that parse but make no sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.block.validate()?;
        ensure!(!self.skip_empty || self.max_idle >= self.block.block_time, "--max-idle must be at least --block-time");
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

/// How a long-running producer makes blocks: when, how long Geth may build, who is paid.
#[derive(Debug, Clone, clap::Args)]
pub struct BlockArgs {
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

    /// Address that receives the priority fees.
    #[arg(long, env = "FEE_RECIPIENT", default_value_t = Address::ZERO)]
    pub fee_recipient: Address,
}

impl BlockArgs {
    /// Rejects values that parse but make no sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.block_time >= 1, "--block-time must be at least 1 second (timestamps are whole seconds)");
        ensure!(
            self.build_time() < self.slot(),
            "--build-time-ms ({} ms) must be shorter than --block-time ({} s): the block has to be imported in the same slot",
            self.build_time_ms,
            self.block_time
        );
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

    /// The timing policy for [`crate::slot::next_slot`].
    pub const fn schedule(&self) -> Schedule {
        Schedule { block_time: self.block_time, build_time: self.build_time(), back_to_back: self.back_to_back }
    }

    /// Says in the log, once, that `--back-to-back` lets chain time run ahead of the clock.
    pub fn warn_if_back_to_back(&self) {
        if self.back_to_back {
            tracing::warn!(
                "--back-to-back: blocks are produced without waiting for the clock; chain time will run ahead of the wall clock"
            );
        }
    }
}

/// What every long-running service has: its endpoints, and its patience with Geth.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Address of the /health, /ready and /metrics server (and /status, where there is one).
    #[arg(long, env = "HEALTH_ADDR", default_value = "127.0.0.1:9100")]
    pub health_addr: SocketAddr,

    /// How long to wait at start for an unreachable Geth before giving up (seconds).
    /// A Geth that answers but refuses our JWT, or is on another chain, fails at once.
    #[arg(long, env = "EL_WAIT", default_value_t = 60)]
    pub el_wait: u64,
}

impl ServiceArgs {
    /// `--el-wait` as a duration.
    pub const fn el_wait(&self) -> Duration {
        Duration::from_secs(self.el_wait)
    }
}
