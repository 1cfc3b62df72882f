//! Geth that lost blocks, Geth ahead of us, and a block Geth rejects.

use std::time::Duration;

use alloy_primitives::Address;
use common::{
    BlockTag, EngineClient, Head,
    harness::{Geth, InvalidatingProxy, free_port, genesis_path},
    payload::ExecutableBlock,
};
use single_node::{
    fault::Fault,
    round::{self, Sync},
    store::Store,
};

use crate::support::{
    EXIT_TIMEOUT, FinalityWatch, Running, assert_final_kept, get, head_at_least, head_at_least_while,
    keeps_and_extends, linked_chain, running, start, start_with, while_running,
};

#[tokio::test]
async fn geth_that_lost_its_whole_chain_gets_it_replayed_from_the_store() {
    let Running { sequencer, engine, mut geth, dir: _dir } = running(&[]).await;
    let before = head_at_least(&engine, 5).await;
    let produced = linked_chain(&engine, before.number).await;

    geth.wipe_and_restart().await.expect("geth starts again from genesis");
    keeps_and_extends(&engine, &produced, 2).await;
    let (_, metrics) = get(&sequencer, "/metrics").await.expect("metrics");
    let replayed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sequencer_replayed_blocks_total "))
        .and_then(|v| v.parse().ok())
        .expect("replay counter");
    assert!(replayed >= before.number, "every block Geth lost was replayed ({replayed} of {})", before.number);
}

/// Runs a sequencer with its store in `state` until Geth's head is block 3 or later, and
/// stops it as Ctrl-C would.
async fn three_blocks_then_stopped(geth: &Geth, state: &std::path::Path) {
    let mut sequencer = start(geth, state, &[]);
    head_at_least(&geth.engine(), 3).await;
    sequencer.service.signal(libc::SIGTERM);
    assert_eq!(sequencer.service.wait_exit(EXIT_TIMEOUT).await, Some(0), "{}", sequencer.service.output());
}

/// Makes one block on Geth without the sequencer, as another driver would.
async fn produce_directly(engine: &EngineClient) -> ExecutableBlock {
    let head = engine.head().await.expect("head");
    let timestamp = (head.timestamp + 1).max(common::unix_time().as_secs());
    let attributes = common::payload::attributes(head.hash, timestamp, Address::ZERO);
    let state = common::payload::finalized_at(head.hash);
    let id = engine.forkchoice_updated_v3(state, Some(attributes)).await.expect("fcu").payload_id.expect("id");
    let block = ExecutableBlock::from(engine.get_payload(id, timestamp).await.expect("payload"));
    assert!(engine.import(&block).await.expect("newPayload").is_valid());
    engine.forkchoice_updated_v3(common::payload::finalized_at(block.hash()), None).await.expect("fcu");
    block
}

/// A long replay makes every 64th block head as it goes, so Geth's head rises while it
/// works. Here a store holds 139 blocks, Geth is wiped, and a replay asked for 150 stops
/// at block 140, which the store lacks: Geth's head is block 128, the last one made head
/// on the way, and every block up to it is the stored one.
#[tokio::test]
async fn a_long_replay_moves_geths_head_as_it_goes() {
    let mut geth = Geth::start().await.expect("geth");
    let engine = geth.engine();
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("sequencer.redb")).expect("store");
    let genesis = engine.head().await.expect("head");
    store.init(genesis.hash, Head::from(&genesis)).expect("init");
    let mut stored = Vec::new();
    for _ in 0..139 {
        let block = produce_directly(&engine).await;
        store.append(&block).expect("append");
        stored.push(block.hash());
    }

    geth.wipe_and_restart().await.expect("geth starts again from genesis");
    let error =
        single_node::store::replay_into(&engine, &store, &genesis, 150).await.expect_err("block 140 is missing");
    assert!(error.to_string().contains("no block 140"), "{error}");
    let head = engine.head().await.expect("head");
    assert_eq!(head.number, 128, "the last block made head on the way");
    let chain = linked_chain(&engine, 128).await;
    for (block, hash) in chain.iter().skip(1).zip(&stored) {
        assert_eq!(block.hash, *hash, "block {} is the stored one", block.number);
    }
}

#[tokio::test]
async fn geth_ahead_on_our_chain_is_followed() {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let engine = geth.engine();
    three_blocks_then_stopped(&geth, &state).await;

    let mut produced = linked_chain(&engine, engine.head().await.expect("head").number).await;
    for _ in 0..2 {
        produced.push(produce_directly(&engine).await.header());
    }
    let second = start(&geth, &state, &[]);
    keeps_and_extends(&engine, &produced, 2).await;
    assert!(second.service.output().contains("Geth is ahead of our store on our chain"), "{}", second.service.output());
}

#[tokio::test]
async fn an_invalid_payload_is_dropped_and_rebuilt() {
    let Proxied { geth, proxy, state, dir: _dir } = Proxied::start().await;
    // Block 1 is answered INVALID. Geth itself executes it and holds it; only the
    // sequencer hears INVALID. Its parent is genesis, long past, so it takes the current
    // second; the sequencer waits a slot before it builds again, so the block it builds
    // in its place has a later timestamp, and another hash.
    proxy.invalidate(1);
    let engine = geth.engine();
    let finality = FinalityWatch::start(&geth);
    let mut sequencer = through(&proxy, &geth, &state);
    let (number, rejected) =
        while_running(&sequencer, "a block answered INVALID", || async { proxy.rejected().first().copied() }).await;
    let held: Option<serde_json::Value> = geth
        .http()
        .call("eth_getBlockByHash", serde_json::json!([rejected, false]), Duration::from_secs(10))
        .await
        .expect("call");
    let held = held.expect("Geth holds the block the proxy answered INVALID for");

    // The height is built again: Geth's block there is another one, on the same parent.
    let head = head_at_least_while(&sequencer, &engine, number + 3).await;
    let chain = linked_chain(&engine, head.number).await;
    let rebuilt = &chain[usize::try_from(number).expect("fits")];
    assert_ne!(rebuilt.hash, rejected, "Geth's block {number} is not the block answered INVALID: it was built again");
    assert_eq!(serde_json::json!(rebuilt.parent_hash), held["parentHash"], "built again on the same parent");
    assert!(chain.iter().all(|block| block.hash != rejected), "the rejected block is nowhere in the chain");
    let finality = finality.stop().await;
    assert!(finality.seen.values().all(|hash| *hash != rejected), "Geth never had the rejected block as final");
    assert_final_kept(&chain, &finality);

    let output = sequencer.service.output();
    assert!(
        output.contains("Geth rejected the block it built") && output.contains("proxy says: invalid for the test"),
        "{output}"
    );
    let (_, metrics) = get(&sequencer, "/metrics").await.expect("metrics");
    assert!(metrics.contains("sequencer_errors_total{kind=\"invalid_payload\"} 1"), "{metrics}");
    assert_eq!(proxy.rejected().len(), 1, "one newPayload answered INVALID");

    // The store agrees with Geth at that height and everywhere else: the rejected block
    // was taken out of it, and the block built in its place is there.
    sequencer.service.signal(libc::SIGTERM);
    assert_eq!(sequencer.service.wait_exit(EXIT_TIMEOUT).await, Some(0), "{}", sequencer.service.output());
    let store = Store::open(&state.join("sequencer.redb")).expect("store");
    let stored = store.block(number).expect("read").expect("the height is stored");
    assert_eq!(stored.hash(), rebuilt.hash, "the store holds Geth's block {number}, the one built again");
    let stored_head = store.head().expect("read").expect("a head");
    let chain = linked_chain(&engine, stored_head.number).await;
    assert_eq!(Head::from(chain.last().expect("non-empty")), stored_head, "the stored head is Geth's");
    for block in chain.iter().skip(1) {
        let kept = store.block(block.number).expect("read").expect("every height stored");
        assert_eq!(kept.hash(), block.hash, "the stored block {} is Geth's", block.number);
    }
}

/// The write-ahead rule, at the one moment it matters: a block Geth has made head must be
/// in the store already, so a crash right then leaves nothing for Geth to be ahead with.
/// Geth here acts on the forkchoiceUpdated that makes the next new block head, but its
/// answer is held back, so the sequencer is frozen right after the block became head; it
/// is killed there.
#[tokio::test]
async fn a_block_is_stored_before_geth_makes_it_head() {
    let Proxied { geth, proxy, state, dir: _dir } = Proxied::start().await;
    let mut sequencer = through(&proxy, &geth, &state);
    let engine = geth.engine();
    head_at_least_while(&sequencer, &engine, 2).await;

    proxy.hold_forkchoice(true);
    let named = while_running(&sequencer, "a new head Geth took, its answer held back", || async {
        proxy.held().first().copied()
    })
    .await;
    let geth_head = Head::from(&engine.head().await.expect("head"));
    assert_eq!(geth_head.hash, named, "Geth made the block that update named its head");
    sequencer.service.kill();
    proxy.hold_forkchoice(false);

    let store = Store::open(&state.join("sequencer.redb")).expect("store");
    let stored_head = store.head().expect("read").expect("a head");
    let stored = store.block(geth_head.number).expect("read");
    assert_eq!(
        stored.map(|block| block.hash()),
        Some(geth_head.hash),
        "Geth made block {} head before the store had it (the store's head is block {})",
        geth_head.number,
        stored_head.number
    );
    drop(store);

    // Started again, straight on Geth: in step with it from the store, and on.
    let produced = linked_chain(&engine, geth_head.number).await;
    let second = start(&geth, &state, &[]);
    keeps_and_extends(&engine, &produced, 2).await;
    assert!(!second.service.output().contains("Geth is ahead of our store"), "{}", second.service.output());
}

#[tokio::test]
async fn a_stored_head_geth_never_found_valid_is_taken_out_and_built_again() {
    let Running { mut sequencer, engine, geth, dir } = running(&[]).await;
    let head = head_at_least(&engine, 3).await;
    sequencer.service.signal(libc::SIGTERM);
    assert_eq!(sequencer.service.wait_exit(EXIT_TIMEOUT).await, Some(0));

    // What a crash while Geth executed a bad block leaves behind: the block is the store's
    // head (it is stored while Geth executes it), and Geth never made it head. Here, a
    // child of the head Geth built, with a wrong state root and a hash to match.
    let state = dir.path().join("state");
    let store = Store::open(&state.join("sequencer.redb")).expect("store");
    let stored = store.head().expect("read").expect("head");
    let parent = Head::from(&engine.head().await.expect("head"));
    assert_eq!(parent, stored, "a clean stop leaves Geth and the store at the same head");
    let timestamp = (parent.timestamp + 1).max(common::unix_time().as_secs());
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut bad =
        single_node::round::build(&engine, &parent, timestamp, Address::ZERO, Duration::from_millis(100), &cancel)
            .await
            .expect("build")
            .expect("a block");
    bad.execution_payload.payload_inner.payload_inner.state_root = alloy_primitives::B256::repeat_byte(0xbd);
    bad.execution_payload.payload_inner.payload_inner.block_hash = bad.computed_hash().expect("hash");
    store.append(&bad).expect("stored");
    drop(store);

    let sequencer = start(&geth, &state, &[]);
    let after = head_at_least(&engine, head.number + 3).await;
    linked_chain(&engine, after.number).await;
    let at = engine.block(BlockTag::Number(parent.number + 1)).await.expect("call").expect("block");
    assert_ne!(at.hash, bad.hash(), "the bad block never became head");
    assert!(sequencer.service.output().contains("our stored head was never VALID"), "{}", sequencer.service.output());
    drop(sequencer);
    let store = Store::open(&state.join("sequencer.redb")).expect("store");
    let kept = store.block(parent.number + 1).expect("read").expect("the height was built again");
    assert_eq!(kept.hash(), at.hash, "the store holds the block Geth has");
}

/// newPayload answered SYNCING is sent again, with a backoff, up to
/// `round::IMPORT_ATTEMPTS` (3) times; only then does the sequencer give the block up
/// (take it out of the store, recover, build the height again). A proxy in front of the
/// real Geth answers SYNCING after Geth executed the block.
#[tokio::test]
async fn a_block_answered_syncing_is_sent_again_and_given_up_only_after_three_answers() {
    let Proxied { geth, proxy, state, dir: _dir } = Proxied::start().await;
    let engine = geth.engine();

    // Once: the same block is sent again, found VALID, and kept; no fault, no recovery.
    proxy.answer_syncing(1);
    let sequencer = through(&proxy, &geth, &state);
    let (number, hash) =
        while_running(&sequencer, "a newPayload answered SYNCING", || async { proxy.syncing().first().copied() }).await;
    head_at_least_while(&sequencer, &engine, number + 2).await;
    let kept = engine.block(BlockTag::Number(number)).await.expect("block").expect("the height is there");
    assert_eq!(kept.hash, hash, "block {number}, answered SYNCING once, was sent again and kept");
    let output = sequencer.service.output();
    assert!(!output.contains("fault; recovering"), "one SYNCING answer is no fault:\n{output}");

    // Three times in a row: the block is given up after the third answer, and the height
    // is built again.
    proxy.answer_syncing(3);
    let given_up = while_running(&sequencer, "three newPayloads answered SYNCING", || async {
        let answered = proxy.syncing();
        (answered.len() == 4).then(|| answered[1..].to_vec())
    })
    .await;
    let (number, hash) = given_up[0];
    assert!(given_up.iter().all(|b| *b == (number, hash)), "the same block sent three times: {given_up:?}");
    head_at_least_while(&sequencer, &engine, number + 2).await;
    let output = sequencer.service.output();
    let gave_up = format!("Geth did not execute block {number}: SYNCING");
    assert_eq!(output.matches(&gave_up).count(), 1, "given up once, after the third answer:\n{output}");
    assert_eq!(proxy.syncing().len(), 4, "no newPayload answered SYNCING beyond the four asked for");
}

/// A Geth being given back its lost blocks may answer SYNCING while it works: that is a
/// wait, never a verdict. Geth's chain is wiped; the first block replayed into it is
/// answered SYNCING for every attempt of one replay; the sequencer tries again and replays
/// the whole chain.
#[tokio::test]
async fn syncing_during_a_replay_is_waited_out_not_taken_as_a_rejection() {
    let Proxied { mut geth, proxy, state, dir: _dir } = Proxied::start().await;
    let engine = geth.engine();
    let sequencer = through(&proxy, &geth, &state);
    let before = head_at_least_while(&sequencer, &engine, 4).await;
    let produced = linked_chain(&engine, before.number).await;

    proxy.answer_syncing_at(1, 3);
    geth.wipe_and_restart().await.expect("geth starts again from genesis");
    while_running(&sequencer, "block 1's replay answered SYNCING three times", || async {
        (proxy.syncing().len() == 3).then_some(())
    })
    .await;
    head_at_least_while(&sequencer, &engine, before.number + 2).await;
    let chain = linked_chain(&engine, before.number + 2).await;
    for block in &produced {
        assert_eq!(
            chain[usize::try_from(block.number).expect("fits")].hash,
            block.hash,
            "block {} replayed",
            block.number
        );
    }
}

/// A Geth killed while it wrote can come back holding a block without its state: it takes
/// that block again as "already known" and answers ACCEPTED ("state not available") for
/// the next, until the block is made head and so executed again; and having just started,
/// it ignores that update until it has taken one naming its own head. Here Geth's chain
/// is wiped and, while the store gives it back, the proxy plays that Geth for block 2: the
/// replay makes block 2 head and gives Geth the rest of the chain.
#[tokio::test]
async fn a_replayed_block_whose_state_geth_lost_is_made_head_and_the_replay_goes_on() {
    let Proxied { mut geth, proxy, state, dir: _dir } = Proxied::start().await;
    let engine = geth.engine();
    let sequencer = through(&proxy, &geth, &state);
    let before = head_at_least_while(&sequencer, &engine, 4).await;
    let produced = linked_chain(&engine, before.number).await;

    proxy.lose_state_of(2);
    geth.wipe_and_restart().await.expect("geth starts again from genesis");
    while_running(&sequencer, "block 3's replay answered ACCEPTED", || async {
        (!proxy.accepted().is_empty()).then_some(())
    })
    .await;
    head_at_least_while(&sequencer, &engine, before.number + 2).await;
    keeps_and_extends(&engine, &produced, 2).await;
}

/// A store keeps the newest `--retain-blocks` blocks, and a Geth further behind than that
/// cannot be given its chain back from it: the sequencer stops at start, saying which
/// blocks the store holds and how to start Geth instead, and gives Geth nothing.
#[tokio::test]
async fn a_geth_behind_the_stores_window_stops_the_sequencer_with_the_way_out() {
    let mut geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let engine = geth.engine();
    let window = single_node::store::MIN_RETAIN;
    let args = ["--retain-blocks", "128", "--back-to-back", "--build-time-ms", "20"];
    let mut sequencer = start(&geth, &state, &args);
    head_at_least_while(&sequencer, &engine, window + 40).await;
    sequencer.service.signal(libc::SIGTERM);
    assert_eq!(sequencer.service.wait_exit(EXIT_TIMEOUT).await, Some(0), "{}", sequencer.service.output());

    let store = Store::open(&state.join("sequencer.redb")).expect("store");
    let head = store.head().expect("read").expect("a head").number;
    let first = head - window + 1;
    assert_eq!(store.first().expect("read"), Some(first), "the store holds the newest {window} blocks");
    assert!(store.block(first - 1).expect("read").is_none(), "and not block {}", first - 1);
    drop(store);

    geth.wipe_and_restart().await.expect("geth starts again from genesis");
    let mut second = start(&geth, &state, &args);
    let code = second.service.wait_exit(EXIT_TIMEOUT).await;
    let output = second.service.output();
    assert!(code.is_some_and(|c| c != 0), "the sequencer must stop ({code:?}):\n{output}");
    assert!(
        output.contains(&format!("no block 1 to give it (it holds blocks from {first} on)"))
            && output.contains(&format!(
                "start Geth from a copy of a datadir of this chain at block {} or above",
                first - 1
            )),
        "{output}"
    );
    assert_eq!(engine.head().await.expect("head").number, 0, "Geth got no block");
}

/// A store kept for another chain (another genesis) is never continued on this one: the
/// sequencer stops at start, naming the store's genesis and the fix, and changes neither
/// what the store holds nor Geth's chain.
#[tokio::test]
async fn a_store_from_another_chain_is_refused_and_left_as_it_was() {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let path = state.join("sequencer.redb");
    let other = alloy_primitives::B256::repeat_byte(0x07);
    let planted = Head { number: 0, hash: other, timestamp: 0 };
    Store::open(&path).expect("store").init(other, planted).expect("init");

    let mut sequencer = start(&geth, &state, &[]);
    let code = sequencer.service.wait_exit(EXIT_TIMEOUT).await;
    let output = sequencer.service.output();
    assert!(code.is_some_and(|c| c != 0), "the sequencer must stop ({code:?}):\n{output}");
    assert!(
        output.contains(&format!("the block store belongs to a chain with genesis {other}"))
            && output.contains("use another --state-dir"),
        "{output}"
    );
    let store = Store::open(&path).expect("store");
    assert_eq!(store.genesis().expect("read"), Some(other), "the store still names its own chain");
    assert_eq!(store.head().expect("read"), Some(planted), "and its head is where it was");
    assert_eq!(geth.engine().head().await.expect("head").number, 0, "Geth got no block");
}

/// A Geth whose block at our stored head's height is another block is on another chain:
/// the sequencer stops with the reason and the fix, and builds nothing on it. Here Geth's
/// chain is wiped and rebuilt by another driver to exactly our height.
#[tokio::test]
async fn geth_on_another_chain_at_our_height_stops_the_sequencer() {
    let mut geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let engine = geth.engine();
    three_blocks_then_stopped(&geth, &state).await;
    let ours = Store::open(&state.join("sequencer.redb")).expect("store").head().expect("read").expect("a head");

    geth.wipe_and_restart().await.expect("geth starts again from genesis");
    for _ in 0..ours.number {
        produce_directly(&engine).await;
    }
    let theirs = engine.head().await.expect("head");
    assert_eq!(theirs.number, ours.number, "Geth is back at our height");
    assert_ne!(theirs.hash, ours.hash, "with another block there");

    let mut second = start(&geth, &state, &[]);
    let code = second.service.wait_exit(EXIT_TIMEOUT).await;
    let output = second.service.output();
    assert!(code.is_some_and(|c| c != 0), "the sequencer must stop ({code:?}):\n{output}");
    assert!(
        output.contains(&format!("Geth's chain differs from the stored one at height {}", ours.number)),
        "{output}"
    );
    // The store holds every block from 1 on: Geth can be given the whole chain again.
    assert!(output.contains("wipe Geth's datadir and let it replay"), "the way out is named:\n{output}");
    assert_eq!(engine.head().await.expect("head").hash, theirs.hash, "nothing was built on Geth's chain");
}

/// How Parts 3 and 4 ask a Geth that is behind what their consensus layer holds to sync to a
/// block (`round::sync_to`): the error Geth answers while its beacon syncer starts a new sync
/// cycle is answered as syncing (its callers wait it out), not as a fault that stops the
/// node; a Geth that cannot be reached is a passing fault (its callers retry), never a Geth
/// syncing.
#[tokio::test]
async fn a_geth_restarting_its_sync_is_waited_out_and_one_not_answering_is_a_passing_fault() {
    let geth = Geth::start().await.expect("geth");
    let proxy = InvalidatingProxy::start(geth.auth_url()).await.expect("proxy");
    let forks = geth.engine().forks().clone();
    let engine = EngineClient::new(proxy.url(), geth.jwt(), forks.clone()).expect("client");
    let head = engine.head().await.expect("head");

    proxy.answer_reorging(1);
    match round::sync_to(&engine, head.hash).await {
        Ok(Sync::Syncing(answer)) => assert!(answer.contains("beacon syncer reorging"), "{answer}"),
        other => panic!("Geth's answer while it starts a sync cycle is waited out, not {other:?}"),
    }
    let again = round::sync_to(&engine, head.hash).await;
    assert!(matches!(again, Ok(Sync::Done)), "asked again, Geth makes the block head: {again:?}");

    let nobody = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let gone = EngineClient::new(&nobody, geth.jwt(), forks).expect("client");
    match round::sync_to(&gone, head.hash).await {
        Err(Fault::Passing(error)) => assert!(error.to_string().contains("refused"), "{error:#}"),
        other => panic!("a Geth that cannot be reached is a passing fault, not {other:?}"),
    }
}

/// Back to back, no forkchoiceUpdated of its own makes a block head: the next build's
/// does. A stop asked for while Geth executes a block (its newPayload answer held back
/// here) still ends with that block stored and Geth's head, made head on the way out.
#[tokio::test]
async fn stopped_back_to_back_while_geth_executes_a_block_it_leaves_that_block_geths_head() {
    let Proxied { geth, proxy, state, dir: _dir } = Proxied::start().await;
    let engine = geth.engine();
    let args = ["--back-to-back", "--build-time-ms", "20"];
    let mut sequencer = start_with(proxy.url().to_owned(), geth.jwt_path(), genesis_path(), &state, &args);
    head_at_least_while(&sequencer, &engine, 3).await;

    proxy.hold_new_payload(true);
    let (number, hash) =
        while_running(&sequencer, "a newPayload answer held back", || async { proxy.held_payloads().first().copied() })
            .await;
    sequencer.service.signal(libc::SIGTERM);
    while_running(&sequencer, "the sequencer to hear the stop", || async {
        sequencer.service.output().contains("shutdown requested").then_some(())
    })
    .await;
    proxy.hold_new_payload(false);
    assert_eq!(sequencer.service.wait_exit(EXIT_TIMEOUT).await, Some(0), "{}", sequencer.service.output());

    let stored = Store::open(&state.join("sequencer.redb")).expect("store").head().expect("read").expect("a head");
    assert_eq!((stored.number, stored.hash), (number, hash), "the block Geth was executing is stored");
    assert_eq!(Head::from(&engine.head().await.expect("head")), stored, "and it is Geth's head");
}

/// A fresh Geth behind an [`InvalidatingProxy`], and a state directory for a sequencer.
struct Proxied {
    geth: Geth,
    proxy: InvalidatingProxy,
    state: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Proxied {
    async fn start() -> Self {
        let geth = Geth::start().await.expect("geth");
        let dir = tempfile::tempdir().expect("dir");
        let proxy = InvalidatingProxy::start(geth.auth_url()).await.expect("proxy");
        Self { state: dir.path().join("state"), geth, proxy, dir }
    }
}

/// A sequencer on `geth` that talks to it through `proxy`, with its store in `state`.
fn through(proxy: &InvalidatingProxy, geth: &Geth, state: &std::path::Path) -> crate::support::Sequencer {
    start_with(proxy.url().to_owned(), geth.jwt_path(), genesis_path(), state, &[])
}
