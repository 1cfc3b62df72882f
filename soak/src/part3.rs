//! Part 3's cluster, as `scripts/cluster.sh` runs it: node1 and node2 leader candidates,
//! node3 a member, each with its own peered Geth, on one Redis and one PostgreSQL; every
//! node's link to Redis, to PostgreSQL and to its Geth's Engine API through toxiproxy, and
//! every node on a clock of its own (libfaketime) to step.

use alloy_primitives::B256;
use anyhow::Context;
use common::harness::{Geth, GethOptions, Postgres, Proxy, Redis, Toxiproxy, WrittenGenesis, free_port};
use std::time::Duration;

use crate::{
    faults::{self, Devnet, Kind, Link, Process},
    processes::{self, Consensus},
};

/// A node's proxied links.
struct Links {
    redis: Proxy,
    postgres: Proxy,
    engine: Proxy,
}

/// The cluster. Fields drop in order: the nodes before the servers they use.
pub(crate) struct Cluster {
    nodes: Consensus,
    links: Vec<Links>,
    pub(crate) geths: Vec<Geth>,
    redis: Redis,
    pub(crate) postgres: Postgres,
    faults: Toxiproxy,
    enodes: Vec<String>,
}

const NAMES: [&str; 3] = ["node1", "node2", "node3"];

impl Cluster {
    /// Starts it on `genesis`.
    pub(crate) async fn start(genesis: &WrittenGenesis) -> anyhow::Result<Self> {
        let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
        let geths = Geth::start_peered_group_with(NAMES.len(), &options).await?;
        let (redis, postgres, faults) = (Redis::start().await?, Postgres::start().await?, Toxiproxy::start().await?);
        let (mut nodes, mut links) = (Consensus::new("member-nodes")?, Vec::new());
        for (i, name) in NAMES.iter().enumerate() {
            let engine = geths[i].auth_url().trim_start_matches("http://").to_owned();
            let link = Links {
                redis: faults.proxy(&format!("{name}-redis"), &redis.addr()).await?,
                postgres: faults.proxy(&format!("{name}-postgres"), &postgres.addr()).await?,
                engine: faults.proxy(&format!("{name}-engine"), &engine).await?,
            };
            nodes.add(
                name,
                vec![
                    ("INSTANCE_ID", name.to_string()),
                    ("MODE", if i < 2 { "leader" } else { "member" }.to_owned()),
                    ("ETH_CLIENT_URL", format!("http://{}", link.engine.addr())),
                    ("JWT_SECRET", geths[i].jwt_path().display().to_string()),
                    ("GENESIS", genesis.path.display().to_string()),
                    ("REDIS_ADDR", link.redis.addr().to_owned()),
                    ("POSTGRES_URL", Postgres::url_at(link.postgres.addr())),
                    ("HEALTH_ADDR", format!("127.0.0.1:{}", free_port()?)),
                    ("RUST_LOG", "info".to_owned()),
                ],
            )?;
            links.push(link);
        }
        for i in 0..NAMES.len() {
            nodes.start(i)?;
        }
        let enodes = enodes(&geths).await?;
        Ok(Self { nodes, links, geths, redis, postgres, faults, enodes })
    }

    fn link(&self, node: usize, link: Link) -> anyhow::Result<&Proxy> {
        match link {
            Link::Redis => Ok(&self.links[node].redis),
            Link::Postgres => Ok(&self.links[node].postgres),
            Link::Engine => Ok(&self.links[node].engine),
            Link::Peers => anyhow::bail!("Part 3's nodes have no peer links"),
        }
    }
}

/// Every Geth's `enode://` address, as the others know it.
pub(crate) async fn enodes(geths: &[Geth]) -> anyhow::Result<Vec<String>> {
    let mut enodes = Vec::with_capacity(geths.len());
    for geth in geths {
        enodes.push(geth.enode().await?);
    }
    Ok(enodes)
}

/// After a Geth lost its chain it has a new node key: it is given the others' addresses
/// (it dials them, and goes on dialling those that are down), and the others that answer
/// are given its new one, as an operator would. They are given it once it is their peer,
/// so that only one side dials (see [`Geth::link`]).
pub(crate) async fn repeer(geths: &[Geth], enodes: &mut [String], node: usize) -> anyhow::Result<()> {
    enodes[node] = geths[node].enode().await?;
    let others = (0..geths.len()).filter(|&i| i != node);
    for i in others.clone() {
        geths[node].add_peer(&enodes[i]).await.with_context(|| format!("the wiped Geth cannot add Geth {i}"))?;
    }
    for i in others {
        // One that is down or stopped now is dialled by the wiped one once it is back.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let _ = geths[i].wait_for_peer(&enodes[node], deadline).await;
        let _ = geths[i].add_peer(&enodes[node]).await;
    }
    Ok(())
}

impl Devnet for Cluster {
    fn nodes(&self) -> Vec<String> {
        NAMES.iter().map(|n| n.to_string()).collect()
    }

    /// The public JSON-RPC URL of each node's Geth, where clients send.
    fn rpc_urls(&self) -> Vec<String> {
        processes::rpc_urls(&self.geths)
    }

    /// Toxiproxy's API, where every link of the devnet can be hurt by hand too.
    fn toxiproxy(&self) -> &str {
        self.faults.api()
    }

    /// Where the logs are.
    fn log_dir(&self) -> &std::path::Path {
        self.nodes.dir()
    }

    fn server_logs(&self) -> Vec<(String, std::path::PathBuf)> {
        let mut logs: Vec<_> = self
            .geths
            .iter()
            .zip(NAMES)
            .map(|(geth, name)| (format!("{name}-geth.log"), geth.log_path().to_owned()))
            .collect();
        logs.push(("redis.log".to_owned(), self.redis.log_path().to_owned()));
        logs.push(("postgres.log".to_owned(), self.postgres.log_path().to_owned()));
        logs.push(("toxiproxy.log".to_owned(), self.faults.log_path().to_owned()));
        logs
    }

    /// The block log: `(number, hash)` per row.
    async fn block_log(&self) -> anyhow::Result<Option<Vec<(u64, B256)>>> {
        let (sql, connection) = tokio_postgres::connect(&self.postgres.url(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let rows = sql.query("SELECT number, hash FROM blocks ORDER BY number", &[]).await?;
        let rows = rows
            .iter()
            .map(|r| {
                let number = u64::try_from(r.get::<_, i64>(0)).context("negative height")?;
                let hash: Vec<u8> = r.get(1);
                Ok((number, B256::try_from(hash.as_slice()).context("a hash is not 32 bytes")?))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(rows))
    }

    fn menu(&self) -> Vec<Kind> {
        menu()
    }

    async fn inject(&mut self, kind: Kind, node: usize) -> anyhow::Result<()> {
        match kind {
            Kind::Kill(Process::Consensus) => self.nodes.process(node).kill(),
            Kind::Stop(Process::Consensus) => self.nodes.process(node).signal(libc::SIGSTOP),
            Kind::Kill(Process::Geth) | Kind::Wipe => self.geths[node].kill(),
            Kind::Stop(Process::Geth) => self.geths[node].signal(libc::SIGSTOP),
            Kind::Kill(Process::Redis) => self.redis.kill(),
            Kind::Stop(Process::Redis) => self.redis.signal(libc::SIGSTOP),
            Kind::Kill(Process::Postgres) => self.postgres.kill(),
            Kind::Stop(Process::Postgres) => self.postgres.signal(libc::SIGSTOP),
            Kind::Link(link, toxic) => faults::apply_toxic(self.link(node, link)?, toxic).await?,
            Kind::ClockForward | Kind::ClockBack => self.nodes.step_clock(node, kind)?,
            Kind::Kill(Process::Comet) | Kind::Stop(Process::Comet) => anyhow::bail!("Part 3 has no CometBFT"),
        }
        Ok(())
    }

    async fn heal(&mut self, kind: Kind, node: usize) -> anyhow::Result<()> {
        match kind {
            Kind::Kill(Process::Consensus) => self.nodes.start(node)?,
            Kind::Stop(Process::Consensus) => self.nodes.process(node).signal(libc::SIGCONT),
            Kind::Kill(Process::Geth) => self.geths[node].restart().await?,
            Kind::Wipe => {
                self.geths[node].wipe_and_restart().await?;
                repeer(&self.geths, &mut self.enodes, node).await?;
            }
            Kind::Stop(Process::Geth) => self.geths[node].signal(libc::SIGCONT),
            Kind::Kill(Process::Redis) => self.redis.restart().await?,
            Kind::Stop(Process::Redis) => self.redis.signal(libc::SIGCONT),
            Kind::Kill(Process::Postgres) => self.postgres.restart().await?,
            Kind::Stop(Process::Postgres) => self.postgres.signal(libc::SIGCONT),
            Kind::Link(link, _) => self.link(node, link)?.heal().await?,
            Kind::ClockForward | Kind::ClockBack => self.nodes.set_clock_right(node)?,
            Kind::Kill(Process::Comet) | Kind::Stop(Process::Comet) => {}
        }
        Ok(())
    }

    async fn supervise(&mut self) -> anyhow::Result<Vec<String>> {
        let mut restarted: Vec<String> = self.nodes.restart_ended()?.into_iter().map(|i| NAMES[i].to_owned()).collect();
        for (i, name) in NAMES.iter().enumerate() {
            if self.geths[i].exited().is_some() {
                self.geths[i].restart().await?;
                restarted.push(format!("{name}/geth"));
            }
        }
        if self.redis.exited().is_some() {
            self.redis.restart().await?;
            restarted.push("redis".to_owned());
        }
        if self.postgres.exited().is_some() {
            self.postgres.restart().await?;
            restarted.push("postgres".to_owned());
        }
        Ok(restarted)
    }
}

/// The kinds of fault it takes.
pub(crate) fn menu() -> Vec<Kind> {
    let mut menu = Vec::new();
    for process in [Process::Consensus, Process::Geth, Process::Redis, Process::Postgres] {
        menu.extend([Kind::Kill(process), Kind::Stop(process)]);
    }
    menu.push(Kind::Wipe);
    menu.extend(faults::link_faults(&[Link::Redis, Link::Postgres, Link::Engine]));
    menu.extend([Kind::ClockForward, Kind::ClockBack]);
    menu
}
