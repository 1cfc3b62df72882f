//! The lease against a real Redis: exclusive, fenced by growing terms, holder-checked.

use std::time::Duration;

use common::harness::{Redis, eventually};
use member_nodes::election::{Election, LeaseTiming};

/// Long enough that a busy machine's scheduling delays cannot expire a lease between two
/// calls of a test, or between two renewals.
const TIMING: LeaseTiming = LeaseTiming { lease: Duration::from_secs(4) };

/// Generous bounds for what takes about a lease.
const WAIT: Duration = Duration::from_secs(30);

async fn candidate(redis: &Redis, id: &str) -> Election {
    Election::connect(&format!("redis://{}", redis.addr()), id, TIMING).await.expect("connects")
}

#[tokio::test]
async fn one_holder_at_a_time_and_every_term_is_new() {
    let redis = Redis::start().await.expect("redis");
    let (a, b) = (candidate(&redis, "a").await, candidate(&redis, "b").await);

    let sent = tokio::time::Instant::now();
    let (lease, view) = a.try_acquire(0).await.expect("call").expect("a takes the free lease");
    // The holder may act at once, and never past the moment Redis, which started its
    // countdown after we sent the command, can give the lease to someone else.
    assert!(view.is_valid(tokio::time::Instant::now()), "a fresh lease may be acted on: {view:?}");
    assert!(view.valid_until < sent + TIMING.lease, "acted on only while Redis still holds it: {view:?}");
    assert!(b.try_acquire(0).await.expect("call").is_none(), "b cannot take a held lease");
    assert!(a.renew(&lease).await.expect("call"), "the holder renews");

    // Released: b takes it at once, with a newer term.
    assert!(a.release(&lease).await.expect("call"));
    let (second, _) = b.try_acquire(0).await.expect("call").expect("b takes the released lease");
    assert!(second.term > lease.term, "terms only grow: {} then {}", lease.term, second.term);
    assert!(!a.release(&lease).await.expect("call"), "an old lease cannot release a newer one");
    assert!(!a.renew(&lease).await.expect("call"), "nor renew it");

    // Not renewed: it expires, and a takes it back with a newer term still.
    let (third, _) = eventually("the lease to expire", WAIT, || async { a.try_acquire(0).await.ok().flatten() }).await;
    assert!(third.term > second.term);
}

#[tokio::test]
async fn terms_stay_above_the_floor_after_redis_loses_its_data() {
    let mut redis = Redis::start().await.expect("redis");
    let a = candidate(&redis, "a").await;
    let (lease, _) = a.try_acquire(0).await.expect("call").expect("lease");
    assert_eq!(lease.term, 1);

    // A restart without persistence loses the counter; the store's fence (the floor)
    // keeps the next term above every term ever used.
    redis.restart().await.expect("redis restarts empty");
    let after = eventually("the client to reconnect", WAIT, || async { a.try_acquire(41).await.ok().flatten() }).await;
    assert_eq!(after.0.term, 42, "the term counter resumes above the floor");
}

#[tokio::test]
async fn a_renewal_keeps_the_view_valid_and_a_refused_one_marks_it_lost() {
    let redis = Redis::start().await.expect("redis");
    let (a, b) = (candidate(&redis, "a").await, candidate(&redis, "b").await);
    let (lease, view) = a.try_acquire(0).await.expect("call").expect("lease");
    let (publish, watch) = tokio::sync::watch::channel(view);
    let (made_block, progress) = tokio::sync::watch::channel(tokio::time::Instant::now());
    let stop = tokio_util::sync::CancellationToken::new();
    let renewing = a.keep_renewed(&lease, &publish, &stop, &progress, TIMING.lease);
    let check = async {
        // Three lease lengths pass with a block now and then: renewals keep the view
        // valid all along, though it would have run out after the first without them.
        for _ in 0..6 {
            tokio::time::sleep(TIMING.lease / 2).await;
            made_block.send_replace(tokio::time::Instant::now());
            assert!(watch.borrow().is_valid(tokio::time::Instant::now()), "renewed in time");
        }
        // Someone deletes the lease and b takes it: the next renewal is refused.
        a.release(&lease).await.expect("release");
        b.try_acquire(0).await.expect("call").expect("b takes it");
        eventually("the view to be lost", WAIT, || async { watch.borrow().lost.then_some(()) }).await;
        stop.cancel();
    };
    tokio::join!(renewing, check);
}

#[tokio::test]
async fn a_leader_that_makes_no_block_gives_the_lease_up_at_once() {
    let redis = Redis::start().await.expect("redis");
    let (a, b) = (candidate(&redis, "a").await, candidate(&redis, "b").await);
    let (lease, view) = a.try_acquire(0).await.expect("call").expect("lease");
    let (publish, watch) = tokio::sync::watch::channel(view);
    // The production loop made no block since it began leading (its Geth hangs, say).
    let (_made_block, progress) = tokio::sync::watch::channel(tokio::time::Instant::now());
    let stop = tokio_util::sync::CancellationToken::new();
    let stall = TIMING.lease / 2;
    // It returns by itself, without `stop`.
    tokio::time::timeout(TIMING.lease * 10, a.keep_renewed(&lease, &publish, &stop, &progress, stall))
        .await
        .expect("the renewal gives up by itself");
    let view = *watch.borrow();
    assert!(view.given_up.is_some_and(|quiet| quiet > stall), "{view:?}");
    assert!(!view.is_valid(tokio::time::Instant::now()), "the production loop may not store any more");
    // Given back, not left to expire: the standby takes it at once, with a newer term.
    let (taken, _) = b.try_acquire(0).await.expect("call").expect("b takes the lease at once");
    assert!(taken.term > lease.term);
}

#[tokio::test]
async fn a_redis_that_stops_answering_fails_the_renewal_within_the_lease() {
    let redis = Redis::start().await.expect("redis");
    let a = candidate(&redis, "a").await;
    let (lease, _) = a.try_acquire(0).await.expect("call").expect("lease");
    // A hung Redis: the connection stays open, nothing answers. The renewal must fail in
    // time for the holder to stop by its own clock, not wait for an answer.
    redis.signal(libc::SIGSTOP);
    let renewed = tokio::time::timeout(TIMING.valid_for(), a.renew(&lease)).await;
    redis.signal(libc::SIGCONT);
    let error = renewed.expect("the renewal gives up before the lease runs out").expect_err("no answer, no renewal");
    assert!(format!("{error:#}").contains("Redis: renew"), "{error:#}");
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let port = common::harness::free_port().expect("port");
    let err = Election::connect(&format!("redis://127.0.0.1:{port}"), "a", TIMING).await.unwrap_err();
    assert!(format!("{err:#}").contains("cannot reach Redis at redis://127.0.0.1"), "{err:#}");
}
