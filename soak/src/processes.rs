//! A devnet's consensus processes (Part 3's nodes, Part 4's apps): each started from its
//! binary with an environment of its own, on a clock of its own (libfaketime),
//! logging into one directory.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;
use common::harness::{Geth, Service, faked_clock, set_clock};

use crate::faults::{self, Kind};

/// The processes, killed when dropped.
pub(crate) struct Consensus {
    processes: Vec<Service>,
    binary: &'static str,
    env: Vec<Vec<(String, String)>>,
    clocks: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl Consensus {
    /// None yet, of release binary `binary`.
    pub(crate) fn new(binary: &'static str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix(&format!("soak-{binary}-")).tempdir()?;
        Ok(Self { processes: Vec::new(), binary, env: Vec::new(), clocks: Vec::new(), dir })
    }

    /// Adds one, not started, named `name`, with `env` (and its clock's).
    pub(crate) fn add(&mut self, name: &str, env: Vec<(&str, String)>) -> anyhow::Result<()> {
        let clock = self.dir.path().join(format!("{name}.clock"));
        let mut vars = faked_clock(&clock)?;
        vars.extend(env.into_iter().map(|(k, v)| (k.to_owned(), v)));
        self.processes.push(Service::stopped(name, &self.dir.path().join(format!("{name}.log"))));
        self.env.push(vars);
        self.clocks.push(clock);
        Ok(())
    }

    /// Where their logs (and whatever else they keep) are.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (or restarts) process `i`.
    pub(crate) fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let mut command = Command::new(beside_me(self.binary)?);
        command.envs(self.env[i].iter().map(|(k, v)| (k, v)));
        self.processes[i].start(command)
    }

    /// Process `i`.
    pub(crate) fn process(&mut self, i: usize) -> &mut Service {
        &mut self.processes[i]
    }

    /// Steps process `i`'s clock as clock fault `kind` says.
    pub(crate) fn step_clock(&self, i: usize, kind: Kind) -> anyhow::Result<()> {
        set_clock(&self.clocks[i], &faults::clock_offset(kind))
    }

    /// Sets process `i`'s clock right.
    pub(crate) fn set_clock_right(&self, i: usize) -> anyhow::Result<()> {
        set_clock(&self.clocks[i], "+0")
    }

    /// Starts again every process that ended by itself; their indices.
    pub(crate) fn restart_ended(&mut self) -> anyhow::Result<Vec<usize>> {
        let ended: Vec<usize> = (0..self.processes.len()).filter(|&i| self.processes[i].exited().is_some()).collect();
        for &i in &ended {
            self.start(i)?;
        }
        Ok(ended)
    }
}

/// The public JSON-RPC URL of each Geth, where clients send.
pub(crate) fn rpc_urls(geths: &[Geth]) -> Vec<String> {
    geths.iter().map(Geth::http_url).collect()
}

/// Binary `name` from the directory the soak itself runs from (`target/debug` or
/// `target/release`, as `scripts/soak.sh` built them together).
fn beside_me(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot tell where the soak runs from")?;
    let path = me.with_file_name(name);
    anyhow::ensure!(path.is_file(), "{} is missing: run scripts/soak.sh, which builds it", path.display());
    Ok(path)
}
