//! The processes under measurement: the release binaries of the steps, their peak memory,
//! and the structured log lines they write.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;
use common::harness::{Geth, GethOptions, Service, http_get, release_binary};

/// Starts release binary `name` with `args` and environment `env`, logging to `dir`.
pub(crate) fn spawn(
    name: &str,
    label: &str,
    args: &[&str],
    env: &[(&str, String)],
    dir: &Path,
) -> anyhow::Result<Service> {
    let mut command = Command::new(release_binary(name)?);
    command.args(args).env("RUST_LOG", "info");
    for (key, value) in env {
        command.env(key, value);
    }
    Service::spawn(label, command, &dir.join(format!("{label}.log")))
}

/// Part 2's `single-node` on `geth` with `args`, its store in `dir`.
pub(crate) fn single_node(geth: &common::harness::Geth, args: &[&str], dir: &Path) -> anyhow::Result<Service> {
    single_node_as("single-node", geth, args, dir)
}

/// [`single_node`], logging to `dir/label.log`: a sequencer started again on the same
/// store keeps the log of each run.
pub(crate) fn single_node_as(
    label: &str,
    geth: &common::harness::Geth,
    args: &[&str],
    dir: &Path,
) -> anyhow::Result<Service> {
    let env = [
        ("ETH_CLIENT_URL", geth.auth_url()),
        ("JWT_SECRET", geth.jwt_path().display().to_string()),
        ("GENESIS", geth.genesis().display().to_string()),
        ("STATE_DIR", dir.join("state").display().to_string()),
        ("HEALTH_ADDR", format!("127.0.0.1:{}", common::harness::free_port()?)),
    ];
    spawn("single-node", label, args, &env, dir)
}

/// `target/bench-logs/SCENARIO/`, made if missing: what a scenario keeps beyond its run
/// (logs, profiles, blocks), since what a figure does not say, they may.
pub(crate) fn kept_dir(scenario: &str) -> anyhow::Result<PathBuf> {
    let kept = common::harness::workspace_root().join("target/bench-logs").join(scenario);
    std::fs::create_dir_all(&kept)?;
    Ok(kept)
}

/// Copies every log in `dir` (the processes [`spawn`] started there) to
/// [`kept_dir`]`(scenario)`, and returns that directory.
pub(crate) fn keep_logs(dir: &Path, scenario: &str) -> anyhow::Result<PathBuf> {
    let kept = kept_dir(scenario)?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            std::fs::copy(&path, kept.join(entry.file_name()))?;
        }
    }
    tracing::info!(dir = %kept.display(), "the logs are kept");
    Ok(kept)
}

/// The process's peak resident memory so far (VmHWM), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// The value of `key` in a `tracing` log line (`… key=value …`).
pub(crate) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// The lines of `output` that carry `message`.
pub(crate) fn lines_with<'a>(output: &'a str, message: &'a str) -> impl Iterator<Item = &'a str> {
    output.lines().filter(move |line| line.contains(message))
}

/// Seconds since the Unix epoch of a `tracing` log line's leading timestamp
/// (`2026-11-23T10:34:02.394668Z`).
pub(crate) fn line_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut ymd = date.split('-').map(str::parse::<i64>);
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let mut hms = time.split(':');
    let (h, min): (i64, i64) = (hms.next()?.parse().ok()?, hms.next()?.parse().ok()?);
    let sec: f64 = hms.next()?.parse().ok()?;
    // Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

/// Peak memory of a CL process, for the memory table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Memory {
    /// Which process, under which load.
    pub(crate) process: String,
    /// Peak resident set, MiB.
    pub(crate) peak_mib: f64,
}

/// Records `service`'s peak memory as `process`, if it still runs.
pub(crate) fn memory_of(service: &Service, process: &str) -> Option<Memory> {
    let kib = peak_rss_kib(service.pid()?)?;
    Some(Memory { process: process.to_owned(), peak_mib: kib as f64 / 1024.0 })
}

/// CPU time a process has used so far (user and system), from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are space-separated.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / CLOCK_TICKS)
}

/// Starts a fresh Geth, and returns once its start-up work is done. Geth answers JSON-RPC
/// about 0.3 s after it starts, but goes on initialising its KZG library for about 2 s more
/// on one core (`cmd/utils/flags.go` starts that in the background): on a two-core
/// machine, half the machine taken from the first blocks a scenario times.
pub(crate) async fn fresh_geth(options: GethOptions) -> anyhow::Result<Geth> {
    let geth = Geth::start_with(options).await?;
    let pid = geth.pid().context("a Geth just started has no pid")?;
    wait_until_idle(pid, std::time::Duration::from_secs(60)).await.context("a fresh Geth")?;
    Ok(geth)
}

/// Waits until process `pid` has used less than a tenth of a core over each of two half
/// seconds in a row (one quiet half second may fall between two bursts of work), for at
/// most `within`.
async fn wait_until_idle(pid: u32, within: std::time::Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    let spent = || cpu_seconds(pid).with_context(|| format!("process {pid} is gone"));
    let (mut before, mut quiet) = (spent()?, 0);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = spent()?;
        quiet = if now - before < 0.05 { quiet + 1 } else { 0 };
        if quiet == 2 {
            return Ok(());
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "process {pid} was still busy after {within:?}");
        before = now;
    }
}

/// Linux's `USER_HZ`, the unit of `/proc/PID/stat`'s CPU times: 100 on every architecture
/// Linux runs on today.
const CLOCK_TICKS: f64 = 100.0;

/// The `/metrics` page at `addr`, or `None` if it cannot be read.
pub(crate) async fn metrics(addr: &str) -> Option<String> {
    http_get(&format!("http://{addr}/metrics")).await.map(|(_, page)| page)
}

/// A sample of a `/metrics` page: the line that starts with `name` (labels included, as
/// `name{label="value"}`), or `None` if there is none.
pub(crate) fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_tracing_lines() {
        let line = "2026-11-23T10:00:00Z  INFO single_node::sequencer: block produced number=7 hash=0xab txs=0 engine_us=812 overhead_us=95";
        assert_eq!(field(line, "engine_us"), Some("812"));
        assert_eq!(field(line, "overhead_us"), Some("95"));
        assert_eq!(field(line, "missing"), None);
        assert_eq!(lines_with(line, "block produced").count(), 1);
    }

    /// Work done on a CPU shows up in the reading, and in seconds: never more CPU time than
    /// the wall-clock time that passed on every core (a wrong tick rate would break that
    /// by a factor of ten or more).
    #[test]
    fn cpu_time_grows_with_work_and_in_seconds() {
        let pid = std::process::id();
        let started = std::time::Instant::now();
        let before = cpu_seconds(pid).expect("our own /proc entry");
        let mut spin = 0_u64;
        let after = loop {
            for i in 0..1_000_000_u64 {
                spin = std::hint::black_box(spin.wrapping_add(i));
            }
            let now = cpu_seconds(pid).expect("our own /proc entry");
            if now > before {
                break now;
            }
            // Generous: the machine may be busy, but a spinning thread gets a tick soon.
            assert!(started.elapsed().as_secs() < 60, "a minute of spinning never showed up: {now} s");
        };
        let wall = started.elapsed().as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        // One tick of slack at each end: the kernel counts in whole ticks.
        let most = wall * cores + 2.0 / CLOCK_TICKS;
        assert!(after - before <= most, "{} s of CPU in {wall} s of wall time on {cores} cores", after - before);
        assert!(cpu_seconds(u32::MAX).is_none(), "no such process");
    }

    /// A process at rest is found idle soon; one that works for a while and then rests is
    /// waited for; one that spins is never found idle, and the wait gives up.
    #[tokio::test]
    async fn a_busy_process_is_waited_for_and_an_idle_one_is_not() {
        use std::time::{Duration, Instant};
        /// Kills its processes however the test ends.
        struct Children(Vec<std::process::Child>);
        impl Drop for Children {
            fn drop(&mut self) {
                for child in &mut self.0 {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let spawn = |script: &str| {
            let null = std::process::Stdio::null;
            Command::new("sh").args(["-c", script]).stdout(null()).stderr(null()).spawn().expect("sh")
        };
        let bounded = |wait| async move {
            tokio::time::timeout(Duration::from_secs(120), wait).await.expect("the wait ends within its bound")
        };
        let spin = "while :; do :; done";
        let children = Children(vec![spawn("sleep 60"), spawn(spin), spawn(spin)]);
        let pid = |i: usize| children.0[i].id();
        let started = Instant::now();
        bounded(wait_until_idle(pid(0), Duration::from_secs(30))).await.expect("sleep is idle");
        assert!(started.elapsed() < Duration::from_secs(20), "a sleeping process took {:?}", started.elapsed());
        // The second spins until it is stopped, 3 s from now.
        let stopped = pid(1).to_string();
        let stop = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Command::new("kill").args(["-STOP", &stopped]).status().expect("kill -STOP")
        });
        let started = Instant::now();
        bounded(wait_until_idle(pid(1), Duration::from_secs(60))).await.expect("it rests once stopped");
        assert!(started.elapsed() >= Duration::from_secs(2), "found idle after {:?}, while it spun", started.elapsed());
        assert!(stop.await.expect("the stop ran").success());
        let busy = bounded(wait_until_idle(pid(2), Duration::from_secs(3))).await;
        assert!(busy.is_err_and(|e| e.to_string().contains("still busy")), "a spinning process is never idle");
    }

    #[test]
    fn log_timestamps_become_unix_seconds() {
        assert_eq!(line_time("1970-01-01T00:00:00Z  INFO x"), Some(0.0));
        // date -u -d 2026-11-23T10:34:02Z +%s
        assert_eq!(line_time("2026-11-23T10:34:02.5Z  INFO x"), Some(1_795_430_042.5));
        assert_eq!(line_time("2000-03-01T00:00:00Z x"), Some(951_868_800.0));
        assert_eq!(line_time("not a line"), None);
    }
}
