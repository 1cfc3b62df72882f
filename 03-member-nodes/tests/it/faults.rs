//! The faults operators meet besides a killed process: a leader's Geth that dies, hangs,
//! slows down or rejects every block, and links to Redis, PostgreSQL and Geth that are cut
//! or left half-open (through toxiproxy). A leader leads only while it can produce; no
//! fault forks the chain, leaves a gap, or hangs a node for good.

use std::time::Duration;

use common::harness::{InvalidatingProxy, eventually, set_clock};
use serde_json::Value;

use crate::support::{Cluster, LEASE_MS, TIMEOUT, stored_grows};

/// Waits until node `i` answers `/status` as a follower; returns that status.
async fn following(cluster: &Cluster, i: usize) -> Value {
    eventually(&format!("{} to follow", cluster.nodes[i].id), TIMEOUT, || async {
        cluster.status(i).await.filter(|s| s["role"] == "following")
    })
    .await
}

#[tokio::test]
async fn a_leader_whose_geth_dies_hands_over_and_rejoins_once_it_is_back() {
    let mut cluster = Cluster::start(&["leader", "leader", "member"], &[]).await;
    let (first, term) = cluster.leader(&[0, 1]).await;
    let second = 1 - first;
    cluster.head_at_least(2, 3).await;

    // SIGKILL the leader's Geth, not the node, and leave it dead.
    cluster.nodes[first].geth.kill();
    let next_term = cluster.sole_leader(second).await;
    assert!(next_term > term, "the standby leads with a newer term");
    // The old leader tells the truth meanwhile.
    let (code, body) = eventually("the old leader's /ready to say why", TIMEOUT, || async {
        cluster.ready(first).await.filter(|(code, body)| *code == 503 && body.contains("execution client unreachable"))
    })
    .await;
    assert_eq!(code, 503, "{body}");
    let status = following(&cluster, first).await;
    assert_eq!(status["el_reachable"], false, "{status}");
    let reason = status["last_step_down"].as_str().unwrap_or_default();
    assert!(reason.contains("cannot produce") || reason.contains("no block for"), "{status}");
    let height = stored_grows(&cluster, 3).await;
    cluster.head_at_least(2, height).await;

    // Its Geth back, it catches up from the store and follows.
    cluster.nodes[first].geth.restart().await.expect("geth restarts");
    let height = stored_grows(&cluster, 3).await;
    cluster.head_at_least(first, height).await;
    eventually("/ready again", TIMEOUT, || async { cluster.ready(first).await.filter(|(code, _)| *code == 200) }).await;
    cluster.assert_one_chain().await;
}

/// A leader whose Geth comes back empty (a lost disk) within `--el-outage-ms` is not a
/// reason to hand over: the leader's recovery replays the stored chain into it, and it
/// goes on producing under the same term.
#[tokio::test]
async fn a_leader_whose_geth_comes_back_empty_replays_the_store_into_it_and_keeps_leading() {
    let mut cluster = Cluster::start(&["leader", "member"], &["--el-outage-ms", "30000"]).await;
    let term = cluster.sole_leader(0).await;
    stored_grows(&cluster, 3).await;

    cluster.nodes[0].geth.wipe_and_restart().await.expect("geth comes back empty");
    let height = stored_grows(&cluster, 3).await;
    cluster.head_at_least(0, height).await;
    assert_eq!(cluster.sole_leader(0).await, term, "the same term: the leader repaired its Geth itself");
    assert!(!cluster.process(0).output().contains("stepped down"));
    cluster.assert_one_chain().await;
}

/// A leader whose Geth hangs (SIGSTOP) is stuck in a call to it for seconds. Its lease
/// lapses or is given up meanwhile, and from then on its `/status` says so: at no look
/// while the standby leads does the old leader also say it leads.
#[tokio::test]
async fn a_leader_whose_geth_hangs_never_reports_leading_beside_its_successor() {
    let cluster = Cluster::start(&["leader", "leader"], &[]).await;
    let (first, term) = cluster.leader(&[0, 1]).await;
    let second = 1 - first;
    stored_grows(&cluster, 2).await;

    cluster.nodes[first].geth.signal(libc::SIGSTOP);
    // The successor is looked at first: if it leads, the old leader must not, at any
    // later look.
    let mut looks_with_a_successor = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < until {
        let successor = cluster.status(second).await.filter(|s| s["role"] == "leading");
        let old = cluster.status(first).await;
        if let Some(successor) = successor {
            assert!(successor["term"].as_u64() > Some(term), "{successor}");
            let old = old.expect("the old leader answers /status while its Geth hangs");
            assert_ne!(old["role"], "leading", "two nodes say they lead: {old} and {successor}");
            looks_with_a_successor += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(looks_with_a_successor > 10, "the standby took over while the leader's Geth hung");

    cluster.nodes[first].geth.signal(libc::SIGCONT);
    following(&cluster, first).await;
    let height = stored_grows(&cluster, 2).await;
    cluster.head_at_least(first, height).await;
    cluster.assert_one_chain().await;
}

#[tokio::test]
async fn a_leader_whose_geth_rejects_every_block_hands_over() {
    // node1's Engine API goes through a proxy that can answer newPayload with INVALID.
    let mut cluster = Cluster::start(&["leader", "leader"], &[]).await;
    let proxy = InvalidatingProxy::start(cluster.nodes[0].geth.auth_url()).await.expect("proxy");
    cluster.process(0).kill();
    cluster.set_engine_url(0, proxy.url());
    cluster.start_node(0);
    cluster.make_leader(0).await;
    stored_grows(&cluster, 2).await;
    let term = cluster.sole_leader(0).await;

    // One block rejected is a failure shorter than --el-outage-ms: the leader drops it,
    // builds again, and keeps the lease.
    proxy.invalidate(1);
    eventually("a block answered INVALID", TIMEOUT, || async { (proxy.rejected().len() == 1).then_some(()) }).await;
    stored_grows(&cluster, 2).await;
    assert_eq!(cluster.sole_leader(0).await, term, "one rejected block is no reason to step down");
    assert!(!cluster.process(0).output().contains("stepped down"));
    // Nor is another, seconds (more than --el-outage-ms) and good blocks later: a failure
    // is timed from the first since the last block made, not added to the ones before.
    stored_grows(&cluster, 2).await;
    proxy.invalidate(1);
    eventually("another block answered INVALID", TIMEOUT, || async { (proxy.rejected().len() == 2).then_some(()) })
        .await;
    stored_grows(&cluster, 2).await;
    assert!(!cluster.process(0).output().contains("stepped down"), "a second rejected block, seconds later");
    assert_eq!(cluster.sole_leader(0).await, term);

    // Geth executes and keeps each block the proxy answers INVALID for; the leader must
    // neither store nor finalize any of them, while the fault lasts and after.
    let rejected_once = proxy.rejected().len();
    proxy.invalidate(u64::MAX);
    let next_term = cluster.leads_with_marks_stored(1).await;
    assert_eq!(cluster.sole_leader(1).await, next_term);
    let status = following(&cluster, 0).await;
    assert!(status["last_step_down"].as_str().unwrap_or_default().contains("rejects its own blocks"), "{status}");
    // Following, it halts at the first stored block its Geth calls INVALID, and says so:
    // a block refused is not a Geth failure to retry.
    eventually("node1 to halt at a stored block its Geth calls INVALID", TIMEOUT, || async {
        cluster
            .ready(0)
            .await
            .filter(|(code, body)| *code == 503 && body.contains("halted: Geth will not import block"))
    })
    .await;
    assert!(cluster.process(0).output().contains("Geth rejected the block it built"));
    stored_grows(&cluster, 3).await;
    cluster.assert_marks_stored().await;

    // Its Geth takes blocks again: it follows the new leader.
    proxy.invalidate(0);
    let height = stored_grows(&cluster, 3).await;
    cluster.head_at_least(0, height).await;
    cluster.assert_one_chain().await;
    // The proxy also answered INVALID for stored blocks node1 replayed as a follower; of
    // the blocks it built itself (its own fee recipient), none is stored or canonical.
    let rows = cluster.rows().await;
    let geth = &cluster.nodes[0].geth;
    let mut own = 0;
    // (The blocks rejected once above were each built again, the same block, and stored.)
    for (number, hash) in proxy.rejected().into_iter().skip(rejected_once) {
        let block: Value = geth
            .http()
            .call("eth_getBlockByHash", serde_json::json!([hash, false]), Duration::from_secs(10))
            .await
            .expect("eth_getBlockByHash answers");
        if block["miner"] != serde_json::json!(cluster.fee_recipient(0)) {
            continue;
        }
        own += 1;
        assert!(rows.iter().all(|r| r.1 != hash), "block {number} ({hash}), answered INVALID, is not stored");
        let canonical = geth.engine().block(common::BlockTag::Number(number)).await.expect("call").expect("block");
        assert_ne!(canonical.hash, hash, "node1's Geth has another block than the rejected one at {number}");
    }
    assert!(own > 0, "node1 built blocks the proxy answered INVALID");

    // Alone, a leader whose Geth rejects its blocks steps down, gives the lease back, and
    // leaves it free for a lease length (a standby's turn) before it tries again; once its
    // Geth takes blocks, it leads again.
    cluster.process(1).kill();
    cluster.sole_leader(0).await;
    stored_grows(&cluster, 2).await;
    let before = cluster.process_output(0).lines().count();
    proxy.invalidate(u64::MAX);
    let turns = eventually("node1 to step down, lead again, and step down again", TIMEOUT, || async {
        let log = cluster.process_output(0);
        let turns: Vec<String> = log
            .lines()
            .skip(before)
            .filter(|line| line.contains("stepped down") || line.contains("took the lease;"))
            .map(str::to_owned)
            .collect();
        (turns.iter().filter(|line| line.contains("stepped down")).count() >= 2).then_some(turns)
    })
    .await;
    let lease = LEASE_MS.parse::<f64>().expect("a number") / 1000.0;
    let mut retries = 0;
    // (A lease that ran out on a loaded machine is another step-down, after which the node
    // may try again at once: only those for want of a block count.)
    let could_not_produce = |line: &str| line.contains("cannot produce") || line.contains("no block for");
    let pairs = turns.windows(2).filter(|pair| could_not_produce(&pair[0]) && pair[1].contains("took the lease"));
    for pair in pairs {
        let time = |line: &str| line.split_whitespace().next().expect("a timestamp").to_owned();
        let waited = cluster.epoch_of(&time(&pair[1])).await - cluster.epoch_of(&time(&pair[0])).await;
        assert!(waited >= lease, "took the lease {waited:.3} s after stepping down, within a lease length:\n{pair:#?}");
        retries += 1;
    }
    assert!(retries > 0, "no step-down followed by another try:\n{turns:#?}");
    proxy.invalidate(0);
    cluster.sole_leader(0).await;
    stored_grows(&cluster, 2).await;
}

#[tokio::test]
async fn half_open_or_slow_links_to_redis_postgres_and_geth_hang_nothing() {
    let cluster = Cluster::start_behind_proxies(&["leader", "leader"], &[]).await;
    // Each fault in turn, on whichever node leads when it comes: the other takes over, the
    // faulted node keeps answering /status, and once healed it follows again.
    let faults = ["Redis half-open", "PostgreSQL half-open", "Geth half-open", "Geth slower than its timeouts"];
    for fault in faults {
        let (leader, term) = cluster.leader(&[0, 1]).await;
        let other = 1 - leader;
        let links = cluster.nodes[leader].links.as_ref().expect("proxied");
        match fault {
            "Redis half-open" => links.redis.half_open().await,
            "PostgreSQL half-open" => links.postgres.half_open().await,
            "Geth half-open" => links.geth.half_open().await,
            // getPayload's timeout is 1 s: every build fails, and every other call crawls.
            _ => links.geth.slow(Duration::from_millis(1500)).await,
        }
        .expect("the fault is set");
        let next_term = cluster.sole_leader(other).await;
        assert!(next_term > term, "{fault}: the other node leads with a newer term");
        following(&cluster, leader).await;
        stored_grows(&cluster, 2).await;

        links.redis.heal().await.expect("heal");
        links.postgres.heal().await.expect("heal");
        links.geth.heal().await.expect("heal");
        let height = stored_grows(&cluster, 2).await;
        cluster.head_at_least(leader, height).await;
        cluster.assert_one_chain().await;
    }
}

#[tokio::test]
async fn a_leader_cut_from_redis_stops_before_its_lease_can_expire_elsewhere() {
    let cluster = Cluster::start_behind_proxies(&["leader", "leader", "member"], &[]).await;
    let (first, term) = cluster.leader(&[0, 1]).await;
    let second = 1 - first;
    stored_grows(&cluster, 2).await;

    cluster.nodes[first].links.as_ref().expect("proxied").redis.cut().await.expect("cut");
    let next_term = cluster.sole_leader(second).await;
    assert!(next_term > term);
    stored_grows(&cluster, 2).await;
    // Everything the old leader stored, it stored before the new one took the lease in
    // Redis: it stopped by its own clock, before Redis could give the lease away, and so
    // the fence never had to refuse it.
    let last_old = cluster.stored_at(term).await.expect("the old leader stored blocks");
    let needle = format!("took the lease; fencing the store to our term term={next_term}");
    let took = log_time(&cluster.process_output(second), &needle).expect("the new leader logged taking the lease");
    let took = cluster.epoch_of(&took).await;
    assert!(last_old < took, "the old leader's last block ({last_old}) came before the new lease ({took})");
    let old_log = cluster.process_output(first);
    assert!(!old_log.contains("the store refused our block"), "the fence had to stop the old leader:\n{old_log}");
    assert!(old_log.contains("stepped down"), "{old_log}");
    cluster.nodes[first].links.as_ref().expect("proxied").redis.heal().await.expect("heal");

    // Then the new leader is cut from PostgreSQL: it finalizes nothing it could not store,
    // and production goes on under a leader that can.
    // Every Geth is read while the cut lasts, every 200 ms: none marks as head, safe or
    // finalized a block the store does not hold.
    let (leader, term) = cluster.leader(&[0, 1]).await;
    cluster.nodes[leader].links.as_ref().expect("proxied").postgres.cut().await.expect("cut");
    let next_term = cluster.leads_with_marks_stored(1 - leader).await;
    assert!(next_term > term);
    for _ in 0..10 {
        cluster.assert_marks_stored().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let height = stored_grows(&cluster, 3).await;
    cluster.head_at_least(2, height).await;
    cluster.assert_one_chain().await;
    cluster.nodes[leader].links.as_ref().expect("proxied").postgres.heal().await.expect("heal");
    let height = stored_grows(&cluster, 2).await;
    cluster.head_at_least(leader, height).await;
    cluster.assert_one_chain().await;
}

/// The time of the first line of `log` that contains `needle`, as the RFC 3339 timestamp
/// tracing puts first.
fn log_time(log: &str, needle: &str) -> Option<String> {
    log.lines().find(|line| line.contains(needle)).and_then(|line| line.split_whitespace().next()).map(str::to_owned)
}

/// Real time, by the test's own clock, in seconds.
fn real_now() -> f64 {
    single_node::clock::unix_time().as_secs_f64()
}

/// One node's wall clock stepped (NTP, a VM restored), by 45 s: within the 60 s its Geth
/// allows a JWT, so it still talks to its Geth, and only its timestamps are wrong. Stepped
/// back, the leader's next slot is 45 s away: its lease goes for want of a block and it
/// stops waiting at once, follows the standby, and does not lead again while its clock
/// is off PostgreSQL's. Stepped forward, its next block is refused by the store, so it
/// hands over. No stored block is ever ahead of PostgreSQL's clock.
#[tokio::test]
async fn a_leader_whose_clock_is_stepped_hands_over_and_no_block_runs_ahead_of_the_cluster() {
    const STEP: u64 = 45;
    let mut cluster = Cluster::start(&["leader", "leader"], &[]).await;
    cluster.process(0).kill();
    let clock = cluster.fake_clock(0);
    cluster.start_node(0);
    cluster.make_leader(0).await;
    stored_grows(&cluster, 2).await;

    // Back: node1 follows the standby long before its stepped clock reaches its slot.
    let last_own = cluster.nodes[0].geth.engine().head().await.expect("head");
    set_clock(&clock, &format!("-{STEP}")).expect("clock");
    cluster.sole_leader(1).await;
    let height = stored_grows(&cluster, 2).await;
    cluster.head_at_least(0, height).await;
    let now = real_now();
    assert!(
        now < (last_own.timestamp + STEP) as f64,
        "node1 followed at {now:.1}, only once its stepped clock reached the slot after block {} (timestamp {})",
        last_own.number,
        last_own.timestamp
    );
    // With the standby gone, it still does not lead on a clock 45 s off PostgreSQL's.
    let stored = cluster.rows().await.len();
    cluster.process(1).kill();
    let node1 = cluster.nodes[0].process.as_ref().expect("node1 runs");
    eventually("node1 to refuse the lease for its clock", TIMEOUT, || async {
        node1.output().contains("s behind PostgreSQL's, more than the 1 s a leader may be off").then_some(())
    })
    .await;
    assert_eq!(cluster.rows().await.len(), stored, "nothing stored while the only candidate's clock is off");
    assert_ne!(cluster.status(0).await.expect("status")["role"], "leading");

    // Corrected, it leads again.
    set_clock(&clock, "+0").expect("clock");
    cluster.sole_leader(0).await;
    cluster.start_node(1);
    stored_grows(&cluster, 2).await;

    // Forward: its next block, 45 s ahead, is refused by the store; the standby leads.
    set_clock(&clock, &format!("+{STEP}")).expect("clock");
    cluster.sole_leader(1).await;
    stored_grows(&cluster, 2).await;
    let output = cluster.process(0).output();
    assert!(output.contains("our clock is ahead of the cluster's"), "node1 stepped down for its clock");

    let ahead: Vec<(i64, f64)> = cluster
        .sql()
        .await
        .query(
            "SELECT number, timestamp - EXTRACT(EPOCH FROM stored_at)::float8 FROM blocks
             WHERE timestamp - EXTRACT(EPOCH FROM stored_at)::float8 > $1::float8",
            &[&member_nodes::block_log::MAX_CLOCK_SKEW.as_secs_f64()],
        )
        .await
        .expect("query")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(ahead.is_empty(), "blocks stored ahead of PostgreSQL's clock (number, seconds ahead): {ahead:?}");
    set_clock(&clock, "+0").expect("clock");
    cluster.assert_one_chain().await;
}
