//! A real Redis server per test, on a free loopback port, in a temp dir, without
//! persistence: a restart loses every key, as a cache-only Redis does after a crash.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::{die_with_parent, find_program, free_port, log_tail};

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
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Redis {
    /// Starts a fresh Redis and waits until it answers PING.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("redis-test-").tempdir().context("cannot make a temp dir")?;
        let mut redis = Self { child: None, dir, port: free_port()? };
        redis.spawn()?;
        redis.wait_ready().await?;
        Ok(redis)
    }

    /// `127.0.0.1:port`, the form `--redis-addr` takes.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills Redis with SIGKILL, as a crash would; every key is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again, empty, on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_ready().await
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut command = Command::new(redis_binary()?);
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut command);
        self.child = Some(command.spawn().context("cannot start redis-server")?);
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("redis-server exited during start-up ({status}):\n{}", log_tail(&self.log_path(), 2000));
            }
            if ping(self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer within {STARTUP_TIMEOUT:?}:\n{}", log_tail(&self.log_path(), 2000));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- end of redis log ---\n{}", log_tail(&self.log_path(), 2000));
        }
    }
}
