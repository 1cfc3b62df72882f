//! The block log against a real PostgreSQL: the schema keeps one chain, the fence refuses
//! a stale leader even mid-claim, and LISTEN announces each block.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{B256, FixedBytes};
use common::{
    ElChain, Head,
    harness::{Postgres, eventually},
};
use member_nodes::block_log::{AppendError, MAX_CLOCK_SKEW, RowError, Store};

use crate::support::fake_block;

fn hash(n: u8) -> B256 {
    B256::repeat_byte(n)
}

fn chain(n: u8) -> ElChain {
    ElChain {
        genesis: hash(n),
        chain_id: Some(1337),
        fork_id: Some(FixedBytes([n; 4])),
        genesis_forks: Some(FixedBytes([n ^ 0xff; 4])),
        blob_schedule: Some(FixedBytes([n ^ 0x0f; 4])),
    }
}

const LEASE: Duration = Duration::from_secs(1);

const ANCHOR: Head = Head { number: 0, hash: B256::repeat_byte(1), timestamp: 0 };

async fn initialised(postgres: &Postgres) -> Store {
    let store = Store::connect(&postgres.url(), LEASE).await.expect("connects and migrates");
    store.init(chain(0xee), ANCHOR).await.expect("init");
    store
}

#[tokio::test]
async fn migrations_run_once_and_init_keeps_the_first_chain() {
    let postgres = Postgres::start().await.expect("postgres");
    let url = postgres.url();
    let (a, b) = tokio::join!(Store::connect(&url, LEASE), Store::connect(&url, LEASE));
    let (a, b) = (a.expect("a migrates"), b.expect("b finds it migrated"));
    assert!(a.chain().await.expect("read").is_none(), "empty before the first leader");
    let first = a.init(chain(0xee), ANCHOR).await.expect("init");
    let second = b.init(chain(0xdd), Head { number: 7, ..ANCHOR }).await.expect("init again");
    assert_eq!(first, second, "the first initialisation stands");
    assert_eq!((first.el, first.anchor, first.fence_term), (chain(0xee), ANCHOR, 0));

    // A store made before the blob schedule was written names the rest; one made before
    // the genesis forks too; one made before the chain id and fork id names block 0 alone.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.batch_execute("UPDATE chain SET blob_schedule = NULL").await.expect("an older store's row");
    let older = a.chain().await.expect("read").expect("a chain");
    assert_eq!(older.el, ElChain { blob_schedule: None, ..chain(0xee) });
    client.batch_execute("UPDATE chain SET genesis_forks = NULL").await.expect("an older store's row");
    let older = a.chain().await.expect("read").expect("a chain");
    assert_eq!(older.el, ElChain { genesis_forks: None, blob_schedule: None, ..chain(0xee) });
    client.batch_execute("UPDATE chain SET chain_id = NULL, fork_id = NULL").await.expect("an older store's row");
    let older = a.chain().await.expect("read").expect("a chain");
    assert_eq!(
        older.el,
        ElChain { genesis: hash(0xee), chain_id: None, fork_id: None, genesis_forks: None, blob_schedule: None }
    );
}

#[tokio::test]
async fn the_fence_refuses_old_terms_and_the_schema_refuses_forks_and_gaps() {
    let postgres = Postgres::start().await.expect("postgres");
    let store = initialised(&postgres).await;

    assert!(store.claim(2, "b").await.expect("claim"));
    assert!(!store.claim(1, "a").await.expect("claim"), "an older term cannot claim");
    assert!(!store.claim(2, "a").await.expect("claim"), "nor the same term twice");
    // The floor a candidate's next term must be above, even after Redis lost its counter.
    assert_eq!(store.fence_term().await.expect("read"), 2);

    let one = fake_block(1, hash(1), hash(0x11));
    let err = store.append(&one, 1, "a").await.unwrap_err();
    assert!(matches!(err, AppendError::Fenced { ours: 1, current: 2 }), "{err}");
    store.append(&one, 2, "b").await.expect("the fence holder stores");

    let fork = fake_block(1, hash(1), hash(0x12));
    assert!(matches!(store.append(&fork, 2, "b").await, Err(AppendError::Conflict { number: 1, .. })));
    let orphan = fake_block(2, hash(0x99), hash(0x22));
    assert!(matches!(store.append(&orphan, 2, "b").await, Err(AppendError::Conflict { number: 2, .. })));
    let gap = fake_block(3, hash(0x11), hash(0x33));
    assert!(matches!(store.append(&gap, 2, "b").await, Err(AppendError::Conflict { number: 3, .. })));

    assert_eq!(store.head().await.expect("head").map(|h| h.number), Some(1));
    assert_eq!(store.hash_at(1).await.expect("read"), Some(hash(0x11)));
}

#[tokio::test]
async fn a_write_racing_a_claim_waits_for_it_and_is_refused() {
    let postgres = Postgres::start().await.expect("postgres");
    let store = initialised(&postgres).await;
    assert!(store.claim(1, "a").await.expect("claim"));

    // A newer leader's claim, in progress: its row lock is held until it commits.
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.batch_execute("BEGIN; UPDATE chain SET fence_term = 2, fence_holder = 'b'").await.expect("claim begins");

    let append = tokio::spawn({
        let store = store.clone();
        async move { store.append(&fake_block(1, hash(1), hash(0x11)), 1, "a").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!append.is_finished(), "the old leader's write waits for the claim");
    client.batch_execute("COMMIT").await.expect("claim commits");
    let result = append.await.expect("join");
    assert!(matches!(result, Err(AppendError::Fenced { ours: 1, current: 2 })), "{result:?}");
    assert_eq!(store.head().await.expect("head").map(|h| h.number), Some(0), "nothing stored");
}

#[tokio::test]
async fn a_write_cancelled_before_it_answers_is_unconfirmed_not_a_conflict() {
    let postgres = Postgres::start().await.expect("postgres");
    let store = initialised(&postgres).await;
    assert!(store.claim(1, "a").await.expect("claim"));

    // Another session locks the parent row, so the insert's foreign-key check waits; then
    // the write is cancelled (an operator, a statement timeout). PostgreSQL answers with
    // an error that is no conflict with the stored chain: the leader must not take it for
    // a refusal, only read the height back.
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.batch_execute("BEGIN; SELECT 1 FROM blocks WHERE number = 0 FOR UPDATE").await.expect("lock");
    let append = tokio::spawn({
        let store = store.clone();
        async move { store.append(&fake_block(1, hash(1), hash(0x11)), 1, "a").await }
    });
    let waiting =
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'member-nodes' AND wait_event_type = 'Lock'";
    let pid: i32 = common::harness::eventually("the write to wait for the lock", Duration::from_secs(30), || async {
        client.query_opt(waiting, &[]).await.expect("query").map(|row| row.get(0))
    })
    .await;
    client.execute("SELECT pg_cancel_backend($1)", &[&pid]).await.expect("cancel");
    let result = append.await.expect("join");
    assert!(matches!(result, Err(AppendError::Unconfirmed { number: 1, .. })), "{result:?}");
    client.batch_execute("ROLLBACK").await.expect("unlock");
    assert_eq!(store.head().await.expect("head").map(|h| h.number), Some(0), "nothing stored");
}

#[tokio::test]
async fn rows_are_checked_before_use_and_listen_announces_them() {
    let postgres = Postgres::start().await.expect("postgres");
    let store = initialised(&postgres).await;
    assert!(store.claim(1, "a").await.expect("claim"));

    let wake = Arc::new(tokio::sync::Notify::new());
    let cancel = tokio_util::sync::CancellationToken::new();
    let listening = tokio::spawn(member_nodes::block_log::listen(store.config().clone(), wake.clone(), cancel.clone()));
    tokio::time::timeout(Duration::from_secs(10), wake.notified()).await.expect("woken once listening");

    store.append(&fake_block(1, hash(1), hash(0x11)), 1, "a").await.expect("stored");
    tokio::time::timeout(Duration::from_secs(10), wake.notified()).await.expect("woken by NOTIFY");

    let rows = store.blocks_after(0, 10, u32::MAX).await.expect("read");
    assert_eq!(rows.len(), 1, "the anchor has no payload and is not returned");
    // A fabricated block does not hash to its claimed hash: refused as corrupt.
    assert!(matches!(rows[0].block(), Err(RowError::Corrupt { number: 1, .. })), "{:?}", rows[0].block());
    let mut mismatched = rows[0].clone();
    mismatched.hash = hash(0x42);
    assert!(matches!(mismatched.block(), Err(RowError::Mismatch { number: 1, .. })));
    let (head, age) = store.lag(0).await.expect("lag");
    assert_eq!(head, 1);
    assert!(age.is_some_and(|a| a < Duration::from_secs(60)), "{age:?}");

    // A batch is bounded by count and by stored payload size, and always holds a block.
    store.append(&fake_block(2, hash(0x11), hash(0x12)), 1, "a").await.expect("stored");
    store.append(&fake_block(3, hash(0x12), hash(0x13)), 1, "a").await.expect("stored");
    let numbers = |rows: Vec<member_nodes::block_log::StoredRow>| rows.iter().map(|r| r.number).collect::<Vec<_>>();
    assert_eq!(numbers(store.blocks_after(0, 10, u32::MAX).await.expect("read")), [1, 2, 3]);
    assert_eq!(numbers(store.blocks_after(0, 2, u32::MAX).await.expect("read")), [1, 2]);
    assert_eq!(numbers(store.blocks_after(1, 10, 1).await.expect("read")), [2], "one block over the budget");
    // A node at the head has no stored block waiting for it.
    assert_eq!(store.lag(3).await.expect("lag"), (3, None));

    // Stored times edited by hand to -infinity or into the future (PostgreSQL takes both):
    // read as very old and as new, never an error or a panic.
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(
            "UPDATE blocks SET stored_at = '-infinity' WHERE number = 2;
             UPDATE blocks SET stored_at = 'infinity' WHERE number = 3",
        )
        .await
        .expect("times edited");
    let rows = store.blocks_after(1, 10, u32::MAX).await.expect("read despite the times");
    assert!(rows[0].age > Duration::from_secs(50 * 365 * 86_400), "-infinity reads as very old: {:?}", rows[0].age);
    assert!(rows[1].age < Duration::from_secs(1), "the future reads as now: {:?}", rows[1].age);
    assert!(store.lag(1).await.expect("lag").1.is_some_and(|age| age > Duration::from_secs(86_400)));
    assert!(matches!(store.lag(2).await.expect("lag"), (3, Some(age)) if age < Duration::from_secs(1)));

    // PostgreSQL restarts: the listener connects again by itself, and hears the next block.
    // (First take the wake-up the last NOTIFYs left, if any: it is not what we wait for.)
    let _ = tokio::time::timeout(Duration::from_millis(100), wake.notified()).await;
    let mut postgres = postgres;
    postgres.restart().await.expect("postgres restarts");
    tokio::time::timeout(Duration::from_secs(60), wake.notified()).await.expect("woken once listening again");
    let appended = common::harness::eventually("a write after the restart", Duration::from_secs(30), || async {
        store.append(&fake_block(4, hash(0x13), hash(0x14)), 1, "a").await.ok()
    });
    let ((), ()) = tokio::join!(appended, async {
        tokio::time::timeout(Duration::from_secs(30), wake.notified())
            .await
            .expect("woken by NOTIFY after the restart");
    });
    cancel.cancel();
    listening.await.expect("listener stops");
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error() {
    let port = common::harness::free_port().expect("port");
    let err = Store::connect(&format!("postgres://tutorial:secret@127.0.0.1:{port}/db"), LEASE).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("cannot use PostgreSQL at postgres://tutorial:***@127.0.0.1"), "{message}");
    assert!(!message.contains("secret"), "no password in messages: {message}");
}

#[tokio::test]
async fn a_leader_paused_inside_a_write_cannot_hold_up_the_next_claim() {
    let postgres = Postgres::start().await.expect("postgres");
    let store = initialised(&postgres).await;
    assert!(store.claim(1, "a").await.expect("claim"));

    // A leader's session, paused between two statements of its write: it holds the
    // fence row's share lock and sends nothing more.
    let (paused, connection) = store.config().connect(tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    paused.batch_execute("BEGIN; SELECT fence_term FROM chain FOR SHARE").await.expect("lock taken");

    // PostgreSQL ends the idle transaction after a lease, and the claim goes through.
    let claimed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(true) = store.claim(2, "b").await {
                return;
            }
        }
    })
    .await;
    assert!(claimed.is_ok(), "the claim went through");
    assert!(paused.batch_execute("COMMIT").await.is_err(), "the paused session was ended");
}

/// A leader's blocks are final once stored, so a commit must survive: PostgreSQL with
/// `synchronous_commit` off, or with a synchronous standby that commits do not wait for,
/// is refused; a server with no synchronous standby is accepted with a warning.
#[tokio::test]
async fn a_store_whose_commits_may_be_lost_is_refused() {
    let postgres = Postgres::start().await.expect("postgres");
    let store = initialised(&postgres).await;
    // (The test server runs with fsync off, for speed.)
    let warning = store.check_durable().await.expect("a single server is accepted");
    assert!(warning.as_ref().is_some_and(|w| w.contains("fsync is off") && w.contains("no synchronous standby")));

    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let set = async |settings: &str| {
        // (One statement at a time: ALTER SYSTEM cannot run in a transaction block.)
        for statement in settings.split(';').chain(["SELECT pg_reload_conf()"]) {
            client.batch_execute(statement).await.expect("settings");
        }
        // A new store: its connections start with the settings as reloaded.
        Store::connect(&postgres.url(), LEASE).await.expect("connects").check_durable().await
    };
    let refused = set("ALTER SYSTEM SET synchronous_commit = off").await.expect_err("refused");
    assert!(refused.to_string().contains("synchronous_commit = off"), "{refused}");
    let refused = set("ALTER SYSTEM SET synchronous_commit = local; ALTER SYSTEM SET synchronous_standby_names = 's1'")
        .await
        .expect_err("refused");
    assert!(refused.to_string().contains("do not wait for them"), "{refused}");
    let accepted = set("ALTER SYSTEM SET synchronous_commit = on").await.expect("accepted");
    assert_eq!(
        accepted.as_deref(),
        Some("fsync is off: a committed block survives a crash of PostgreSQL, not of the machine"),
        "a synchronous standby that commits wait for: only fsync (off on the command line) to warn about"
    );
}

/// Held to the database's clock, the log refuses a block whose timestamp is 30 s past
/// `MAX_CLOCK_SKEW` ahead of it, and takes one at the bound; a node on the same machine's
/// clock passes the check made before it leads.
#[tokio::test]
async fn a_block_ahead_of_the_database_clock_is_refused() {
    let postgres = Postgres::start().await.expect("postgres");
    let store = initialised(&postgres).await.held_to_the_clock();
    store.check_clock().await.expect("our clock is PostgreSQL's");
    assert!(store.claim(1, "a").await.expect("claim"));
    let now = single_node::clock::unix_time().as_secs();
    let skew = MAX_CLOCK_SKEW.as_secs();
    let mut ahead = fake_block(1, hash(1), hash(0x11));
    ahead.execution_payload.payload_inner.payload_inner.timestamp = now + skew + 30;
    let refused = store.append(&ahead, 1, "a").await;
    assert!(matches!(refused, Err(AppendError::AheadOfClock { number: 1, .. })), "{refused:?}");
    // `now` (whole seconds) plus the bound: up to the bound ahead of the database's clock,
    // which reads the time after us.
    let mut at_the_bound = fake_block(1, hash(1), hash(0x11));
    at_the_bound.execution_payload.payload_inner.payload_inner.timestamp = now + skew;
    store.append(&at_the_bound, 1, "a").await.expect("a block at the bound is stored");
}

/// Before a node leads, its clock is compared with PostgreSQL's: off by more than
/// `MAX_CLOCK_SKEW`, either way, it may not lead; off by less, it may; a store not held to
/// the clock does not look. PostgreSQL's clock is the one stepped here (libfaketime), 0.4 s
/// past the bound and 0.4 s short of it. The check allows for half the query's round trip
/// (PostgreSQL read its clock somewhere in it), so a refusal is waited for: a round trip
/// slowed past 0.4 s by a loaded machine may let one try pass, or time out.
#[tokio::test]
async fn a_node_whose_clock_is_off_the_databases_by_more_than_the_bound_may_not_lead() {
    let postgres = Postgres::start_on_own_clock().await.expect("postgres");
    let held = initialised(&postgres).await.held_to_the_clock();
    let unheld = Store::connect(&postgres.url(), LEASE).await.expect("connects");
    let bound = MAX_CLOCK_SKEW.as_secs_f64();
    for (offset, ours) in [(bound + 0.4, "behind"), (-(bound + 0.4), "ahead of")] {
        postgres.set_clock(&format!("{offset:+}")).expect("step the clock");
        let refused =
            eventually(&format!("a clock {offset:+} s off to be refused"), Duration::from_secs(60), || async {
                held.check_clock().await.err().filter(|e| e.to_string().contains("PostgreSQL's, more than the"))
            })
            .await;
        assert!(refused.to_string().contains(&format!("s {ours} PostgreSQL's")), "{refused:#}");
        unheld.check_clock().await.expect("a store not held to the clock does not look");
    }
    for offset in [bound - 0.4, -(bound - 0.4)] {
        postgres.set_clock(&format!("{offset:+}")).expect("step the clock");
        held.check_clock().await.unwrap_or_else(|e| panic!("a clock {offset:+} s off may lead: {e:#}"));
    }
}

/// `--retain-blocks`: a prune keeps the newest blocks, makes the block below them the
/// anchor, and leaves a log that still takes the next block and still refuses a fork; a
/// leader whose term no longer holds the fence drops nothing.
#[tokio::test]
async fn a_prune_keeps_the_window_moves_the_anchor_and_leaves_one_chain() {
    let postgres = Postgres::start().await.expect("postgres");
    let store = initialised(&postgres).await;
    assert!(store.claim(1, "a").await.expect("claim"));
    let at = |n: u64| if n == 0 { ANCHOR.hash } else { B256::from(alloy_primitives::U256::from(1_000 + n)) };
    for n in 1..=300 {
        store.append(&fake_block(n, at(n - 1), at(n)), 1, "a").await.expect("append");
    }

    assert_eq!(store.prune(128, 2).await.expect("prune"), None, "a term that does not hold the fence drops nothing");
    assert_eq!(store.anchor().await.expect("anchor").number, 0);
    assert_eq!(store.prune(128, 1).await.expect("prune"), Some(172));
    let anchor = store.anchor().await.expect("anchor");
    assert_eq!((anchor.number, anchor.hash), (172, at(172)), "the block below the window is the anchor");
    assert_eq!(store.chain().await.expect("chain").expect("a chain").anchor, anchor);
    assert_eq!(store.hash_at(171).await.expect("read"), None, "the blocks below it are gone");
    let rows = store.blocks_after(0, 1_000, u32::MAX).await.expect("rows");
    assert_eq!(rows.iter().map(|r| r.number).collect::<Vec<_>>(), (173..=300).collect::<Vec<_>>());
    assert_eq!(store.prune(128, 1).await.expect("prune"), None, "nothing more to drop");

    let fork = fake_block(173, at(172), B256::repeat_byte(0x77));
    assert!(matches!(store.append(&fork, 1, "a").await, Err(AppendError::Conflict { number: 173, .. })));
    let orphan = fake_block(301, B256::repeat_byte(0x78), at(301));
    assert!(matches!(store.append(&orphan, 1, "a").await, Err(AppendError::Conflict { number: 301, .. })));
    store.append(&fake_block(301, at(300), at(301)), 1, "a").await.expect("the next block");
}
