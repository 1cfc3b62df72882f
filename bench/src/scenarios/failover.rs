//! Part 3's failover: the leader is killed with SIGKILL again and again under a steady
//! load (the node, or only its Geth); each time, the time from the kill to the first block
//! the new leader stores, and the slots the chain skipped. Then the chain is checked: one
//! row per height, every Geth on it.

use std::time::{Duration, Instant};

use anyhow::Context;
use common::{
    BlockTag,
    harness::{Geth, GethOptions, Postgres, Redis, RedisSentinels, Service, http_get},
};
use serde::{Deserialize, Serialize};

use crate::{
    load::{self, Accounts, Load, Tracker},
    procs::{self, Memory},
    stats::percentile,
};

/// What is killed: the leader's `member-nodes` process, or its Geth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// The consensus process (its lease expires).
    #[default]
    Node,
    /// The execution client (the leader must notice and give the lease up).
    Geth,
}

impl Target {
    /// How the report names it.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Node => "leader node",
            Self::Geth => "leader's Geth",
        }
    }
}

/// One lease and build setting, and what its kills measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FailoverRun {
    /// What was killed.
    #[serde(default)]
    pub(crate) target: Target,
    /// `--lease-ms`.
    pub(crate) lease_ms: u64,
    /// `--build-time-ms`.
    pub(crate) build_ms: u64,
    /// Kill to first new block, ms, per kill.
    pub(crate) times_ms: Vec<f64>,
    /// Kill to the standby's promotion (its log), ms, per kill.
    #[serde(default)]
    pub(crate) promotion_ms: Vec<f64>,
    /// Slots the chain skipped per kill: the timestamp gap between the last block before
    /// the kill and the first after, minus one (0: no slot lost).
    #[serde(default)]
    pub(crate) skipped_slots: Vec<u64>,
    /// Median, ms.
    pub(crate) p50_ms: f64,
    /// 99th percentile, ms.
    pub(crate) p99_ms: f64,
    /// Heights where a Geth holds another block than the store.
    pub(crate) forks: u64,
    /// Heights missing from the store.
    pub(crate) gaps: u64,
}

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Failover {
    /// One run per setting.
    pub(crate) runs: Vec<FailoverRun>,
    /// Peak memory of the member.
    pub(crate) memory: Vec<Memory>,
}

/// The lease and build settings of the defaults.
pub(crate) const DEFAULTS: (u64, u64) = (2_000, 500);

/// What is measured: the leader node killed with the defaults, and with a short lease and
/// a short build deadline; the leader's Geth killed with the defaults.
pub(crate) const SETTINGS: [(u64, u64, Target); 3] =
    [(DEFAULTS.0, DEFAULTS.1, Target::Node), (200, 50, Target::Node), (DEFAULTS.0, DEFAULTS.1, Target::Geth)];

/// Runs the scenario, `kills` kills per setting.
pub(crate) async fn run(kills: usize) -> anyhow::Result<Failover> {
    let (mut runs, mut memory) = (Vec::new(), Vec::new());
    for (lease_ms, build_ms, target) in SETTINGS {
        tracing::info!(lease_ms, build_ms, ?target, kills, "failover");
        let (run, mem) = one_setting(lease_ms, build_ms, target, kills).await?;
        tracing::info!(p50 = run.p50_ms, p99 = run.p99_ms, forks = run.forks, gaps = run.gaps, "failover done");
        runs.push(run);
        memory.extend(mem);
    }
    Ok(Failover { runs, memory })
}

/// Two leader candidates and a member, each with its own (peered) Geth, on Redis and
/// PostgreSQL, on the benchmark genesis.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Option<Service>>,
    pub(crate) geths: Vec<Geth>,
    pub(crate) health: Vec<String>,
    pub(crate) redis: Redis,
    pub(crate) postgres: Postgres,
    /// With no single point of failure ([`Cluster::start_ha`]): Redis's replica and
    /// Sentinels, and PostgreSQL's synchronous standby.
    pub(crate) sentinels: Option<RedisSentinels>,
    pub(crate) standby: Option<Postgres>,
    genesis: std::path::PathBuf,
    args: Vec<String>,
    dir: tempfile::TempDir,
    /// Holds the genesis file for as long as nodes may (re)start.
    _genesis: load::BenchGenesis,
}

impl Cluster {
    /// Starts it, every node running with `--lease-ms` and `--build-time-ms` as given.
    pub(crate) async fn start(accounts: &Accounts, lease_ms: u64, build_ms: u64) -> anyhow::Result<Self> {
        Self::start_with(accounts, lease_ms, build_ms, false).await
    }

    /// [`Cluster::start`] as `scripts/cluster.sh start --ha` runs it: Redis with a replica
    /// and three Sentinels, PostgreSQL with a synchronous standby; the nodes find each
    /// primary through the Sentinels and a multi-host URL.
    pub(crate) async fn start_ha(accounts: &Accounts, lease_ms: u64, build_ms: u64) -> anyhow::Result<Self> {
        Self::start_with(accounts, lease_ms, build_ms, true).await
    }

    async fn start_with(accounts: &Accounts, lease_ms: u64, build_ms: u64, ha: bool) -> anyhow::Result<Self> {
        let genesis = load::bench_genesis(accounts)?;
        let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
        // Peered, as `scripts/cluster.sh` runs them.
        let geths = Geth::start_peered_group_with(3, &options).await?;
        let (redis, postgres) = (Redis::start().await?, Postgres::start().await?);
        let (sentinels, standby) = if ha {
            (Some(RedisSentinels::start(&redis).await?), Some(Postgres::start_synchronous_standby(&postgres).await?))
        } else {
            (None, None)
        };
        let mut cluster = Self {
            nodes: vec![None, None, None],
            health: (0..3).map(|_| format!("127.0.0.1:{}", common::harness::free_port().unwrap_or(0))).collect(),
            geths,
            redis,
            postgres,
            sentinels,
            standby,
            genesis: genesis.path.clone(),
            args: vec!["--lease-ms".into(), lease_ms.to_string(), "--build-time-ms".into(), build_ms.to_string()],
            dir: tempfile::tempdir()?,
            _genesis: genesis,
        };
        for i in 0..3 {
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    pub(crate) fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let geth = &self.geths[i];
        let env = [
            ("INSTANCE_ID", format!("node{i}")),
            ("MODE", if i < 2 { "leader" } else { "member" }.to_owned()),
            ("ETH_CLIENT_URL", geth.auth_url()),
            ("JWT_SECRET", geth.jwt_path().display().to_string()),
            ("GENESIS", self.genesis.display().to_string()),
            ("REDIS_ADDR", self.sentinels.as_ref().map_or_else(|| self.redis.addr(), RedisSentinels::url)),
            ("POSTGRES_URL", self.postgres_url()),
            ("HEALTH_ADDR", self.health[i].clone()),
        ];
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.nodes[i] = Some(procs::spawn("member-nodes", &format!("node{i}"), &args, &env, self.dir.path())?);
        Ok(())
    }

    /// The block log's URL: the server's, or both servers', keeping the one that takes
    /// writes.
    pub(crate) fn postgres_url(&self) -> String {
        match &self.standby {
            Some(standby) => Postgres::read_write_url(&[&self.postgres, standby]),
            None => self.postgres.url(),
        }
    }

    pub(crate) async fn status(&self, i: usize) -> Option<serde_json::Value> {
        let (_, body) = http_get(&format!("http://{}/status", self.health[i])).await?;
        serde_json::from_str(&body).ok()
    }

    /// The leading candidate and its term, once one leads.
    pub(crate) async fn leader(&self) -> anyhow::Result<(usize, u64)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for i in 0..2 {
                if let Some(status) = self.status(i).await
                    && status["role"] == "leading"
                {
                    return Ok((i, status["term"].as_u64().unwrap_or(0)));
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no leader within a minute");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn one_setting(
    lease_ms: u64,
    build_ms: u64,
    target: Target,
    kills: usize,
) -> anyhow::Result<(FailoverRun, Vec<Memory>)> {
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let mut cluster = Cluster::start(&accounts, lease_ms, build_ms).await?;
    let (sql, connection) = tokio_postgres::connect(&cluster.postgres.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    // A steady load, to both candidates' Geths.
    let tracker = Tracker::start(&cluster.geths[2].http_url()).await?;
    let urls = vec![cluster.geths[0].http_url(), cluster.geths[1].http_url()];
    let load = Load::start(urls, load::presign(&accounts, 0, 60), tracker.included.clone(), Some(100.0));

    let (mut times_ms, mut promotion_ms, mut skipped_slots) = (Vec::new(), Vec::new(), Vec::new());
    for kill in 0..kills {
        let (leader, term) = cluster.leader().await?;
        // Let the leader make a block of its own first, then kill it at a set point of the
        // second: the kills are spread evenly over the second, as faults are, instead of
        // all landing at the same distance from a block.
        tokio::time::sleep(Duration::from_millis(build_ms + 300)).await;
        tokio::time::sleep(until_phase(unix_seconds(), kill_phase(kill, kills))).await;
        let killed_at = unix_seconds();
        match target {
            Target::Node => cluster.nodes[leader].as_mut().context("leader runs")?.kill(),
            Target::Geth => cluster.geths[leader].kill(),
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let (stored_at, number, timestamp) = loop {
            let row = sql
                .query_opt(
                    "SELECT EXTRACT(EPOCH FROM stored_at)::float8, number, timestamp FROM blocks
                     WHERE term > $1 ORDER BY number LIMIT 1",
                    &[&i64::try_from(term)?],
                )
                .await?;
            if let Some(row) = row {
                break (row.get::<_, f64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2));
            }
            anyhow::ensure!(Instant::now() < deadline, "no new leader stored a block within a minute");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let ms = (stored_at - killed_at) * 1e3;
        let before: i64 =
            sql.query_one("SELECT timestamp FROM blocks WHERE number = $1", &[&(number - 1)]).await?.get(0);
        skipped_slots.push(u64::try_from(timestamp - before - 1).unwrap_or(0));
        let standby = cluster.nodes[1 - leader].as_ref().context("standby runs")?;
        let promoted = procs::lines_with(&standby.output(), "promoted")
            .filter_map(procs::line_time)
            .find(|t| *t >= killed_at)
            .map_or(ms, |t| (t - killed_at) * 1e3);
        tracing::info!(kill, ms, promoted, skipped = skipped_slots.last(), "failover");
        times_ms.push(ms);
        promotion_ms.push(promoted);
        // The killed node (or Geth) comes back, and the node follows as a standby, caught
        // up, before the next kill.
        match target {
            Target::Node => cluster.start_node(leader)?,
            Target::Geth => cluster.geths[leader].restart().await?,
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while cluster.status(leader).await.is_none_or(|s| s["role"] != "following" || s["lag_blocks"] != 0) {
            anyhow::ensure!(Instant::now() < deadline, "the killed node did not catch up within a minute");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    load.stop().await;
    tracker.stop().await;
    let memory: Vec<Memory> = cluster.nodes[2]
        .as_ref()
        .and_then(|n| procs::memory_of(n, "member-nodes member, following"))
        .into_iter()
        .collect();
    for node in cluster.nodes.iter_mut().flatten() {
        node.kill();
    }
    let (forks, gaps) = check_chain(&sql, &cluster.geths).await?;
    let run = FailoverRun {
        target,
        lease_ms,
        build_ms,
        p50_ms: percentile(&times_ms, 50.0),
        p99_ms: percentile(&times_ms, 99.0),
        times_ms,
        promotion_ms,
        skipped_slots,
        forks,
        gaps,
    };
    Ok((run, memory))
}

/// Heights where a Geth disagrees with the store, and heights the store lacks.
pub(crate) async fn check_chain(sql: &tokio_postgres::Client, geths: &[Geth]) -> anyhow::Result<(u64, u64)> {
    let rows = sql.query("SELECT number, hash FROM blocks ORDER BY number", &[]).await?;
    let stored: Vec<(u64, Vec<u8>)> =
        rows.iter().map(|r| (u64::try_from(r.get::<_, i64>(0)).unwrap_or(0), r.get(1))).collect();
    let gaps = stored.iter().enumerate().filter(|(i, (n, _))| *n != *i as u64).count() as u64;
    let mut forks = 0;
    for geth in geths {
        let engine = geth.engine();
        let head = engine.head().await?.number;
        for (number, hash) in stored.iter().take_while(|(n, _)| *n <= head) {
            let block = engine.block(BlockTag::Number(*number)).await?;
            if block.map(|b| b.hash.to_vec()) != Some(hash.clone()) {
                forks += 1;
            }
        }
    }
    Ok((forks, gaps))
}

/// The point of the second (0 to 1) at which kill `kill` of `kills` lands: the middles of
/// `kills` equal parts.
pub(crate) fn kill_phase(kill: usize, kills: usize) -> f64 {
    (kill as f64 + 0.5) / kills.max(1) as f64
}

/// How long from `now` (Unix seconds) until the fraction of the second is `phase`.
pub(crate) fn until_phase(now: f64, phase: f64) -> Duration {
    Duration::from_secs_f64((phase - now.fract()).rem_euclid(1.0))
}

pub(crate) fn unix_seconds() -> f64 {
    single_node::clock::unix_time().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_are_spread_evenly_over_the_second() {
        let phases: Vec<f64> = (0..4).map(|k| kill_phase(k, 4)).collect();
        assert_eq!(phases, [0.125, 0.375, 0.625, 0.875]);
        let wait = |now: f64, phase: f64| until_phase(now, phase).as_secs_f64();
        assert!((wait(100.25, 0.75) - 0.5).abs() < 1e-6);
        assert!((wait(100.75, 0.25) - 0.5).abs() < 1e-6);
        assert!(wait(100.5, 0.5).abs() < 1e-6);
    }
}
