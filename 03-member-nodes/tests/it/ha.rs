//! Part 3 with no single point of failure: Redis with a replica behind Sentinel, and
//! PostgreSQL with a synchronous standby. Each primary is killed under load and the chain
//! goes on; and the trap of Redis's asynchronous replication, two nodes holding the lease
//! at once, is forced so that the fence has to keep the chain single.

use std::time::Duration;

use common::harness::{Redis, eventually};
use member_nodes::election::LEASE_KEY;

use crate::support::{Cluster, Load, TIMEOUT, assert_nothing_lost, epoch_now, receipts, stored_grows};

/// Redis behind Sentinel, its primary killed under load: the Sentinels promote the
/// replica, the nodes find it through them, and blocks go on with no fork, no gap and no
/// confirmed transfer lost.
#[tokio::test]
async fn a_redis_primary_killed_is_replaced_through_sentinel_and_blocks_go_on() {
    let mut cluster = Cluster::start_ha(&["leader", "leader", "member"], &[]).await;
    cluster.leader(&[0, 1]).await;
    cluster.head_at_least(2, 3).await;
    let load = Load::start(&cluster, &[0, 1, 2]);
    stored_grows(&cluster, 5).await;

    let sentinels = cluster.sentinels.as_ref().expect("Sentinels");
    let old = sentinels.primary_addr().expect("the primary");
    assert_eq!(old, cluster.redis.addr());
    let confirmed = receipts(&cluster.nodes[2].geth, &load.sent()).await;
    cluster.redis.kill();
    let new = eventually("the Sentinels to promote the replica", TIMEOUT, || async {
        cluster.sentinels.as_ref()?.primary_addr().ok().filter(|addr| *addr != old)
    })
    .await;
    assert_eq!(new, cluster.sentinels.as_ref().expect("Sentinels").replica.addr());

    let height = stored_grows(&cluster, 5).await;
    cluster.leader(&[0, 1]).await;
    assert_nothing_lost(&cluster, load, height, &confirmed, "before the failover").await;
}

/// PostgreSQL with a synchronous standby, its primary killed under load and the standby
/// promoted, as a failover tool does: every block any Geth had made final is on the new
/// primary, the nodes find it through their multi-host URL, and the chain goes on with no
/// fork, no gap and no confirmed transfer lost.
#[tokio::test]
async fn a_postgres_primary_killed_and_its_synchronous_standby_promoted_loses_no_final_block() {
    let mut cluster = Cluster::start_ha(&["leader", "leader", "member"], &[]).await;
    let (leader, _) = cluster.leader(&[0, 1]).await;
    cluster.head_at_least(2, 3).await;
    let load = Load::start(&cluster, &[0, 1, 2]);
    stored_grows(&cluster, 5).await;

    // The whole standby stops (SIGSTOP) for a few blocks' time; the primary dies; the
    // standby is killed too, losing whatever WAL it had received but not yet written, and
    // started again on its data. A primary that did not wait for the standby would have
    // committed blocks meanwhile that only it had, and the leader would have finalized them.
    cluster.standby.as_ref().expect("a standby").signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.postgres.kill();
    // What every Geth marks as head, safe and finalized when the primary died: each a
    // block PostgreSQL said it committed, and so one the standby holds.
    let marked = cluster.marks().await;
    let confirmed = receipts(&cluster.nodes[2].geth, &load.sent()).await;
    let standby = cluster.standby.as_mut().expect("a standby");
    standby.kill_all().await;
    standby.restart().await.expect("the standby starts again");
    standby.promote().await.expect("the standby is promoted");
    let stored = cluster.stored_before(epoch_now()).await;
    cluster.assert_marked_in(marked, &stored, "before the primary died, but the promoted standby does not hold it");

    // The nodes reach the new primary by themselves, and production resumes.
    let height = stored_grows(&cluster, 5).await;
    eventually("/ready again on the leader", TIMEOUT, || async {
        cluster.ready(leader).await.filter(|(code, _)| *code == 200)
    })
    .await;
    assert_nothing_lost(&cluster, load, height, &confirmed, "before the failover").await;
}

/// Who holds the lease in `redis`, and at which term, if anyone does.
fn holder(redis: &Redis) -> Option<(String, u64)> {
    let value = redis.cli(&["GET", LEASE_KEY]).ok()?;
    let (id, term) = value.trim().rsplit_once(':')?;
    Some((id.to_owned(), term.parse().ok()?))
}

/// The fence's promise, checked as it is kept: once the store is fenced to term F, no
/// block stored afterwards carries an older term, whoever believes they hold a lease.
#[derive(Default)]
struct FenceWatch {
    /// The fences seen, each with the store's height read just after it.
    seen: Vec<(u64, u64)>,
}

impl FenceWatch {
    /// Checks every block stored since each fence was seen; then looks at the fence again.
    async fn check(&mut self, cluster: &Cluster) {
        let rows = cluster.rows().await;
        for &(fence, height) in &self.seen {
            for (number, _, _, term, leader) in rows.iter().filter(|row| row.0 > height) {
                assert!(
                    *term >= fence,
                    "block {number} was stored by {leader} at term {term}, after the store was fenced to term {fence}"
                );
            }
        }
        let fence = cluster.fence().await;
        let height = cluster.rows().await.len() as u64 - 1;
        self.seen.push((fence, height));
    }
}

/// The trap of asynchronous replication, forced. Redis's replica stops receiving writes
/// (its link is cut), and a failover promotes it anyway, on the side of a partition that
/// holds node2: node1, the leader, is left with the old primary, where its lease lives on
/// and its renewals succeed, while the promoted replica never saw them, lets the lease
/// lapse, and gives it to node2. Two nodes hold "the" lease at once. The fence lets only
/// the newer term store: the holder of the older term (node1, unless it took its lease
/// after node2) is refused and steps down, terms never go down along the chain, and once the old primary rejoins as a replica, there is one chain with no gap
/// and no confirmed transfer lost.
#[tokio::test]
async fn a_lease_write_lost_in_a_redis_failover_makes_two_holders_and_the_fence_lets_only_the_newer_store() {
    let mut cluster = Cluster::start_behind_proxies(&["leader", "leader", "member"], &[]).await;
    let replication = cluster.faults().proxy("replication", &cluster.redis.addr()).await.expect("proxy");
    let replica = Redis::start_replica(replication.port()).await.expect("a replica");
    cluster.make_leader(0).await;
    cluster.head_at_least(2, 3).await;
    let load = Load::start(&cluster, &[0, 1, 2]);
    stored_grows(&cluster, 3).await;

    // Replication stops: from here on node1's renewals reach the primary only. Then the
    // failover: the replica is promoted and node2's link moved to it, as a proxy or a
    // virtual IP in front of Redis does; node1's link stays with the old primary.
    replication.cut().await.expect("cut");
    replica.cli(&["REPLICAOF", "NO", "ONE"]).expect("promote");
    let links = |i: usize| cluster.nodes[i].links.as_ref().expect("proxied");
    links(1).redis.redirect(&replica.addr()).await.expect("redirect");

    let (old, new) = eventually("node1 to hold the lease on the old primary and node2 on the new", TIMEOUT, || async {
        let (old, new) = (holder(&cluster.redis)?, holder(&replica)?);
        (old.0 == "node1" && new.0 == "node2" && old.1 != new.1).then_some((old.1, new.1))
    })
    .await;
    // Each Redis issues terms above the store's fence as read when the lease is taken, so
    // which side holds the newer term depends on who took its lease last. (Both sides can
    // issue the same term too, for a moment: only one claim of a term succeeds, and the
    // other holder gives its lease back and takes a newer term.)
    let (older, newer) = if old < new { (0, new) } else { (1, old) };

    // Both think they lead; only the newer term may store. The holder of the older one is
    // refused by the fence, when it stores or when it claims, and steps down (the two may
    // trade the lease for as long as the split lasts, each stepping down when the other's
    // newer term fences it off).
    let watch = tokio::sync::Mutex::new(FenceWatch::default());
    eventually("the older holder to be fenced off", TIMEOUT, || async {
        watch.lock().await.check(&cluster).await;
        let output = cluster.process_output(older);
        let fence = cluster.fence().await;
        (fence >= newer && (output.contains("fenced off") || output.contains("cannot claim the store"))).then_some(())
    })
    .await;
    let split = cluster.rows().await.len() as u64 + 3;
    eventually("three more blocks in the split", TIMEOUT, || async {
        watch.lock().await.check(&cluster).await;
        (cluster.rows().await.len() as u64 >= split).then_some(())
    })
    .await;

    let confirmed = receipts(&cluster.nodes[2].geth, &load.sent()).await;
    assert!(!confirmed.is_empty(), "transfers were confirmed");

    // The partition heals: the old primary rejoins as a replica of the new one, losing
    // its lease, as Sentinel makes it do once it can reach it; node1's link moves too.
    cluster.redis.cli(&["REPLICAOF", "127.0.0.1", &replica.port().to_string()]).expect("demote");
    links(0).redis.redirect(&replica.addr()).await.expect("redirect");
    let height = stored_grows(&cluster, 5).await;
    watch.lock().await.check(&cluster).await;
    assert_nothing_lost(&cluster, load, height, &confirmed, "during the split").await;
}

/// Docker users get the topology `scripts/cluster.sh start --ha` starts: the same
/// Sentinel settings, the same standby made the same way, and the primary told to wait
/// for it, on the same ports. The harness's Sentinels, which the tests and the bench
/// run, wait as long before they fail over.
#[test]
fn the_devnet_and_compose_start_the_same_ha_topology() {
    let root = common::harness::workspace_root();
    let native = std::fs::read_to_string(root.join("scripts/cluster.sh")).expect("cluster.sh");
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).expect("compose");
    for (native_text, compose_text) in [
        ("sentinel monitor $SERVICE 127.0.0.1 $primary 2", "sentinel monitor lease 127.0.0.1 6379 2"),
        ("sentinel down-after-milliseconds $SERVICE 2000", "sentinel down-after-milliseconds lease 2000"),
        ("sentinel failover-timeout $SERVICE 10000", "sentinel failover-timeout lease 10000"),
        ("SERVICE=lease", "--replicaof\", \"127.0.0.1\", \"6379\""),
        ("SENTINEL_PORTS=(26379 26380 26381)", "port $$((26378 + k))"),
        (
            "pg_basebackup\" -h 127.0.0.1 -p \"$of\" -U postgres -R -X stream -c fast",
            "pg_basebackup -h 127.0.0.1 -p 5432 -U tutorial -R -X stream -c fast",
        ),
        ("SET synchronous_standby_names = '*'", "SET synchronous_standby_names = '*'"),
        ("$((PG_PORT + 1))", "-p 5433 -c listen_addresses=127.0.0.1"),
    ] {
        assert!(native.contains(native_text), "scripts/cluster.sh has {native_text:?}");
        assert!(compose.contains(compose_text), "docker-compose.yml has {compose_text:?}");
    }
    let harness = std::fs::read_to_string(root.join("common/src/harness/redis.rs")).expect("redis.rs");
    assert!(harness.contains("down-after-milliseconds {SENTINEL_SERVICE} 2000"), "the harness's Sentinels wait 2 s");
}
