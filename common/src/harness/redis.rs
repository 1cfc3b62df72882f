//! A real Redis server per test, on a free loopback port, in a temp dir, without
//! persistence: a restart loses every key, as a cache-only Redis does after a crash.

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
}

impl Redis {
    /// Starts a fresh Redis and waits until it answers PING.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = super::process::temp_dir("redis-test-")?;
        let process = Service::stopped("redis", &dir.path().join("redis.log"));
        let mut redis = Self { process, dir, port: free_port()? };
        redis.spawn_and_wait().await?;
        Ok(redis)
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
