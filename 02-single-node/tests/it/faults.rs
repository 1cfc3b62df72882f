//! What the sequencer does when Geth answers slowly or not at all (through toxiproxy), and
//! when the wall clock is stepped (through libfaketime): it waits, says so on `/ready`,
//! hangs nowhere, and goes on from where it was, with no height made twice or skipped.

use std::time::Duration;

use common::harness::{Geth, Toxiproxy, eventually, faketime_library, genesis_path};
use single_node::store::Store;

use crate::support::{BLOCKS_TIMEOUT, EXIT_TIMEOUT, get, head_at_least, linked_chain, start_with, start_with_env};

#[tokio::test]
async fn a_slow_or_half_open_geth_is_waited_out_with_no_height_made_twice_or_skipped() {
    let geth = Geth::start().await.expect("geth");
    let faults = Toxiproxy::start().await.expect("toxiproxy");
    let link = faults.proxy("geth", geth.auth_url().trim_start_matches("http://")).await.expect("proxy");
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let mut sequencer = start_with(format!("http://{}", link.addr()), geth.jwt_path(), genesis_path(), &state, &[]);
    let engine = geth.engine();
    head_at_least(&engine, 3).await;

    // Slower than getPayload's one-second timeout: no build can finish, and `/ready`
    // says so; the sequencer keeps trying.
    link.slow(Duration::from_millis(1500)).await.expect("slow");
    eventually("/ready to report the stall", BLOCKS_TIMEOUT, || async {
        get(&sequencer, "/ready").await.filter(|(code, _)| *code == 503)
    })
    .await;
    link.heal().await.expect("heal");
    let head = engine.head().await.expect("head").number;
    head_at_least(&engine, head + 3).await;

    // Half-open: requests go out, nothing comes back, nothing closes. Each call ends at its
    // timeout; the endpoints keep answering meanwhile.
    link.half_open().await.expect("half-open");
    eventually("/ready to report Geth unreachable", BLOCKS_TIMEOUT, || async {
        get(&sequencer, "/ready").await.filter(|(code, body)| *code == 503 && body.contains("unreachable"))
    })
    .await;
    assert_eq!(get(&sequencer, "/health").await.map(|(code, _)| code), Some(200), "nothing hangs");
    link.heal().await.expect("heal");
    let head = engine.head().await.expect("head").number;
    let head = head_at_least(&engine, head + 3).await;
    eventually("/ready again", BLOCKS_TIMEOUT, || async { get(&sequencer, "/ready").await.filter(|(c, _)| *c == 200) })
        .await;

    // One linked chain, and the store holds exactly Geth's block at every height it has.
    let chain = linked_chain(&engine, head.number).await;
    sequencer.service.signal(libc::SIGTERM);
    assert_eq!(sequencer.service.wait_exit(EXIT_TIMEOUT).await, Some(0));
    let store = Store::open(&state.join("sequencer.redb")).expect("store");
    let stored = store.head().expect("read").expect("a head");
    assert!(stored.number >= head.number);
    for block in chain.iter().skip(1) {
        let kept = store.block(block.number).expect("read").expect("every height stored");
        assert_eq!(kept.hash(), block.hash, "the stored block {} is Geth's", block.number);
    }
}

#[tokio::test]
async fn a_clock_stepped_back_holds_production_only_until_it_is_corrected() {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    // The sequencer's wall clock, and only its, is what this file says (libfaketime);
    // its timers (the monotonic clock) run on.
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "+0").expect("write");
    let library = faketime_library().expect("libfaketime");
    let env = [
        ("LD_PRELOAD", library.to_str().expect("utf-8 path")),
        ("FAKETIME_TIMESTAMP_FILE", clock.to_str().expect("utf-8 path")),
        ("FAKETIME_NO_CACHE", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    let state = dir.path().join("state");
    let sequencer = start_with_env(geth.auth_url(), geth.jwt_path(), genesis_path(), &state, &[], &env);
    let engine = geth.engine();
    let before = head_at_least(&engine, 3).await;

    // NTP steps the clock back 45 s (less than the JWT's 60 s window, which Geth checks
    // against its own clock): the next block's timestamp is now ahead of the clock, so
    // production holds. Then the clock is corrected.
    std::fs::write(&clock, "-45").expect("write");
    let held = eventually("production to hold", BLOCKS_TIMEOUT, || async {
        let a = engine.head().await.ok()?.number;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let b = engine.head().await.ok()?.number;
        (a == b).then_some(b)
    })
    .await;
    assert!(held >= before.number);
    std::fs::write(&clock, "+0").expect("write");
    // Planned again within a second of the correction: blocks come within seconds, not
    // after the 45 s a plan made on the stepped clock would sleep. (25 s is a generous
    // bound for three one-second blocks, and well short of 45 s.)
    let resumed = tokio::time::timeout(Duration::from_secs(25), head_at_least(&engine, held + 3)).await;
    assert!(
        resumed.is_ok(),
        "production did not resume within 25 s of the correction:\n{}",
        sequencer.service.output()
    );
    linked_chain(&engine, held + 3).await;
}
