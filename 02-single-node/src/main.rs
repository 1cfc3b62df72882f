//! The `single-node` binary: see the library's documentation for what it does.
//!
//! ```text
//! cargo run -p single-node
//! ```

use clap::Parser;
use single_node::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::logging::init();
    single_node::run(Config::parse(), shutdown_signal()).await
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM (what `docker stop` and systemd send).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
