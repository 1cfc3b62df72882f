//! The sequencer as a user runs it: its own process, started with environment variables,
//! on a fresh Geth; and the checks the tests share.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{
    BlockTag, EngineClient,
    harness::{Geth, Service, eventually, free_port, genesis_path, http_get},
};

/// Generous bounds: the CI machine is small and shared.
pub(crate) const BLOCKS_TIMEOUT: Duration = Duration::from_secs(90);
pub(crate) const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Sequencer {
    pub(crate) service: Service,
    pub(crate) health: String,
}

/// A sequencer on a fresh Geth. Fields drop in order: the sequencer stops before Geth.
pub(crate) struct Running {
    pub(crate) sequencer: Sequencer,
    pub(crate) engine: EngineClient,
    pub(crate) geth: Geth,
    pub(crate) dir: tempfile::TempDir,
}

/// Starts a fresh Geth and a sequencer on it with `args`.
pub(crate) async fn running(args: &[&str]) -> Running {
    let geth = Geth::start().await.expect("geth");
    let dir = tempfile::tempdir().expect("dir");
    let sequencer = start(&geth, &dir.path().join("state"), args);
    Running { sequencer, engine: geth.engine(), geth, dir }
}

pub(crate) fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port().expect("a free port"))
}

/// Starts the `single-node` binary against `geth`, with its store in `state`.
pub(crate) fn start(geth: &Geth, state: &Path, args: &[&str]) -> Sequencer {
    start_with(geth.auth_url(), geth.jwt_path(), genesis_path(), state, args)
}

pub(crate) fn start_with(url: String, jwt: PathBuf, genesis: PathBuf, state: &Path, args: &[&str]) -> Sequencer {
    start_with_env(url, jwt, genesis, state, args, &[])
}

/// [`start_with`], with more environment variables.
pub(crate) fn start_with_env(
    url: String,
    jwt: PathBuf,
    genesis: PathBuf,
    state: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Sequencer {
    let health = free_addr();
    let mut command = Command::new(env!("CARGO_BIN_EXE_single-node"));
    command.envs(env.iter().copied());
    command
        .args(args)
        .env("ETH_CLIENT_URL", url)
        .env("JWT_SECRET", jwt)
        .env("GENESIS", genesis)
        .env("STATE_DIR", state)
        .env("HEALTH_ADDR", &health)
        .env("RUST_LOG", "info");
    let log = state.with_extension(format!("{}.log", unix_now_nanos()));
    let service = Service::spawn("single-node", command, &log).expect("single-node starts");
    Sequencer { service, health: format!("http://{health}") }
}

fn unix_now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// GETs `path` on the sequencer's health server: status and body.
pub(crate) async fn get(sequencer: &Sequencer, path: &str) -> Option<(u16, String)> {
    http_get(&format!("{}{path}", sequencer.health)).await
}

pub(crate) async fn head_at_least(engine: &EngineClient, number: u64) -> common::Block {
    eventually(&format!("head at block {number}"), BLOCKS_TIMEOUT, || async {
        engine.head().await.ok().filter(|head| head.number >= number)
    })
    .await
}

/// Every block from 1 to `to`, each checked to be the child of the one before.
pub(crate) async fn linked_chain(engine: &EngineClient, to: u64) -> Vec<common::Block> {
    let mut chain = vec![engine.block(BlockTag::Number(0)).await.expect("call").expect("genesis")];
    for number in 1..=to {
        let block = engine.block(BlockTag::Number(number)).await.expect("call").expect("block exists");
        let parent = chain.last().expect("non-empty");
        assert_eq!(block.parent_hash, parent.hash, "block {number} is the child of block {}", number - 1);
        assert!(block.timestamp > parent.timestamp, "block {number} timestamp rises");
        chain.push(block);
    }
    chain
}

/// Waits for the chain to grow `more` blocks past `produced`, then checks it is one linked
/// chain that still holds every block of `produced` at its height: no gap, no fork.
pub(crate) async fn keeps_and_extends(engine: &EngineClient, produced: &[common::Block], more: u64) {
    let last = produced.last().expect("non-empty").number;
    let head = head_at_least(engine, last + more).await;
    let chain = linked_chain(engine, head.number).await;
    for (old, now) in produced.iter().zip(&chain) {
        assert_eq!(old.hash, now.hash, "block {} unchanged", old.number);
    }
}
