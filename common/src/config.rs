//! Command-line flags the steps share: where the execution client is and how to reach it,
//! and how a long-running producer times its blocks.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use alloy_primitives::Address;
use anyhow::{Context, ensure};

use crate::{auth::JwtSecret, engine::EngineClient, fork::ForkSchedule, slot::Schedule, startup};

/// How to reach the execution client. Defaults match `scripts/devnet.sh start` run from the
/// repository root, so a bare `cargo run -p …` works against the local devnet.
#[derive(Debug, Clone, clap::Args)]
pub struct ElArgs {
    /// Engine API (authenticated RPC) URL of the execution client.
    #[arg(long, env = "ETH_CLIENT_URL", default_value = "http://127.0.0.1:8551")]
    pub eth_client_url: String,

    /// File holding the hex JWT secret the execution client was started with.
    #[arg(long, env = "JWT_SECRET", default_value = ".devnet/jwt.hex")]
    pub jwt_secret: PathBuf,

    /// Genesis file of the chain: its chain id and fork times choose the API versions.
    #[arg(long, env = "GENESIS", default_value = "genesis.json")]
    pub genesis: PathBuf,
}

impl ElArgs {
    /// Reads the secret and genesis and builds the client, without calling the EL yet.
    pub fn client(&self) -> anyhow::Result<EngineClient> {
        let jwt = JwtSecret::from_file(&self.jwt_secret)?;
        let forks = ForkSchedule::from_genesis_file(&self.genesis)?;
        EngineClient::new(&self.eth_client_url, jwt, forks).context("bad --eth-client-url")
    }

    /// [`ElArgs::client`], then checks the execution client serves what we need on the
    /// chain we expect.
    pub async fn connect(&self) -> anyhow::Result<EngineClient> {
        let client = self.client()?;
        startup::check_execution_client(&client).await?;
        Ok(client)
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
