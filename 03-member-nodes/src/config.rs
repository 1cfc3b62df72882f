//! Flags, each with an environment variable, and the checks made before anything starts.

use std::time::Duration;

use anyhow::ensure;
use common::config::{ElArgs, ServiceArgs};
use single_node::slot::BlockArgs;

/// What this node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A leader candidate: follows the store like a member until it holds the lease, then
    /// produces blocks until it loses it.
    Leader,
    /// Follows the store into its own Geth; never produces.
    Member,
}

/// A node of a member-nodes cluster: one leader produces, everyone replays the block log.
#[derive(Debug, Clone, clap::Parser)]
#[command(version)]
pub struct Config {
    /// This node's name, unique in the cluster: it holds the lease under it, and the
    /// blocks it stores name it as their leader.
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: String,

    /// `leader` (a candidate for leadership) or `member`.
    #[arg(long, env = "MODE", value_enum)]
    pub mode: Mode,

    #[command(flatten)]
    pub el: ElArgs,

    #[command(flatten)]
    pub block: BlockArgs,

    /// Redis for the leader lease, as `host:port` or a `redis://` URL (leaders only).
    #[arg(long, env = "REDIS_ADDR", default_value = "127.0.0.1:6379")]
    pub redis_addr: String,

    /// PostgreSQL holding the block log, as a `postgres://` URL.
    #[arg(long, env = "POSTGRES_URL", default_value = "postgres://tutorial:tutorial@127.0.0.1:5432/tutorial")]
    pub postgres_url: String,

    /// How long a lease lasts without renewal (ms). It is renewed every quarter of that;
    /// a leader that cannot renew stops producing before the lease can expire in Redis.
    #[arg(long, env = "LEASE_MS", default_value_t = 2000)]
    pub lease_ms: u64,

    /// A leader leads only while it can produce: when its Geth is unreachable, SYNCING,
    /// too slow, or rejects its blocks for this long (ms), it gives the lease up so a
    /// standby with a healthy Geth takes over, and follows until its Geth is back.
    #[arg(long, env = "EL_OUTAGE_MS", default_value_t = 1000)]
    pub el_outage_ms: u64,

    /// How many of the newest blocks the block log keeps (0: every block); the default is
    /// about a day at one block a second. A leader drops older ones every 64 blocks; a node
    /// whose Geth is further behind syncs it from its peers' Geths (devp2p) up to the log's
    /// newest block of then, then follows the log.
    #[arg(long, env = "RETAIN_BLOCKS", default_value_t = 100_000)]
    pub retain_blocks: u64,

    /// `/ready` answers 503 when this node's Geth is more blocks behind the store.
    #[arg(long, env = "READY_MAX_LAG", default_value_t = 5)]
    pub ready_max_lag: u64,

    /// An unreachable Redis or PostgreSQL at start fails at once, naming its flag; an
    /// unreachable Geth is waited for up to `--el-wait`.
    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Config {
    /// Rejects values that parse but make no sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.block.validate()?;
        ensure!(!self.instance_id.trim().is_empty(), "--instance-id must not be empty");
        ensure!(self.lease_ms >= 200, "--lease-ms must be at least 200 (renewals go every quarter of it)");
        ensure!(self.el_outage_ms >= 100, "--el-outage-ms must be at least 100");
        single_node::store::check_retain(self.retain_blocks)?;
        ensure!(
            self.mode == Mode::Member || self.lease() > self.block.build_time(),
            "--lease-ms ({} ms) must be longer than --build-time-ms ({} ms): a leader must be able to finish a block within its lease",
            self.lease_ms,
            self.block.build_time_ms
        );
        Ok(())
    }

    /// How long a lease lasts without renewal.
    pub const fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// How long a leader may fail to produce before it steps down.
    pub const fn el_outage(&self) -> Duration {
        Duration::from_millis(self.el_outage_ms)
    }

    /// How long a leader may go without a block before its lease renewal gives the lease
    /// up: a slot, in which a healthy leader makes one, plus the outage bound.
    pub fn stall(&self) -> Duration {
        self.block.slot() + self.el_outage()
    }

    /// The Redis URL: `--redis-addr` as given if it is a URL, else `redis://host:port`.
    pub fn redis_url(&self) -> String {
        if self.redis_addr.contains("://") { self.redis_addr.clone() } else { format!("redis://{}", self.redis_addr) }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        let id = if args.contains(&"--instance-id") { &[][..] } else { &["--instance-id", "n1"][..] };
        Config::parse_from(["member-nodes", "--mode", "leader"].iter().chain(id).chain(args))
    }

    #[test]
    fn defaults_are_valid_and_point_at_the_devnet() {
        let config = parse(&[]);
        config.validate().expect("defaults are valid");
        assert_eq!(config.redis_url(), "redis://127.0.0.1:6379");
        assert_eq!(config.el.eth_client_url, "http://127.0.0.1:8551");
    }

    #[test]
    fn redis_urls_pass_through() {
        assert_eq!(parse(&["--redis-addr", "redis://db:6380/2"]).redis_url(), "redis://db:6380/2");
    }

    #[test]
    fn a_lease_shorter_than_a_build_is_refused() {
        let err = parse(&["--lease-ms", "400", "--build-time-ms", "500"]).validate().unwrap_err();
        assert!(err.to_string().contains("--lease-ms (400 ms) must be longer than --build-time-ms"), "{err}");
        assert!(parse(&["--lease-ms", "100"]).validate().is_err());
        assert!(parse(&["--instance-id", " "]).validate().is_err());
    }
}
