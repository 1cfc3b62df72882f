//! The `cometbft-consensus` binary: the library's documentation (`lib.rs`) says what it does and how
//! to run it.

use clap::Parser;
use cometbft_consensus::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::logging::init();
    cometbft_consensus::run(Config::parse(), common::service::shutdown::signal()).await
}
