//! The sequencer as a user runs it: its own process, started with environment variables,
//! on a fresh Geth; and the checks the tests share.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use alloy_primitives::B256;
use common::{
    BlockTag, EngineClient,
    harness::{Geth, Service, eventually, free_port, genesis_path, http_get},
};
use tokio_util::sync::CancellationToken;

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
    env: &[(String, String)],
) -> Sequencer {
    let health = free_addr();
    let mut command = Command::new(env!("CARGO_BIN_EXE_single-node"));
    command.envs(env.iter().map(|(k, v)| (k, v)));
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

/// True once the sequencer's process has exited (or was killed): its `/proc` entry is gone
/// or a zombie.
pub(crate) fn exited(sequencer: &Sequencer) -> bool {
    let Some(pid) = sequencer.service.pid() else { return true };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return true };
    let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

/// [`eventually`] with [`BLOCKS_TIMEOUT`], failing at once, with the sequencer's output, if
/// the sequencer exits meanwhile (a fatal error would otherwise look like a slow chain).
pub(crate) async fn while_running<T, F, Fut>(sequencer: &Sequencer, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually(what, BLOCKS_TIMEOUT, || {
        assert!(!exited(sequencer), "the sequencer exited while we waited for {what}:\n{}", sequencer.service.output());
        check()
    })
    .await
}

/// [`head_at_least`], failing at once if the sequencer exits.
pub(crate) async fn head_at_least_while(sequencer: &Sequencer, engine: &EngineClient, number: u64) -> common::Block {
    while_running(sequencer, &format!("head at block {number}"), || async {
        engine.head().await.ok().filter(|head| head.number >= number)
    })
    .await
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

/// Every block in `recorded` is still Geth's block at its height in `chain` (from
/// [`linked_chain`]): nothing recorded `when` was made again.
pub(crate) fn assert_kept(chain: &[common::Block], recorded: &[common::Block], when: &str) {
    for old in recorded {
        let now = chain.get(usize::try_from(old.number).expect("fits")).map(|b| b.hash);
        assert_eq!(now, Some(old.hash), "block {} recorded {when} is still Geth's block at that height", old.number);
    }
}

/// Geth's finalized and safe blocks, read in the background every 100 ms (straight from
/// Geth, not through whatever fault sits between it and the sequencer) while a test
/// plays its faults. Finality is a promise to users: neither may ever go back to a lower
/// height, nor name another block at a height it named before.
#[derive(Debug)]
pub(crate) struct FinalityWatch {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Finality>,
}

/// What a [`FinalityWatch`] saw.
#[derive(Debug, Default)]
pub(crate) struct Finality {
    /// Every block seen finalized or safe, by height.
    pub(crate) seen: BTreeMap<u64, B256>,
    /// How many reads answered with a block.
    pub(crate) samples: usize,
    broken: Vec<String>,
}

impl Finality {
    fn sample(&mut self, tag: &str, last: &mut Option<common::Block>, block: common::Block) {
        self.samples += 1;
        if let Some(before) = last.as_ref().filter(|before| block.number < before.number) {
            self.broken.push(format!("{tag} went back from block {} to block {}", before.number, block.number));
        }
        match self.seen.get(&block.number) {
            Some(hash) if *hash != block.hash => self.broken.push(format!(
                "{tag} block {} is {}, but {hash} was final at that height before",
                block.number, block.hash
            )),
            _ => {
                self.seen.insert(block.number, block.hash);
            }
        }
        *last = Some(block);
    }
}

impl FinalityWatch {
    /// Starts reading `geth`'s finalized and safe blocks.
    pub(crate) fn start(geth: &Geth) -> Self {
        let (engine, stop) = (geth.engine(), CancellationToken::new());
        let cancel = stop.clone();
        let task = tokio::spawn(async move {
            let mut finality = Finality::default();
            let (mut finalized, mut safe) = (None, None);
            while !cancel.is_cancelled() {
                // Before the first forkchoiceUpdated Geth has neither: no answer, no sample.
                if let Ok(Some(block)) = engine.block(BlockTag::Finalized).await {
                    finality.sample("finalized", &mut finalized, block);
                }
                if let Ok(Some(block)) = engine.block(BlockTag::Safe).await {
                    finality.sample("safe", &mut safe, block);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            finality
        });
        Self { stop, task }
    }

    /// Stops reading; fails if finality ever went back or changed. What it saw.
    pub(crate) async fn stop(self) -> Finality {
        self.stop.cancel();
        let finality = self.task.await.expect("the watch ran");
        assert!(finality.broken.is_empty(), "Geth's finality broke: {:#?}", finality.broken);
        finality
    }
}

/// Every block `finality` saw finalized or safe is Geth's block at its height in `chain`.
pub(crate) fn assert_final_kept(chain: &[common::Block], finality: &Finality) {
    assert!(finality.samples > 0, "Geth's finalized block was read at least once");
    for (number, hash) in &finality.seen {
        let now = chain.get(usize::try_from(*number).expect("fits")).map(|b| b.hash);
        assert_eq!(now, Some(*hash), "block {number}, seen final, is still Geth's block at that height");
    }
}
