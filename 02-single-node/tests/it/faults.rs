//! What the sequencer does when Geth answers slowly or not at all (through toxiproxy), and
//! when the wall clock is stepped (through libfaketime): it waits, says so on `/ready`,
//! hangs nowhere, and goes on from where it was, with no height made twice or skipped.

use std::time::Duration;

use common::{
    Head,
    harness::{Geth, Toxiproxy, faked_clock, genesis_path, set_clock},
};
use single_node::store::Store;

use crate::support::{
    EXIT_TIMEOUT, FinalityWatch, assert_final_kept, assert_kept, get, head_at_least_while, linked_chain, start_with,
    start_with_env, while_running,
};

#[tokio::test]
async fn a_slow_or_half_open_geth_is_waited_out_with_no_height_made_twice_or_skipped() {
    let geth = Geth::start().await.expect("geth");
    let faults = Toxiproxy::start().await.expect("toxiproxy");
    let link = faults.proxy("geth", geth.auth_url().trim_start_matches("http://")).await.expect("proxy");
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let mut sequencer = start_with(format!("http://{}", link.addr()), geth.jwt_path(), genesis_path(), &state, &[]);
    let engine = geth.engine();
    let head = head_at_least_while(&sequencer, &engine, 3).await;
    // The chain before the faults, which they must leave as it is; and Geth's finality,
    // read throughout (straight from Geth: the faults are on the sequencer's link only).
    // A call that timed out after Geth acted on it must never get its height made again.
    let before = linked_chain(&engine, head.number).await;
    let finality = FinalityWatch::start(&geth);

    // Slower than getPayload's one-second timeout: no build can finish, and `/ready`
    // says so; the sequencer keeps trying.
    link.slow(Duration::from_millis(1500)).await.expect("slow");
    while_running(&sequencer, "/ready to report the stall", || async {
        get(&sequencer, "/ready").await.filter(|(code, _)| *code == 503)
    })
    .await;
    link.heal().await.expect("heal");
    let head = engine.head().await.expect("head").number;
    let head = head_at_least_while(&sequencer, &engine, head + 3).await;
    let between = linked_chain(&engine, head.number).await;
    assert_kept(&between, &before, "before the slow link");

    // Half-open: requests go out, nothing comes back, nothing closes. Each call ends at its
    // timeout; the endpoints keep answering meanwhile.
    link.half_open().await.expect("half-open");
    while_running(&sequencer, "/ready to report Geth unreachable", || async {
        get(&sequencer, "/ready").await.filter(|(code, body)| *code == 503 && body.contains("unreachable"))
    })
    .await;
    assert_eq!(get(&sequencer, "/health").await.map(|(code, _)| code), Some(200), "nothing hangs");
    link.heal().await.expect("heal");
    let head = engine.head().await.expect("head").number;
    let head = head_at_least_while(&sequencer, &engine, head + 3).await;
    while_running(&sequencer, "/ready again", || async { get(&sequencer, "/ready").await.filter(|(c, _)| *c == 200) })
        .await;

    // One linked chain that kept every block recorded before and between the faults, and
    // every block Geth ever called final, and went on past them.
    let chain = linked_chain(&engine, head.number).await;
    let finality = finality.stop().await;
    assert_kept(&chain, &before, "before the faults");
    assert_kept(&chain, &between, "between the faults");
    assert_final_kept(&chain, &finality);
    assert!(head.number >= between.len() as u64 + 2, "the chain went on after the faults");

    // A clean stop leaves the store and Geth at the same head, and the store holds exactly
    // Geth's block at every height.
    sequencer.service.signal(libc::SIGTERM);
    assert_eq!(sequencer.service.wait_exit(EXIT_TIMEOUT).await, Some(0));
    let geth_head = Head::from(&engine.head().await.expect("head"));
    let store = Store::open(&state.join("sequencer.redb")).expect("store");
    assert_eq!(store.head().expect("read"), Some(geth_head), "the stored head is Geth's head");
    let chain = linked_chain(&engine, geth_head.number).await;
    assert_kept(&chain, &before, "before the faults");
    for block in chain.iter().skip(1) {
        let kept = store.block(block.number).expect("read").expect("every height stored");
        assert_eq!(kept.hash(), block.hash, "the stored block {} is Geth's", block.number);
    }
}

/// The wall clock, by the test's own (unfaked) clock, in seconds.
fn real_now() -> f64 {
    single_node::clock::unix_time().as_secs_f64()
}

/// How long past its slot, by the clock the sequencer would follow without the step, the
/// next block must be missing before the hold is taken as seen: several times the
/// second within which the sequencer looks at its clock again.
const OVERDUE: u64 = 3;

/// What is wrong if `block`, seen as head at `now` (real time) while the sequencer's clock
/// is `step` seconds behind, is ahead of the sequencer's clock: a block never becomes head
/// before its own timestamp by the producer's clock. Only blocks after the one the
/// sequencer may have been building on the old clock when the clock was stepped (at head
/// `stepped_at`) are held to it.
fn ahead_of_clock(block: &common::Block, stepped_at: u64, step: u64, now: f64) -> Option<String> {
    (block.number > stepped_at + 1 && (block.timestamp + step) as f64 > now).then(|| {
        format!(
            "block {} (timestamp {}) became head by {now:.1}, when the sequencer's clock read {:.1}",
            block.number,
            block.timestamp,
            now - step as f64
        )
    })
}

#[tokio::test]
async fn a_clock_stepped_back_holds_production_only_until_it_is_corrected() {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    // The sequencer's wall clock, and only its, is what this file says (libfaketime);
    // its timers (the monotonic clock) run on.
    let clock = dir.path().join("clock");
    let env = faked_clock(&clock).expect("libfaketime");
    let state = dir.path().join("state");
    let sequencer = start_with_env(geth.auth_url(), geth.jwt_path(), genesis_path(), &state, &[], &env);
    let engine = geth.engine();
    head_at_least_while(&sequencer, &engine, 3).await;

    // NTP steps the clock back 45 s (less than the JWT's 60 s window, which Geth checks
    // against its own clock): every next timestamp is now ahead of the sequencer's clock.
    // The one block it may already be building on the old clock aside, no block may
    // become head before the stepped clock reaches its timestamp: that is what holds
    // production, whatever the time it takes.
    const STEP: u64 = 45;
    set_clock(&clock, &format!("-{STEP}")).expect("clock");
    let stepped_at = engine.head().await.expect("head").number;
    // Held for as long as it takes the real clock to pass the next block's slot by
    // OVERDUE seconds: a sequencer on the real clock would have made it by then.
    let held = while_running(&sequencer, "the next block to be overdue by the real clock", || async {
        let head = engine.head().await.ok()?;
        let now = real_now();
        if let Some(broken) = ahead_of_clock(&head, stepped_at, STEP, now) {
            panic!("production did not hold for the stepped clock: {broken}");
        }
        (now >= (head.timestamp + 1 + OVERDUE) as f64).then_some(head)
    })
    .await;
    assert_eq!(get(&sequencer, "/health").await.map(|(code, _)| code), Some(200), "held, not hung");

    // Corrected: the sequencer plans on the corrected clock within a second, so the next
    // block comes before the stepped clock would have reached its timestamp, not after
    // the 45 s a plan made on the stepped clock would sleep.
    set_clock(&clock, "+0").expect("clock");
    let (next, seen) = while_running(&sequencer, "a block after the correction", || async {
        let head = engine.head().await.ok().filter(|head| head.number > held.number)?;
        let now = real_now();
        let next = if head.number == held.number + 1 {
            head
        } else {
            engine.block(common::BlockTag::Number(held.number + 1)).await.ok()??
        };
        Some((next, now))
    })
    .await;
    assert!(
        seen < (next.timestamp + STEP) as f64,
        "block {} (timestamp {}) came at {seen:.1}, only once the stepped clock allowed it: the correction was not seen",
        next.number,
        next.timestamp
    );
    // Caught up with the clock again (it fills in the slots it missed), never ahead of it.
    while_running(&sequencer, "the chain back on the clock", || async {
        let head = engine.head().await.ok()?;
        let now = real_now();
        assert!(head.timestamp as f64 <= now, "block {} is ahead of the clock ({now:.1})", head.number);
        (head.timestamp as f64 >= now - 2.0).then_some(head)
    })
    .await;

    // A smaller step that is never corrected: production holds exactly until the stepped
    // clock reaches the next timestamp, and then follows the stepped clock.
    const SMALL_STEP: u64 = 5;
    set_clock(&clock, &format!("-{SMALL_STEP}")).expect("clock");
    let stepped_at = engine.head().await.expect("head").number;
    let last = while_running(&sequencer, "three blocks on the stepped clock", || async {
        let head = engine.head().await.ok()?;
        if let Some(broken) = ahead_of_clock(&head, stepped_at, SMALL_STEP, real_now()) {
            panic!("a block ran ahead of the sequencer's clock: {broken}");
        }
        (head.number >= stepped_at + 3).then_some(head)
    })
    .await;
    linked_chain(&engine, last.number).await;
}
