//! Part 4's network, as `scripts/bft.sh` runs it: four validators, each a peered Geth, a
//! `cometbft-consensus` app and a CometBFT node, with one-second blocks; every CometBFT
//! link to every other, and every app's link to its Geth's Engine API, through toxiproxy;
//! every app on a clock of its own (libfaketime) to step.

use std::time::Duration;

use anyhow::Context;
use common::harness::{CometNet, CometTimeouts, Geth, GethOptions, Proxy, Toxiproxy, WrittenGenesis, free_port};

use crate::{
    faults::{self, Devnet, Kind, Link, Process},
    part3::{enodes, repeer},
    processes::{self, Consensus},
};

/// The validators.
const VALIDATORS: usize = 4;

/// The network. Fields drop in order: CometBFT and the apps before the Geths.
pub(crate) struct Network {
    comet: CometNet,
    apps: Consensus,
    engine: Vec<Proxy>,
    pub(crate) geths: Vec<Geth>,
    faults: Toxiproxy,
    enodes: Vec<String>,
    /// When each validator's app last died: its CometBFT must exit then, and is made to.
    app_died: Vec<Option<std::time::Instant>>,
}

/// How long a CometBFT may outlive its app. CometBFT stops when its app's connection
/// breaks, but its process does not always exit (cometbft/cometbft#4054: after "captured
/// terminated, exiting" some services stay up), and a node left so never catches up. A
/// service manager that restarts CometBFT with its app kills it after a stop timeout, as
/// the supervisor here does.
const COMETBFT_EXIT_WITHIN: Duration = Duration::from_secs(15);

impl Network {
    /// Starts it on `genesis`.
    pub(crate) async fn start(genesis: &WrittenGenesis) -> anyhow::Result<Self> {
        let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
        let geths = Geth::start_peered_group_with(VALIDATORS, &options).await?;
        let faults = Toxiproxy::start().await?;
        let timeouts = CometTimeouts::for_block_time(Duration::from_secs(1));
        let comet = CometNet::init_proxied(VALIDATORS, geths[0].el_chain().await?, &timeouts, &faults).await?;
        let (mut apps, mut engine) = (Consensus::new("cometbft-consensus")?, Vec::new());
        for (i, geth) in geths.iter().enumerate() {
            let name = format!("validator{i}");
            let link = faults.proxy(&format!("{name}-engine"), geth.auth_url().trim_start_matches("http://")).await?;
            let state = apps.dir().join(format!("{name}-state")).display().to_string();
            apps.add(
                &name,
                vec![
                    ("ETH_CLIENT_URL", format!("http://{}", link.addr())),
                    ("JWT_SECRET", geth.jwt_path().display().to_string()),
                    ("GENESIS", genesis.path.display().to_string()),
                    ("ABCI_ADDR", comet.nodes[i].abci_addr.clone()),
                    ("COMETBFT_RPC", format!("http://127.0.0.1:{}", comet.nodes[i].rpc_port)),
                    ("STATE_DIR", state),
                    ("HEALTH_ADDR", format!("127.0.0.1:{}", free_port()?)),
                    ("RUST_LOG", "info".to_owned()),
                ],
            )?;
            engine.push(link);
        }
        let enodes = enodes(&geths).await?;
        let app_died = vec![None; VALIDATORS];
        let mut network = Self { comet, apps, engine, geths, faults, enodes, app_died };
        for i in 0..VALIDATORS {
            network.apps.start(i)?;
        }
        for i in 0..VALIDATORS {
            network.comet.start(i)?;
        }
        Ok(network)
    }
}

impl Devnet for Network {
    fn nodes(&self) -> Vec<String> {
        (0..VALIDATORS).map(|i| format!("validator{i}")).collect()
    }

    /// The public JSON-RPC URL of each validator's Geth, where clients send.
    fn rpc_urls(&self) -> Vec<String> {
        processes::rpc_urls(&self.geths)
    }

    /// Toxiproxy's API, where every link of the devnet can be hurt by hand too.
    fn toxiproxy(&self) -> &str {
        self.faults.api()
    }

    /// Where the apps' logs are (CometBFT's are in each node's home).
    fn log_dir(&self) -> &std::path::Path {
        self.apps.dir()
    }

    fn server_logs(&self) -> Vec<(String, std::path::PathBuf)> {
        let mut logs = Vec::new();
        for (i, geth) in self.geths.iter().enumerate() {
            logs.push((format!("validator{i}-geth.log"), geth.log_path().to_owned()));
            logs.push((format!("validator{i}-cometbft.log"), self.comet.log_path(i).to_owned()));
        }
        logs.push(("toxiproxy.log".to_owned(), self.faults.log_path().to_owned()));
        logs
    }

    async fn block_log(&self) -> anyhow::Result<Option<Vec<(u64, alloy_primitives::B256)>>> {
        Ok(None)
    }

    fn menu(&self) -> Vec<Kind> {
        menu()
    }

    async fn inject(&mut self, kind: Kind, node: usize) -> anyhow::Result<()> {
        match kind {
            Kind::Kill(Process::Consensus) => {
                self.apps.process(node).kill();
                self.app_died[node] = Some(std::time::Instant::now());
            }
            Kind::Stop(Process::Consensus) => self.apps.process(node).signal(libc::SIGSTOP),
            Kind::Kill(Process::Geth) | Kind::Wipe => self.geths[node].kill(),
            Kind::Stop(Process::Geth) => self.geths[node].signal(libc::SIGSTOP),
            Kind::Kill(Process::Comet) => self.comet.process(node).kill(),
            Kind::Stop(Process::Comet) => self.comet.process(node).signal(libc::SIGSTOP),
            Kind::Link(Link::Peers, toxic) => {
                for link in self.comet.links_of(node) {
                    faults::apply_toxic(link, toxic).await?;
                }
            }
            Kind::Link(Link::Engine, toxic) => faults::apply_toxic(&self.engine[node], toxic).await?,
            Kind::Link(Link::Redis | Link::Postgres, _) => anyhow::bail!("Part 4 has no Redis or PostgreSQL"),
            Kind::ClockForward | Kind::ClockBack => self.apps.step_clock(node, kind)?,
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
            Kind::Kill(Process::Consensus) => self.apps.start(node)?,
            Kind::Stop(Process::Consensus) => self.apps.process(node).signal(libc::SIGCONT),
            Kind::Kill(Process::Geth) => self.geths[node].restart().await?,
            Kind::Wipe => {
                self.geths[node].wipe_and_restart().await?;
                repeer(&self.geths, &mut self.enodes, node).await?;
            }
            Kind::Stop(Process::Geth) => self.geths[node].signal(libc::SIGCONT),
            Kind::Kill(Process::Comet) => self.comet.start(node)?,
            Kind::Stop(Process::Comet) => self.comet.process(node).signal(libc::SIGCONT),
            Kind::Link(Link::Peers, _) => {
                for link in self.comet.links_of(node) {
                    link.heal().await?;
                }
            }
            Kind::Link(Link::Engine, _) => self.engine[node].heal().await?,
            Kind::Link(Link::Redis | Link::Postgres, _) => {}
            Kind::ClockForward | Kind::ClockBack => self.apps.set_clock_right(node)?,
            Kind::Kill(Process::Redis | Process::Postgres) | Kind::Stop(Process::Redis | Process::Postgres) => {}
        }
        Ok(())
    }

    async fn supervise(&mut self) -> anyhow::Result<Vec<String>> {
        let ended = self.apps.restart_ended()?;
        for &i in &ended {
            self.app_died[i].get_or_insert_with(std::time::Instant::now);
        }
        let mut restarted: Vec<String> = ended.into_iter().map(|i| format!("validator{i}")).collect();
        for i in 0..VALIDATORS {
            if self.app_died[i].is_some_and(|died| died.elapsed() > COMETBFT_EXIT_WITHIN)
                && self.comet.process(i).exited().is_none()
            {
                tracing::warn!(node = i, "CometBFT outlived its app: killed, to be started again");
                self.comet.process(i).kill();
                self.comet.process(i).wait_exit(Duration::from_secs(10)).await;
            }
            if self.comet.process(i).exited().is_some() {
                self.app_died[i] = None;
                self.comet.start(i).context("cometbft restarts")?;
                restarted.push(format!("validator{i}/cometbft"));
            }
            if self.geths[i].exited().is_some() {
                self.geths[i].restart().await?;
                restarted.push(format!("validator{i}/geth"));
            }
        }
        Ok(restarted)
    }
}

/// The kinds of fault it takes.
pub(crate) fn menu() -> Vec<Kind> {
    let mut menu = Vec::new();
    for process in [Process::Consensus, Process::Geth, Process::Comet] {
        menu.extend([Kind::Kill(process), Kind::Stop(process)]);
    }
    menu.push(Kind::Wipe);
    menu.extend(faults::link_faults(&[Link::Peers, Link::Engine]));
    menu.extend([Kind::ClockForward, Kind::ClockBack]);
    menu
}
