//! Part 3 with no single point of failure, as `scripts/cluster.sh start --ha` runs it:
//! Redis behind three Sentinels, PostgreSQL with a synchronous standby. Each primary is
//! killed with SIGKILL again and again under a steady load; each time, the time until the
//! failover (the Sentinels name the replica, or the standby is promoted) and the longest
//! time between two stored blocks around it. The killed server comes back as the new
//! primary's replica or standby before the next kill. Then the chain is checked: one row
//! per height, every Geth on it.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::failover::{Cluster, DEFAULTS, check_chain, kill_phase, unix_seconds, until_phase};
use crate::{
    load::{self, Accounts, Load, Tracker},
    stats::percentile,
};

/// Which primary is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Primary {
    /// Redis's: the Sentinels promote the replica.
    Redis,
    /// PostgreSQL's: the synchronous standby is promoted, as a failover tool does.
    Postgres,
}

impl Primary {
    /// How the report names it.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Redis => "Redis primary",
            Self::Postgres => "PostgreSQL primary",
        }
    }
}

/// One primary's kills.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PrimaryKills {
    /// What was killed.
    pub(crate) primary: Primary,
    /// Kill to the failover, ms, per kill.
    pub(crate) failover_ms: Vec<f64>,
    /// The longest time between two stored blocks, from a lease before the kill to the
    /// first block after the failover, ms, per kill.
    pub(crate) stall_ms: Vec<f64>,
    /// Heights where a Geth holds another block than the store.
    pub(crate) forks: u64,
    /// Heights missing from the store.
    pub(crate) gaps: u64,
}

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HaFailover {
    /// `--lease-ms` and `--build-time-ms` of the nodes.
    pub(crate) lease_ms: u64,
    /// See `lease_ms`.
    pub(crate) build_ms: u64,
    /// One entry per primary.
    pub(crate) runs: Vec<PrimaryKills>,
}

/// Runs the scenario, `kills` kills of each primary, with the nodes' defaults.
pub(crate) async fn run(kills: usize) -> anyhow::Result<HaFailover> {
    let mut runs = Vec::new();
    for primary in [Primary::Redis, Primary::Postgres] {
        tracing::info!(?primary, kills, "ha failover");
        let run = one_primary(primary, kills).await?;
        tracing::info!(
            stall_p50 = percentile(&run.stall_ms, 50.0),
            forks = run.forks,
            gaps = run.gaps,
            "ha failover done"
        );
        runs.push(run);
    }
    Ok(HaFailover { lease_ms: DEFAULTS.0, build_ms: DEFAULTS.1, runs })
}

async fn one_primary(primary: Primary, kills: usize) -> anyhow::Result<PrimaryKills> {
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let mut cluster = Cluster::start_ha(&accounts, DEFAULTS.0, DEFAULTS.1).await?;
    let tracker = Tracker::start(&cluster.geths[2].http_url()).await?;
    let urls = vec![cluster.geths[0].http_url(), cluster.geths[1].http_url()];
    let load = Load::start(urls, load::presign(&accounts, 0, 60), tracker.included.clone(), Some(100.0));

    let (mut failover_ms, mut stall_ms) = (Vec::new(), Vec::new());
    for kill in 0..kills {
        // A leader, a few blocks of its own, then the kill at a set point of the second.
        cluster.leader().await?;
        let height = stored_height(&cluster).await?;
        wait_for(Duration::from_secs(60), "three more blocks before the kill", || async {
            Ok(stored_height(&cluster).await? >= height + 3)
        })
        .await?;
        tokio::time::sleep(until_phase(unix_seconds(), kill_phase(kill, kills))).await;
        let killed_at = unix_seconds();
        match primary {
            Primary::Redis => fail_over_redis(&mut cluster).await?,
            Primary::Postgres => fail_over_postgres(&mut cluster).await?,
        }
        let failed_over = unix_seconds();
        failover_ms.push((failed_over - killed_at) * 1e3);
        let lease = Duration::from_millis(DEFAULTS.0).as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(60);
        let stall = loop {
            if let Ok(Some(gap)) = longest_gap(&cluster, killed_at - lease, failed_over).await {
                break gap * 1e3;
            }
            anyhow::ensure!(Instant::now() < deadline, "no block stored within a minute of the failover");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tracing::info!(kill, failover = failover_ms.last(), stall, "ha failover");
        stall_ms.push(stall);
        match primary {
            Primary::Redis => rejoin_redis(&mut cluster).await?,
            Primary::Postgres => rejoin_postgres(&mut cluster).await?,
        }
    }
    load.stop().await;
    tracker.stop().await;
    for node in cluster.nodes.iter_mut().flatten() {
        node.kill();
    }
    let sql = connect(&cluster).await?;
    let (forks, gaps) = check_chain(&sql, &cluster.geths).await?;
    Ok(PrimaryKills { primary, failover_ms, stall_ms, forks, gaps })
}

/// Kills the Redis primary the Sentinels name; returns once they name another.
async fn fail_over_redis(cluster: &mut Cluster) -> anyhow::Result<()> {
    let sentinels = cluster.sentinels.as_mut().context("Sentinels")?;
    let old = sentinels.primary_addr()?;
    if old == cluster.redis.addr() {
        cluster.redis.kill();
    } else {
        sentinels.replica.kill();
    }
    let sentinels = cluster.sentinels.as_ref().context("Sentinels")?;
    wait_for(Duration::from_secs(60), "the Sentinels to promote the replica", || async {
        Ok(sentinels.primary_addr()? != old)
    })
    .await
}

/// Starts the killed Redis again; the Sentinels make it the new primary's replica. Returns
/// once it is in step.
async fn rejoin_redis(cluster: &mut Cluster) -> anyhow::Result<()> {
    let sentinels = cluster.sentinels.as_mut().context("Sentinels")?;
    let primary = sentinels.primary_addr()?;
    let killed = if primary == cluster.redis.addr() { &mut sentinels.replica } else { &mut cluster.redis };
    killed.restart().await?;
    let killed = &*killed;
    wait_for(Duration::from_secs(60), "the killed Redis to replicate the new primary", || async {
        Ok(killed.cli(&["INFO", "replication"])?.contains("master_link_status:up"))
    })
    .await
}

/// Kills the PostgreSQL primary (the server and every process of it) and promotes the
/// standby; the two then swap places in `cluster`.
async fn fail_over_postgres(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.postgres.kill_all().await;
    let standby = cluster.standby.as_mut().context("a standby")?;
    standby.promote().await?;
    std::mem::swap(&mut cluster.postgres, standby);
    Ok(())
}

/// Makes the killed PostgreSQL server a synchronous standby of the new primary.
async fn rejoin_postgres(cluster: &mut Cluster) -> anyhow::Result<()> {
    let standby = cluster.standby.as_mut().context("a standby")?;
    standby.rejoin_as_standby_of(&cluster.postgres).await
}

/// A connection to the block log, through the URL the nodes use.
async fn connect(cluster: &Cluster) -> anyhow::Result<tokio_postgres::Client> {
    let (sql, connection) = tokio_postgres::connect(&cluster.postgres_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(sql)
}

/// The store's height.
async fn stored_height(cluster: &Cluster) -> anyhow::Result<u64> {
    let row = connect(cluster).await?.query_one("SELECT max(number) FROM blocks", &[]).await?;
    Ok(u64::try_from(row.get::<_, Option<i64>>(0).unwrap_or(0))?)
}

/// Once a block is stored after `after` (Unix seconds): the longest time, in seconds,
/// between two blocks stored since `since`.
async fn longest_gap(cluster: &Cluster, since: f64, after: f64) -> anyhow::Result<Option<f64>> {
    let rows = connect(cluster)
        .await?
        .query(
            "SELECT EXTRACT(EPOCH FROM stored_at)::float8 FROM blocks WHERE stored_at > to_timestamp($1)
             ORDER BY number",
            &[&since],
        )
        .await?;
    let times: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
    if !times.iter().any(|t| *t > after) {
        return Ok(None);
    }
    Ok(Some(times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)))
}

/// Checks `check` every 100 ms until it holds, for up to `timeout`; errors it returns are
/// retried (a server in the middle of its failover refuses connections).
async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if matches!(check().await, Ok(true)) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
