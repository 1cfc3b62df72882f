//! The binary as a user runs it, and the checks the tests share.

use std::process::Output;

use common::harness::{Geth, genesis_path};

/// Runs the Part 1 binary against `geth` with extra arguments.
pub(crate) async fn run_part1(geth: &Geth, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_engine-api"))
        .args(args)
        .env("ETH_CLIENT_URL", geth.auth_url())
        .env("JWT_SECRET", geth.jwt_path())
        .env("GENESIS", genesis_path())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("engine-api runs")
}

pub(crate) fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}
