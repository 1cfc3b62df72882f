//! Part 1 against a real Geth: the `engine-api` binary is run as a user runs it, with its
//! environment variables, and the chain is then read back from Geth.

use std::{process::Output, time::Duration};

use alloy_primitives::{Address, U256};
use common::{
    BlockTag,
    harness::{Cast, Geth, eventually, genesis_path},
};

/// Runs the Part 1 binary against `geth` with extra arguments.
async fn run_part1(geth: &Geth, args: &[&str]) -> Output {
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

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn produces_ten_linked_blocks_with_increasing_timestamps() {
    let geth = Geth::start().await.expect("geth starts");
    let engine = geth.engine();
    let start = engine.head().await.expect("head");

    let output = run_part1(&geth, &["--blocks", "10"]).await;
    assert!(output.status.success(), "engine-api failed: {}", String::from_utf8_lossy(&output.stderr));
    let finished_at = common::auth::unix_now();

    let head = engine.head().await.expect("head");
    assert_eq!(head.number, start.number + 10, "head advanced by exactly 10");
    let finalized = engine.block(BlockTag::Finalized).await.expect("finalized").expect("a finalized block");
    assert_eq!(finalized.hash, head.hash, "the last block is final");

    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 10, "one line per block: {lines:?}");
    let mut parent = start;
    for (i, line) in lines.iter().enumerate() {
        let block = engine.block(BlockTag::Number(parent.number + 1)).await.expect("block").expect("exists");
        assert_eq!(block.parent_hash, parent.hash, "block {} builds on its predecessor", block.number);
        assert!(block.timestamp > parent.timestamp, "block {} timestamp increases", block.number);
        assert!(block.timestamp <= finished_at, "block {} is not ahead of the wall clock", block.number);
        let expected = format!("block {} hash {} txs 0 gas_used 0", block.number, block.hash);
        assert_eq!(line, &expected, "line {i} reports the block Geth has");
        parent = block;
    }
}

#[tokio::test]
async fn a_transfer_sent_with_casts_default_fees_is_included_in_the_first_block() {
    let geth = Geth::start().await.expect("geth starts");
    let cast = Cast::new(&geth.http_url());
    let dead: Address = "0x000000000000000000000000000000000000dEaD".parse().expect("address");
    // Part 1 makes blocks only while it runs: send first (cast's default fees), then make
    // two blocks, then read the receipt and the block with cast.
    let hash = cast.send_async(dead, "1ether").await.expect("Geth takes cast's transfer");

    let output = run_part1(&geth, &["--blocks", "2"]).await;
    assert!(output.status.success(), "engine-api failed: {}", String::from_utf8_lossy(&output.stderr));

    // Right after its first blocks Geth may still be indexing transactions, and says so
    // instead of answering: ask again.
    let receipt = eventually("cast receipt", Duration::from_secs(60), || async { cast.receipt(hash).await.ok() }).await;
    assert!(receipt.succeeded(), "{receipt:?}");
    assert_eq!(receipt.block(), 1, "included in the first block, not left for later");
    let block = cast.block(1).await.expect("cast block 1");
    assert_eq!(block["transactions"][0].as_str(), Some(hash.to_string().as_str()));
    assert_eq!(geth.balance(dead).await.expect("balance"), U256::from(10).pow(U256::from(18)));
    let first = stdout_lines(&output).first().cloned().unwrap_or_default();
    assert!(first.starts_with("block 1 ") && first.contains(" txs 1 gas_used 21000"), "{first}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_no_block() {
    let geth = Geth::start().await.expect("geth starts");
    let dir = tempfile::tempdir().expect("temp dir");

    // A secret file that is not 32 bytes of hex.
    let short = dir.path().join("short.hex");
    std::fs::write(&short, "0xabcd\n").expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_engine-api"))
        .env("ETH_CLIENT_URL", geth.auth_url())
        .env("JWT_SECRET", &short)
        .env("GENESIS", genesis_path())
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("holds 2 bytes"), "{stderr}");

    // A genesis for another chain.
    let other = dir.path().join("genesis.json");
    let text =
        std::fs::read_to_string(genesis_path()).expect("genesis").replacen("\"chainId\": 1337", "\"chainId\": 1", 1);
    std::fs::write(&other, text).expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_engine-api"))
        .env("ETH_CLIENT_URL", geth.auth_url())
        .env("JWT_SECRET", geth.jwt_path())
        .env("GENESIS", &other)
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("on chain 1337, but the genesis file says 1"), "{stderr}");

    // A block count of zero is refused by the flag parser.
    let output = run_part1(&geth, &["--blocks", "0"]).await;
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("--blocks"));

    assert_eq!(geth.engine().head().await.expect("head").number, 0, "nothing was produced");
}
