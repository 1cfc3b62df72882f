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
    single_node::run(Config::parse(), common::shutdown::signal()).await
}
