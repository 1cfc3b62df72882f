//! Part 2: a complete single-node sequencer.
//!
//! Part 1 made ten blocks and exited. This step keeps a chain going for as long as it
//! runs, and survives what a real deployment meets:
//!
//! - **timing**: a block per `--block-time`, timestamps never ahead of the wall clock,
//!   and a build deadline inside the slot so pending transactions make it in;
//! - **persistence**: every block is written to an embedded store before Geth makes it
//!   head, so a Geth that lost blocks in a crash gets them replayed;
//! - **faults**: Geth unreachable or restarted, SYNCING, INVALID, each handled on purpose;
//! - **operations**: `/health`, `/ready`, `/metrics`, structured logs, clean shutdown.
//!
//! Layout (this step's own code, and the library Parts 3 and 4 build on):
//! - `main.rs`: parses the flags and runs [`run`] until Ctrl-C or SIGTERM.
//! - `config.rs`: flags and their checks.
//! - `sequencer.rs`: the production loop; `sequencer/recovery.rs` puts Geth back on our
//!   chain after a fault; `sequencer/fast.rs` makes the loop's last steps fast.
//! - `slot.rs`: when the next block is due (pure functions), and the flags that set it.
//! - `round.rs`: the Engine API round of a long-running producer: build, import,
//!   finalize, replay, each with its checks.
//! - `fault.rs`: passing or fatal, what a failed step means for the loop, and the one
//!   retry policy every step uses.
//! - `clock.rs`: the wall clock, sleeps planned again every second, backoff.
//! - `store.rs`: the block store (redb), the write-ahead rule's other half: replaying it
//!   into a Geth that lost blocks.
//! - `server.rs`, `metrics.rs`: what `/ready` and `/metrics` report.
//! - `timing.rs`: where each step's time went, logged for the benchmarks.
//! - Serving the endpoints, the metrics export, shutdown and waiting for Geth at start are
//!   every service's plumbing, in `common::service` (with `common::config::ServiceArgs`).
//!
//! Run it against the local devnet; it makes a block every second until Ctrl-C:
//!
//! ```text
//! scripts/devnet.sh start
//! cargo run -p single-node
//! ```

pub mod clock;
pub mod config;
pub mod fault;
pub mod metrics;
pub mod round;
pub mod sequencer;
pub mod server;
pub mod slot;
pub mod store;
pub mod timing;

use std::sync::Arc;

use anyhow::{Context, bail};
use common::{
    BlockTag, EngineClient, Head,
    service::{http, shutdown, startup},
};
use tracing::info;

use crate::{config::Config, sequencer::Sequencer, server::Status, store::Store};

/// Runs the sequencer until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    // Everything that can be checked without Geth is checked first, so bad input fails
    // before the store is created or touched.
    config.validate()?;
    let status = Arc::new(Status::new(config.stale_after()));
    let observer = status.clone();
    let engine =
        config.el.client()?.with_observer(Arc::new(move |m, t, e| observer.metrics.engine.observe_call(m, t, e)));
    let listener = http::bind(config.service.health_addr).await?;
    config.block.warn_if_back_to_back();

    let cancel = shutdown::cancel_on(shutdown);
    let server = tokio::spawn(http::serve(listener, status.clone(), cancel.clone()));
    info!(addr = %config.service.health_addr, "serving /health, /ready and /metrics");

    startup::wait_for_execution_client(&engine, config.service.el_wait(), &cancel).await?;
    if cancel.is_cancelled() {
        return Ok(());
    }
    let store = Arc::new(Store::open(&config.store_path())?.retaining(config.retain_blocks)?);
    let head = starting_head(&engine, &store).await?;
    info!(number = head.number, hash = %head.hash, "starting from our stored head");
    status.set_head(head);

    let result = Sequencer::new(engine, store, config, status, head).run(&cancel).await;
    cancel.cancel();
    let _ = server.await;
    result
}

/// The head to continue from: the store's, after checking it belongs to Geth's chain; on
/// first start, Geth's current head, recorded as the store's starting point.
async fn starting_head(engine: &EngineClient, store: &Store) -> anyhow::Result<Head> {
    let genesis = engine.block(BlockTag::Number(0)).await?.context("Geth has no genesis block")?;
    store.check_genesis(genesis.hash)?;
    match (store.genesis()?, store.head()?) {
        (Some(_), Some(head)) => Ok(head),
        (None, None) => {
            let head = Head::from(&engine.head().await?);
            store.init(genesis.hash, head)?;
            info!(number = head.number, "new store: continuing Geth's chain from its current head");
            Ok(head)
        }
        _ => bail!("the block store is incomplete (genesis or head missing); delete its directory to start over"),
    }
}
