//! A fresh, real Geth per test.
//!
//! [`Geth::start`] makes a temp datadir, runs `geth init` with the project's
//! `genesis.json`, writes a random JWT secret, starts Geth on free loopback ports with the
//! same flags as `scripts/devnet.sh`, and waits until the Engine API answers. Dropping the
//! value kills the process and deletes the datadir, also when the test panics (and then
//! prints the end of Geth's log, which is usually the explanation).
//!
//! The machine is small and shared: at most [`max_concurrent`] Geths run at once per test
//! binary; further `start` calls wait for a slot. A test that needs several nodes asks for
//! them together with [`Geth::start_group`].

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, Bytes, U256};
use anyhow::{Context, bail};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    genesis_path,
    process::{Service, free_port, run_tool, tool_binary},
    tx::Receipt,
};
use crate::{auth::JwtSecret, engine::EngineClient, fork::ForkSchedule, rpc::RpcClient};

// ANCHOR: flags
/// The Geth flags every run of this project uses, besides datadir, addresses and ports.
/// `scripts/lib.sh` and `docker-compose.yml` pass the same ones (a test checks they do).
///
/// `--state.scheme=hash --gcmode=archive` makes Geth write every block's state to its
/// database as it imports the block. In the default path scheme up to 128 blocks of state
/// live only in memory: after a SIGKILL Geth rewinds, deletes the blocks above, and can
/// switch itself to snap sync, which never finishes on a chain without peers.
///
/// `--miner.gasprice=1`: Geth's builder skips transactions that tip less than this (its
/// default is 0.001 gwei). On a chain of empty blocks a wallet's fee estimate finds no
/// tips in the fee history and offers 1 wei, so with the default a user's first
/// transaction would stay pending forever. Geth's own `--dev` mode sets 1 wei too.
///
/// `--metrics`: Geth serves Prometheus metrics (on `--metrics.port`, at
/// `/debug/metrics/prometheus`), which `scripts/monitor.sh` scrapes.
pub const GETH_FLAGS: &[&str] = &[
    "--syncmode=full",
    "--state.scheme=hash",
    "--gcmode=archive",
    "--nodiscover",
    "--miner.gasprice=1",
    "--metrics",
    "--http",
];

/// A Geth on its own (Parts 1 and 2): its consensus layer is its only source of blocks,
/// and it has nobody to gossip transactions with.
pub const GETH_ALONE_FLAGS: &[&str] = &["--maxpeers=0", "--http.api=eth,net,web3,txpool"];

/// A Geth of Parts 3 and 4: peered with the other nodes' Geths (the links are made with
/// `admin_addPeer`), on this machine only, so a transaction sent to any of them reaches
/// the leader, or the proposer. After the Merge, Geth takes blocks only from its consensus
/// layer, so peers carry transactions, not blocks.
pub const GETH_PEERED_FLAGS: &[&str] =
    &["--maxpeers=16", "--http.api=eth,net,web3,txpool,admin", "--nat=none", "--netrestrict=127.0.0.0/8"];

/// Natively both ports listen on loopback only. (In Docker they listen on the container's
/// interface, and the compose file publishes them on the host's loopback instead.)
pub const GETH_LOOPBACK_FLAGS: &[&str] =
    &["--authrpc.addr=127.0.0.1", "--http.addr=127.0.0.1", "--metrics.addr=127.0.0.1"];
// ANCHOR_END: flags

/// How long Geth may take to open its Engine API port. Generous: CI machines are busy.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// Geth processes allowed at once in one test binary, from `GETH_TEST_SLOTS` (default 2).
pub fn max_concurrent() -> usize {
    std::env::var("GETH_TEST_SLOTS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(2)
}

static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(max_concurrent())));

/// Slots held by a group of nodes, released when the last of them is dropped.
pub type Slots = Arc<OwnedSemaphorePermit>;

/// Waits for `n` node slots at once. A group larger than the cap takes every slot, so it
/// runs alone: the cap bounds how many groups share the machine, not how large one is.
pub async fn take_slots(n: usize) -> anyhow::Result<Slots> {
    let wanted = u32::try_from(n.clamp(1, max_concurrent())).unwrap_or(1);
    Ok(Arc::new(SLOTS.clone().acquire_many_owned(wanted).await.context("node slot semaphore closed")?))
}

/// The Geth binary: `$GETH_BIN`, else the one `scripts/setup.sh` installs in `.tools/bin`.
pub fn geth_binary() -> anyhow::Result<PathBuf> {
    tool_binary("GETH_BIN", "geth", "Geth")
}

/// How to start a Geth other than the default way (the benchmarks use these).
#[derive(Debug, Clone, Default)]
pub struct GethOptions {
    /// The genesis file; the project's `genesis.json` if `None`.
    pub genesis: Option<PathBuf>,
    /// Let Geth drive itself with its own simulated beacon (`--dev --dev.period N`, a
    /// block every N seconds, or one per transaction for 0) instead of waiting for a
    /// consensus layer. Such a Geth has no Engine API port.
    pub dev_period: Option<u64>,
    /// More flags, after the project's.
    pub extra: Vec<String>,
}

/// A running Geth with its own datadir, ports and JWT secret.
#[derive(Debug)]
pub struct Geth {
    // Declared first so it is dropped (killed) before its datadir is deleted.
    process: Service,
    dir: tempfile::TempDir,
    auth_port: u16,
    http_port: u16,
    metrics_port: u16,
    /// Set for peered nodes: the devp2p port.
    p2p_port: Option<u16>,
    options: GethOptions,
    jwt: JwtSecret,
    _slots: Slots,
}

/// The node key of an `enode://key@host:port` URL.
fn node_key(enode: &str) -> &str {
    enode.trim_start_matches("enode://").split('@').next().unwrap_or_default()
}

impl Geth {
    /// Starts a fresh Geth on the project's genesis and waits for its Engine API.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_in(take_slots(1).await?).await
    }

    /// `n` fresh Geths (one per node of a cluster), started once `n` slots are free.
    pub async fn start_group(n: usize) -> anyhow::Result<Vec<Self>> {
        let slots = take_slots(n).await?;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(Self::start_in(slots.clone()).await?);
        }
        Ok(nodes)
    }

    /// `n` fresh Geths peered with each other (Part 4's validators): every pair is
    /// [linked](Geth::link), so a restarted node is dialled again by the rest. Returns once
    /// each has all the others as peers.
    pub async fn start_peered_group(n: usize) -> anyhow::Result<Vec<Self>> {
        Self::start_peered_group_with(n, &GethOptions::default()).await
    }

    /// [`Geth::start_peered_group`], each node started as `options` say.
    pub async fn start_peered_group_with(n: usize, options: &GethOptions) -> anyhow::Result<Vec<Self>> {
        let nodes = Self::start_peerable_group(n, options).await?;
        Self::link_all(&nodes).await?;
        Ok(nodes)
    }

    /// `n` fresh Geths that listen for peers but have none yet, started as `options` say:
    /// [`Geth::link`] or [`Geth::link_all`] peers them.
    pub async fn start_peerable_group(n: usize, options: &GethOptions) -> anyhow::Result<Vec<Self>> {
        let slots = take_slots(n).await?;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(Self::launch(slots.clone(), Some(free_port()?), options.clone()).await?);
        }
        Ok(nodes)
    }

    /// [Links](Geth::link) every pair of `nodes`, one pair at a time.
    pub async fn link_all(nodes: &[Geth]) -> anyhow::Result<()> {
        for (i, node) in nodes.iter().enumerate() {
            for other in &nodes[i + 1..] {
                node.link(other).await?;
            }
        }
        Ok(())
    }

    /// Starts a Geth without peers that holds a share of `slots`.
    pub async fn start_in(slots: Slots) -> anyhow::Result<Self> {
        Self::start_in_with(slots, GethOptions::default()).await
    }

    /// [`Geth::start_in`], started as `options` say: a test that needs Geths of several
    /// kinds at once takes their slots together ([`take_slots`]) and starts each in them.
    pub async fn start_in_with(slots: Slots, options: GethOptions) -> anyhow::Result<Self> {
        Self::launch(slots, None, options).await
    }

    /// A Geth that listens for peers (and serves the admin API) but has none yet, holding
    /// a share of `slots`, started as `options` say.
    pub async fn start_peerable_in(slots: Slots, options: GethOptions) -> anyhow::Result<Self> {
        Self::launch(slots, Some(free_port()?), options).await
    }

    /// Starts a Geth without peers, started as `options` say.
    pub async fn start_with(options: GethOptions) -> anyhow::Result<Self> {
        Self::launch(take_slots(1).await?, None, options).await
    }

    // ANCHOR: start
    /// Starts a Geth that holds a share of `slots`, peerable on `p2p_port` if given.
    async fn launch(slots: Slots, p2p_port: Option<u16>, options: GethOptions) -> anyhow::Result<Self> {
        let binary = geth_binary()?;
        let dir = super::process::temp_dir("geth-test-")?;
        let genesis = options.genesis.clone().unwrap_or_else(genesis_path);
        run_init(&binary, dir.path(), &genesis)?;
        let jwt = JwtSecret::new(rand_bytes());
        std::fs::write(dir.path().join("jwt.hex"), jwt.to_hex()).context("cannot write the JWT secret")?;
        let (auth_port, http_port, metrics_port) = (free_port()?, free_port()?, free_port()?);
        let process = Service::stopped("geth", &dir.path().join("geth.log"));
        let mut geth = Self { process, dir, auth_port, http_port, metrics_port, p2p_port, options, jwt, _slots: slots };
        geth.spawn_and_wait().await?;
        Ok(geth)
    }
    // ANCHOR_END: start

    /// The datadir (kept across [`Geth::restart`]).
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The Engine API URL.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.auth_port)
    }

    /// The public JSON-RPC URL (transactions, receipts).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Where Geth serves its Prometheus metrics: `127.0.0.1:port` (path
    /// `/debug/metrics/prometheus`).
    pub fn metrics_addr(&self) -> String {
        format!("127.0.0.1:{}", self.metrics_port)
    }

    /// The JWT secret file Geth reads.
    pub fn jwt_path(&self) -> PathBuf {
        self.dir.path().join("jwt.hex")
    }

    /// The JWT secret.
    pub fn jwt(&self) -> JwtSecret {
        self.jwt.clone()
    }

    /// An Engine API client for this node.
    pub fn engine(&self) -> EngineClient {
        let forks = ForkSchedule::from_genesis_file(&self.genesis()).expect("the genesis file parses");
        EngineClient::new(&self.auth_url(), self.jwt(), forks).expect("loopback URL is valid")
    }

    /// The hash of this Geth's block 0.
    pub async fn genesis_hash(&self) -> anyhow::Result<B256> {
        let block = self.engine().block(crate::BlockTag::Number(0)).await?;
        Ok(block.ok_or_else(|| anyhow::anyhow!("Geth has no block 0"))?.hash)
    }

    /// This Geth's chain, as it says it (block 0, `eth_chainId`, `eth_config`'s last fork
    /// id), with the forks at block 0 and the blob schedule of the file it was initialised
    /// with (Geth names them in `admin_nodeInfo` only, which a Geth on its own does not
    /// serve): what a CometBFT genesis names ([`super::CometNet::init`]).
    pub async fn el_chain(&self) -> anyhow::Result<crate::ElChain> {
        let engine = self.engine();
        let fork = engine.config().await?.latest().map(|fork| fork.fork_id);
        Ok(crate::ElChain {
            genesis: self.genesis_hash().await?,
            chain_id: Some(engine.chain_id().await?),
            fork_id: Some(fork.ok_or_else(|| anyhow::anyhow!("Geth names no fork it is in (eth_config)"))?),
            genesis_forks: Some(engine.forks().genesis_forks_id()),
            blob_schedule: Some(engine.forks().blob_schedule_id()),
        })
    }

    /// A client for the public JSON-RPC port.
    pub fn http(&self) -> RpcClient {
        RpcClient::new(&self.http_url(), None).expect("loopback URL is valid")
    }

    /// Sends a signed transaction to the public port; returns its hash.
    pub async fn send_raw_transaction(&self, raw: &Bytes) -> anyhow::Result<B256> {
        Ok(self.http().call("eth_sendRawTransaction", json!([raw]), Duration::from_secs(10)).await?)
    }

    /// The receipt of a transaction, once it is in a block.
    pub async fn receipt(&self, hash: B256) -> anyhow::Result<Option<Receipt>> {
        Ok(self.http().call("eth_getTransactionReceipt", json!([hash]), Duration::from_secs(10)).await?)
    }

    /// An account's balance at the head.
    pub async fn balance(&self, address: Address) -> anyhow::Result<U256> {
        Ok(self.http().call("eth_getBalance", json!([address, "latest"]), Duration::from_secs(10)).await?)
    }

    /// This node's `enode://` URL on loopback (peered nodes only).
    pub async fn enode(&self) -> anyhow::Result<String> {
        let port = self.p2p_port.context("this Geth was started without peering")?;
        let info: serde_json::Value = self.http().call("admin_nodeInfo", json!([]), Duration::from_secs(10)).await?;
        let enode = info["enode"].as_str().context("admin_nodeInfo has no enode")?;
        let key = node_key(enode);
        Ok(format!("enode://{key}@127.0.0.1:{port}"))
    }

    /// Adds `enode` as a static peer (redialled if the link drops).
    pub async fn add_peer(&self, enode: &str) -> anyhow::Result<()> {
        let added: bool = self.http().call("admin_addPeer", json!([enode]), Duration::from_secs(10)).await?;
        anyhow::ensure!(added, "admin_addPeer {enode} refused");
        Ok(())
    }

    /// Peers this Geth and `other` both ways, one side at a time: this one dials `other`,
    /// and once they are peers `other` adds this one too (no dial: they are connected), so
    /// whichever of them restarts is dialled again by the other. Were both to dial at
    /// once, each could keep the link the other started and drop its own as a duplicate
    /// ("already connected"), leaving none; Geth dials a static peer again only 35 s later,
    /// at the same moment on both sides. Returns once each has the other as a peer.
    pub async fn link(&self, other: &Geth) -> anyhow::Result<()> {
        let (ours, theirs) = (self.enode().await?, other.enode().await?);
        self.add_peer(&theirs).await?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        self.wait_for_peer(&theirs, deadline).await?;
        other.wait_for_peer(&ours, deadline).await?;
        other.add_peer(&ours).await
    }

    /// Waits until the node of `enode` is one of this Geth's peers, failing at `deadline`.
    pub async fn wait_for_peer(&self, enode: &str, deadline: Instant) -> anyhow::Result<()> {
        while !self.has_peer(enode).await? {
            if Instant::now() > deadline {
                bail!("{enode} did not become a peer of {} in time", self.http_url());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Whether the node of `enode` is one of this Geth's peers (matched by node key: an
    /// inbound peer's address has its own port).
    pub async fn has_peer(&self, enode: &str) -> anyhow::Result<bool> {
        let peers: Vec<serde_json::Value> = self.http().call("admin_peers", json!([]), Duration::from_secs(10)).await?;
        Ok(peers.iter().any(|peer| peer["enode"].as_str().is_some_and(|e| node_key(e) == node_key(enode))))
    }

    /// How many peers Geth has.
    pub async fn peer_count(&self) -> anyhow::Result<usize> {
        let count: alloy_primitives::U64 =
            self.http().call("net_peerCount", json!([]), Duration::from_secs(10)).await?;
        Ok(count.to())
    }

    /// Kills Geth with SIGKILL, as a crash would. The datadir stays.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends a signal: `libc::SIGSTOP` hangs Geth with every connection open and no answer
    /// on any, `SIGCONT` lets it go on.
    pub fn signal(&self, signal: i32) {
        self.process.signal(signal);
    }

    /// If it ended other than by [`Self::kill`]: its exit code (-1 for a signal).
    pub fn exited(&mut self) -> Option<i32> {
        self.process.exited()
    }

    /// Starts Geth again on the same datadir and ports, and waits for its Engine API.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn_and_wait().await
    }

    /// Kills Geth, deletes its chain (as a lost disk would), initialises it again from
    /// genesis, and starts it on the same ports and JWT.
    pub async fn wipe_and_restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        std::fs::remove_dir_all(self.datadir()).context("cannot delete the datadir")?;
        run_init(&geth_binary()?, self.dir.path(), &self.genesis())?;
        self.spawn_and_wait().await
    }

    /// Geth's log file (kept across restarts and wipes).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `bytes` of Geth's log.
    pub fn log_tail(&self, bytes: u64) -> String {
        self.process.log_tail(bytes)
    }

    /// The genesis file this Geth was initialised with.
    pub fn genesis(&self) -> PathBuf {
        self.options.genesis.clone().unwrap_or_else(genesis_path)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// (Re)starts the process and waits until the Engine API answers (the JSON-RPC port,
    /// for a Geth in `--dev` mode, which has no Engine API port).
    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(geth_binary()?);
        command
            .arg("--datadir")
            .arg(self.datadir())
            .args(GETH_FLAGS)
            .args(if self.p2p_port.is_some() { GETH_PEERED_FLAGS } else { GETH_ALONE_FLAGS })
            .args(GETH_LOOPBACK_FLAGS)
            .arg(format!("--authrpc.port={}", self.auth_port))
            .arg(format!("--authrpc.jwtsecret={}", self.jwt_path().display()))
            .arg(format!("--http.port={}", self.http_port))
            .arg(format!("--metrics.port={}", self.metrics_port))
            // Tests run several nodes: no fixed P2P port, no IPC socket in a shared place.
            .arg(format!("--port={}", self.p2p_port.unwrap_or(0)))
            .args(["--ipcdisable", "--verbosity=3"]);
        if let Some(period) = self.options.dev_period {
            command.args(["--dev", &format!("--dev.period={period}")]);
        }
        command.args(&self.options.extra);
        self.process.start(command)?;
        if self.options.dev_period.is_some() {
            let http = self.http();
            return self
                .process
                .wait_ready(STARTUP_TIMEOUT, || async {
                    http.call::<_, serde_json::Value>("eth_chainId", json!([]), Duration::from_secs(2)).await.is_ok()
                })
                .await;
        }
        let engine = self.engine();
        self.process.wait_ready(STARTUP_TIMEOUT, || async { engine.chain_id().await.is_ok() }).await
    }
}

fn run_init(binary: &Path, dir: &Path, genesis: &Path) -> anyhow::Result<()> {
    let mut init = Command::new(binary);
    init.arg("init").arg("--state.scheme=hash").arg("--datadir").arg(dir.join("data")).arg(genesis);
    run_tool(init, "geth init")?;
    Ok(())
}

fn rand_bytes() -> [u8; 32] {
    B256::random().0
}
