//! What the benchmarks ran on, read off the machine at run time.

use serde::{Deserialize, Serialize};

/// The machine and the versions measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// CPU model.
    pub(crate) cpu: String,
    /// Logical CPUs.
    pub(crate) cpus: usize,
    /// Memory, GiB.
    pub(crate) memory_gib: f64,
    /// Kernel release.
    pub(crate) kernel: String,
    /// `geth version`'s version line.
    pub(crate) geth: String,
    /// `cometbft version`.
    pub(crate) cometbft: String,
    /// `rustc --version`.
    pub(crate) rustc: String,
    /// When, UTC.
    pub(crate) date: String,
}

impl Machine {
    /// Reads this machine.
    pub(crate) fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or(0.0);
        let geth = common::harness::geth_binary().map(|b| command(&b.display().to_string(), &["version"]));
        let cometbft = common::harness::cometbft_binary().map(|b| command(&b.display().to_string(), &["version"]));
        Self {
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
                .unwrap_or("?")
                .trim()
                .to_owned(),
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: kib / (1024.0 * 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            geth: geth.unwrap_or_default().lines().find(|l| l.starts_with("Version:")).unwrap_or("?").to_owned(),
            cometbft: cometbft.unwrap_or_default().trim().to_owned(),
            rustc: command("rustc", &["--version"]).trim().to_owned(),
            date: command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).trim().to_owned(),
        }
    }
}

fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
