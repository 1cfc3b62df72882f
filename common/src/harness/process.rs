//! Processes under test, and waiting for conditions.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

/// Polls `check` every 200 ms until it returns `Some`, and returns that value. Panics with
/// `what` if `timeout` passes first. Tests wait for conditions, never for fixed times.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A process under test, ours (a sequencer, a leader, a member) or a server (Geth,
/// Redis, PostgreSQL): its output is appended to a log file, it can be killed and started
/// again, and it is killed on drop. On a panicking test the end of its log is printed.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// Starts `command` with its stdout and stderr appended to `log`.
    pub fn spawn(name: &str, command: Command, log: &Path) -> anyhow::Result<Self> {
        let mut service = Self::stopped(name, log);
        service.start(command)?;
        Ok(service)
    }

    /// A service that is not running yet; [`Service::start`] runs it.
    pub fn stopped(name: &str, log: &Path) -> Self {
        Self { name: name.to_owned(), child: None, log: log.to_owned() }
    }

    /// Runs `command` (killing the current process first, if any), appending to the log.
    pub fn start(&mut self, mut command: Command) -> anyhow::Result<()> {
        self.kill();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        die_with_parent(&mut command);
        self.child = Some(command.spawn().with_context(|| format!("cannot start {}", self.name))?);
        Ok(())
    }

    /// Polls `ready` until it is true. Fails, with the end of the log, if the process
    /// exits first or `timeout` passes.
    pub async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut ready: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                anyhow::bail!(
                    "{} exited during start-up ({status}); its log ends with:\n{}",
                    self.name,
                    self.log_tail(4000)
                );
            }
            if ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} was not ready within {timeout:?}; its log ends with:\n{}",
                    self.name,
                    self.log_tail(4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal (`libc::SIGTERM`, `SIGSTOP`, `SIGCONT`, …). `SIGSTOP` returns once
    /// every thread of the process has stopped: the kernel stops them one at a time, each
    /// when it next runs, and on a busy machine a thread not yet stopped (Geth's HTTP
    /// server, say) can still answer a request a millisecond after kill(2) returned.
    pub fn signal(&self, signal: i32) {
        let Some(pid) = self.child.as_ref().and_then(|c| libc::pid_t::try_from(c.id()).ok()) else { return };
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(pid, signal);
        }
        if signal == libc::SIGSTOP {
            wait_stopped(pid);
        }
    }

    /// SIGKILL, as a crash would, and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// If the process has ended (by itself or a signal): its exit code (-1 for a signal).
    /// `None` while it runs, or if it was never started or was killed by [`Service::kill`].
    pub fn exited(&mut self) -> Option<i32> {
        let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())?;
        Some(status.code().unwrap_or(-1))
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Everything the process has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `bytes` of the log.
    pub fn log_tail(&self, bytes: u64) -> String {
        log_tail(&self.log, bytes)
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- end of {} output ({}) ---\n{}", self.name, self.log.display(), self.log_tail(4000));
        }
    }
}

/// A program `scripts/setup.sh` installs in `.tools/bin`: `$var` if set, else
/// `.tools/bin/name`. A missing binary is a set-up failure that says how to install it,
/// never a reason to skip a test.
pub(crate) fn tool_binary(var: &str, name: &str, what: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| super::workspace_root().join(".tools/bin").join(name));
    if !path.is_file() {
        anyhow::bail!(
            "{what} not found at {}: run `scripts/setup.sh` (installs the pinned {what}), or set {var}",
            path.display()
        );
    }
    Ok(path)
}

/// Debian's libfaketime (package `faketime`, which `scripts/setup.sh` installs): preloaded
/// into one of our processes, it shows that process a wall clock the test steps (see
/// `FAKETIME_TIMESTAMP_FILE` in faketime(1)). `$FAKETIME_LIB` overrides where it is.
pub fn faketime_library() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FAKETIME_LIB") {
        return Ok(PathBuf::from(path));
    }
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.is_file())
        .context(
            "libfaketime not found: run `scripts/setup.sh services` (installs Debian's faketime), or set FAKETIME_LIB",
        )
}

/// Sets the clock in `file` to `offset` from the machine's (`+45`, `-1.4`, `+0`, in
/// seconds), whole, at once: libfaketime reads the file at every clock read, and a
/// half-written file would be a third clock.
pub fn set_clock(file: &Path, offset: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let next = file.with_extension("next");
    std::fs::write(&next, offset).with_context(|| format!("cannot write {}", next.display()))?;
    // Readable by a server run as another user (PostgreSQL, when the tests run as root),
    // whatever the umask.
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&next, file).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}

/// The environment that runs a process on the clock in `file`, set to the machine's time
/// first: its wall clock is what [`set_clock`] makes it, its timers (the monotonic clock)
/// run on.
pub fn faked_clock(file: &Path) -> anyhow::Result<Vec<(String, String)>> {
    set_clock(file, "+0")?;
    let library = faketime_library()?;
    Ok(vec![
        ("LD_PRELOAD".into(), library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}

/// A program from the environment variable `var` if set, else `name` on the `PATH`.
pub(crate) fn find_program(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The last `bytes` of a log file (empty if there is none yet).
fn log_tail(path: &Path, bytes: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Where [`free_port`] looks: below Linux's ephemeral range (`ip_local_port_range`,
/// 32768-60999 by default). A port from that range can be taken as the source port of any
/// outgoing connection (a CometBFT node dialling its peers, a client calling Geth) between
/// the moment we find it free and the moment the server binds it; a port below it cannot.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that was free a moment ago, and that this process has not handed out before.
/// Chosen at random below the ephemeral range (see [`PORTS`]), so the only way to lose it
/// before the server binds it is another program choosing the same port in that moment.
pub fn free_port() -> anyhow::Result<u16> {
    use std::{
        collections::HashSet,
        sync::{Mutex, PoisonError},
    };
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let span = u64::from(PORTS.end - PORTS.start);
    let mut seed = u64::from_le_bytes(alloy_primitives::B256::random().0[..8].try_into().expect("8 bytes"));
    for _ in 0..1000 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let port = PORTS.start + u16::try_from((seed >> 33) % span).expect("below the span");
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    anyhow::bail!("cannot find a free port in {PORTS:?}")
}

/// Asks Linux to SIGKILL the child when the test process dies, so a test killed by a
/// timeout never leaves a Geth behind. Linux ties this to the spawning *thread*: spawn from
/// the test's own thread or a runtime worker, not from a short-lived blocking-pool thread.
pub(crate) fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // Every test that starts a real component comes through here.
    fail_fast_if_asked();
    #[allow(unsafe_code)]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The temporary directories of the servers this test binary started, for the fail-fast
/// exit to remove ([`fail_fast_if_asked`]).
static TEMP_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A temporary directory named `prefix…` for a server's data and logs, removed when
/// dropped, or by the fail-fast exit.
pub(crate) fn temp_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().context("cannot make a temp dir")?;
    TEMP_DIRS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(dir.path().to_owned());
    Ok(dir)
}

/// With `TEST_FAIL_FAST=1` in the environment, the first test that fails ends its whole
/// test binary at once (exit code 101), instead of leaving every other test to run on to
/// its own timeouts. Mutation testing sets it (`scripts/mutants.sh`): a mutant that stops
/// production would otherwise make each test of a suite wait out its bound, minutes per
/// mutant. The servers and programs the harness started die with the binary
/// ([`die_with_parent`]), and their temporary directories are removed first: without
/// that, a mutation run left gigabytes of Geth datadirs behind per caught mutant, and
/// filled the disk.
fn fail_fast_if_asked() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if std::env::var_os("TEST_FAIL_FAST").is_some_and(|v| v == "1") {
            let report = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                report(info);
                eprintln!("TEST_FAIL_FAST: a test failed; ending the test binary without the other tests");
                for dir in TEMP_DIRS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
                    let _ = std::fs::remove_dir_all(dir);
                }
                std::process::exit(101);
            }));
        }
    });
}

/// GETs `url` (`http://host:port/path`): the status code and body, or `None` if nothing
/// answered within five seconds.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    http_request("GET", url, None).await
}

/// Sends `method` to `url` with an optional JSON `body`: the status code and body, or
/// `None` if nothing answered within five seconds.
pub async fn http_request(method: &str, url: &str, body: Option<String>) -> Option<(u16, String)> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
        .ok()?;
    let fetch = async {
        let response = client.request(request).await.ok()?;
        let code = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((code, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), fetch).await.ok().flatten()
}

/// Runs `command` (the program `what`) to its end; an error with its stderr if it fails.
pub(crate) fn run_tool(mut command: std::process::Command, what: &str) -> anyhow::Result<String> {
    let output = command.output().with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        anyhow::bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Returns once every thread of process `pid` is stopped (or gone), after a SIGSTOP. It
/// blocks the calling thread, for the millisecond or so this takes, so the signal's sender
/// sees the process stopped when the call returns.
pub(crate) fn wait_stopped(pid: libc::pid_t) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !all_threads_stopped(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not stop within 10 s of SIGSTOP");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether every thread of process `pid` is stopped (or gone).
fn all_threads_stopped(pid: libc::pid_t) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    tasks.flatten().all(|task| {
        state(&task.path().join("stat")).is_none_or(|state| matches!(state.as_str(), "T" | "t" | "Z" | "X"))
    })
}

/// The state letter (`R`, `S`, `T`, `Z`, …) in a process's or thread's `/proc/…/stat`, or
/// `None` if it is gone.
pub(crate) fn state(stat: &Path) -> Option<String> {
    let stat = std::fs::read_to_string(stat).ok()?;
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).map(str::to_owned)
}
