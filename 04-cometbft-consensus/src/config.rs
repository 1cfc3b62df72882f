//! Flags, each with an environment variable, and the checks made before anything starts.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use alloy_primitives::Address;
use anyhow::{Context, ensure};
use common::{
    config::{ElArgs, ServiceArgs},
    rpc::RpcClient,
};

/// A validator's ABCI application: CometBFT orders the blocks, this app runs them on Geth.
#[derive(Debug, Clone, clap::Parser)]
#[command(version)]
pub struct Config {
    #[command(flatten)]
    pub el: ElArgs,

    /// Where CometBFT connects to this app: its `proxy_app`, without `tcp://`.
    #[arg(long, env = "ABCI_ADDR", default_value = "127.0.0.1:26658")]
    pub abci_addr: SocketAddr,

    /// Address that receives the priority fees of the blocks this validator proposes.
    #[arg(long, env = "FEE_RECIPIENT", default_value_t = Address::ZERO)]
    pub fee_recipient: Address,

    /// How long the proposer's Geth may fill a block with pending transactions before it
    /// is proposed (ms); it must fit well within CometBFT's `timeout_propose`, which
    /// `scripts/bft.sh` derives from this (`BUILD_TIME_MS`) and the block time.
    #[arg(long, env = "BUILD_TIME_MS", default_value_t = 200)]
    pub build_time_ms: u64,

    /// Who starts building the next block as soon as a block is committed, so that Geth
    /// has the commit wait to fill it: `proposer` (the validator that proposes next, as
    /// CometBFT's RPC names it), `all` (every validator), or `off` (the proposer builds when
    /// PrepareProposal arrives, for `--build-time-ms`).
    #[arg(long, env = "BUILD_AHEAD", value_enum, default_value_t = BuildAhead::Proposer)]
    pub build_ahead: BuildAhead,

    /// This validator's CometBFT RPC, where `--build-ahead proposer` reads who proposes
    /// next (its `[rpc] laddr`, as http://).
    #[arg(long, env = "COMETBFT_RPC", default_value = "http://127.0.0.1:26657")]
    pub cometbft_rpc: String,

    /// Directory of the app's own store (every committed block, and the head).
    #[arg(long, env = "STATE_DIR", default_value = ".devnet/bft/node0/app")]
    pub state_dir: PathBuf,

    /// How many of the newest blocks this validator keeps (0: every block): its store
    /// drops older ones, and Commit's `retain_height` lets CometBFT drop them too. A node
    /// that joins later than the window reaches back cannot block-sync from a validator
    /// that dropped them.
    #[arg(long, env = "RETAIN_BLOCKS", default_value_t = 0)]
    pub retain_blocks: u64,

    /// `/ready` answers 503 when no block was committed for this long (seconds).
    #[arg(long, env = "READY_MAX_AGE", default_value_t = 10)]
    pub ready_max_age: u64,

    #[command(flatten)]
    pub service: ServiceArgs,

    /// Test only: propose blocks with a wrong state root and a hash to match, so that
    /// only executing them shows they are invalid.
    #[arg(long, env = "TEST_CORRUPT_PROPOSALS", hide = true)]
    pub test_corrupt_proposals: bool,

    /// Test only: what counts as CometBFT pausing, in ms (`app::CATCH_UP_PAUSE` when not
    /// set). A block that comes after a pause moves Geth's head at once, and the block
    /// Commit held back while block sync caught up is made head once CometBFT pauses.
    #[arg(long, env = "TEST_CATCH_UP_PAUSE_MS", hide = true)]
    pub test_catch_up_pause_ms: Option<u64>,

    /// Bench only: never hold a proposal for the clock, so that a benchmark can make a long
    /// chain faster than a block a second (its EL timestamps run ahead of the clock, a
    /// second a block).
    #[arg(long, env = "BENCH_NO_HOLD", hide = true)]
    pub bench_no_hold: bool,
}

/// Which validators build ahead (`--build-ahead`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuildAhead {
    /// Nobody: the proposer builds when PrepareProposal arrives.
    Off,
    /// Every validator, at every commit; a validator that does not propose stops its
    /// build when someone else's proposal arrives.
    All,
    /// Only the validator that proposes next, as CometBFT's RPC (`--cometbft-rpc`) names
    /// it at each new height.
    Proposer,
}

impl Config {
    /// Rejects values that parse but make no sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.build_time_ms <= 2_000,
            "--build-time-ms ({}) is over 2 s: every round would wait that long for its proposal (CometBFT's timeout_propose must be longer still)",
            self.build_time_ms
        );
        ensure!(self.ready_max_age >= 1, "--ready-max-age must be at least 1 second");
        single_node::store::check_retain(self.retain_blocks)?;
        Ok(())
    }

    /// The client for `--cometbft-rpc`, without calling it yet: a URL that is not
    /// `http://host:port` fails here, at start.
    pub fn cometbft_client(&self) -> anyhow::Result<RpcClient> {
        RpcClient::new(&self.cometbft_rpc, None).context("bad --cometbft-rpc")
    }

    /// The proposer's build deadline.
    pub const fn build_time(&self) -> Duration {
        Duration::from_millis(self.build_time_ms)
    }

    /// What counts as CometBFT pausing: no Commit for this long.
    pub fn catch_up_pause(&self) -> Duration {
        self.test_catch_up_pause_ms.map_or(crate::app::CATCH_UP_PAUSE, Duration::from_millis)
    }

    /// Commit's `retain_height` at `height`: CometBFT may drop the blocks below it, which
    /// keeps the newest `--retain-blocks` (0, every block, until there are more).
    pub fn retain_height(&self, height: i64) -> i64 {
        let retain = i64::try_from(self.retain_blocks).unwrap_or(i64::MAX);
        if retain == 0 || height <= retain { 0 } else { height - retain + 1 }
    }

    /// How long the proposer holds a block with `timestamp` for the clock now
    /// ([`crate::proposal::hold`]; nothing with `--bench-no-hold`).
    pub fn hold(&self, timestamp: u64) -> Duration {
        if self.bench_no_hold {
            Duration::ZERO
        } else {
            crate::proposal::hold(timestamp, single_node::clock::unix_time())
        }
    }

    /// The path of the embedded store.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("app.redb")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn a_proposal_is_held_for_the_clock_unless_a_bench_turns_the_hold_off() {
        let ahead = single_node::clock::unix_time().as_secs() + 3_600;
        let config = Config::try_parse_from(["cometbft-consensus"]).expect("the defaults parse");
        assert_eq!(config.hold(ahead), crate::proposal::MAX_HOLD, "a chain an hour ahead of the clock");
        let bench = Config::try_parse_from(["cometbft-consensus", "--bench-no-hold"]).expect("the flag parses");
        assert_eq!(bench.hold(ahead), Duration::ZERO);
    }
}
