//! Blocks as a user sees them: on time, with their transactions, and kept across kills.

use std::{path::Path, time::Duration};

use alloy_primitives::{Address, B256, U256};
use common::{
    BlockTag, EngineClient,
    harness::{
        Cast, Geth, default_fee_transfer, dev_signer, eventually, genesis_path, signed_blob_transaction,
        signed_transfer,
    },
};

use crate::support::{
    BLOCKS_TIMEOUT, EXIT_TIMEOUT, Running, Sequencer, free_addr, get, head_at_least, keeps_and_extends, linked_chain,
    running, start, start_with,
};

#[tokio::test]
async fn one_second_blocks_follow_the_wall_clock_and_are_observable() {
    let Running { sequencer, engine, geth, dir: _dir } = running(&[]).await;

    // A user's first transaction, sent with cast's default fees after a few empty blocks
    // (so the fee history it estimates from holds no tips): included, within a few blocks
    // of Geth accepting it (`default_fee_transfer` says how many).
    let before = head_at_least(&engine, 3).await;
    default_fee_transfer(&Cast::new(&geth.http_url()), before.number).await.expect("cast's transfer is included");

    let head = head_at_least(&engine, 8).await;
    let observed_at = common::unix_time().as_secs();
    let chain = linked_chain(&engine, head.number).await;
    for block in &chain {
        assert!(block.timestamp <= observed_at, "block {} is not ahead of the wall clock", block.number);
    }
    for pair in chain[2..].windows(2) {
        assert_eq!(pair[1].timestamp - pair[0].timestamp, 1, "steady 1 s blocks after the first: {pair:?}");
    }

    // At one block a second, a block the sequencer says it produced is Geth's head already:
    // `make_head`'s forkchoiceUpdated comes before the log line (only a block whose
    // successor is due at once is left to that successor's build to make head).
    let (mut checked, mut last) = (0, head.number);
    let deadline = std::time::Instant::now() + BLOCKS_TIMEOUT;
    while checked < 5 {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for five more blocks logged as produced");
        if let Some(number) = last_produced(&sequencer.service.output()).filter(|n| *n > last) {
            let geth = engine.head().await.expect("head").number;
            assert!(geth >= number, "block {number} is logged as produced, but Geth's head is block {geth}");
            (checked, last) = (checked + 1, number);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (code, body) = get(&sequencer, "/ready").await.expect("ready answers");
    assert_eq!((code, body.trim()), (200, "ready"));
    assert_eq!(get(&sequencer, "/health").await.map(|(c, _)| c), Some(200));
    let (_, metrics) = get(&sequencer, "/metrics").await.expect("metrics answer");
    common::harness::check_metrics(&metrics).await.expect("Prometheus's lint passes");
    let head_metric: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sequencer_head_number "))
        .and_then(|v| v.parse().ok())
        .expect("head gauge");
    assert!(head_metric >= 8, "{metrics}");
    for needle in [
        "sequencer_blocks_produced_total",
        "sequencer_engine_api_latency_seconds_count{method=\"engine_newPayloadV4\"}",
        "sequencer_engine_api_latency_seconds_count{method=\"engine_getPayloadV5\"}",
        "sequencer_block_transactions_count",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
}

#[tokio::test]
async fn a_burst_of_200_transfers_is_all_included() {
    let Running { sequencer: _sequencer, engine: _engine, geth, dir: _dir } = running(&[]).await;
    let signer = dev_signer();
    let mut hashes = Vec::new();
    for nonce in 0..200 {
        // Recipients well away from the precompiles at 0x01..0x11 and 0x0100.
        let mut to = [0x42; 20];
        to[19] = u8::try_from(nonce % 250).expect("fits");
        let to = Address::from(to);
        let raw = signed_transfer(&signer, 1337, nonce, to, U256::from(1_000 + nonce));
        hashes.push(geth.send_raw_transaction(&raw).await.expect("Geth accepts the transfer"));
    }
    let mut blocks = std::collections::BTreeSet::new();
    for hash in &hashes {
        let receipt = eventually("a receipt for every transfer", BLOCKS_TIMEOUT, || async {
            geth.receipt(*hash).await.ok().flatten()
        })
        .await;
        assert_eq!(receipt.status.to::<u64>(), 1, "transfer {hash} succeeded");
        blocks.insert(receipt.block_number.to::<u64>());
    }
    let engine = geth.engine();
    let included: usize = transactions_in(&engine, &blocks).await;
    assert_eq!(included, 200, "the blocks holding the burst carry exactly its 200 transactions");
}

async fn transactions_in(engine: &EngineClient, blocks: &std::collections::BTreeSet<u64>) -> usize {
    let mut total = 0;
    for number in blocks {
        total += engine.block(BlockTag::Number(*number)).await.expect("call").expect("block").transactions.len();
    }
    total
}

#[tokio::test]
async fn a_blob_transaction_is_included_and_the_chain_goes_on() {
    let Running { sequencer: _sequencer, engine, geth, dir: _dir } = running(&[]).await;
    head_at_least(&engine, 1).await;

    let (raw, versioned) = signed_blob_transaction(&dev_signer(), 1337, 0, b"a blob for the single-node sequencer")
        .expect("blob transaction builds");
    let hash = geth.send_raw_transaction(&raw).await.expect("Geth accepts the blob transaction");
    let receipt = eventually("the blob transaction's receipt", BLOCKS_TIMEOUT, || async {
        geth.receipt(hash).await.ok().flatten()
    })
    .await;
    assert_eq!(receipt.status.to::<u64>(), 1);
    let included = receipt.block_number.to::<u64>();
    let block: serde_json::Value = geth
        .http()
        .call("eth_getBlockByNumber", serde_json::json!([format!("{included:#x}"), true]), Duration::from_secs(10))
        .await
        .expect("block");
    assert_eq!(block["blobGasUsed"], "0x20000", "one blob's gas");
    let tx = &block["transactions"][0];
    assert_eq!(tx["blobVersionedHashes"], serde_json::json!(versioned));
    head_at_least(&engine, included + 2).await;
}

#[tokio::test]
async fn geth_killed_and_restarted_resumes_without_gap_or_fork() {
    let Running { sequencer, engine, mut geth, dir: _dir } = running(&[]).await;
    let before = head_at_least(&engine, 5).await;
    let produced = linked_chain(&engine, before.number).await;

    geth.kill();
    let (code, body) = eventually("/ready to report the outage", BLOCKS_TIMEOUT, || async {
        get(&sequencer, "/ready").await.filter(|(code, _)| *code == 503)
    })
    .await;
    assert_eq!((code, body.trim()), (503, "execution client unreachable"));

    geth.restart().await.expect("geth restarts on its datadir");
    keeps_and_extends(&engine, &produced, 3).await;
    eventually("/ready again", BLOCKS_TIMEOUT, || async { get(&sequencer, "/ready").await.filter(|(c, _)| *c == 200) })
        .await;
    let (_, metrics) = get(&sequencer, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("sequencer_engine_api_errors_total{method=\"") && metrics.contains("kind=\"transport\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn sequencer_killed_and_restarted_resumes_from_its_head() {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let engine = geth.engine();
    let mut first = start(&geth, &state, &[]);
    head_at_least(&engine, 4).await;
    first.service.kill();
    let stopped = engine.head().await.expect("head");
    let produced = linked_chain(&engine, stopped.number).await;

    let second = start(&geth, &state, &[]);
    keeps_and_extends(&engine, &produced, 3).await;
    assert!(second.service.output().contains("starting from our stored head"), "{}", second.service.output());
    assert!(!second.service.output().contains("new store"), "the store survived the kill");
}

#[tokio::test]
async fn skip_empty_waits_for_a_transaction() {
    let Running { sequencer, engine, geth, dir: _dir } = running(&["--skip-empty", "--max-idle", "3600"]).await;
    eventually("the sequencer to start building", BLOCKS_TIMEOUT, || async {
        sequencer.service.output().contains("starting from our stored head").then_some(())
    })
    .await;
    // An observation window, not a timing assumption: several slots pass with no block.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(engine.head().await.expect("head").number, 0, "no empty blocks while idle");
    }
    let raw = signed_transfer(&dev_signer(), 1337, 0, Address::repeat_byte(5), U256::from(7));
    let hash = geth.send_raw_transaction(&raw).await.expect("accepted");
    let receipt =
        eventually("the transfer's receipt", BLOCKS_TIMEOUT, || async { geth.receipt(hash).await.ok().flatten() })
            .await;
    assert_eq!((receipt.status.to::<u64>(), receipt.block_number.to::<u64>()), (1, 1), "one block, with the transfer");
}

/// Runs the sequencer with bad input; it must exit non-zero with `message` in its output.
async fn refused(mut sequencer: Sequencer, message: &str) -> String {
    let code = sequencer.service.wait_exit(EXIT_TIMEOUT).await;
    let output = sequencer.service.output();
    assert!(code.is_some_and(|c| c != 0), "exit code {code:?}, output:\n{output}");
    assert!(output.contains(message), "expected {message:?} in:\n{output}");
    output
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("store file exists")
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_leaves_the_store_intact() {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let engine = geth.engine();

    // A good run first, stopped with SIGTERM: a clean exit with the head stored.
    let good = start(&geth, &state, &[]);
    head_at_least(&engine, 2).await;
    good.service.signal(libc::SIGTERM);
    let mut good = good;
    assert_eq!(good.service.wait_exit(EXIT_TIMEOUT).await, Some(0), "{}", good.service.output());
    assert!(good.service.output().contains("stopped; head is stored"));
    let store = state.join("sequencer.redb");
    let snapshot = file_bytes(&store);

    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let (url, genesis) = (geth.auth_url(), genesis_path());
    let other_chain = write(
        "genesis-1.json",
        &std::fs::read_to_string(&genesis).expect("read").replacen("\"chainId\": 1337", "\"chainId\": 1", 1),
    );

    refused(
        start_with(url.clone(), dir.path().join("missing.hex"), genesis.clone(), &state, &[]),
        "cannot read JWT secret file",
    )
    .await;
    refused(start_with(url.clone(), write("bad.hex", "not hex at all"), genesis.clone(), &state, &[]), "is not hex")
        .await;
    refused(start_with(url.clone(), write("short.hex", "0x1234"), genesis.clone(), &state, &[]), "holds 2 bytes").await;
    let stranger = write("stranger.hex", &B256::repeat_byte(0x5a).to_string());
    refused(start_with(url.clone(), stranger, genesis.clone(), &state, &[]), "rejected our JWT").await;
    refused(
        start_with(url.clone(), geth.jwt_path(), other_chain, &state, &[]),
        "on chain 1337, but the genesis file says 1",
    )
    .await;
    // A URL with a password in it: the messages say where, never the password.
    let nobody = format!("http://admin:elsecret@{}", free_addr());
    let sequencer = start_with(nobody, geth.jwt_path(), genesis.clone(), &state, &["--el-wait", "2"]);
    let output = refused(sequencer, "did not answer within --el-wait 2s").await;
    assert!(output.contains("http://admin:***@127.0.0.1") && !output.contains("elsecret"), "{output}");
    refused(start(&geth, &state, &["--block-time", "0"]), "--block-time must be at least 1").await;
    refused(start(&geth, &state, &["--build-time-ms", "1000"]), "must be shorter than --block-time").await;
    refused(start(&geth, &state, &["--fee-recipient", "0x12"]), "--fee-recipient").await;
    refused(
        start(&geth, &state, &["--skip-empty", "--max-idle", "1", "--block-time", "2"]),
        "--max-idle must be at least --block-time",
    )
    .await;
    refused(
        start(&geth, &state, &["--retain-blocks", "10"]),
        "--retain-blocks must be 0 (keep every block) or at least 128",
    )
    .await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    refused(start(&geth, &state, &["--health-addr", &busy_addr]), "cannot listen on --health-addr").await;

    assert_eq!(file_bytes(&store), snapshot, "the store is byte-for-byte unchanged");
    let mut resumed = start(&geth, &state, &[]);
    let stopped_at = engine.head().await.expect("head").number;
    head_at_least(&engine, stopped_at + 2).await;

    // A second sequencer on the same --state-dir while the first runs: refused at the
    // store, and the first goes on making blocks.
    refused(start(&geth, &state, &[]), "sequencer.redb is in use by another process").await;
    let refused_at = engine.head().await.expect("head").number;
    head_at_least(&engine, refused_at + 2).await;
    assert_eq!(resumed.service.exited(), None, "the first sequencer still runs:\n{}", resumed.service.output());
}

/// The number of the last block the sequencer's log says it produced.
fn last_produced(output: &str) -> Option<u64> {
    output.lines().rfind(|line| line.contains("block produced")).and_then(|line| {
        let number = line.split_whitespace().find_map(|field| field.strip_prefix("number="))?;
        number.parse().ok()
    })
}
