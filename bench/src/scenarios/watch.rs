//! A failover as Prometheus records it: Part 3's cluster under a steady load, scraped by a
//! real Prometheus with the project's rules (`monitoring/rules.yml`); the leader is killed
//! once, and later restarted. What Prometheus recorded is read back with range queries and
//! stored; the report draws it (the "Watching your chain" chapter shows the plot).

use std::time::Duration;

use common::harness::{Prometheus, ScrapeTarget};
use serde::{Deserialize, Serialize};

use super::failover::Cluster;
use crate::load::{self, Accounts, Load, Tracker};

/// What Prometheus recorded, seconds since the run began.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Watch {
    /// When the leader was killed.
    pub(crate) killed_at: f64,
    /// When it was started again.
    pub(crate) restarted_at: f64,
    /// Named series of (seconds, value): each node's `cluster_is_leader`, and
    /// `devnet:seconds_since_last_block`.
    pub(crate) series: Vec<(String, Vec<(f64, f64)>)>,
    /// The alerts that fired, with when they started firing and stopped.
    pub(crate) alerts: Vec<(String, f64, f64)>,
}

/// How long each phase lasts: before the kill, until the restart, after it.
const PHASES: [Duration; 3] = [Duration::from_secs(20), Duration::from_secs(20), Duration::from_secs(15)];

/// Runs the scenario with the default lease and build deadline.
pub(crate) async fn run() -> anyhow::Result<Watch> {
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let (lease_ms, build_ms) = super::failover::DEFAULTS;
    let mut cluster = Cluster::start(&accounts, lease_ms, build_ms).await?;
    let targets: Vec<ScrapeTarget> = (0..3)
        .map(|i| ScrapeTarget {
            job: "member-nodes".into(),
            addr: cluster.health[i].clone(),
            path: "/metrics".into(),
            devnet: "cluster".into(),
            node: format!("node{}", i + 1),
        })
        .collect();
    let prometheus = Prometheus::start(&targets).await?;
    let tracker = Tracker::start(&cluster.geths[2].http_url()).await?;
    let urls = vec![cluster.geths[0].http_url(), cluster.geths[1].http_url()];
    let load = Load::start(urls, load::presign(&accounts, 0, 60), tracker.included.clone(), Some(100.0));

    let start = unix_seconds();
    tokio::time::sleep(PHASES[0]).await;
    let (leader, _) = cluster.leader().await?;
    let killed_at = unix_seconds() - start;
    cluster.nodes[leader].as_mut().map(common::harness::Service::kill);
    tracing::info!(leader, "watch: leader killed");
    // The alerts are read while they fire: Prometheus keeps no history of them.
    let mut alerts: Vec<(String, f64, f64)> = Vec::new();
    watch_alerts(&prometheus, start, start + killed_at + PHASES[1].as_secs_f64(), &mut alerts).await;
    let restarted_at = unix_seconds() - start;
    cluster.start_node(leader)?;
    watch_alerts(&prometheus, start, start + restarted_at + PHASES[2].as_secs_f64(), &mut alerts).await;
    let end = unix_seconds();
    load.stop().await;
    tracker.stop().await;

    let step = Duration::from_millis(500);
    let mut series = Vec::new();
    for (labels, points) in prometheus.query_range("cluster_is_leader", start, end, step).await? {
        let node = labels["node"].as_str().unwrap_or("?").to_owned();
        series.push((format!("{node} leads (1) or not (0)"), relative(&points, start)));
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, points) in prometheus.query_range("devnet:seconds_since_last_block", start, end, step).await? {
        series.push(("seconds since the newest block".to_owned(), relative(&points, start)));
    }
    for node in cluster.nodes.iter_mut().flatten() {
        node.kill();
    }
    Ok(Watch { killed_at, restarted_at, series, alerts })
}

/// Records, until `until`, each alert that fires: its name (with its node, if it has one),
/// when it began and when it was last seen, in seconds since `start`.
async fn watch_alerts(prometheus: &Prometheus, start: f64, until: f64, alerts: &mut Vec<(String, f64, f64)>) {
    while unix_seconds() < until {
        let now = unix_seconds() - start;
        for alert in prometheus.alerts().await.unwrap_or_default() {
            if alert.state != "firing" {
                continue;
            }
            let name = match alert.labels["node"].as_str() {
                Some(node) => format!("{} ({node})", alert.name),
                None => alert.name.clone(),
            };
            match alerts.iter_mut().find(|(n, _, last)| *n == name && now - *last < 2.0) {
                Some(seen) => seen.2 = now,
                None => alerts.push((name, now, now)),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn relative(points: &[(f64, f64)], start: f64) -> Vec<(f64, f64)> {
    points.iter().map(|(t, v)| (t - start, *v)).collect()
}

fn unix_seconds() -> f64 {
    single_node::clock::unix_time().as_secs_f64()
}
