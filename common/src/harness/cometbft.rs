//! A real CometBFT network per test: `cometbft testnet` writes the validators' homes into
//! a temp dir, their genesis names the EL chain's block 0 (as `scripts/bft.sh` writes it),
//! each node's listen addresses move to free loopback ports, and every node runs as a
//! [`Service`]. Full nodes (which follow the chain without voting) join later,
//! from `cometbft init` and the validators' genesis, as `scripts/bft.sh full` adds them.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};

use super::{
    process::{Service, free_port, http_get, run_tool, tool_binary},
    toxiproxy::{Proxy, Toxiproxy},
};
use crate::ElChain;

/// The CometBFT binary: `$COMETBFT_BIN`, else the one `scripts/setup.sh` installs.
pub fn cometbft_binary() -> anyhow::Result<PathBuf> {
    tool_binary("COMETBFT_BIN", "cometbft", "CometBFT")
}

/// One node's CometBFT: a validator's, or a full node's.
#[derive(Debug)]
pub struct CometNode {
    process: Service,
    /// Its home directory (config, keys, block store).
    pub home: PathBuf,
    /// Its RPC port.
    pub rpc_port: u16,
    /// Where it expects the ABCI application, `127.0.0.1:port`.
    pub abci_addr: String,
}

/// A network of validators, each with equal voting power, and the full nodes added to it.
#[derive(Debug)]
pub struct CometNet {
    /// The validators, in `cometbft testnet` order, then the full nodes in the order they
    /// were added.
    pub nodes: Vec<CometNode>,
    /// How a full node dials each validator: `id@127.0.0.1:port`, around any proxy.
    validators: Vec<String>,
    /// The timeouts every node's `config.toml` has.
    timeouts: CometTimeouts,
    /// The proxied links of an isolatable node.
    isolation: Vec<Proxy>,
    /// In a network started with [`CometNet::init_proxied`]: `(from, to, link)` for every
    /// node's link to every other.
    links: Vec<(usize, usize, Proxy)>,
    /// Whether peer exchange is on (off where links go through proxies).
    pex: bool,
    dir: tempfile::TempDir,
}

/// `cometbft testnet`'s output, before the nodes' config files are written.
struct Testnet {
    dir: tempfile::TempDir,
    homes: Vec<PathBuf>,
    ids: Vec<String>,
    /// Each node's P2P, RPC and ABCI ports.
    ports: Vec<(u16, u16, u16)>,
}

impl Testnet {
    /// Runs `cometbft testnet` for `n` validators into a temp dir, names the EL chain
    /// `el_chain` in their genesis, and picks their ports.
    fn write(n: usize, el_chain: ElChain) -> anyhow::Result<Self> {
        let binary = cometbft_binary()?;
        let dir = super::process::temp_dir("cometbft-test-")?;
        let mut testnet = Command::new(&binary);
        testnet.args(["testnet", "--v", &n.to_string(), "--populate-persistent-peers=false", "--o"]).arg(dir.path());
        run_tool(testnet, "cometbft testnet")?;
        let homes: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("node{i}"))).collect();
        let (mut ids, mut ports) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for home in &homes {
            name_el_chain(&home.join("config/genesis.json"), el_chain)?;
            let id = Command::new(&binary).args(["show-node-id", "--home"]).arg(home).output()?;
            ids.push(String::from_utf8_lossy(&id.stdout).trim().to_owned());
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        Ok(Self { dir, homes, ids, ports })
    }

    /// Writes each node's config: its ports, its peers (node `i` reaches node `j` at
    /// `route(i, j)`), the timeouts, and whether peer exchange is on.
    fn configure(
        self,
        route: &dyn Fn(usize, usize) -> String,
        timeouts: &CometTimeouts,
        pex: bool,
    ) -> anyhow::Result<CometNet> {
        let n = self.homes.len();
        let validators = self.ids.iter().zip(&self.ports).map(|(id, p)| format!("{id}@127.0.0.1:{}", p.0)).collect();
        let mut nodes = Vec::with_capacity(n);
        for (i, (home, &(p2p, rpc, abci))) in self.homes.into_iter().zip(&self.ports).enumerate() {
            let peers: Vec<String> =
                (0..n).filter(|&j| j != i).map(|j| format!("{}@{}", self.ids[j], route(i, j))).collect();
            configure(&home.join("config/config.toml"), (p2p, rpc, abci), &peers.join(","), timeouts, pex)?;
            let process = Service::stopped(&format!("cometbft{i}"), &home.join("cometbft.log"));
            nodes.push(CometNode { process, home, rpc_port: rpc, abci_addr: format!("127.0.0.1:{abci}") });
        }
        Ok(CometNet {
            nodes,
            validators,
            timeouts: timeouts.clone(),
            isolation: Vec::new(),
            links: Vec::new(),
            pex,
            dir: self.dir,
        })
    }
}

impl CometNet {
    /// Writes an `n`-validator network of the EL chain `el_chain` ([`super::Geth::el_chain`]),
    /// on free loopback ports with `timeouts`. Nothing runs until [`CometNet::start`].
    pub fn init(n: usize, el_chain: ElChain, timeouts: &CometTimeouts) -> anyhow::Result<Self> {
        let testnet = Testnet::write(n, el_chain)?;
        let ports: Vec<u16> = testnet.ports.iter().map(|p| p.0).collect();
        let direct = |_: usize, j: usize| format!("127.0.0.1:{}", ports[j]);
        testnet.configure(&direct, timeouts, true)
    }

    /// [`CometNet::init`], with every link between node `node` and the others through
    /// `faults`, so [`CometNet::isolate`] can cut it off. Peer exchange is off on every node,
    /// so that no node learns, and dials, the others' own addresses around the proxies.
    pub async fn init_isolatable(
        n: usize,
        el_chain: ElChain,
        timeouts: &CometTimeouts,
        node: usize,
        faults: &Toxiproxy,
    ) -> anyhow::Result<Self> {
        let testnet = Testnet::write(n, el_chain)?;
        let ports: Vec<u16> = testnet.ports.iter().map(|p| p.0).collect();
        let upstream = |j: usize| format!("127.0.0.1:{}", ports[j]);
        let inbound = faults.proxy(&format!("p2p-to-{node}"), &upstream(node)).await?;
        let mut routes = std::collections::HashMap::new();
        let mut links = vec![inbound.clone()];
        for j in (0..n).filter(|&j| j != node) {
            let outbound = faults.proxy(&format!("p2p-{node}-to-{j}"), &upstream(j)).await?;
            routes.insert((node, j), outbound.addr().to_owned());
            routes.insert((j, node), inbound.addr().to_owned());
            links.push(outbound);
        }
        let route = |i: usize, j: usize| routes.get(&(i, j)).cloned().unwrap_or_else(|| upstream(j));
        let mut net = testnet.configure(&route, timeouts, false)?;
        net.isolation = links;
        Ok(net)
    }

    /// [`CometNet::init`], with every node's link to every other through `faults`
    /// ([`CometNet::links_of`]), and peer exchange off, as in [`CometNet::init_isolatable`].
    pub async fn init_proxied(
        n: usize,
        el_chain: ElChain,
        timeouts: &CometTimeouts,
        faults: &Toxiproxy,
    ) -> anyhow::Result<Self> {
        let testnet = Testnet::write(n, el_chain)?;
        let mut links = Vec::new();
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                let upstream = format!("127.0.0.1:{}", testnet.ports[j].0);
                links.push((i, j, faults.proxy(&format!("p2p-{i}-to-{j}"), &upstream).await?));
            }
        }
        let route = |i: usize, j: usize| {
            links.iter().find(|(from, to, _)| (*from, *to) == (i, j)).map(|(_, _, p)| p.addr().to_owned())
        };
        let mut net = testnet.configure(&|i, j| route(i, j).unwrap_or_default(), timeouts, false)?;
        net.links = links;
        Ok(net)
    }

    /// In a network from [`CometNet::init_proxied`], every link node `i` dials or is
    /// dialled on.
    pub fn links_of(&self, i: usize) -> Vec<&Proxy> {
        self.links.iter().filter(|(from, to, _)| *from == i || *to == i).map(|(_, _, p)| p).collect()
    }

    /// Cuts every link of the node given to [`CometNet::init_isolatable`].
    pub async fn isolate(&self) -> anyhow::Result<()> {
        for link in &self.isolation {
            link.cut().await?;
        }
        Ok(())
    }

    /// Restores the links [`CometNet::isolate`] cut.
    pub async fn rejoin(&self) -> anyhow::Result<()> {
        for link in &self.isolation {
            link.heal().await?;
        }
        Ok(())
    }

    /// Writes a full node's home, as an operator makes one: `cometbft init` (its own keys,
    /// which no genesis names, so it never votes), the validators' `genesis.json`, and a
    /// config with its own ports, every validator as a persistent peer, and the network's
    /// timeouts. Returns its index in [`CometNet::nodes`]; it runs from [`CometNet::start`].
    /// CometBFT's block sync brings it from genesis to the validators' height, then it
    /// follows their consensus without taking part.
    ///
    /// Only in a network from [`CometNet::init`]: a full node dials the validators
    /// directly, so it would carry messages around the proxies of the others.
    pub fn add_full_node(&mut self) -> anyhow::Result<usize> {
        anyhow::ensure!(
            self.isolation.is_empty() && self.links.is_empty(),
            "a full node would dial around this network's proxies"
        );
        let i = self.nodes.len();
        let home = self.dir.path().join(format!("full{}", i - self.validators.len()));
        let mut init = Command::new(cometbft_binary()?);
        init.args(["init", "--home"]).arg(&home);
        run_tool(init, "cometbft init")?;
        std::fs::copy(self.nodes[0].home.join("config/genesis.json"), home.join("config/genesis.json"))
            .context("cannot copy the validators' genesis")?;
        let (p2p, rpc, abci) = (free_port()?, free_port()?, free_port()?);
        configure(
            &home.join("config/config.toml"),
            (p2p, rpc, abci),
            &self.validators.join(","),
            &self.timeouts,
            self.pex,
        )?;
        let process = Service::stopped(&format!("cometbft{i}"), &home.join("cometbft.log"));
        self.nodes.push(CometNode { process, home, rpc_port: rpc, abci_addr: format!("127.0.0.1:{abci}") });
        Ok(i)
    }

    /// [`CometNet::add_full_node`], set to start by state sync instead of block 1: it finds
    /// a snapshot at its peers, checks it with a light client against the validators' RPC
    /// from the header at `trust_height` (whose hash is `trust_hash`), has its app restore
    /// it, and block-syncs from there.
    pub fn add_state_synced_node(&mut self, trust_height: u64, trust_hash: &str) -> anyhow::Result<usize> {
        let i = self.add_full_node()?;
        // At least two RPC servers, as CometBFT requires: a primary and a witness.
        let servers: Vec<String> =
            (0..2).map(|k| format!("127.0.0.1:{}", self.nodes[k % self.validators.len()].rpc_port)).collect();
        let path = self.nodes[i].home.join("config/config.toml");
        let text = std::fs::read_to_string(&path)?;
        let text = set(&text, "statesync", "enable", "true")?;
        let text = set(&text, "statesync", "rpc_servers", &format!("\"{}\"", servers.join(",")))?;
        let text = set(&text, "statesync", "trust_height", &trust_height.to_string())?;
        let text = set(&text, "statesync", "trust_hash", &format!("\"{trust_hash}\""))?;
        let text = set(&text, "statesync", "trust_period", "\"168h0m0s\"")?;
        let text = set(&text, "statesync", "discovery_time", "\"5s\"")?;
        std::fs::write(&path, text)?;
        Ok(i)
    }

    /// Sets `key` in `[section]` of node `i`'s `config.toml` to `value` (TOML, quoted if
    /// a string), before the node starts.
    pub fn set_config(&self, i: usize, section: &str, key: &str, value: &str) -> anyhow::Result<()> {
        let path = self.nodes[i].home.join("config/config.toml");
        std::fs::write(&path, set(&std::fs::read_to_string(&path)?, section, key, value)?)?;
        Ok(())
    }

    /// Starts (or restarts) node `i`.
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let mut command = Command::new(cometbft_binary()?);
        command.args(["start", "--home"]).arg(&node.home);
        node.process.start(command)
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> &Path {
        self.nodes[i].process.log_path()
    }

    /// Node `i`'s process, to kill or signal.
    pub fn process(&mut self, i: usize) -> &mut Service {
        &mut self.nodes[i].process
    }

    /// Node `i`'s latest block height, if its RPC answers.
    pub async fn height(&self, i: usize) -> Option<u64> {
        let (code, body) = http_get(&format!("http://127.0.0.1:{}/status", self.nodes[i].rpc_port)).await?;
        let status: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
        status["result"]["sync_info"]["latest_block_height"].as_str()?.parse().ok()
    }

    /// The lowest height node `i`'s block store still holds, if its RPC answers.
    pub async fn base(&self, i: usize) -> Option<u64> {
        let (code, body) = http_get(&format!("http://127.0.0.1:{}/status", self.nodes[i].rpc_port)).await?;
        let status: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
        status["result"]["sync_info"]["earliest_block_height"].as_str()?.parse().ok()
    }

    /// The hash of node `i`'s block at `height` (hex, as CometBFT shows it).
    pub async fn block_hash(&self, i: usize, height: u64) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/block?height={height}", self.nodes[i].rpc_port);
        let (_, body) = http_get(&url).await?;
        let block: serde_json::Value = serde_json::from_str(&body).ok()?;
        block["result"]["block_id"]["hash"].as_str().map(str::to_owned)
    }

    /// How many transactions node `i`'s transaction index gives for block `height`
    /// (`/tx_search`), or the error its RPC answers with (a node with the index off:
    /// "transaction indexing is disabled"); `None` if its RPC does not answer.
    pub async fn indexed_txs(&self, i: usize, height: u64) -> Option<Result<u64, String>> {
        let url = format!("http://127.0.0.1:{}/tx_search?query=%22tx.height%3D{height}%22", self.nodes[i].rpc_port);
        let (_, body) = http_get(&url).await?;
        let found: serde_json::Value = serde_json::from_str(&body).ok()?;
        if let Some(error) = found.get("error") {
            return Some(Err(error["data"].as_str().or_else(|| error["message"].as_str()).unwrap_or("").to_owned()));
        }
        found["result"]["total_count"].as_str()?.parse().ok().map(Ok)
    }

    /// Node `i`'s validator address, as block headers show it (`proposer_address`).
    pub fn validator_address(&self, i: usize) -> anyhow::Result<String> {
        let path = self.nodes[i].home.join("config/priv_validator_key.json");
        let key: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        key["address"].as_str().map(str::to_owned).context("priv_validator_key.json has no address")
    }

    /// The proposer address in the header of node `i`'s block at `height`.
    pub async fn block_proposer(&self, i: usize, height: u64) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/block?height={height}", self.nodes[i].rpc_port);
        let (_, body) = http_get(&url).await?;
        let block: serde_json::Value = serde_json::from_str(&body).ok()?;
        block["result"]["block"]["header"]["proposer_address"].as_str().map(str::to_owned)
    }

    /// How many peers node `i` has, if its RPC answers.
    pub async fn peer_count(&self, i: usize) -> Option<usize> {
        let (_, body) = http_get(&format!("http://127.0.0.1:{}/net_info", self.nodes[i].rpc_port)).await?;
        let info: serde_json::Value = serde_json::from_str(&body).ok()?;
        info["result"]["n_peers"].as_str()?.parse().ok()
    }

    /// The app hash in the header of node `i`'s block at `height`, hex.
    pub async fn block_app_hash(&self, i: usize, height: u64) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/block?height={height}", self.nodes[i].rpc_port);
        let (_, body) = http_get(&url).await?;
        let block: serde_json::Value = serde_json::from_str(&body).ok()?;
        block["result"]["block"]["header"]["app_hash"].as_str().map(str::to_owned)
    }
}

// ANCHOR: timeouts
/// How long one CometBFT round takes on a small machine (two cores, four validators on
/// it): the proposal, from a block built ahead; its gossip; ProcessProposal, a newPayload
/// on every validator's Geth; and the two voting steps. The block interval is
/// `timeout_commit` plus a round, so the commit wait is the block time less this. It was
/// measured by the benchmarks (docs/src/benchmarks.md, "BFT"); `scripts/bft.sh` uses the
/// same figure.
pub const ROUND_ESTIMATE: Duration = Duration::from_millis(250);

/// How long CometBFT's connections hold outgoing messages before flushing them. Its
/// default, 100 ms, suits links across the world; on a LAN it costs every step of a round
/// a wait, about 40% of the round at one-second blocks (see the benchmarks).
pub const FLUSH_THROTTLE: &str = "10ms";

/// The app's default build deadline (`--build-time-ms`): how long a proposer takes to
/// answer PrepareProposal when no block was built ahead.
pub const BUILD_TIME: Duration = Duration::from_millis(200);

/// The CometBFT timeouts the project writes into each validator's `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CometTimeouts {
    /// `[consensus] timeout_commit`: the wait after a commit before the next height.
    pub timeout_commit: String,
    /// `[consensus] timeout_propose`: how long validators wait for a round's proposal
    /// before they vote nil and the round moves on to the next proposer.
    pub timeout_propose: String,
    /// `[consensus] timeout_precommit`: how long validators wait for the last precommits
    /// once two thirds are in without deciding a block (two thirds for nil, say) before
    /// the next round.
    pub timeout_precommit: String,
    /// `[p2p] flush_throttle_timeout`.
    pub flush_throttle: String,
}

impl CometTimeouts {
    /// The timeouts for a block every `block_time`: the commit wait is the block time less
    /// [`ROUND_ESTIMATE`]; connections flush every [`FLUSH_THROTTLE`]; and a proposal is
    /// waited for half the block time, so a dead proposer costs half a block. But at least
    /// a round more than a live proposer needs to answer PrepareProposal: the build
    /// deadline ([`BUILD_TIME`]), or its hold for the clock, which keeps the EL chain at a
    /// block a second at most and so lasts up to a second less the commit wait. A round
    /// that decided nothing waits half a round for its last precommits: they are a gossip
    /// step away, and a dead validator's never come.
    pub fn for_block_time(block_time: Duration) -> Self {
        let commit = block_time.saturating_sub(ROUND_ESTIMATE);
        let hold = Duration::from_secs(1).saturating_sub(commit);
        let propose = (block_time / 2).max(BUILD_TIME.max(hold) + ROUND_ESTIMATE);
        Self {
            timeout_commit: format!("{}ms", commit.as_millis()),
            timeout_propose: format!("{}ms", propose.as_millis()),
            timeout_precommit: format!("{}ms", (ROUND_ESTIMATE / 2).as_millis()),
            flush_throttle: FLUSH_THROTTLE.to_owned(),
        }
    }

    /// CometBFT's own defaults, for comparison.
    pub fn cometbft_defaults() -> Self {
        Self {
            timeout_commit: "1s".to_owned(),
            timeout_propose: "3s".to_owned(),
            timeout_precommit: "1s".to_owned(),
            flush_throttle: "100ms".to_owned(),
        }
    }
}
// ANCHOR_END: timeouts

/// Points a node's `config.toml` at its ports and peers, and sets its timeouts and
/// peer exchange.
fn configure(
    path: &Path,
    (p2p, rpc, abci): (u16, u16, u16),
    peers: &str,
    timeouts: &CometTimeouts,
    pex: bool,
) -> anyhow::Result<()> {
    let CometTimeouts { timeout_commit, timeout_propose, timeout_precommit, flush_throttle } = timeouts;
    let text = std::fs::read_to_string(path)?;
    let text = set(&text, "", "proxy_app", &format!("\"tcp://127.0.0.1:{abci}\""))?;
    let text = set(&text, "rpc", "laddr", &format!("\"tcp://127.0.0.1:{rpc}\""))?;
    let text = set(&text, "p2p", "laddr", &format!("\"tcp://127.0.0.1:{p2p}\""))?;
    let text = set(&text, "p2p", "persistent_peers", &format!("\"{peers}\""))?;
    let text = set(&text, "p2p", "pex", if pex { "true" } else { "false" })?;
    // Every node is on 127.0.0.1: each must take several peers at one address (`cometbft
    // testnet` sets these for validators, `cometbft init` does not for a full node).
    let text = set(&text, "p2p", "allow_duplicate_ip", "true")?;
    let text = set(&text, "p2p", "addr_book_strict", "false")?;
    let text = set(&text, "consensus", "timeout_commit", &format!("\"{timeout_commit}\""))?;
    let text = set(&text, "consensus", "timeout_propose", &format!("\"{timeout_propose}\""))?;
    let text = set(&text, "consensus", "timeout_precommit", &format!("\"{timeout_precommit}\""))?;
    let text = set(&text, "p2p", "flush_throttle_timeout", &format!("\"{flush_throttle}\""))?;
    // No transaction index, as scripts/bft.sh: it would keep every block's payload a
    // second time, and CometBFT never prunes it.
    let text = set(&text, "tx_index", "indexer", "\"null\"")?;
    std::fs::write(path, text)?;
    Ok(())
}

/// Sets the genesis file's `app_state` to `{"el_genesis_hash": …, "el_chain_id": …,
/// "el_fork_id": …, "el_genesis_forks": …, "el_blob_schedule": …}`, as `scripts/bft.sh`
/// writes it: each app checks its Geth against it at `InitChain`.
fn name_el_chain(path: &Path, el_chain: ElChain) -> anyhow::Result<()> {
    let mut genesis: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    genesis["app_state"] = serde_json::json!({
        "el_genesis_hash": el_chain.genesis,
        "el_chain_id": el_chain.chain_id,
        "el_fork_id": el_chain.fork_id,
        "el_genesis_forks": el_chain.genesis_forks,
        "el_blob_schedule": el_chain.blob_schedule,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&genesis)?)?;
    Ok(())
}

/// `text` with `key`'s value in `[section]` (`""` for the top) replaced by `value`.
fn set(text: &str, section: &str, key: &str, value: &str) -> anyhow::Result<String> {
    let mut current = String::new();
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let trimmed = line.trim();
            if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = name.to_owned();
            } else if current == section && trimmed.split('=').next().map(str::trim) == Some(key) {
                found = true;
                return format!("{key} = {value}");
            }
            line.to_owned()
        })
        .collect();
    if !found {
        bail!("config.toml has no {key} in [{section}]");
    }
    Ok(lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_wait_is_the_block_time_less_a_round_and_a_proposal_is_waited_for_half_a_block() {
        let second = CometTimeouts::for_block_time(Duration::from_secs(1));
        assert_eq!(second.timeout_commit, "750ms");
        assert_eq!(second.timeout_propose, "500ms");
        assert_eq!(second.timeout_precommit, "125ms");
        assert_eq!(second.flush_throttle, FLUSH_THROTTLE);
        // Rounds faster than a second: the proposer may hold its block for the clock.
        let short = CometTimeouts::for_block_time(Duration::from_millis(750));
        assert_eq!((short.timeout_commit.as_str(), short.timeout_propose.as_str()), ("500ms", "750ms"));
        let shortest = CometTimeouts::for_block_time(Duration::from_millis(100));
        assert_eq!((shortest.timeout_commit.as_str(), shortest.timeout_propose.as_str()), ("0ms", "1250ms"));
        // Long blocks: the build deadline and a round, or half a block.
        assert_eq!(CometTimeouts::for_block_time(Duration::from_millis(1200)).timeout_propose, "600ms");
        assert_eq!(CometTimeouts::for_block_time(Duration::from_secs(4)).timeout_propose, "2000ms");
    }

    #[test]
    fn keys_are_set_in_their_own_section() {
        let text = "proxy_app = \"a\"\n[rpc]\nladdr = \"x\"\n[p2p]\nladdr = \"y\"\n";
        let text = set(text, "p2p", "laddr", "\"z\"").expect("set");
        assert_eq!(text, "proxy_app = \"a\"\n[rpc]\nladdr = \"x\"\n[p2p]\nladdr = \"z\"\n");
        assert!(set(&text, "consensus", "timeout_commit", "\"1s\"").is_err());
    }
}
