//! The cluster as Prometheus sees it, with the project's rules: a leader killed while no
//! standby can take over shows up as a stalled chain and no leader, and both clear once a
//! new leader produces; the leader change shows in the recorded leader changes.

use common::harness::{Prometheus, ScrapeTarget, eventually};

use crate::support::{Cluster, TIMEOUT, stored_grows};

#[tokio::test]
async fn prometheus_sees_a_failover_stall_the_chain_and_clear() {
    let mut cluster = Cluster::start(&["leader", "leader", "member"], &[]).await;
    let mut targets: Vec<ScrapeTarget> = cluster
        .nodes
        .iter()
        .map(|node| ScrapeTarget {
            job: "member-nodes".into(),
            addr: node.health.clone(),
            path: "/metrics".into(),
            devnet: "cluster".into(),
            node: node.id.clone(),
        })
        .collect();
    targets.push(ScrapeTarget {
        job: "geth".into(),
        addr: cluster.nodes[2].geth.metrics_addr(),
        path: "/debug/metrics/prometheus".into(),
        devnet: "cluster".into(),
        node: "node3".into(),
    });
    let prometheus = Prometheus::start(&targets).await.expect("prometheus");
    let (first, _) = cluster.leader(&[0, 1]).await;
    let second = 1 - first;
    stored_grows(&cluster, 2).await;
    eventually("every target up, one leader, a chain that moves", TIMEOUT, || async {
        let up = prometheus.query("sum(up)").await.ok()?;
        let leaders = prometheus.query("devnet:leaders").await.ok()?;
        let quiet = prometheus.query("devnet:seconds_since_last_block").await.ok()?;
        (up.first()?.1 == targets.len() as f64 && leaders.first()?.1 == 1.0 && quiet.first()?.1 < 3.0).then_some(())
    })
    .await;
    assert!(!prometheus.firing("ChainStalled", Some("cluster")).await.expect("alerts"));

    // The standby is paused, then the leader killed: nobody can produce.
    cluster.process(second).signal(libc::SIGSTOP);
    cluster.process(first).kill();
    eventually("ChainStalled and NoLeader to fire", TIMEOUT, || async {
        let stalled = prometheus.firing("ChainStalled", Some("cluster")).await.ok()?;
        let leaderless = prometheus.firing("NoLeader", Some("cluster")).await.ok()?;
        (stalled && leaderless).then_some(())
    })
    .await;
    eventually("TargetDown for the killed node", TIMEOUT, || async {
        prometheus.firing("TargetDown", Some("cluster")).await.ok()?.then_some(())
    })
    .await;

    // The standby resumes, takes over and produces: the signals clear, and the change of
    // leader is counted.
    cluster.process(second).signal(libc::SIGCONT);
    cluster.sole_leader(second).await;
    stored_grows(&cluster, 3).await;
    eventually("ChainStalled and NoLeader to clear", TIMEOUT, || async {
        let stalled = prometheus.firing("ChainStalled", Some("cluster")).await.ok()?;
        let leaderless = prometheus.firing("NoLeader", Some("cluster")).await.ok()?;
        (!stalled && !leaderless).then_some(())
    })
    .await;
    let changes = prometheus.query("devnet:leader_changes:5m").await.expect("query");
    assert!(changes.first().is_some_and(|(_, v)| *v >= 1.0), "a leader change recorded: {changes:?}");
}
