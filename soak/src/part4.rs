//! Part 4's network, as `scripts/bft.sh` runs it: four validators, each a peered Geth, a
//! `cometbft-consensus` app and a CometBFT node, with one-second blocks; every CometBFT
//! link to every other, and every app's link to its Geth's Engine API, through toxiproxy;
//! every app on a clock of its own (libfaketime) to step.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::Context;
use common::harness::{
    CometNet, CometTimeouts, FundedGenesis, Geth, GethOptions, Proxy, Service, Toxiproxy, free_port, release_binary,
};

use crate::{
    faults::{self, Devnet, Kind, Link, Process},
    part3::repeer,
};

/// The validators.
const VALIDATORS: usize = 4;

/// The network. Fields drop in order: CometBFT and the apps before the Geths.
pub(crate) struct Network {
    comet: CometNet,
    apps: Vec<Service>,
    env: Vec<Vec<(String, String)>>,
    clocks: Vec<PathBuf>,
    engine: Vec<Proxy>,
    pub(crate) geths: Vec<Geth>,
    _faults: Toxiproxy,
    dir: tempfile::TempDir,
}

impl Network {
    /// Starts it on `genesis`.
    pub(crate) async fn start(genesis: &FundedGenesis) -> anyhow::Result<Self> {
        let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
        let geths = Geth::start_peered_group_with(VALIDATORS, &options).await?;
        let faults = Toxiproxy::start().await?;
        let timeouts = CometTimeouts::for_block_time(Duration::from_secs(1));
        let comet = CometNet::init_proxied(VALIDATORS, &timeouts, &faults).await?;
        let dir = tempfile::Builder::new().prefix("soak-part4-").tempdir()?;
        let (mut engine, mut env, mut clocks, mut apps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, geth) in geths.iter().enumerate() {
            let name = format!("validator{i}");
            let link = faults.proxy(&format!("{name}-engine"), geth.auth_url().trim_start_matches("http://")).await?;
            let clock = dir.path().join(format!("{name}.clock"));
            let mut vars = faults::faked_clock(&clock)?;
            vars.extend([
                ("ETH_CLIENT_URL", format!("http://{}", link.addr())),
                ("JWT_SECRET", geth.jwt_path().display().to_string()),
                ("GENESIS", genesis.path.display().to_string()),
                ("ABCI_ADDR", comet.nodes[i].abci_addr.clone()),
                ("COMETBFT_RPC", format!("http://127.0.0.1:{}", comet.nodes[i].rpc_port)),
                ("STATE_DIR", dir.path().join(format!("{name}-state")).display().to_string()),
                ("HEALTH_ADDR", format!("127.0.0.1:{}", free_port()?)),
                ("RUST_LOG", "info".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)));
            apps.push(Service::stopped(&name, &dir.path().join(format!("{name}.log"))));
            engine.push(link);
            env.push(vars);
            clocks.push(clock);
        }
        let mut network = Self { comet, apps, env, clocks, engine, geths, _faults: faults, dir };
        for i in 0..VALIDATORS {
            network.start_app(i)?;
        }
        for i in 0..VALIDATORS {
            network.comet.start(i)?;
        }
        Ok(network)
    }

    fn start_app(&mut self, i: usize) -> anyhow::Result<()> {
        let mut command = Command::new(release_binary("cometbft-consensus")?);
        command.envs(self.env[i].iter().map(|(k, v)| (k, v)));
        self.apps[i].start(command)
    }

    /// The public JSON-RPC URL of each validator's Geth, where clients send.
    pub(crate) fn rpc_urls(&self) -> Vec<String> {
        self.geths.iter().map(Geth::http_url).collect()
    }

    /// Where the apps' logs are (CometBFT's are in each node's home).
    pub(crate) fn log_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

}

impl Devnet for Network {
    fn nodes(&self) -> Vec<String> {
        (0..VALIDATORS).map(|i| format!("validator{i}")).collect()
    }

    fn menu(&self) -> Vec<Kind> {
        let mut menu = Vec::new();
        for process in [Process::Consensus, Process::Geth, Process::Comet] {
            menu.extend([Kind::Kill(process), Kind::Stop(process)]);
        }
        menu.push(Kind::Wipe);
        menu.extend(faults::link_faults(&[Link::Peers, Link::Engine]));
        menu.extend([Kind::ClockForward, Kind::ClockBack]);
        menu
    }

    async fn inject(&mut self, kind: Kind, node: usize) -> anyhow::Result<()> {
        match kind {
            Kind::Kill(Process::Consensus) => self.apps[node].kill(),
            Kind::Stop(Process::Consensus) => self.apps[node].signal(libc::SIGSTOP),
            Kind::Kill(Process::Geth) | Kind::Wipe => self.geths[node].kill(),
            Kind::Stop(Process::Geth) => self.geths[node].signal(libc::SIGSTOP),
            Kind::Kill(Process::Comet) => self.comet.process(node).kill(),
            Kind::Stop(Process::Comet) => self.comet.process(node).signal(libc::SIGSTOP),
            Kind::Link(Link::Peers, toxic) => {
                for link in self.comet.links_of(node) {
                    faults::apply_toxic(link, toxic).await?;
                }
            }
            Kind::Link(_, toxic) => faults::apply_toxic(&self.engine[node], toxic).await?,
            Kind::ClockForward | Kind::ClockBack => faults::set_clock(&self.clocks[node], &faults::clock_offset(kind))?,
            Kind::Kill(Process::Redis | Process::Postgres) | Kind::Stop(Process::Redis | Process::Postgres) => {
                anyhow::bail!("Part 4 has no Redis or PostgreSQL")
            }
        }
        Ok(())
    }

    async fn heal(&mut self, kind: Kind, node: usize) -> anyhow::Result<()> {
        match kind {
            // CometBFT ends when its app's connection breaks; if it did, the supervisor
            // starts it again.
            Kind::Kill(Process::Consensus) => self.start_app(node)?,
            Kind::Stop(Process::Consensus) => self.apps[node].signal(libc::SIGCONT),
            Kind::Kill(Process::Geth) => self.geths[node].restart().await?,
            Kind::Wipe => {
                self.geths[node].wipe_and_restart().await?;
                repeer(&self.geths, node).await?;
            }
            Kind::Stop(Process::Geth) => self.geths[node].signal(libc::SIGCONT),
            Kind::Kill(Process::Comet) => self.comet.start(node)?,
            Kind::Stop(Process::Comet) => self.comet.process(node).signal(libc::SIGCONT),
            Kind::Link(Link::Peers, _) => {
                for link in self.comet.links_of(node) {
                    link.heal().await?;
                }
            }
            Kind::Link(..) => self.engine[node].heal().await?,
            Kind::ClockForward | Kind::ClockBack => faults::set_clock(&self.clocks[node], "+0")?,
            Kind::Kill(Process::Redis | Process::Postgres) | Kind::Stop(Process::Redis | Process::Postgres) => {}
        }
        Ok(())
    }

    async fn supervise(&mut self) -> anyhow::Result<Vec<String>> {
        let mut restarted = Vec::new();
        for i in 0..VALIDATORS {
            if self.apps[i].exited().is_some() {
                self.start_app(i)?;
                restarted.push(format!("validator{i}"));
            }
            if self.comet.process(i).exited().is_some() {
                self.comet.start(i).context("cometbft restarts")?;
                restarted.push(format!("validator{i}/cometbft"));
            }
        }
        Ok(restarted)
    }
}
