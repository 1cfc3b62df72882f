//! Test harness (feature `harness`): the real components, one fresh instance per test.
//!
//! - [`Geth`]: the pinned Geth on the project's genesis, with its own datadir, ports and JWT.
//! - [`Redis`], [`Postgres`]: a server of each on a free loopback port, in a temp dir.
//! - [`CometNet`]: a CometBFT validator network from `cometbft testnet`, on free ports.
//! - [`Service`]: a process of ours (a sequencer, a leader, a member), killed on drop.
//! - [`eventually`]: waits for a condition with a generous bound, never for a fixed time.
//! - [`tx`]: transactions signed with the development key `genesis.json` funds.
//! - [`Cast`]: Foundry's `cast`, the user's client, with its default fees.
//! - [`Toxiproxy`]: a real fault proxy between components: cut, half-open, slow links.
//! - [`InvalidatingProxy`]: gives, on demand, answers Geth cannot be made to give
//!   (newPayload INVALID, SYNCING or ACCEPTED; forkchoiceUpdated withheld or "beacon syncer
//!   reorging").
//! - [`Prometheus`]: a real Prometheus scraping the processes a test names, with the
//!   project's rules.
//!
//! A missing binary is a set-up failure with a message naming `scripts/setup.sh`, never a
//! reason to skip a test. Every process is told to die with the test process.

mod accounts;
mod cast;
mod cometbft;
mod geth;
mod postgres;
mod process;
mod prometheus;
mod redis;
mod tamper;
mod toxiproxy;
pub mod tx;

use std::path::{Path, PathBuf};

pub use accounts::{Accounts, WrittenGenesis, edited_genesis, funded_genesis};
pub use cast::{Cast, CastReceipt, cast_binary, default_fee_transfer};
pub use cometbft::{BUILD_TIME, CometNet, CometNode, CometTimeouts, FLUSH_THROTTLE, ROUND_ESTIMATE, cometbft_binary};
pub use geth::{
    GETH_ALONE_FLAGS, GETH_FLAGS, GETH_LOOPBACK_FLAGS, GETH_PEERED_FLAGS, Geth, GethOptions, Slots, geth_binary,
    max_concurrent, take_slots,
};
pub use postgres::{Postgres, postgres_bin_dir};
pub use process::{Service, eventually, faked_clock, faketime_library, free_port, http_get, http_request, set_clock};
pub use prometheus::{Alert, Prometheus, ScrapeTarget, check_metrics, prometheus_binary};
pub use redis::{Redis, RedisSentinels, redis_binary};
pub use tamper::InvalidatingProxy;
pub use toxiproxy::{Proxy, Toxiproxy, toxiproxy_binary};
pub use tx::{DEV_PRIVATE_KEY, Receipt, dev_signer, signed_blob_transaction, signed_transfer};

/// The repository root (where `genesis.json` and `.tools/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("common/ sits in the workspace root").to_owned()
}

/// The project's `genesis.json`.
pub fn genesis_path() -> PathBuf {
    workspace_root().join("genesis.json")
}

/// `target/release/<name>`, a release binary of the workspace: the benchmarks measure
/// optimised builds only, which `scripts/bench.sh` builds first.
pub fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = workspace_root().join("target/release").join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run scripts/bench.sh, which builds the release binaries",
        path.display()
    );
    Ok(path)
}
