//! A growing Part 4 chain: what each block costs in CometBFT's data and the app's store,
//! and whether a node that joins later catches up slower as the chain gets longer.
//!
//! One validator (CometBFT, the app, Geth) makes the chain under the growth scenario's
//! stream of transfers. A Part 4 chain cannot grow faster than a block a second on its own:
//! an EL timestamp is whole seconds, one above its parent's at least, and the proposer holds
//! a block until the clock reaches its timestamp. So the validator makes the chain with
//! that hold off (`--bench-no-hold`, hidden, for benchmarks only) and CometBFT's commit
//! wait at zero, and its timestamps run ahead of the clock. At each length asked for, it is
//! stopped and its stores measured, the bare newPayload loop runs on the same blocks, and it
//! is started again with the hold back on (a second a block, as its timestamps are ahead;
//! its 20 ms build and zero commit wait stay): then a full node (its own CometBFT, app with
//! `--build-ahead off` as `scripts/bft.sh full` starts one, and empty Geth) joins, and is
//! timed from its start until its Geth has the block that was the validator's head then.
//! The bare loop runs alone, the joining node beside the running validator. Then the chain
//! goes on. The apps' and CometBFT's logs are copied to `target/bench-logs/bft-growth/` at
//! the end.
//!
//! With `--profile-secs N`, Go's CPU profiles of the joining node's Geth and CometBFT and
//! of the bare loop's Geth, N seconds each from a second after each starts on the blocks,
//! are kept there too (`go tool pprof -top FILE` reads them).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use common::{
    harness::{CometNet, CometTimeouts, FLUSH_THROTTLE, Geth, GethOptions, Service, free_port},
    payload::ExecutableBlock,
};
use serde::{Deserialize, Serialize};
use single_node::store::Store;

use super::{
    growth::{MAX_PENDING, RATE, SIGNED_PER_BLOCK, dir_bytes},
    member_replay::{bare_loop, stop, wait_for_head},
};
use crate::{
    load::{self, Accounts, Load, Tracker},
    procs,
};

/// The app's build deadline while the chain is made: Geth builds for 20 ms, as Part 2's
/// sequencer does in the growth scenario.
const BUILD_MS: &str = "20";

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BftGrowth {
    /// Transfers per block, on average, over the whole chain.
    pub(crate) txs_per_block: f64,
    /// One point per length measured, shortest first.
    pub(crate) points: Vec<BftPoint>,
}

/// Everything measured at one chain length.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BftPoint {
    /// Chain length, blocks.
    pub(crate) blocks: u64,
    /// The validator's CometBFT `data` directory (block store, state, consensus WAL; the
    /// transaction index too, before the project turned it off), bytes.
    pub(crate) cometbft_bytes: u64,
    /// That directory by what is in it (`blockstore.db`, `state.db`, `tx_index.db`,
    /// `cs.wal`, ...), largest first, bytes (absent from runs before it was recorded).
    #[serde(default)]
    pub(crate) cometbft_parts: Vec<(String, u64)>,
    /// The validator's app store (redb), bytes.
    pub(crate) store_bytes: u64,
    /// The validator's Geth datadir, bytes.
    pub(crate) geth_bytes: u64,
    /// Blocks a second the validator made since the last length, hold off.
    pub(crate) made_bps: f64,
    /// Peak RSS of the validator's app that made the blocks since the last length, MiB.
    pub(crate) validator_mib: f64,
    /// The joining full node, from its start until its Geth has the validator's head of
    /// then: seconds.
    pub(crate) join_s: f64,
    /// From its start until its Geth's head first moved (CometBFT starts, finds its peer,
    /// asks for blocks; while block sync catches up the app moves the head every 64th
    /// block): seconds.
    pub(crate) first_s: f64,
    /// Blocks a second from that head to the validator's head of then: the catch-up itself.
    pub(crate) join_bps: f64,
    /// The joining node's app: peak RSS, MiB.
    pub(crate) join_app_mib: f64,
    /// The joining node's CometBFT: peak RSS, MiB.
    pub(crate) join_cometbft_mib: f64,
    /// The bare newPayload loop on the same blocks, to another empty Geth: blocks a second.
    pub(crate) bare_bps: f64,
    /// The head the joining node's Geth first had, which its rate counts from (absent from
    /// runs before it was recorded: those counted from block 1, though the clock started
    /// when the head first moved, at the end of the first batch).
    #[serde(default)]
    pub(crate) first_head: Option<u64>,
    /// The bare loop's pace after its first batch, as the join's is counted (absent from
    /// runs before it was recorded).
    #[serde(default)]
    pub(crate) bare_after_first_bps: Option<f64>,
    /// Block sync's pace: blocks a second from that first head to the last block that block
    /// sync delivered (the validator's head of then at most), timed by the joining app's
    /// Commit of each. (While block sync catches up a Commit can return before its block's
    /// import ends; the next FinalizeBlock waits for it, so the count is off by one import
    /// at most.) Absent from runs before it was recorded, and where the logs did not give
    /// it.
    #[serde(default)]
    pub(crate) synced_bps: Option<f64>,
    /// The tail: from the app's Commit of that last block until its Geth's head was at the
    /// validator's head of then, seconds. While block sync catches up the app moves the
    /// head at every 64th block only, and at its first Commit once CometBFT has left block
    /// sync, so the head waits for the next 64th block or, where the network's head comes
    /// first, for CometBFT to commit a block by consensus (absent as `synced_bps` is).
    #[serde(default)]
    pub(crate) tail_s: Option<f64>,
}

impl BftPoint {
    /// The bare loop's rate to set the join's against: its pace after its first batch where
    /// the run recorded it, else its whole run.
    pub(crate) fn bare_pace(&self) -> f64 {
        self.bare_after_first_bps.unwrap_or(self.bare_bps)
    }
}

/// A join's block-sync pace and tail ([`BftPoint::synced_bps`], [`BftPoint::tail_s`]),
/// from its CometBFT's and its app's logs: block sync ended, if before the target, where
/// CometBFT logs the height it goes on from by consensus. `None` where the logs do not
/// give them, with a warning: a run then reports the join as it did before.
fn block_sync_and_tail(
    comet_log: &str,
    app_log: &str,
    first_head: u64,
    target: u64,
    head_there: f64,
) -> (Option<f64>, Option<f64>) {
    let switched = procs::lines_with(comet_log, "Time to switch to consensus reactor")
        .find_map(|line| procs::field(line, "height")?.parse::<u64>().ok());
    // No switch: block sync must still have been running when the join ended. A CometBFT
    // that committed by consensus without the line means its log reads otherwise now.
    if switched.is_none() && procs::lines_with(comet_log, "finalizing commit of block").next().is_some() {
        tracing::warn!("the joining CometBFT committed by consensus, but its log has no switch from block sync");
        return (None, None);
    }
    let synced_to = switched.map_or(target, |height| target.min(height.saturating_sub(1)));
    let commits = commit_times(app_log);
    let (from, to) = (commits.get(&first_head), commits.get(&synced_to));
    let synced_bps = from
        .zip(to)
        .filter(|(from, to)| to > from)
        .map(|(from, to)| synced_to.saturating_sub(first_head) as f64 / (to - from));
    let tail_s = to.filter(|_| synced_bps.is_some()).map(|to| head_there - to);
    if synced_bps.is_none() {
        tracing::warn!(first_head, synced_to, "the joining app's log does not time block sync");
    }
    tracing::info!(?switched, synced_to, ?synced_bps, ?tail_s, "the join by its app's commits");
    (synced_bps, tail_s)
}

/// When the app whose log is `output` committed each block it logged: height, and Unix
/// seconds.
fn commit_times(output: &str) -> std::collections::HashMap<u64, f64> {
    procs::lines_with(output, "committed height=")
        .filter_map(|line| Some((procs::field(line, "height")?.parse().ok()?, procs::line_time(line)?)))
        .collect()
}

/// One node's app and the directory of its store.
struct App {
    service: Service,
    state_dir: PathBuf,
}

/// Where the scenario's files go: the EL genesis every app is given, and the directory of
/// the apps' logs and stores.
struct Files<'a> {
    genesis: &'a Path,
    dir: &'a Path,
}

impl Files<'_> {
    /// Starts the app of CometBFT node `i` on `geth`, its store in `state`, `args` added.
    fn start_app(
        &self,
        label: &str,
        comet: &CometNet,
        i: usize,
        geth: &Geth,
        state: &str,
        args: &[&str],
    ) -> anyhow::Result<App> {
        let state_dir = self.dir.join(state);
        let env = [
            ("ETH_CLIENT_URL", geth.auth_url()),
            ("JWT_SECRET", geth.jwt_path().display().to_string()),
            ("GENESIS", self.genesis.display().to_string()),
            ("ABCI_ADDR", comet.nodes[i].abci_addr.clone()),
            ("COMETBFT_RPC", format!("http://127.0.0.1:{}", comet.nodes[i].rpc_port)),
            ("STATE_DIR", state_dir.display().to_string()),
            ("HEALTH_ADDR", format!("127.0.0.1:{}", free_port()?)),
        ];
        let mut all = vec!["--build-time-ms", BUILD_MS];
        all.extend_from_slice(args);
        let service = procs::spawn("cometbft-consensus", label, &all, &env, self.dir)?;
        Ok(App { service, state_dir })
    }
}

/// Starts node `i`'s CometBFT once its app listens for it.
async fn start_comet(comet: &mut CometNet, i: usize, app: &mut App) -> anyhow::Result<()> {
    let addr = comet.nodes[i].abci_addr.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        ensure!(app.service.exited().is_none(), "the app exited:\n{}", app.service.log_tail(2000));
        ensure!(Instant::now() < deadline, "the app did not listen on {addr} within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    comet.start(i)
}

/// Runs the scenario, measuring at each of `lengths` (blocks).
pub(crate) async fn run(lengths: &[u64], profile_secs: u64) -> anyhow::Result<BftGrowth> {
    let mut lengths = lengths.to_vec();
    lengths.sort_unstable();
    lengths.dedup();
    let longest = *lengths.last().context("--lengths names no chain length")?;
    ensure!(lengths[0] > 0, "a chain length must be at least one block");

    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
    let per_account = (longest * SIGNED_PER_BLOCK).div_ceil(accounts.len() as u64);
    tracing::info!(transfers = per_account * accounts.len() as u64, "signing");
    let transfers = load::presign(&accounts, 0, per_account);

    // No commit wait: the chain is made as fast as a round goes. A proposal is waited for
    // CometBFT's own 3 s, longer than the second a held proposal takes.
    let timeouts = CometTimeouts {
        timeout_commit: "0ms".to_owned(),
        timeout_propose: "3s".to_owned(),
        timeout_precommit: "125ms".to_owned(),
        flush_throttle: FLUSH_THROTTLE.to_owned(),
    };
    let geth = Geth::start_with(options.clone()).await?;
    let mut comet = CometNet::init(1, geth.el_chain().await?, &timeouts)?;
    let dir = tempfile::tempdir()?;
    let engine = geth.engine();
    let files = Files { genesis: &genesis.path, dir: dir.path() };
    let mut app = files.start_app("validator-0", &comet, 0, &geth, "validator", &["--bench-no-hold"])?;
    start_comet(&mut comet, 0, &mut app).await?;

    let tracker = Tracker::start(&geth.http_url()).await?;
    let mut sent = 0_usize;
    let mut points = Vec::new();
    for &length in &lengths {
        let rest = transfers[sent..].to_vec();
        let load = Load::start_within(vec![geth.http_url()], rest, tracker.included.clone(), Some(RATE), MAX_PENDING);
        tracing::info!(length, "making the chain");
        let made = engine.head().await?.number;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(length.saturating_sub(made) + 600);
        while engine.head().await?.number < length {
            ensure!(app.service.exited().is_none(), "the validator's app exited:\n{}", app.service.log_tail(2000));
            ensure!(Instant::now() < deadline, "the validator did not reach block {length} in time");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let made_bps = (engine.head().await?.number - made) as f64 / started.elapsed().as_secs_f64();
        sent += usize::try_from(load.stop().await)?;
        ensure!(sent < transfers.len(), "the signed transfers ran out before block {length}: sign more a block");
        let validator_mib = procs::memory_of(&app.service, "").map_or(0.0, |m| m.peak_mib);
        stop(comet.process(0)).await;
        stop(&mut app.service).await;

        let store_path = app.state_dir.join("app.redb");
        let store = Store::open(&store_path)?;
        let head = store.head()?.context("the validator's store has no head")?;
        let chain = (1..=head.number)
            .map(|n| store.block(n)?.with_context(|| format!("the validator's store lacks block {n}")))
            .collect::<anyhow::Result<Vec<ExecutableBlock>>>()?;
        drop(store);
        let store_bytes = std::fs::metadata(&store_path)?.len();
        let cometbft_bytes = dir_bytes(&comet.nodes[0].home.join("data"));
        let cometbft_parts = parts_of(&comet.nodes[0].home.join("data"));
        let geth_bytes = dir_bytes(&geth.datadir());
        let (bare_options, bare_pprof) = with_pprof(&options, profile_secs)?;
        let profile = bare_pprof.map(|url| profile_later(url, profile_secs, format!("geth-bare-{}", head.number)));
        let bare = bare_loop(bare_options, &chain).await?;
        if let Some(profile) = profile {
            profile.await??;
        }
        drop(chain);

        // The validator as it runs normally: it holds each proposal for the clock.
        let label = format!("validator-{}-held", head.number);
        let mut held = files.start_app(&label, &comet, 0, &geth, "validator", &[])?;
        start_comet(&mut comet, 0, &mut held).await?;

        tracing::info!(blocks = head.number, "a full node joins");
        let (join_options, geth_pprof) = with_pprof(&options, profile_secs)?;
        let join_geth = procs::fresh_geth(join_options).await?;
        let full = comet.add_full_node()?;
        let comet_pprof = if profile_secs > 0 {
            let port = free_port()?;
            comet.set_config(full, "rpc", "pprof_laddr", &format!("\"127.0.0.1:{port}\""))?;
            Some(format!("http://127.0.0.1:{port}"))
        } else {
            None
        };
        let target = engine.head().await?.number;
        let started = Instant::now();
        let label = format!("full-{}", head.number);
        let mut joiner = files.start_app(&label, &comet, full, &join_geth, &label, &["--build-ahead", "off"])?;
        start_comet(&mut comet, full, &mut joiner).await?;
        let first_head = wait_for_head(&join_geth, 1, Duration::from_secs(600)).await?;
        let first_s = started.elapsed().as_secs_f64();
        let profiles: Vec<_> = [(geth_pprof, "geth"), (comet_pprof, "cometbft")]
            .into_iter()
            .filter_map(|(url, what)| {
                url.map(|url| profile_later(url, profile_secs, format!("{what}-joining-{}", head.number)))
            })
            .collect();
        wait_for_head(&join_geth, target, Duration::from_secs(target / 10 + 600)).await?;
        let join_s = started.elapsed().as_secs_f64();
        let head_there = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
        let (synced_bps, tail_s) = block_sync_and_tail(
            &std::fs::read_to_string(comet.log_path(full))?,
            &joiner.service.output(),
            first_head,
            target,
            head_there,
        );
        for profile in profiles {
            profile.await??;
        }
        let join_app_mib = procs::memory_of(&joiner.service, "").map_or(0.0, |m| m.peak_mib);
        let join_cometbft_mib =
            comet.process(full).pid().and_then(procs::peak_rss_kib).map_or(0.0, |kib| kib as f64 / 1024.0);
        comet.process(full).kill();
        joiner.service.kill();
        drop(join_geth);
        std::fs::remove_dir_all(&joiner.state_dir)?;

        // Back to making the chain.
        stop(comet.process(0)).await;
        stop(&mut held.service).await;
        let label = format!("validator-{}", head.number);
        app = files.start_app(&label, &comet, 0, &geth, "validator", &["--bench-no-hold"])?;
        start_comet(&mut comet, 0, &mut app).await?;

        let point = BftPoint {
            blocks: head.number,
            cometbft_bytes,
            cometbft_parts,
            store_bytes,
            geth_bytes,
            made_bps,
            validator_mib,
            join_s,
            first_s,
            join_bps: target.saturating_sub(first_head) as f64 / (join_s - first_s),
            first_head: Some(first_head),
            bare_after_first_bps: bare.after_first_bps(),
            synced_bps,
            tail_s,
            join_app_mib,
            join_cometbft_mib,
            bare_bps: bare.bps(),
        };
        tracing::info!(?point, "measured");
        points.push(point);
    }
    comet.process(0).kill();
    app.service.kill();
    let seen = tracker.stop().await;
    keep_logs(dir.path(), &comet)?;
    let txs_per_block = seen.iter().map(|b| b.txs).sum::<u64>() as f64 / seen.len().max(1) as f64;
    Ok(BftGrowth { txs_per_block, points })
}

/// `options` with Go's pprof server on a free port if `profile_secs` is set, and its URL.
fn with_pprof(options: &GethOptions, profile_secs: u64) -> anyhow::Result<(GethOptions, Option<String>)> {
    let mut options = options.clone();
    if profile_secs == 0 {
        return Ok((options, None));
    }
    let port = free_port()?;
    options.extra.extend(["--pprof".to_owned(), "--pprof.addr=127.0.0.1".to_owned(), format!("--pprof.port={port}")]);
    Ok((options, Some(format!("http://127.0.0.1:{port}"))))
}

/// In a second, a CPU profile of `secs` seconds from the pprof server at `url`, saved as
/// `name.pprof` beside the kept logs.
fn profile_later(url: String, secs: u64, name: String) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::{client::legacy::Client, rt::TokioExecutor};

        tokio::time::sleep(Duration::from_secs(1)).await;
        let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let uri: hyper::Uri = format!("{url}/debug/pprof/profile?seconds={secs}").parse()?;
        let fetch = async {
            let response = client.get(uri).await?;
            ensure!(response.status().is_success(), "{url} answered {}", response.status());
            anyhow::Ok(response.into_body().collect().await?.to_bytes())
        };
        let profile = tokio::time::timeout(Duration::from_secs(secs + 30), fetch)
            .await
            .with_context(|| format!("no CPU profile from {url} within {} s", secs + 30))??;
        let kept = procs::kept_dir("bft-growth")?;
        std::fs::write(kept.join(format!("{name}.pprof")), profile)?;
        Ok(())
    })
}

/// The bytes of each file and directory in `dir`, largest first.
fn parts_of(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut parts: Vec<(String, u64)> = entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            let bytes = if path.is_dir() { dir_bytes(&path) } else { entry.metadata().map_or(0, |m| m.len()) };
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    parts
}

/// Copies the apps' logs from `dir`, and every CometBFT node's, to
/// `target/bench-logs/bft-growth/`, which outlives the run.
fn keep_logs(dir: &Path, comet: &CometNet) -> anyhow::Result<()> {
    let kept = procs::keep_logs(dir, "bft-growth")?;
    for i in 0..comet.nodes.len() {
        std::fs::copy(comet.log_path(i), kept.join(format!("cometbft{i}.log")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_are_read_from_the_apps_log() {
        let log = "2026-12-05T05:59:00.092868Z  INFO cometbft_consensus::app: committed height=1006 hash=0x01 txs=3\n\
                   2026-12-05T05:59:00.100000Z  INFO cometbft_consensus::abci: ABCI connection peer=127.0.0.1:1 id=0\n\
                   2026-12-05T05:59:02.592868Z  INFO cometbft_consensus::app: committed height=1008 hash=0x02 txs=0\n";
        let commits = commit_times(log);
        assert_eq!(commits.len(), 2, "{commits:?}");
        let gap = commits[&1008] - commits[&1006];
        assert!((gap - 2.5).abs() < 1e-3, "1006 to 1008: {gap} s");
    }

    /// Block sync's pace ends at the last block it delivered, below the height CometBFT
    /// switched to consensus at, or at the target; with no switch line but a commit by
    /// consensus, the logs cannot say, and nothing is reported.
    #[test]
    fn block_sync_ends_where_cometbft_switched_or_at_the_target() {
        let app: String = (64..=70)
            .map(|h| format!("2026-12-05T06:00:{:02}.000000Z  INFO cometbft_consensus::app: committed height={h} hash=0x01 txs=1\n", h - 60))
            .collect();
        let switch =
            "I[2026-12-05|06:00:09.500] Time to switch to consensus reactor!         module=blocksync height=68\n";
        let ended = |s: f64| line_seconds("2026-12-05T06:00:00Z x") + s;
        // Switched at 68: block sync delivered up to 67, committed at 06:00:07.
        let (bps, tail) = block_sync_and_tail(switch, &app, 64, 69, ended(12.0));
        assert_eq!(bps, Some(1.0), "64 to 67 in 3 s");
        assert_eq!(tail, Some(5.0), "from 67's Commit at 7 s to the head at 12 s");
        // No switch: block sync ran to the target.
        let (bps, tail) = block_sync_and_tail("", &app, 64, 70, ended(10.5));
        assert_eq!((bps, tail), (Some(1.0), Some(0.5)));
        // A commit by consensus and no switch line: unknown.
        let consensus = "I[2026-12-05|06:00:09.600] finalizing commit of block module=consensus height=69\n";
        assert_eq!(block_sync_and_tail(consensus, &app, 64, 70, ended(10.5)), (None, None));
        // A first head the app did not log: unknown.
        assert_eq!(block_sync_and_tail("", &app, 60, 70, ended(10.5)), (None, None));
    }

    fn line_seconds(line: &str) -> f64 {
        procs::line_time(line).expect("a log time")
    }
}
