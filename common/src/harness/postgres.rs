//! A real PostgreSQL server per test: `initdb` into a temp dir, then `postgres` on a free
//! loopback port with trust authentication for the `postgres` user.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI machines do), the
//! harness runs `initdb` and the server as the `postgres` user Debian's package creates.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::process::{die_with_parent, find_program, free_port, log_tail};

/// How long PostgreSQL may take to accept connections (WAL recovery after a crash included).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding `initdb`, `postgres` and `pg_isready`: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout, which `scripts/setup.sh` installs).
pub fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").is_file())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => find_program("PG_BIN_POSTGRES", "postgres")
            .and_then(|p| p.parent().map(Path::to_owned))
            .context("PostgreSQL not found: run `scripts/setup.sh` (installs postgresql with apt-get), or set PG_BIN"),
    }
}

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

impl Postgres {
    /// Initialises a fresh cluster and starts it; returns once it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = postgres_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("postgres-test-").tempdir().context("cannot make a temp dir")?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        if let Some(user) = run_as() {
            // The server's user must reach and own its data directory.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            std::os::unix::fs::chown(&data, Some(user.0), Some(user.1)).context("cannot chown the data dir")?;
        }
        let output = as_server_user(Command::new(bin.join("initdb")))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .context("cannot run initdb")?;
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let mut postgres = Self { child: None, dir, port: free_port()?, bin };
        postgres.spawn()?;
        postgres.wait_ready().await?;
        Ok(postgres)
    }

    /// A connection URL for the `postgres` database as the `postgres` user.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Kills the server with SIGKILL, as a crash would. Its sessions end with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data and port, after [`Postgres::kill`] or
    /// while running (then it is killed first); it replays its WAL like after a crash.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_ready().await
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut command = as_server_user(Command::new(self.bin.join("postgres")));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            // Tests need no durability against power loss; a killed server still keeps
            // every committed transaction (the OS has the writes).
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut command);
        self.child = Some(command.spawn().context("cannot start postgres")?);
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("postgres exited during start-up ({status}):\n{}", log_tail(&self.log_path(), 3000));
            }
            let ready = tokio::process::Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .status()
                .await
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "postgres did not accept connections within {STARTUP_TIMEOUT:?}:\n{}",
                    log_tail(&self.log_path(), 3000)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- end of postgres log ---\n{}", log_tail(&self.log_path(), 3000));
        }
    }
}

/// The uid and gid of the `postgres` user when we are root (PostgreSQL will not run as
/// root); `None` when we are not, and the server runs as us.
fn run_as() -> Option<(u32, u32)> {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres") && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// `command`, set to drop to the `postgres` user first when we are root.
fn as_server_user(mut command: Command) -> Command {
    if let Some((uid, gid)) = run_as() {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    command
}
