//! Bad input: a clear error, and no block.

use common::harness::{Geth, genesis_path};

use crate::support::run_part1;

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
