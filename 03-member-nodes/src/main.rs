//! The `member-nodes` binary: see the library's documentation for what it does.
//!
//! ```text
//! cargo run -p member-nodes -- --mode leader --instance-id node1
//! ```

use clap::Parser;
use member_nodes::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::logging::init();
    member_nodes::run(Config::parse(), common::shutdown::signal()).await
}
