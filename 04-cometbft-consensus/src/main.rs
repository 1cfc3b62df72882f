//! The `cometbft-consensus` binary: see the library's documentation for what it does.
//!
//! ```text
//! cargo run -p cometbft-consensus
//! ```

use clap::Parser;
use cometbft_consensus::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::logging::init();
    cometbft_consensus::run(Config::parse(), common::shutdown::signal()).await
}
