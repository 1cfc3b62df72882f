//! Part 4: BFT consensus. CometBFT orders the blocks; every validator's Geth runs them.
//!
//! Part 3 had one leader at a time and trusted it: a leader that stores a bad block
//! stores it for everyone. Here a set of validators, each with its own Geth, agree on
//! every block with CometBFT, a BFT consensus engine: a block is final once validators
//! with more than two thirds of the voting power voted for it, which no block gets unless
//! a correct validator executed it on its own Geth and found it valid. Fewer than a third
//! of them can be faulty (down, or lying) and the chain goes on, with immediate finality.
//!
//! This binary is the *ABCI application* each validator runs beside its CometBFT node:
//! - **PrepareProposal**: the proposer asks its Geth for a block and proposes it;
//! - **ProcessProposal**: every validator checks the proposal and executes it on its own
//!   Geth before it votes: VALID accepts, anything else rejects;
//! - **FinalizeBlock** / **Commit**: the decided block is executed, stored, and made head,
//!   safe and finalized on every Geth.
//!
//! Layout:
//! - `main.rs`: parses the flags and runs [`run`] until Ctrl-C or SIGTERM.
//! - `config.rs`: flags and their checks.
//! - `abci.rs`: the ABCI socket server (CometBFT v0.38's wire format).
//! - `app.rs`: the application: each ABCI call and what it does on Geth, and where a block
//!   built ahead waits; `app/proposals.rs` holds the two proposal calls, PrepareProposal
//!   and ProcessProposal, and `app/snapshots.rs` the state-sync calls.
//! - `ahead.rs`: the task that starts the next block's build as soon as a block is
//!   committed.
//! - `proposal.rs`: what a proposal is and the rules it must follow (pure functions).
//! - `server.rs`, `metrics.rs`: what `/ready`, `/metrics` and `/status` report
//!   (`server::lock` is how the crate locks a mutex).
//! - The block store, the Engine API round and the retries are Part 2's
//!   (`single_node::store`, `round`, `fault`); the endpoints' server is `common::service`.
//!
//! `scripts/bft.sh start` runs four validators, each with its Geth, app and CometBFT node.
//! To run one validator's app yourself, stop the script's, take its settings, and start
//! its CometBFT again once the app listens (`scripts/bft.sh node node0 start`, in another
//! terminal, starts only what is not running):
//!
//! ```text
//! scripts/bft.sh start
//! scripts/bft.sh node node0 stop
//! eval "$(scripts/bft.sh env node0)"
//! cargo run -p cometbft-consensus
//! scripts/bft.sh node node0 start     # in a second terminal, once the app listens
//! ```

pub mod abci;
pub mod ahead;
pub mod app;
pub mod config;
pub mod metrics;
pub mod proposal;
pub mod server;

use std::sync::Arc;

use anyhow::Context;
use common::service::{http, shutdown, startup};
use single_node::{fault::retry, store::Store};
use tracing::{info, warn};

use crate::{app::App, config::Config, server::Status};

/// Runs the app until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    config.validate()?;
    let status = Arc::new(Status::new(std::time::Duration::from_secs(config.ready_max_age)));
    let observer = status.clone();
    let engine =
        config.el.client()?.with_observer(Arc::new(move |m, t, e| observer.metrics.engine.observe_call(m, t, e)));
    let cometbft = config.cometbft_client()?;
    let health = http::bind(config.service.health_addr).await?;
    // Listen for CometBFT at once: it connects as it starts, and waits for our answers
    // while Geth is brought to the stored head.
    let abci = tokio::net::TcpListener::bind(config.abci_addr)
        .await
        .with_context(|| format!("cannot listen on --abci-addr {}", config.abci_addr))?;

    let cancel = shutdown::cancel_on(shutdown);
    let server = tokio::spawn(http::serve(health, status.clone(), cancel.clone()));
    info!(addr = %config.service.health_addr, "serving /health, /ready, /metrics and /status");

    startup::wait_for_execution_client(&engine, config.service.el_wait(), &cancel).await?;
    if cancel.is_cancelled() {
        return Ok(());
    }
    let store = Store::open(&config.store_path())?.retaining(config.retain_blocks)?;
    let chain = engine.el_chain().await?;
    store.check_genesis(chain.genesis)?;
    let (app, inbox) = App::new(engine, store, chain, config.clone(), status, cancel.clone())?;
    let app = Arc::new(app);
    if !reconcile(&app, &cancel).await? {
        return Ok(());
    }

    let building_ahead = tokio::spawn(ahead::run(app.clone(), inbox, cometbft, cancel.clone()));
    let settling = tokio::spawn(app.clone().settle(cancel.clone()));
    info!(addr = %config.abci_addr, build_ahead = ?config.build_ahead, "serving ABCI to CometBFT");
    if config.bench_no_hold {
        warn!(
            "--bench-no-hold: proposals are not held for the clock, and this chain's timestamps will run ahead of it (for benchmarks only)"
        );
    }
    abci::serve(abci, app, cancel.clone()).await;
    let _ = tokio::join!(server, building_ahead, settling);
    info!("stopped");
    Ok(())
}

/// Brings Geth to the stored head, waiting for it while it fails; false on shutdown.
async fn reconcile(app: &App, cancel: &tokio_util::sync::CancellationToken) -> anyhow::Result<bool> {
    let done = retry(
        cancel,
        || app.reconcile(),
        |waiting| {
            if waiting.worth_logging() {
                warn!(error = %format!("{:#}", waiting.error), "cannot bring Geth to the stored head yet");
            }
        },
    )
    .await?;
    Ok(done.is_some())
}
