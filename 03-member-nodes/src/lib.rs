//! Part 3: a highly available cluster. One leader produces, every node replays.
//!
//! Part 2 was one process with its own store: if it stops, the chain stops. This step
//! runs several nodes, each with its own Geth, on two well-known engines:
//!
//! - **Redis** holds the *leader lease*. Leader candidates (`--mode leader`) take it in
//!   turn; each lease comes with a *term* that only grows.
//! - **PostgreSQL** holds the *block log*. The leader stores each block there before any
//!   Geth makes it head (Part 2's write-ahead rule), in a transaction that checks its term
//!   against the store's *fence*. A leader whose lease ran out cannot store anything.
//! - **Members** (`--mode member`) replay the log into their own Geth: notified by
//!   `LISTEN`/`NOTIFY`, each block checked before Geth sees it. Candidates do the same
//!   until they lead, so a new leader starts from the stored head: no fork, no gap.
//!
//! Layout:
//! - `main.rs`: parses the flags and runs [`run`] until Ctrl-C or SIGTERM.
//! - `config.rs`: flags and their checks.
//! - `node.rs`: a node's life: follow, and (candidates) take the lease and lead;
//!   `step_down.rs`: every reason a leader stops.
//! - `election.rs`: the Redis lease and its terms.
//! - `block_log.rs`: the PostgreSQL block log and its fence; `block_log/row.rs` checks a stored
//!   row, `block_log/listen.rs` hears of new ones, `block_log/migrate.rs` applies the schema.
//! - `follower.rs`: replaying the log into this node's Geth.
//! - `sequencer.rs`: the leader's production loop (Part 2's, with the lease and fence);
//!   `sequencer/recovery.rs`: a new leader catching up with the log.
//! - `server.rs`, `metrics.rs`: what `/ready`, `/metrics` and `/status` report.
//!
//! `scripts/cluster.sh start` runs a cluster of three nodes (two candidates and a member)
//! with their Geths, Redis and PostgreSQL. To run one of its nodes yourself, stop the
//! script's process for it and take its settings:
//!
//! ```text
//! scripts/cluster.sh start
//! scripts/cluster.sh node node3 stop
//! eval "$(scripts/cluster.sh env node3)"
//! cargo run -p member-nodes
//! ```

pub mod block_log;
pub mod config;
pub mod election;
pub mod follower;
pub mod metrics;
pub mod node;
pub mod sequencer;
pub mod server;
pub mod step_down;

use std::sync::Arc;

use anyhow::Context;
use common::service::{http, shutdown, startup};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::{
    block_log::Store,
    config::{Config, Mode},
    election::{Election, LeaseTiming},
    node::Node,
    server::Status,
};

/// Runs the node until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    // Everything that can be checked without a server first; then the servers that must
    // be there (PostgreSQL, Redis) fail at once, naming their flag; Geth is waited for.
    config.validate()?;
    let status = Arc::new(Status::new(&config.instance_id, config.mode, config.ready_max_lag));
    let observer = status.clone();
    let engine =
        config.el.client()?.with_observer(Arc::new(move |m, t, e| observer.metrics.engine.observe_call(m, t, e)));
    let listener = http::bind(config.service.health_addr).await?;
    let store = Store::connect(&config.postgres_url, config.lease()).await?;
    let store = if config.block.back_to_back { store } else { store.held_to_the_clock() };
    if config.mode == Mode::Leader {
        // Only a leader writes; its writes must survive.
        match store.check_durable().await.context("a leader's blocks must be durable in PostgreSQL")? {
            Some(warning) => warn!("{warning}"),
            None => info!("PostgreSQL commits each block to disk and to a synchronous standby"),
        }
    }
    let election = match config.mode {
        Mode::Leader => Some(
            Election::connect(&config.redis_url(), &config.instance_id, LeaseTiming { lease: config.lease() }).await?,
        ),
        Mode::Member => None,
    };
    config.block.warn_if_back_to_back();

    let cancel = shutdown::cancel_on(shutdown);
    let server = tokio::spawn(http::serve(listener, status.clone(), cancel.clone()));
    info!(addr = %config.service.health_addr, mode = ?config.mode, instance = %config.instance_id, "serving /health, /ready, /metrics and /status");

    startup::wait_for_execution_client(&engine, config.service.el_wait(), &cancel).await?;
    let wake = Arc::new(Notify::new());
    let listening = tokio::spawn(block_log::listen(store.config().clone(), wake.clone(), cancel.clone()));

    let node = Node { engine: Arc::new(engine), store, election, config, status, wake };
    let result = node.run(&cancel).await;
    cancel.cancel();
    let _ = tokio::join!(server, listening);
    if result.is_ok() {
        info!("stopped");
    }
    result
}
