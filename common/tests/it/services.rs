//! The Redis and PostgreSQL harness: real servers that start, answer, restart and clean up.

use std::time::Duration;

use common::harness::{Postgres, Redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one inline command to Redis at `addr` and returns the first line of the answer.
async fn redis_command(addr: &str, command: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("{command}\r\n").as_bytes()).await?;
    let mut buffer = vec![0_u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await??;
    Ok(String::from_utf8_lossy(&buffer[..n]).lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn redis_starts_loses_its_keys_on_restart_and_stops_on_drop() {
    let mut redis = Redis::start().await.expect("redis starts");
    let addr = redis.addr();
    assert_eq!(redis_command(&addr, "SET k v").await.expect("set"), "+OK");
    redis.restart().await.expect("restarts on the same port");
    assert_eq!(redis_command(&addr, "GET k").await.expect("get"), "$-1", "no persistence: the key is gone");
    drop(redis);
    assert!(redis_command(&addr, "PING").await.is_err(), "stopped on drop");
}

#[tokio::test]
async fn postgres_starts_keeps_committed_data_across_a_kill_and_stops_on_drop() {
    let mut postgres = Postgres::start().await.expect("postgres starts");
    let url = postgres.url();
    let port = url.rsplit(':').next().and_then(|s| s.split('/').next()).expect("port").to_owned();
    let psql = |sql: &str| {
        let bin = common::harness::postgres_bin_dir().expect("bin dir").join("psql");
        std::process::Command::new(bin)
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-At", "-c", sql])
            .output()
            .expect("psql runs")
    };
    assert!(psql("CREATE TABLE t (x int); INSERT INTO t VALUES (42);").status.success());
    postgres.kill();
    assert!(!psql("SELECT 1").status.success(), "down after the kill");
    postgres.restart().await.expect("restarts, with WAL recovery");
    assert_eq!(String::from_utf8_lossy(&psql("SELECT x FROM t").stdout).trim(), "42");
    drop(postgres);
    assert!(!psql("SELECT 1").status.success(), "stopped on drop");
}
