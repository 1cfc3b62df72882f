//! The `member-nodes` binary: the library's documentation (`lib.rs`) says what it does and how
//! to run it.

use clap::Parser;
use member_nodes::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::logging::init();
    member_nodes::run(Config::parse(), common::service::shutdown::signal()).await
}
