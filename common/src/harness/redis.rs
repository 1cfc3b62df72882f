//! A real Redis server per test, on a free loopback port, in a temp dir, without
//! persistence: a restart loses every key, as a cache-only Redis does after a crash. Or a
//! replicated one: a primary, a replica and three Sentinels that fail over between them.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::{Service, find_program, free_port};

/// How long Redis may take to answer PING.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `$REDIS_SERVER`, else `redis-server` on the PATH (Debian's package, which
/// `scripts/setup.sh` installs).
pub fn redis_binary() -> anyhow::Result<PathBuf> {
    find_program("REDIS_SERVER", "redis-server")
        .context("Redis not found: run `scripts/setup.sh` (installs redis-server with apt-get), or set REDIS_SERVER")
}

/// A running Redis.
#[derive(Debug)]
pub struct Redis {
    process: Service,
    dir: tempfile::TempDir,
    port: u16,
    /// The port of the primary it replicates, for a replica.
    primary: Option<u16>,
}

impl Redis {
    /// Starts a fresh Redis and waits until it answers PING.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = super::process::temp_dir("redis-test-")?;
        let process = Service::stopped("redis", &dir.path().join("redis.log"));
        let mut redis = Self { process, dir, port: free_port()?, primary: None };
        redis.spawn_and_wait().await?;
        Ok(redis)
    }

    /// Starts a replica of the primary at `127.0.0.1:primary` (the primary itself, or a
    /// proxy in front of it) and waits until it is in step with it.
    pub async fn start_replica(primary: u16) -> anyhow::Result<Self> {
        let dir = super::process::temp_dir("redis-test-")?;
        let process = Service::stopped("redis-replica", &dir.path().join("redis.log"));
        let mut redis = Self { process, dir, port: free_port()?, primary: Some(primary) };
        redis.spawn_and_wait().await?;
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        while !cli(redis.port, &["INFO", "replication"])?.contains("master_link_status:up") {
            anyhow::ensure!(std::time::Instant::now() < deadline, "the replica did not reach its primary");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(redis)
    }

    /// Runs one command with `redis-cli`; its answer.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        cli(self.port, args)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, the form `--redis-addr` takes.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills Redis with SIGKILL, as a crash would; every key is gone.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The server's log file.
    pub fn log_path(&self) -> &std::path::Path {
        self.process.log_path()
    }

    /// Sends `signal` to Redis: SIGSTOP leaves every connection open and unanswered, as a
    /// hung server does; SIGCONT lets it go on.
    pub fn signal(&self, signal: i32) {
        self.process.signal(signal);
    }

    /// If it ended other than by [`Self::kill`]: its exit code (-1 for a signal).
    pub fn exited(&mut self) -> Option<i32> {
        self.process.exited()
    }

    /// Starts Redis again, empty, on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn_and_wait().await
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(redis_binary()?);
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(primary) = self.primary {
            command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        self.process.start(command)?;
        let port = self.port;
        self.process.wait_ready(STARTUP_TIMEOUT, || ping(port)).await
    }
}

/// True if a Redis on `port` answers PING with PONG.
async fn ping(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0_u8; 7];
    matches!(tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut answer)).await, Ok(Ok(_)))
        && &answer == b"+PONG\r\n"
}

/// The name the Sentinels know the primary by.
const SENTINEL_SERVICE: &str = "lease";

/// What makes a Redis primary no single point of failure, as an operator runs it: a
/// replica, and three Sentinels that watch the primary and, once two of them agree it is down,
/// promote the replica. Clients ask the Sentinels where the primary is.
#[derive(Debug)]
pub struct RedisSentinels {
    /// The primary's replica.
    pub replica: Redis,
    sentinels: Vec<(Service, u16)>,
    _dir: tempfile::TempDir,
}

impl RedisSentinels {
    /// Starts a replica of `primary` and three Sentinels watching it, and waits until each
    /// Sentinel knows the replica and the other two.
    pub async fn start(primary: &Redis) -> anyhow::Result<Self> {
        let replica = Redis::start_replica(primary.port).await?;
        let dir = super::process::temp_dir("redis-sentinel-")?;
        let mut sentinels = Vec::new();
        for k in 0..3 {
            let port = free_port()?;
            let conf = dir.path().join(format!("sentinel{k}.conf"));
            // Down after 2 s without an answer, as `scripts/cluster.sh start --ha` and
            // compose's `ha` profile run them, so that the bench measures the devnet's
            // failover; the failover itself is quick on one machine. (The Sentinels rewrite
            // this file as they learn.)
            std::fs::write(
                &conf,
                format!(
                    "bind 127.0.0.1\nport {port}\nsentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_SERVICE} 2000\n\
                     sentinel failover-timeout {SENTINEL_SERVICE} 10000\n",
                    primary.port
                ),
            )?;
            let mut process = Service::stopped(&format!("sentinel{k}"), &dir.path().join(format!("sentinel{k}.log")));
            let mut command = Command::new(redis_binary()?);
            command.arg(&conf).arg("--sentinel");
            process.start(command)?;
            process.wait_ready(STARTUP_TIMEOUT, || ping(port)).await?;
            sentinels.push((process, port));
        }
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        for (_, port) in &sentinels {
            loop {
                let replicas = cli(*port, &["SENTINEL", "REPLICAS", SENTINEL_SERVICE])?;
                let others = cli(*port, &["SENTINEL", "SENTINELS", SENTINEL_SERVICE])?;
                let known = others.lines().filter(|l| *l == "runid").count();
                if replicas.contains(&replica.port.to_string()) && known == 2 {
                    break;
                }
                anyhow::ensure!(std::time::Instant::now() < deadline, "the Sentinels did not find each other");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(Self { replica, sentinels, _dir: dir })
    }

    /// The URL a client takes: the Sentinels to ask, and the service.
    pub fn url(&self) -> String {
        let ports: Vec<u16> = self.sentinels.iter().map(|(_, p)| *p).collect();
        let others: Vec<String> = ports[1..].iter().map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={SENTINEL_SERVICE}&{}", ports[0], others.join("&"))
    }

    /// Where the Sentinels say the primary is now, `127.0.0.1:port`.
    pub fn primary_addr(&self) -> anyhow::Result<String> {
        let answer = cli(self.sentinels[0].1, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE])?;
        let mut lines = answer.lines();
        Ok(format!("{}:{}", lines.next().unwrap_or_default(), lines.next().unwrap_or_default()))
    }
}

/// `redis-cli -p port args…`: its answer, one value a line.
fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .context("cannot run redis-cli")?;
    anyhow::ensure!(output.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
