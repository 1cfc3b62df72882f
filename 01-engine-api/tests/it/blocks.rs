//! The blocks Part 1 makes: linked, in time, final, and with the transactions sent.

use std::time::Duration;

use alloy_primitives::{Address, U256};
use common::{
    BlockTag,
    harness::{Cast, Geth, eventually},
};

use crate::support::{run_part1, stdout_lines};

#[tokio::test]
async fn produces_ten_linked_blocks_with_increasing_timestamps() {
    let geth = Geth::start().await.expect("geth starts");
    let engine = geth.engine();
    let start = engine.head().await.expect("head");

    let output = run_part1(&geth, &["--blocks", "10"]).await;
    assert!(output.status.success(), "engine-api failed: {}", String::from_utf8_lossy(&output.stderr));
    let finished_at = common::unix_time().as_secs();

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
