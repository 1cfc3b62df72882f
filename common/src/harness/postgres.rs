//! A real PostgreSQL server per test: `initdb` into a temp dir, then `postgres` on a free
//! loopback port with trust authentication for the `postgres` user.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI machines do), the
//! harness runs `initdb` and the server as the `postgres` user Debian's package creates.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail, ensure};

use super::process::{Service, faked_clock, find_program, free_port, run_tool, set_clock, state, wait_stopped};

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
    process: Service,
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    /// The server's environment: a clock of its own, for [`Postgres::start_on_own_clock`].
    env: Vec<(String, String)>,
}

impl Postgres {
    /// Initialises a fresh cluster and starts it; returns once it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(false).await
    }

    /// As [`Postgres::start`], on a wall clock of its own that [`Postgres::set_clock`]
    /// steps (libfaketime): what its clients see of a server whose clock NTP stepped.
    pub async fn start_on_own_clock() -> anyhow::Result<Self> {
        Self::start_with(true).await
    }

    async fn start_with(own_clock: bool) -> anyhow::Result<Self> {
        let bin = postgres_bin_dir()?;
        let (dir, data) = data_dir()?;
        let mut initdb = as_server_user(Command::new(bin.join("initdb")));
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        run_tool(initdb, "initdb")?;
        let process = Service::stopped("postgres", &dir.path().join("postgres.log"));
        // (In the directory the server's user can read, as the data directory's parent.)
        let env = if own_clock { faked_clock(&dir.path().join("clock"))? } else { Vec::new() };
        let mut postgres = Self { process, dir, port: free_port()?, bin, env };
        postgres.spawn_and_wait().await?;
        Ok(postgres)
    }

    /// Sets the clock of a server started [on its own clock](Postgres::start_on_own_clock)
    /// `offset` seconds from the machine's (`+1.4`, `-1.4`, `+0`).
    pub fn set_clock(&self, offset: &str) -> anyhow::Result<()> {
        ensure!(!self.env.is_empty(), "this PostgreSQL runs on the machine's clock: start it on its own");
        set_clock(&self.dir.path().join("clock"), offset)
    }

    /// A streaming replica of `primary`, made as an operator makes one (`pg_basebackup
    /// -R`: a copy of its data, and `standby.signal` with the primary's address), started
    /// on a port of its own; returns once it is replaying the primary's WAL. The primary
    /// then waits for it at every commit (`synchronous_standby_names`), so a block
    /// PostgreSQL says it committed is on both servers.
    pub async fn start_synchronous_standby(primary: &Self) -> anyhow::Result<Self> {
        let bin = primary.bin.clone();
        let (dir, data) = data_dir()?;
        primary.base_backup(&data)?;
        let process = Service::stopped("postgres-standby", &dir.path().join("postgres.log"));
        let mut standby = Self { process, dir, port: free_port()?, bin, env: Vec::new() };
        standby.spawn_and_wait().await?;
        primary.wait_for_synchronous_standby().await?;
        Ok(standby)
    }

    /// Makes this server (a primary that died, say) a synchronous standby of `primary`,
    /// on its own port, as a failover tool rebuilds a lost primary: its data, which may end
    /// in commits no standby confirmed, is replaced by a fresh copy of `primary`'s.
    pub async fn rejoin_as_standby_of(&mut self, primary: &Self) -> anyhow::Result<()> {
        self.kill_all().await;
        let data = self.dir.path().join("data");
        std::fs::remove_dir_all(&data).context("cannot remove the old data")?;
        make_data_dir(self.dir.path(), &data)?;
        primary.base_backup(&data)?;
        self.spawn_and_wait().await?;
        primary.wait_for_synchronous_standby().await
    }

    /// A copy of this server's data in `data`, set to stream from it (`pg_basebackup -R`).
    fn base_backup(&self, data: &Path) -> anyhow::Result<()> {
        let mut backup = as_server_user(Command::new(self.bin.join("pg_basebackup")));
        let port = self.port.to_string();
        backup
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-R", "-X", "stream", "-c", "fast", "-D"])
            .arg(data);
        run_tool(backup, "pg_basebackup").map(drop)
    }

    /// Makes every commit wait for a standby (`synchronous_standby_names`), and returns
    /// once one is streaming synchronously.
    async fn wait_for_synchronous_standby(&self) -> anyhow::Result<()> {
        self.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")?;
        self.psql("SELECT pg_reload_conf()")?;
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        while self.psql("SELECT sync_state FROM pg_stat_replication")?.trim() != "sync" {
            if std::time::Instant::now() > deadline {
                bail!("the standby did not become synchronous within {STARTUP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Promotes this standby to a primary that takes writes, as a failover tool does once
    /// the old primary is gone, and returns once it does. It has no standby of its own,
    /// so its commits wait for no one.
    pub async fn promote(&self) -> anyhow::Result<()> {
        self.psql("SELECT pg_promote(true, 60)")?;
        Ok(())
    }

    /// Runs one SQL statement with `psql`; its output, unaligned, without headers.
    pub fn psql(&self, sql: &str) -> anyhow::Result<String> {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-XAtc", sql]);
        run_tool(psql, &format!("psql {sql:?}"))
    }

    /// A URL that reaches whichever of `servers` takes writes (a primary and its
    /// standby, say), as libpq's multi-host URLs do: tried in order, read-only ones
    /// skipped.
    pub fn read_write_url(servers: &[&Self]) -> String {
        let hosts: Vec<String> = servers.iter().map(|s| s.addr()).collect();
        format!("postgres://postgres@{}/postgres?target_session_attrs=read-write", hosts.join(","))
    }

    /// A connection URL for the `postgres` database as the `postgres` user.
    pub fn url(&self) -> String {
        Self::url_at(&self.addr())
    }

    /// `127.0.0.1:port`, where the server listens.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The URL of the same database reached at `addr` (a proxy in front of the server).
    pub fn url_at(addr: &str) -> String {
        format!("postgres://postgres@{addr}/postgres")
    }

    /// Kills the server with SIGKILL, as a crash would. Its sessions end with it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// If it ended other than by [`Self::kill`]: its exit code (-1 for a signal).
    pub fn exited(&mut self) -> Option<i32> {
        self.process.exited()
    }

    /// The server's log file.
    pub fn log_path(&self) -> &std::path::Path {
        self.process.log_path()
    }

    /// Sends `signal` to the server and every process it started (its sessions, writer,
    /// checkpointer…): SIGSTOP hangs the whole server with its connections open, SIGCONT
    /// lets it go on. SIGSTOP returns once every one of them has stopped.
    pub fn signal(&self, signal: i32) {
        let pids = self.signal_all(signal);
        if signal == libc::SIGSTOP {
            for pid in pids.into_iter().filter_map(|pid| libc::pid_t::try_from(pid).ok()) {
                wait_stopped(pid);
            }
        }
    }

    /// Kills the server and every process it started with SIGKILL, even stopped ones (a
    /// server stopped with SIGSTOP, then lost), and returns once they are gone: whatever
    /// they held in memory, WAL received but not yet written included, is lost.
    pub async fn kill_all(&mut self) {
        let pids = self.signal_all(libc::SIGKILL);
        self.process.kill();
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        let gone = |pid: &u32| state(Path::new(&format!("/proc/{pid}/stat"))).is_none_or(|state| state == "Z");
        while !pids.iter().all(gone) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` to the server and its children; their pids.
    fn signal_all(&self, signal: i32) -> Vec<u32> {
        let Some(pid) = self.process.pid() else { return Vec::new() };
        let mut pids = vec![pid];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                // pid (comm) state ppid …: the parent is the second field after the ")".
                let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
                if parent.and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
                    pids.push(child);
                }
            }
        }
        for &pid in &pids {
            let Ok(pid) = libc::pid_t::try_from(pid) else { continue };
            #[allow(unsafe_code)]
            // SAFETY: kill(2) on a pid has no memory effects.
            unsafe {
                libc::kill(pid, signal);
            }
        }
        pids
    }

    /// Starts the server again on the same data and port, after [`Postgres::kill`] or
    /// while running (then it is killed first); it replays its WAL like after a crash.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn_and_wait().await
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let mut command = as_server_user(Command::new(self.bin.join("postgres")));
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &port, "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            // Tests need no durability against power loss; a killed server still keeps
            // every committed transaction (the OS has the writes).
            .args(["-c", "fsync=off"]);
        self.process.start(command)?;
        let pg_isready = self.bin.join("pg_isready");
        self.process
            .wait_ready(STARTUP_TIMEOUT, || async {
                tokio::process::Command::new(&pg_isready)
                    .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                    .status()
                    .await
                    .is_ok_and(|s| s.success())
            })
            .await
    }
}

/// A temp dir with an empty `data` directory in it that the server's user owns.
fn data_dir() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = super::process::temp_dir("postgres-test-")?;
    let data = dir.path().join("data");
    make_data_dir(dir.path(), &data)?;
    Ok((dir, data))
}

/// Makes `data`, in `dir`, an empty directory that the server's user owns.
fn make_data_dir(dir: &Path, data: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(data)?;
    if let Some(user) = run_as() {
        // The server's user must reach and own its data directory.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(data, Some(user.0), Some(user.1)).context("cannot chown the data dir")?;
    }
    // The server refuses a data directory others can read.
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
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
