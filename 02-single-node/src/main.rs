//! The `single-node` binary: the library's documentation (`lib.rs`) says what it does and how
//! to run it.

use clap::Parser;
use single_node::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::logging::init();
    single_node::run(Config::parse(), common::service::shutdown::signal()).await
}
