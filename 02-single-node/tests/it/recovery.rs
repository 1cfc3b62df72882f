//! Geth that lost blocks, Geth ahead of us, and a block Geth rejects.

use std::time::Duration;

use alloy_primitives::Address;
use common::{
    BlockTag, EngineClient, Head,
    auth::unix_now,
    harness::{Geth, InvalidatingProxy, genesis_path},
};
use single_node::store::Store;

use crate::support::{
    EXIT_TIMEOUT, Running, get, head_at_least, keeps_and_extends, linked_chain, running, start, start_with,
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

/// Makes one block on Geth without the sequencer, as another driver would.
async fn produce_directly(engine: &EngineClient) -> common::Block {
    let head = engine.head().await.expect("head");
    let timestamp = (head.timestamp + 1).max(unix_now());
    let attributes = common::payload::attributes(head.hash, timestamp, Address::ZERO);
    let state = common::payload::finalized_at(head.hash);
    let id = engine.forkchoice_updated_v3(state, Some(attributes)).await.expect("fcu").payload_id.expect("id");
    let block = common::payload::ExecutableBlock::from(engine.get_payload(id, timestamp).await.expect("payload"));
    assert!(engine.import(&block).await.expect("newPayload").is_valid());
    engine.forkchoice_updated_v3(common::payload::finalized_at(block.hash()), None).await.expect("fcu");
    block.header()
}

#[tokio::test]
async fn geth_ahead_on_our_chain_is_followed() {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let engine = geth.engine();
    let mut first = start(&geth, &state, &[]);
    head_at_least(&engine, 3).await;
    first.service.signal(libc::SIGTERM);
    assert_eq!(first.service.wait_exit(EXIT_TIMEOUT).await, Some(0));

    let mut produced = linked_chain(&engine, engine.head().await.expect("head").number).await;
    for _ in 0..2 {
        produced.push(produce_directly(&engine).await);
    }
    let second = start(&geth, &state, &[]);
    keeps_and_extends(&engine, &produced, 2).await;
    assert!(second.service.output().contains("Geth is ahead of our store on our chain"), "{}", second.service.output());
}

#[tokio::test]
async fn an_invalid_payload_is_dropped_and_rebuilt() {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let proxy = InvalidatingProxy::start(geth.auth_url()).await.expect("proxy");
    proxy.invalidate(1);
    let sequencer = start_with(proxy.url().to_owned(), geth.jwt_path(), genesis_path(), &dir.path().join("state"), &[]);
    let engine = geth.engine();
    let head = head_at_least(&engine, 4).await;
    linked_chain(&engine, head.number).await;
    let output = sequencer.service.output();
    assert!(
        output.contains("Geth rejected the block it built") && output.contains("proxy says: invalid for the test"),
        "{output}"
    );
    let (_, metrics) = get(&sequencer, "/metrics").await.expect("metrics");
    assert!(metrics.contains("sequencer_errors_total{kind=\"invalid_payload\"} 1"), "{metrics}");
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
    let timestamp = (parent.timestamp + 1).max(unix_now());
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
