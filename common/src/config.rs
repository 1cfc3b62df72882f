//! The command-line flags every step shares: where the execution client is and how to
//! reach it; and, for a long-running service (feature `service`), its endpoints and its
//! patience with Geth.

use std::path::PathBuf;

use anyhow::Context;

use crate::{auth::JwtSecret, engine::EngineClient, fork::ForkSchedule, startup};

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

/// What every long-running service has: its endpoints, and its patience with Geth.
#[cfg(feature = "service")]
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Address of the /health, /ready and /metrics server (and /status, where there is one).
    #[arg(long, env = "HEALTH_ADDR", default_value = "127.0.0.1:9100")]
    pub health_addr: std::net::SocketAddr,

    /// How long to wait at start for an unreachable Geth before giving up (seconds).
    /// A Geth that answers but refuses our JWT, or is on another chain, fails at once.
    #[arg(long, env = "EL_WAIT", default_value_t = 60)]
    pub el_wait: u64,
}

#[cfg(feature = "service")]
impl ServiceArgs {
    /// `--el-wait` as a duration.
    pub const fn el_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.el_wait)
    }
}
