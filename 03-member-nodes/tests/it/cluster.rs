//! Whole clusters of real processes: leaders, standbys and members, each with its own
//! Geth, sharing Redis and PostgreSQL; killed, paused and restarted.

use std::{collections::BTreeSet, time::Duration};

use alloy_primitives::{Address, B256};
use alloy_rpc_types_engine::ForkchoiceState;
use common::{
    BlockTag, EngineClient, Head,
    harness::{Cast, InvalidatingProxy, default_fee_transfer, eventually},
    payload::ExecutableBlock,
};
use member_nodes::block_log::PRUNE_EVERY;
use single_node::round::Verdict;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{Cluster, Load, TIMEOUT, epoch_now, receipts, stored_grows};

#[tokio::test]
async fn a_leader_produces_and_every_node_follows_the_store() {
    // The member, started first on an empty store, waits for a candidate to say which
    // chain the store holds: it never writes the chain itself.
    let mut cluster = Cluster::prepare(&["leader", "leader", "member"], &[], false, false).await;
    cluster.start_node(2);
    let log = eventually("the member to find the store empty", TIMEOUT, || async {
        let log = cluster.process_output(2);
        (log.contains("waiting for a leader to initialise it") || log.contains("the store holds this chain"))
            .then_some(log)
    })
    .await;
    assert!(!log.contains("the store holds this chain"), "the member initialised the store:\n{log}");
    let chain = cluster.sql().await.query("SELECT * FROM chain", &[]).await.expect("the member's schema");
    assert!(chain.is_empty(), "the member wrote the chain");
    let (code, body) = cluster.ready(2).await.expect("ready answers");
    assert_eq!(code, 503, "{body}");
    cluster.start_node(0);
    cluster.start_node(1);
    let (leader, term) = cluster.leader(&[0, 1]).await;
    assert!(term >= 1);
    // A user's first transaction, sent with cast's default fees to the member's Geth: its
    // Geth passes it to the leader's, and it is included within five blocks.
    let before = cluster.head_at_least(2, 3).await;
    let receipt = default_fee_transfer(&Cast::new(&cluster.nodes[2].geth.http_url()), before.number)
        .await
        .expect("cast's transfer, sent to the member, is included");
    for i in 0..3 {
        cluster.head_at_least(i, 5.max(receipt.block())).await;
        let on_node = cluster.nodes[i].geth.receipt(receipt.transaction_hash).await.expect("call");
        assert_eq!(on_node.map(|r| r.block_hash), Some(receipt.block_hash), "{} has it", cluster.nodes[i].id);
    }
    let height = cluster.assert_one_chain().await;
    assert!(height >= 5);
    let rows = cluster.rows().await;
    assert!(rows[1..].iter().all(|r| r.4 == cluster.nodes[leader].id && r.3 == term), "one leader, one term");
    for i in 0..3 {
        let (code, body) = cluster.ready(i).await.expect("ready answers");
        assert_eq!(code, 200, "{}: {body}", cluster.nodes[i].id);
        let metrics = common::harness::http_get(&format!("http://{}/metrics", cluster.nodes[i].health)).await;
        let (_, page) = metrics.expect("metrics answer");
        common::harness::check_metrics(&page).await.expect("Prometheus's lint passes");
    }

    // SIGTERM: the leader finishes its block, gives the lease back and exits 0, and the
    // standby takes over with a newer term.
    cluster.process(leader).signal(libc::SIGTERM);
    assert_eq!(cluster.process(leader).wait_exit(TIMEOUT).await, Some(0));
    let output = cluster.process(leader).output();
    assert!(output.contains("stepped down") && output.contains("released=true"), "{output}");
    let next_term = cluster.sole_leader(1 - leader).await;
    assert!(next_term > term);
    let height = stored_grows(&cluster, 2).await;
    cluster.head_at_least(2, height).await;
    cluster.assert_one_chain().await;

    // A store made before migration 0005 names no blob schedule: the node started again on
    // it says what the store lacks, and follows. A store that names everything draws no
    // such warning.
    let warning = "the store's chain names less than this version writes";
    for i in 0..3 {
        assert!(!cluster.process_output(i).contains(warning), "{}", cluster.process_output(i));
    }
    cluster.sql().await.batch_execute("UPDATE chain SET blob_schedule = NULL").await.expect("an older store's row");
    cluster.start_node(leader);
    let warned = eventually("the restarted node to say what the store lacks", TIMEOUT, || async {
        let output = cluster.process_output(leader);
        output.lines().find(|line| line.contains(warning)).map(str::to_owned)
    })
    .await;
    assert!(warned.contains("blob schedule"), "{warned}");
    let height = stored_grows(&cluster, 2).await;
    cluster.head_at_least(leader, height).await;
}

#[tokio::test]
async fn killed_leaders_are_replaced_under_load_with_no_fork_gap_or_lost_transaction() {
    let mut cluster = Cluster::start(&["leader", "leader", "member"], &[]).await;
    let (first, term1) = cluster.leader(&[0, 1]).await;
    let second = 1 - first;
    let load = Load::start(&cluster, &[0, 1]);
    eventually("20 included transfers", TIMEOUT, || async {
        (receipts(&cluster.nodes[2].geth, &load.sent()).await.len() >= 20).then_some(())
    })
    .await;

    // SIGKILL the leader: the standby takes over with a newer term.
    let seen = receipts(&cluster.nodes[2].geth, &load.sent()).await;
    cluster.process(first).kill();
    let term2 = cluster.sole_leader(second).await;
    assert!(term2 > term1, "a new term: {term1} then {term2}");
    stored_grows(&cluster, 3).await;

    // The killed node comes back as a standby, follows, and takes over again when the
    // second leader is killed: a node promoted a second time starts from the stored head.
    cluster.start_node(first);
    let seen_later = receipts(&cluster.nodes[2].geth, &load.sent()).await;
    let height = cluster.rows().await.len() as u64 - 1;
    cluster.head_at_least(first, height).await;
    cluster.process(second).kill();
    let term3 = cluster.sole_leader(first).await;
    assert!(term3 > term2);
    stored_grows(&cluster, 3).await;
    let sent = load.stop().await;

    // No transfer is lost: every one sent, also those pending at a leader when it was
    // killed, is included (the Geths are peered, and every Geth outlived its node).
    eventually(&format!("all {} transfers included", sent.len()), TIMEOUT, || async {
        (receipts(&cluster.nodes[2].geth, &sent).await.len() == sent.len()).then_some(())
    })
    .await;

    // Every Geth holds the stored block at every height it reached; the store is one
    // chain without gaps; every transfer whose receipt was seen is still where it was.
    let height = cluster.rows().await.len() as u64 - 1;
    for i in 0..3 {
        if i != second {
            cluster.head_at_least(i, height).await;
        }
    }
    cluster.assert_one_chain().await;
    for (hash, block) in seen.iter().chain(&seen_later) {
        for node in [first, 2] {
            let receipt = cluster.nodes[node].geth.receipt(*hash).await.expect("call").expect("still included");
            assert_eq!(
                receipt.block_hash, *block,
                "transfer {hash} is in the same block on {}",
                cluster.nodes[node].id
            );
        }
    }
    let terms: std::collections::BTreeSet<u64> = cluster.rows().await[1..].iter().map(|r| r.3).collect();
    assert!(terms.is_superset(&[term1, term2, term3].into()), "all three leaders stored blocks: {terms:?}");
    // The failovers skipped no slot: each new leader filled in the seconds it missed.
    let timestamps = cluster.timestamps().await;
    for pair in timestamps[2..].windows(2) {
        assert_eq!(pair[1].1, pair[0].1 + 1, "block {} follows block {} by one second", pair[1].0, pair[0].0);
    }
}

#[tokio::test]
async fn a_transfer_pending_at_the_leader_when_it_is_killed_is_included_by_the_next() {
    let mut cluster = Cluster::start(&["leader", "leader"], &[]).await;
    let (first, _) = cluster.leader(&[0, 1]).await;
    let second = 1 - first;
    cluster.head_at_least(second, 3).await;

    // The standby is paused so that nobody can include the transfer before the leader
    // dies; the leader is paused so that it cannot either.
    cluster.process(second).signal(libc::SIGSTOP);
    cluster.process(first).signal(libc::SIGSTOP);
    let cast = Cast::new(&cluster.nodes[first].geth.http_url());
    let dead = "0x000000000000000000000000000000000000dEaD";
    let hash: alloy_primitives::B256 = cast
        .run(&["send", "--async", "--private-key", common::harness::DEV_PRIVATE_KEY, dead, "--value", "1ether"])
        .await
        .expect("the leader's Geth takes the transfer")
        .parse()
        .expect("cast send --async prints the hash");
    let pending = cast.run(&["rpc", "txpool_content"]).await.expect("txpool_content");
    assert!(pending.to_lowercase().contains(&format!("{hash:x}")), "pending at the leader's Geth: {pending}");
    assert!(cluster.nodes[first].geth.receipt(hash).await.expect("call").is_none(), "not included yet");

    cluster.process(first).kill();
    cluster.process(second).signal(libc::SIGCONT);
    cluster.sole_leader(second).await;
    let receipt = eventually("the transfer included by the new leader", TIMEOUT, || async {
        cluster.nodes[second].geth.receipt(hash).await.ok().flatten()
    })
    .await;
    assert_eq!(receipt.status.to::<u64>(), 1);
    let rows = cluster.rows().await;
    let row = rows.iter().find(|r| r.1 == receipt.block_hash).expect("the block is stored");
    assert_eq!(row.4, cluster.nodes[second].id, "the new leader made the block");
    cluster.assert_one_chain().await;
}

#[tokio::test]
async fn a_paused_leader_stores_and_finalizes_nothing_after_its_lease_and_steps_down() {
    let mut cluster = Cluster::start(&["leader", "leader", "member"], &[]).await;
    let (first, term1) = cluster.leader(&[0, 1]).await;
    let second = 1 - first;
    cluster.head_at_least(2, 3).await;

    cluster.process(first).signal(libc::SIGSTOP);
    let term2 = cluster.sole_leader(second).await;
    assert!(term2 > term1);
    stored_grows(&cluster, 3).await;
    let by_first = cluster.rows().await.iter().filter(|r| r.3 == term1).count();

    // Woken up, it believes nothing of its old lease: it steps down and follows. Until it
    // has, no Geth may mark a block the store does not hold (its own, if it was paused
    // between building a block and storing it).
    cluster.process(first).signal(libc::SIGCONT);
    eventually("the paused leader to step down", TIMEOUT, || async {
        cluster.assert_marks_stored().await;
        let status = cluster.status(first).await?;
        (status["role"] == "following" && cluster.nodes[first].process.as_ref()?.output().contains("stepped down"))
            .then_some(())
    })
    .await;
    let height = stored_grows(&cluster, 3).await;
    cluster.head_at_least(first, height).await;
    let rows = cluster.rows().await;
    assert_eq!(rows.iter().filter(|r| r.3 == term1).count(), by_first, "nothing stored under the old term");
    assert!(rows.iter().skip_while(|r| r.3 != term2).all(|r| r.3 == term2), "only the new leader stored since");
    cluster.assert_one_chain().await;
}

#[tokio::test]
async fn a_member_stopped_for_fifty_blocks_catches_up_and_follows_failovers() {
    // Back to back, with a short build time: fifty blocks in seconds, not minutes. Every
    // block kept (not the default window): no block is dropped, however many are made.
    let args = ["--back-to-back", "--build-time-ms", "50", "--retain-blocks", "0"];
    let mut cluster = Cluster::start(&["leader", "leader", "member"], &args).await;
    let (first, _) = cluster.leader(&[0, 1]).await;
    cluster.head_at_least(2, 3).await;

    cluster.process(2).kill();
    let stopped_at = cluster.nodes[2].geth.engine().head().await.expect("head").number;
    let height = eventually("fifty blocks while the member is down", TIMEOUT, || async {
        let height = cluster.rows().await.last()?.0;
        // Past the first block a leader may prune at (block 64), and 16 more, for the
        // prune block 64 starts in the background to finish.
        (height >= (stopped_at + 50).max(PRUNE_EVERY + 16)).then_some(height)
    })
    .await;
    // `--retain-blocks 0`: the log keeps every block.
    let begins = cluster.rows().await.first().map(|row| row.0);
    assert_eq!(begins, Some(0), "with --retain-blocks 0, the log still begins at block 0 with the head at {height}");
    cluster.start_node(2);
    cluster.head_at_least(2, height).await;

    // Its Geth dies and comes back: the member resumes where it left off.
    cluster.nodes[2].geth.kill();
    eventually("/ready to report Geth down", TIMEOUT, || async {
        cluster.ready(2).await.filter(|(code, body)| *code == 503 && body.contains("execution client unreachable"))
    })
    .await;
    cluster.nodes[2].geth.restart().await.expect("geth restarts");
    let height = stored_grows(&cluster, 5).await;
    cluster.head_at_least(2, height).await;

    // The leader is killed: the member follows the new one with no change of config.
    cluster.process(first).kill();
    cluster.sole_leader(1 - first).await;
    let height = stored_grows(&cluster, 5).await;
    cluster.head_at_least(2, height).await;
    eventually("/ready again", TIMEOUT, || async { cluster.ready(2).await.filter(|(code, _)| *code == 200) }).await;
    cluster.assert_one_chain().await;
}

#[tokio::test]
async fn redis_down_stops_production_and_its_restart_resumes_it_with_a_newer_term() {
    let mut cluster = Cluster::start(&["leader", "leader", "member"], &[]).await;
    let (_, term1) = cluster.leader(&[0, 1]).await;
    cluster.head_at_least(2, 3).await;

    cluster.redis.kill();
    eventually("the leader to step down", TIMEOUT, || async {
        for i in 0..2 {
            if cluster.status(i).await?["role"] != "following" {
                return None;
            }
        }
        Some(())
    })
    .await;
    // An observation window, not a timing assumption: nobody produces without Redis.
    let height = cluster.rows().await.len();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(cluster.rows().await.len(), height, "no block is produced while Redis is down");
    }

    // Redis comes back empty (its term counter gone); the next term is still newer.
    cluster.redis.restart().await.expect("redis restarts");
    let (_, term2) = cluster.leader(&[0, 1]).await;
    assert!(term2 > term1, "terms only grow, even across a Redis that lost its data: {term1} then {term2}");
    let height = stored_grows(&cluster, 3).await;
    cluster.head_at_least(2, height).await;
    cluster.assert_one_chain().await;
}

#[tokio::test]
async fn postgres_down_finalizes_nothing_unstored_and_its_restart_resumes_production() {
    let mut cluster = Cluster::start(&["leader", "leader", "member"], &[]).await;
    let (leader, _) = cluster.leader(&[0, 1]).await;
    cluster.head_at_least(2, 3).await;

    // From the kill on, what every Geth marks as head, safe and finalized is read every
    // 200 ms, while PostgreSQL stays down: each must be a block stored before the kill. A
    // leader that finalized before storing would mark its next block at once.
    cluster.postgres.kill();
    let killed_at = epoch_now();
    let mut marked = BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        marked.extend(cluster.marks().await);
        let ready = cluster.ready(leader).await;
        if ready.is_some_and(|(code, body)| code == 503 && body.contains("block store unreachable")) {
            break;
        }
        assert!(Instant::now() < deadline, "the leader's /ready never reported the store down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An observation window, not a timing assumption: no Geth moves while nothing can be
    // stored.
    let heads = cluster.marks().await;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = cluster.marks().await;
        assert_eq!(now, heads, "no Geth moves while nothing can be stored");
        marked.extend(now);
    }

    cluster.postgres.restart().await.expect("postgres restarts");
    let stored = cluster.stored_before(killed_at).await;
    cluster.assert_marked_in(
        marked,
        &stored,
        "while PostgreSQL was down, but the store did not hold it when PostgreSQL died",
    );
    let height = stored_grows(&cluster, 3).await;
    cluster.head_at_least(2, height).await;
    cluster.assert_one_chain().await;
}

#[tokio::test]
async fn a_corrupted_row_halts_a_member_before_it_until_the_row_is_repaired() {
    let mut cluster = Cluster::start(&["leader", "member"], &[]).await;
    cluster.head_at_least(1, 3).await;
    cluster.process(1).kill();
    let stopped_at = cluster.nodes[1].geth.engine().head().await.expect("head").number;
    stored_grows(&cluster, 4).await;

    // Change one field of a stored block the member has not applied yet: the payload
    // still decodes and still matches its row, but no longer hashes to its block hash.
    let bad = stopped_at + 2;
    let sql = cluster.sql().await;
    let original: serde_json::Value = sql
        .query_one("SELECT payload FROM blocks WHERE number = $1", &[&i64::try_from(bad).expect("fits")])
        .await
        .expect("row")
        .get(0);
    sql.execute(
        "UPDATE blocks SET payload = jsonb_set(payload, '{executionPayload,gasUsed}', '\"0x1\"') WHERE number = $1",
        &[&i64::try_from(bad).expect("fits")],
    )
    .await
    .expect("corrupt the row");

    cluster.start_node(1);
    let (_, body) = eventually("/ready to report the halt", TIMEOUT, || async {
        cluster.ready(1).await.filter(|(code, body)| *code == 503 && body.contains("halted"))
    })
    .await;
    assert!(body.contains(&format!("stored block {bad} is corrupt")), "{body}");
    cluster.head_at_least(1, bad - 1).await;
    // An observation window: the store grows, the member applies neither the bad block
    // nor anything after it, and its Geth never sees them.
    stored_grows(&cluster, 3).await;
    let engine = cluster.nodes[1].geth.engine();
    assert_eq!(engine.head().await.expect("head").number, bad - 1, "stopped right before the bad block");
    assert!(engine.block(common::BlockTag::Number(bad)).await.expect("call").is_none());
    assert!(cluster.process(1).output().contains("cannot apply the next stored block"));

    // Repaired (restored from the leader's copy, say), the member goes on by itself.
    sql.execute("UPDATE blocks SET payload = $1 WHERE number = $2", &[&original, &i64::try_from(bad).expect("fits")])
        .await
        .expect("repair the row");
    let height = stored_grows(&cluster, 2).await;
    cluster.head_at_least(1, height).await;
    eventually("/ready again", TIMEOUT, || async { cluster.ready(1).await.filter(|(code, _)| *code == 200) }).await;
    cluster.assert_one_chain().await;
}

/// A member whose Geth holds another block at a stored height is on another fork: it exits
/// naming it, and never finalizes that block (nor anything else) on its Geth. So does one
/// whose Geth has blocks above the store's head, which no leader stored.
#[tokio::test]
async fn a_member_whose_geth_is_on_another_fork_exits_and_finalizes_nothing() {
    let mut cluster = Cluster::start(&["leader", "member"], &[]).await;
    cluster.head_at_least(1, 3).await;
    cluster.process(1).kill();
    let engine = cluster.nodes[1].geth.engine();
    let ours = engine.head().await.expect("head");
    let finalized = engine.block(BlockTag::Finalized).await.expect("call").expect("a finalized block");

    // While the member is down, its Geth is given a block of its own at the next height
    // (another fee recipient than any leader's), made head but not finalized; the leader
    // stores its own block there.
    let fork = own_block(&engine, &Head::from(&ours), finalized.hash).await;
    eventually("the leader to store its own block at that height", TIMEOUT, || async {
        cluster.rows().await.into_iter().find(|row| row.0 == fork.number()).filter(|row| row.1 != fork.hash())
    })
    .await;
    let output = exits_finalizing_nothing(&mut cluster, finalized.hash).await;
    assert!(output.contains(&format!("has block {} {}", fork.number(), fork.hash())), "{output}");
    assert!(output.contains("it is on another fork"), "{output}");
    assert_eq!(engine.head().await.expect("head").hash, fork.hash(), "its Geth left as it was found");

    // The leader stops; the member's Geth is given blocks of its own up to one above the
    // store's head.
    cluster.process(0).kill();
    let mut head = fork.head();
    while head.number <= cluster.rows().await.last().expect("rows").0 {
        head = own_block(&engine, &head, finalized.hash).await.head();
    }
    let output = exits_finalizing_nothing(&mut cluster, finalized.hash).await;
    assert!(output.contains(&format!("has block {} {}, which the store does not", head.number, head.hash)), "{output}");
}

/// A block of the member's Geth's own on `parent` (another fee recipient than any
/// leader's), made head but not finalized.
async fn own_block(engine: &EngineClient, parent: &Head, finalized: B256) -> ExecutableBlock {
    let cancel = CancellationToken::new();
    let own = Address::repeat_byte(0xee);
    let block =
        single_node::round::build(engine, parent, parent.timestamp + 1, own, Duration::from_millis(100), &cancel)
            .await
            .expect("build")
            .expect("not cancelled");
    assert_eq!(single_node::round::execute(engine, &block).await.expect("execute"), Verdict::Valid);
    let state =
        ForkchoiceState { head_block_hash: block.hash(), safe_block_hash: finalized, finalized_block_hash: finalized };
    engine.forkchoice_updated_v3(state, None).await.expect("made head");
    block
}

/// Starts node 1 and watches it until it exits: its Geth's finalized block stays
/// `finalized` all along, and it exits with an error. Returns its output.
async fn exits_finalizing_nothing(cluster: &mut Cluster, finalized: B256) -> String {
    let starts = cluster.process_output(1).len();
    let engine = cluster.nodes[1].geth.engine();
    cluster.start_node(1);
    let deadline = Instant::now() + TIMEOUT;
    let code = loop {
        let now = engine.block(BlockTag::Finalized).await.expect("call").expect("a finalized block");
        assert_eq!(now.hash, finalized, "the member finalized block {} on a Geth it should not follow", now.number);
        if let Some(code) = cluster.process(1).exited() {
            break code;
        }
        assert!(Instant::now() < deadline, "still running:\n{}", cluster.process_output(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = cluster.process_output(1).split_off(starts);
    assert_ne!(code, 0, "{output}");
    output
}

/// A node whose Geth is on another chain than the store's exits at start, naming both
/// chains, and applies nothing: another block 0, and the same block 0 on another chain id,
/// another fork time, without Osaka at block 0, or with another Prague blob target (a Geth
/// and a `--genesis` that agree with each other, and not with the cluster's: the start
/// checks pass, only the store's chain can tell; without Osaka, the fork id is the same
/// too; with another blob target, the fork id and the genesis forks).
#[tokio::test]
async fn a_node_whose_geth_is_on_another_chain_than_the_stores_exits_naming_both() {
    use common::harness::{Geth, GethOptions, Postgres, edited_genesis, free_port};
    use member_nodes::block_log::Store;

    let postgres = Postgres::start().await.expect("postgres");
    let url = postgres.url();
    let cluster_geth = Geth::start().await.expect("geth");
    let ours = cluster_geth.engine().el_chain().await.expect("the cluster's chain");
    let store = Store::connect(&url, Duration::from_secs(1)).await.expect("store");
    store.init(ours, Head::from(&cluster_geth.engine().head().await.expect("head"))).await.expect("init");
    drop(cluster_geth);

    let edits: [(&str, &str, serde_json::Value); 5] = [
        ("another block 0", "/extraData", "0x6f74686572".into()),
        ("another chain id", "/config/chainId", 1338.into()),
        ("another fork time", "/config/osakaTime", 4_000_000_000_u64.into()),
        ("no Osaka at block 0", "/config/osakaTime", serde_json::Value::Null),
        ("another blob target", "/config/blobSchedule/prague/target", 5.into()),
    ];
    for (what, key, value) in edits {
        let file = edited_genesis(|genesis| {
            *genesis.pointer_mut(key).expect("a key of genesis.json") = value.clone();
            Ok(())
        })
        .expect("genesis");
        let geth = Geth::start_with(GethOptions { genesis: Some(file.path.clone()), ..Default::default() })
            .await
            .expect("geth");
        let theirs = geth.engine().el_chain().await.expect("its chain");
        assert_ne!(ours, theirs, "{what}");
        if value.is_null() {
            assert_eq!(
                (theirs.genesis, theirs.fork_id),
                (ours.genesis, ours.fork_id),
                "{what}: only the forks at 0 differ"
            );
        }
        if key.contains("blobSchedule") {
            assert_eq!(
                common::ElChain { blob_schedule: ours.blob_schedule, ..theirs },
                ours,
                "{what}: only the blob schedule differs"
            );
        }
        let (auth, jwt, health) =
            (geth.auth_url(), geth.jwt_path(), format!("127.0.0.1:{}", free_port().expect("port")));
        let env = [
            ("INSTANCE_ID", "n9"),
            ("MODE", "member"),
            ("POSTGRES_URL", url.as_str()),
            ("ETH_CLIENT_URL", auth.as_str()),
            ("JWT_SECRET", jwt.to_str().expect("utf-8")),
            ("GENESIS", file.path.to_str().expect("utf-8")),
            ("HEALTH_ADDR", health.as_str()),
        ];
        let output = refused(&env, &[], "this node's Geth is on another chain than the store's").await;
        assert!(output.contains(&format!("it has {theirs}, the store holds {ours}")), "{what}: {output}");
        assert_eq!(geth.engine().head().await.expect("head").number, 0, "{what}: its Geth was given nothing");
    }
}

/// Runs the binary with `env` and `args`; it must exit non-zero saying `message`. Returns
/// what it printed.
async fn refused(env: &[(&str, &str)], args: &[&str], message: &str) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let jwt = dir.path().join("jwt.hex");
    std::fs::write(&jwt, "11".repeat(32)).expect("write");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_member-nodes"));
    command.args(args).env("JWT_SECRET", &jwt).env("GENESIS", common::harness::genesis_path());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut process = common::harness::Service::spawn("member-nodes", command, &dir.path().join("log")).expect("spawn");
    let code = process.wait_exit(Duration::from_secs(60)).await;
    let output = process.output();
    assert!(code.is_some_and(|c| c != 0), "exit code {code:?}, output:\n{output}");
    assert!(output.contains(message), "expected {message:?} in:\n{output}");
    output
}

#[tokio::test]
async fn bad_input_at_start_gets_a_clear_error_and_no_secret_is_printed() {
    let nowhere = format!("127.0.0.1:{}", common::harness::free_port().expect("port"));
    let postgres = common::harness::Postgres::start().await.expect("postgres");
    let url = postgres.url();
    let leader = [("INSTANCE_ID", "n1"), ("MODE", "leader")];

    // Passwords in every form the flags take: URL user info, a query parameter, conninfo.
    let unreachable_pg = format!("postgres://tutorial:pgsecret@{nowhere}/db");
    let output =
        refused(&[leader[0], leader[1], ("POSTGRES_URL", &unreachable_pg)], &[], "cannot use PostgreSQL at").await;
    assert!(output.contains("postgres://tutorial:***@127.0.0.1"), "{output}");
    let (host, port) = nowhere.split_once(':').expect("host:port");
    let conninfo = format!("host={host} port={port} user=tutorial password=pgsecret dbname=db");
    let output = output + &refused(&[leader[0], leader[1], ("POSTGRES_URL", &conninfo)], &[], "password=***").await;
    let query = format!("postgres://tutorial@{nowhere}/db?password=pgsecret");
    let output = output + &refused(&[leader[0], leader[1], ("POSTGRES_URL", &query)], &[], "?password=***").await;
    // A password its writer did not percent-encode, and conninfo with spaces around `=`
    // (which tokio-postgres accepts): hidden whole all the same.
    let raw = format!("postgres://tutorial:pg?secret@{nowhere}/db");
    let output = output + &refused(&[leader[0], leader[1], ("POSTGRES_URL", &raw)], &[], "tutorial:***@").await;
    let spaced = format!("host = {host} port = {port} user = tutorial password = pgsecret dbname = db");
    let output = output + &refused(&[leader[0], leader[1], ("POSTGRES_URL", &spaced)], &[], "password = ***").await;
    let redis = format!("redis://:redis#secret@{nowhere}");
    let output =
        output + &refused(&[leader[0], leader[1], ("POSTGRES_URL", &url), ("REDIS_ADDR", &redis)], &[], ":***@").await;
    let redis = format!("redis://:redissecret@{nowhere}");
    let message = format!("cannot reach Redis at redis://:***@{nowhere} (--redis-addr)");
    let output =
        output + &refused(&[leader[0], leader[1], ("POSTGRES_URL", &url), ("REDIS_ADDR", &redis)], &[], &message).await;
    for secret in ["pgsecret", "secret@", "redissecret"] {
        assert!(!output.contains(secret), "{secret} printed:\n{output}");
    }

    refused(&[leader[0], leader[1], ("POSTGRES_URL", "not a url")], &[], "bad --postgres-url").await;
    // A PostgreSQL that may lose a committed block: no leader runs on it.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.batch_execute("ALTER SYSTEM SET synchronous_commit = off").await.expect("synchronous_commit off");
    client.batch_execute("SELECT pg_reload_conf()").await.expect("reloaded");
    refused(&[leader[0], leader[1], ("POSTGRES_URL", &url)], &[], "synchronous_commit = off").await;
    refused(&leader, &["--lease-ms", "400"], "--lease-ms (400 ms) must be longer than --build-time-ms").await;
    refused(&[("INSTANCE_ID", "n1")], &[], "--mode <MODE>").await;
    refused(&[("INSTANCE_ID", "n1"), ("MODE", "boss")], &[], "invalid value 'boss'").await;
}

/// With `--retain-blocks`, the leader drops the log's oldest blocks, and a member whose
/// Geth is below where the log now begins (here: wiped while the member was stopped) has
/// it synced by its peers over devp2p up to a block the log holds, then follows the log:
/// its Geth ends with the leader's block at every height. Until its Geth has that block,
/// the member asks it for that same block at every try, however far the chain moves on
/// meanwhile (a new target would restart Geth's sync): here its Geth has no peers at first.
#[tokio::test]
async fn a_member_behind_the_logs_window_syncs_its_geth_from_its_peers_then_follows() {
    // A window of 256 blocks lasts about ten seconds here, longer than the 5 s between a
    // running node's tries, so the block its Geth syncs to is still in the log at the next.
    let args = ["--back-to-back", "--build-time-ms", "20", "--retain-blocks", "256"];
    let mut cluster = Cluster::start(&["leader", "member"], &args).await;
    cluster.sole_leader(0).await;
    cluster.head_at_least(1, 3).await;
    cluster.process(1).kill();
    cluster.nodes[1].geth.wipe_and_restart().await.expect("geth comes back empty");
    // The member reaches its Geth through the tamper proxy, which records what it is asked.
    let proxy = InvalidatingProxy::start(cluster.nodes[1].geth.auth_url()).await.expect("proxy");
    cluster.set_engine_url(1, proxy.url());

    let sql = cluster.sql().await;
    let anchor = eventually("the log to drop blocks", TIMEOUT, || async {
        let row = sql.query_one("SELECT number FROM blocks WHERE parent_hash IS NULL", &[]).await.ok()?;
        u64::try_from(row.get::<_, i64>(0)).ok().filter(|n| *n >= 64)
    })
    .await;
    let kept: i64 =
        sql.query_one("SELECT count(*) FROM blocks WHERE payload IS NOT NULL", &[]).await.expect("count").get(0);
    assert!(kept <= 256 + 64, "the log keeps its window and at most one prune's worth more ({kept} blocks)");

    // A wiped Geth has a new node key, and no peer knows it yet: it answers SYNCING to
    // every try, while the leader goes on storing blocks.
    cluster.start_node(1);
    let first = eventually("the member to ask its Geth for a block", TIMEOUT, || async {
        proxy.forkchoice_heads().first().copied()
    })
    .await;
    let row = sql.query_opt("SELECT number FROM blocks WHERE hash = $1", &[&first.as_slice()]).await.expect("query");
    let number = row.map(|row| row.get::<_, i64>(0)).expect("the member asked for a block the log holds");
    let asked_by_then = eventually("the leader to store a block above it", TIMEOUT, || async {
        let row = sql.query_one("SELECT max(number) FROM blocks", &[]).await.ok()?;
        (row.get::<_, i64>(0) > number).then(|| proxy.forkchoice_heads().len())
    })
    .await;
    let asked = eventually("the member to ask twice more", TIMEOUT, || async {
        let heads = proxy.forkchoice_heads();
        (heads.len() >= asked_by_then + 2).then_some(heads)
    })
    .await;
    assert!(asked.iter().all(|head| *head == first), "the member asked for block {number} at every try: {asked:?}");
    // The peers learn it, as an operator's would.
    cluster.nodes[0].geth.link(&cluster.nodes[1].geth).await.expect("the leader's Geth peers with the wiped one");
    let target = cluster.nodes[0].geth.engine().head().await.expect("head").number;
    let head = cluster.head_at_least(1, target).await;
    let output = cluster.process_output(1);
    assert!(output.contains("below block") && output.contains(SYNCING), "{output}");
    applies_the_log_after_its_sync(&cluster).await;
    has_the_leaders_chain(&cluster, head.number, anchor).await;

    // Paused (SIGSTOP) while the log's beginning moves past its head, a running member
    // finds the block above its head gone at its next read (or, if the pause caught it in
    // a call to Geth that timed out meanwhile, finds Geth below where the log begins as it
    // starts again from Geth's head), and goes back to syncing its Geth from its peers,
    // then follows again.
    let syncs_seen = cluster.process_output(1).matches(SYNCING).count();
    let paused_at = cluster.nodes[1].geth.engine().head().await.expect("head").number;
    cluster.process(1).signal(libc::SIGSTOP);
    let anchor = eventually("the log to begin above the paused member's head", TIMEOUT, || async {
        let row = sql.query_one("SELECT number FROM blocks WHERE parent_hash IS NULL", &[]).await.ok()?;
        // Above what it may have read before the pause too (a batch of up to 64 blocks).
        u64::try_from(row.get::<_, i64>(0)).ok().filter(|n| *n > paused_at + 65)
    })
    .await;
    cluster.process(1).signal(libc::SIGCONT);
    let target = cluster.nodes[0].geth.engine().head().await.expect("head").number;
    let head = cluster.head_at_least(1, target).await;
    let output = cluster.process_output(1);
    assert!(output.matches(SYNCING).count() > syncs_seen, "the member synced its Geth again: {output}");
    applies_the_log_after_its_sync(&cluster).await;
    has_the_leaders_chain(&cluster, head.number, anchor).await;
}

/// What a node logs while its Geth syncs from its peers.
const SYNCING: &str = "it is syncing from its peers";

/// Waits until node 1 has applied a block from the log since it last asked its Geth to
/// sync from its peers (that sync alone may have taken its Geth to the leader's head).
async fn applies_the_log_after_its_sync(cluster: &Cluster) {
    eventually("the member to apply the log's blocks after its sync", TIMEOUT, || async {
        let output = cluster.process_output(1);
        output[output.rfind(SYNCING)?..].contains("applied stored block").then_some(())
    })
    .await;
}

/// Node 1's Geth has node 0's block at every height up to `head`.
async fn has_the_leaders_chain(cluster: &Cluster, head: u64, anchor: u64) {
    let (member, leader) = (cluster.nodes[1].geth.engine(), cluster.nodes[0].geth.engine());
    for number in (0..=head).rev() {
        let theirs = leader.block(BlockTag::Number(number)).await.expect("call").expect("the leader's block");
        let ours = member.block(BlockTag::Number(number)).await.expect("call").expect("the member's block");
        assert_eq!(
            ours.hash, theirs.hash,
            "the member has the leader's block at height {number} (the anchor was {anchor})"
        );
    }
}
