//! A validator network of real processes: per validator a Geth (peered with the others),
//! a `cometbft-consensus` app, and a CometBFT node from `cometbft testnet`.

use std::{process::Command, time::Duration};

use alloy_primitives::B256;
use common::{
    BlockTag,
    harness::{CometNet, CometTimeouts, Geth, Service, Toxiproxy, eventually, free_port, genesis_path, http_get},
};

/// Generous bounds: the CI machine is small and shared.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(180);

/// The block time the tests run with: shorter than the 1 s default, to keep them short.
const BLOCK_TIME: Duration = Duration::from_millis(750);

/// A validator's app (or a full node's, after the validators' in [`Network::validators`]).
#[derive(Debug)]
pub(crate) struct Validator {
    pub(crate) app: Service,
    pub(crate) health: String,
    pub(crate) state: std::path::PathBuf,
    extra: Vec<String>,
}

/// The whole network. Fields drop in order: CometBFT and the apps before the Geths.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) comet: CometNet,
    pub(crate) validators: Vec<Validator>,
    pub(crate) geths: Vec<Geth>,
    _faults: Option<Toxiproxy>,
    dir: tempfile::TempDir,
}

/// How a network is set up, besides its size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    /// The Geths peer with each other (as `scripts/bft.sh` runs them).
    pub(crate) peered_geths: bool,
    /// This validator's CometBFT links to the others go through toxiproxy, so
    /// `comet.isolate()` can cut it off.
    pub(crate) isolatable: Option<usize>,
    /// Geths started (peered like the rest, unless [`Setup::full_nodes_unlinked`]) for this
    /// many full nodes, whose app and CometBFT [`Network::start_full_node`] starts later.
    pub(crate) full_nodes: usize,
    /// The full nodes' Geths start with no peer, for the test to [link](Geth::link) them
    /// when it chooses.
    pub(crate) full_nodes_unlinked: bool,
}

impl Setup {
    /// Peered Geths, as `scripts/bft.sh` runs them, and no full node.
    pub(crate) const PEERED: Setup =
        Setup { peered_geths: true, isolatable: None, full_nodes: 0, full_nodes_unlinked: false };
}

impl Network {
    /// `n` validators, all running, as `scripts/bft.sh` runs them; `extra[i]` are flags
    /// for validator `i`'s app.
    pub(crate) async fn start(n: usize, extra: &[(usize, &[&str])]) -> Self {
        Self::start_with(n, extra, Setup::PEERED).await
    }

    /// [`Network::start`], set up as `setup` says.
    pub(crate) async fn start_with(n: usize, extra: &[(usize, &[&str])], setup: Setup) -> Self {
        // A full node's Geth starts with the others, from genesis as a new node's would, so
        // that the whole network takes its slots at once. Unpeered, nothing sent to it
        // would ever reach a proposer.
        assert!(setup.peered_geths || setup.full_nodes == 0, "a full node's Geth must be peered with the others");
        assert!(setup.peered_geths || !setup.full_nodes_unlinked, "only peerable Geths can be linked later");
        let geths = if setup.peered_geths {
            let geths = Geth::start_peerable_group(n + setup.full_nodes, &Default::default()).await.expect("geths");
            let linked = if setup.full_nodes_unlinked { n } else { geths.len() };
            Geth::link_all(&geths[..linked]).await.expect("peered geths");
            geths
        } else {
            Geth::start_group(n + setup.full_nodes).await.expect("geths")
        };
        let el_chain = geths[0].el_chain().await.expect("block 0 and chain id");
        let timeouts = CometTimeouts::for_block_time(BLOCK_TIME);
        let (comet, faults) = match setup.isolatable {
            Some(node) => {
                let faults = Toxiproxy::start().await.expect("toxiproxy");
                let comet =
                    CometNet::init_isolatable(n, el_chain, &timeouts, node, &faults).await.expect("cometbft testnet");
                (comet, Some(faults))
            }
            None => (CometNet::init(n, el_chain, &timeouts).expect("cometbft testnet"), None),
        };
        let dir = tempfile::tempdir().expect("dir");
        let mut network = Self { comet, validators: Vec::new(), geths, _faults: faults, dir };
        for i in 0..n {
            let flags = extra.iter().find(|(j, _)| *j == i).map(|(_, f)| f.iter().map(|s| s.to_string()).collect());
            let validator = network.spawn_app(i, flags.unwrap_or_default());
            network.validators.push(validator);
        }
        for i in 0..n {
            network.comet.start(i).expect("cometbft starts");
        }
        network
    }

    fn spawn_app(&self, i: usize, extra: Vec<String>) -> Validator {
        let health = format!("127.0.0.1:{}", free_port().expect("port"));
        let state = self.dir.path().join(format!("app{i}"));
        let app = Service::spawn(&format!("app{i}"), self.app_command(i, &health, &state, &extra), &self.log(i))
            .expect("app starts");
        Validator { app, health, state, extra }
    }

    pub(crate) fn log(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("app{i}.log"))
    }

    fn app_command(&self, i: usize, health: &str, state: &std::path::Path, extra: &[String]) -> Command {
        let geth = &self.geths[i];
        let mut command = Command::new(env!("CARGO_BIN_EXE_cometbft-consensus"));
        command
            .args(extra)
            .env("ETH_CLIENT_URL", geth.auth_url())
            .env("JWT_SECRET", geth.jwt_path())
            .env("GENESIS", genesis_path())
            .env("ABCI_ADDR", &self.comet.nodes[i].abci_addr)
            .env("COMETBFT_RPC", format!("http://127.0.0.1:{}", self.comet.nodes[i].rpc_port))
            .env("STATE_DIR", state)
            .env("HEALTH_ADDR", health)
            .env("RUST_LOG", "info");
        command
    }

    /// Starts the next full node ([`Setup::full_nodes`]): its app on its Geth, then a
    /// CometBFT node that follows the validators without voting. Returns its index, which
    /// its Geth, app and CometBFT share, after the validators'.
    pub(crate) fn start_full_node(&mut self) -> usize {
        let i = self.comet.add_full_node().expect("a full node's home");
        self.start_added(i)
    }

    /// [`Network::start_full_node`], with CometBFT set to state sync
    /// ([`CometNet::add_state_synced_node`]) from the header at `trust_height`.
    pub(crate) fn start_state_synced_node(&mut self, trust_height: u64, trust_hash: &str) -> usize {
        let i = self.comet.add_state_synced_node(trust_height, trust_hash).expect("a state-synced node's home");
        self.start_added(i)
    }

    /// Starts the app and CometBFT of node `i`, just added to [`Network::comet`], on the
    /// next Geth ([`Setup::full_nodes`]).
    fn start_added(&mut self, i: usize) -> usize {
        assert!(i < self.geths.len(), "no Geth left for a full node: raise Setup::full_nodes");
        // As `scripts/bft.sh full` runs it: it never proposes, so it never builds ahead.
        let node = self.spawn_app(i, vec!["--build-ahead".to_owned(), "off".to_owned()]);
        self.validators.push(node);
        self.comet.start(i).expect("cometbft starts");
        i
    }

    /// Stops validator `i` (its CometBFT and its app) with SIGKILL.
    pub(crate) fn kill_validator(&mut self, i: usize) {
        self.comet.process(i).kill();
        self.validators[i].app.kill();
    }

    /// Starts validator `i`'s app and CometBFT again, on their old state.
    pub(crate) fn restart_validator(&mut self, i: usize) {
        let validator = &self.validators[i];
        let command = self.app_command(i, &validator.health, &validator.state, &validator.extra);
        self.validators[i].app.start(command).expect("app restarts");
        self.comet.start(i).expect("cometbft restarts");
    }

    /// Waits until validator `i`'s Geth is at EL block `number` or above.
    pub(crate) async fn geth_at_least(&self, i: usize, number: u64) -> common::Block {
        let engine = self.geths[i].engine();
        eventually(&format!("validator {i}'s Geth at block {number}"), TIMEOUT, || async {
            engine.head().await.ok().filter(|h| h.number >= number)
        })
        .await
    }

    /// GETs `path` on validator `i`'s app endpoints.
    pub(crate) async fn get(&self, i: usize, path: &str) -> Option<(u16, String)> {
        http_get(&format!("http://{}{path}", self.validators[i].health)).await
    }

    /// Every Geth in `among` has the same block at every height up to `to`; returns the
    /// hashes. And CometBFT's block `h + 1` carries EL block `h`'s hash as its app hash.
    /// Each Geth is first given the time to reach `to`: a validator imports a decided
    /// block at its own FinalizeBlock, a moment after another has.
    pub(crate) async fn assert_one_chain(&self, among: &[usize], to: u64) -> Vec<B256> {
        for &i in among {
            self.geth_at_least(i, to).await;
        }
        let first = self.geths[among[0]].engine();
        let mut hashes = Vec::new();
        for number in 0..=to {
            let reference = first.block(BlockTag::Number(number)).await.expect("call").expect("block").hash;
            for &i in &among[1..] {
                let block = self.geths[i].engine().block(BlockTag::Number(number)).await.expect("call");
                assert_eq!(block.map(|b| b.hash), Some(reference), "validator {i}'s Geth at height {number}");
            }
            hashes.push(reference);
        }
        for (number, hash) in hashes.iter().enumerate().take(usize::try_from(to).expect("fits")) {
            let app_hash = self.comet.block_app_hash(among[0], number as u64 + 1).await.expect("cometbft block");
            assert_eq!(app_hash, hex_upper(hash), "CometBFT block {} carries EL block {number}'s hash", number + 1);
        }
        hashes
    }

    /// The metric `name` in validator `i`'s `/metrics`.
    pub(crate) async fn metric(&self, i: usize, name: &str) -> f64 {
        let (_, text) = self.get(i, "/metrics").await.expect("metrics");
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }
}

/// A hash as CometBFT's JSON shows it: hex, upper case, no prefix.
pub(crate) fn hex_upper(hash: &B256) -> String {
    alloy_primitives::hex::encode_upper(hash)
}
