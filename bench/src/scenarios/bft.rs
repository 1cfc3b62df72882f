//! Part 4: four validators, each with a peered Geth, its app and its CometBFT node. The
//! block interval (the target is one second) under a steady 100 transfers a second, and
//! the transfer throughput saturated with the load of the single-node throughput scenario.

use std::time::Duration;

use common::harness::{CometNet, CometTimeouts, GETH_PEERED_FLAGS, Geth, GethOptions, Service};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Plan;
use crate::{
    load::{self, Accounts, Load, Tracker},
    procs::{self, Memory},
    stats::{Summary, percentile},
};

/// One CometBFT setting and what it gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BftRun {
    /// CometBFT's `timeout_commit`.
    pub(crate) timeout_commit: String,
    /// The app's `--build-time-ms`.
    #[serde(default)]
    pub(crate) build_ms: u64,
    /// CometBFT's `flush_throttle_timeout`.
    #[serde(default)]
    pub(crate) flush_throttle: String,
    /// The app's `--build-ahead`.
    #[serde(default = "off")]
    pub(crate) build_ahead: String,
    /// The project's defaults (`scripts/bft.sh` with its default block time).
    #[serde(default)]
    pub(crate) defaults: bool,
    /// Proposals made from a block built ahead, and blocks built ahead but dropped, over
    /// the saturated runs, all validators.
    #[serde(default)]
    pub(crate) ahead_used: u64,
    /// See `ahead_used`.
    #[serde(default)]
    pub(crate) ahead_dropped: u64,
    /// Validators in the network.
    #[serde(default = "four")]
    pub(crate) validators: usize,
    /// Where the machine's CPU went in the last saturated run: each group of processes'
    /// share of all cores over the measured window.
    #[serde(default)]
    pub(crate) cpu: Vec<(String, f64)>,
    /// Median time between blocks under a steady 100 transfers a second, seconds.
    pub(crate) interval_s: Summary,
    /// Median time between blocks, saturated, seconds.
    #[serde(default = "unmeasured")]
    pub(crate) saturated_interval_s: Summary,
    /// Transfers included a second, saturated.
    pub(crate) tps: Summary,
    /// Transfers per block, saturated, median.
    #[serde(default = "unmeasured")]
    pub(crate) saturated_block_txs: Summary,
    /// The last repeat's intervals, seconds, for the plot.
    pub(crate) intervals: Vec<f64>,
}

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Bft {
    /// One run per setting.
    pub(crate) runs: Vec<BftRun>,
    /// Peak memory of a validator's app.
    pub(crate) memory: Vec<Memory>,
}

/// One network setting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setting {
    /// Validators, each with its Geth, app and CometBFT node, all on this machine.
    validators: usize,
    /// A block every this long, as `scripts/bft.sh` derives CometBFT's timeouts from it;
    /// `None` for CometBFT's own defaults.
    block_time: Option<Duration>,
    /// The app's `--build-time-ms`.
    build_ms: u64,
    /// The app's `--build-ahead`.
    build_ahead: &'static str,
}

impl Setting {
    pub(crate) fn timeouts(&self) -> CometTimeouts {
        self.block_time.map_or_else(CometTimeouts::cometbft_defaults, CometTimeouts::for_block_time)
    }
}

/// The settings measured, with four validators: CometBFT's defaults, and the timeouts
/// `scripts/bft.sh` derives for one-second blocks with no build ahead, with every validator
/// building ahead, and with the next proposer building ahead (the project's defaults).
/// Then the defaults with a single validator: the consensus layer's own cost, without four
/// Geths sharing this machine's cores.
pub(crate) const SETTINGS: [Setting; 5] = [
    Setting { validators: 4, block_time: None, build_ms: 200, build_ahead: "off" },
    Setting { validators: 4, block_time: Some(Duration::from_secs(1)), build_ms: 200, build_ahead: "off" },
    Setting { validators: 4, block_time: Some(Duration::from_secs(1)), build_ms: 200, build_ahead: "all" },
    Setting { validators: 4, block_time: Some(Duration::from_secs(1)), build_ms: 200, build_ahead: "proposer" },
    Setting { validators: 1, block_time: Some(Duration::from_secs(1)), build_ms: 200, build_ahead: "proposer" },
];

/// Which of [`SETTINGS`] is the project's defaults.
pub(crate) const DEFAULTS: usize = 3;

fn off() -> String {
    "off".to_owned()
}

const fn four() -> usize {
    4
}

fn unmeasured() -> Summary {
    Summary::of(&[0.0])
}

/// A validator kept out of the network for a whole liveness run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Down {
    /// All four validators up.
    None,
    /// The last validator's CometBFT and app SIGKILLed as the warm-up starts.
    Killed,
    /// The last validator's Geth stopped (SIGSTOP) as the warm-up starts: its app and
    /// CometBFT run on, but it cannot build or check a block.
    GethHung,
}

/// Blocks a second with the project's defaults, with every validator up or one down, under
/// the steady load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LivenessRun {
    /// Which validator was out, and how.
    pub(crate) down: Down,
    /// CometBFT's `timeout_propose`.
    pub(crate) timeout_propose: String,
    /// CometBFT's `timeout_precommit`.
    #[serde(default)]
    pub(crate) timeout_precommit: String,
    /// Blocks a second over the measured window.
    pub(crate) blocks_per_s: Summary,
    /// Rounds beyond the first, per block (the first validator's app counts them).
    pub(crate) extra_rounds_per_block: Summary,
}

/// What the liveness scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Liveness {
    /// One run per case.
    pub(crate) runs: Vec<LivenessRun>,
}

/// The liveness cases: all up; one validator killed, with CometBFT's own `timeout_propose`
/// and `timeout_precommit` (3 s and 1 s) and with the derived ones; one validator's Geth
/// hung.
fn liveness_cases() -> [(Down, CometTimeouts); 4] {
    let derived = SETTINGS[DEFAULTS].timeouts();
    let cometbft = CometTimeouts::cometbft_defaults();
    let cometbft_waits = CometTimeouts {
        timeout_propose: cometbft.timeout_propose,
        timeout_precommit: cometbft.timeout_precommit,
        ..derived.clone()
    };
    [
        (Down::None, derived.clone()),
        (Down::Killed, cometbft_waits),
        (Down::Killed, derived.clone()),
        (Down::GethHung, derived),
    ]
}

/// Runs the liveness scenario: the project's defaults under the steady load.
pub(crate) async fn liveness(plan: &Plan) -> anyhow::Result<Liveness> {
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let setting = &SETTINGS[DEFAULTS];
    let mut runs = Vec::new();
    for (down, timeouts) in liveness_cases() {
        let (mut rates, mut extra) = (Vec::new(), Vec::new());
        for repeat in 0..plan.repeats {
            tracing::info!(?down, timeout_propose = %timeouts.timeout_propose, repeat, "bft liveness");
            let measured = one_repeat(plan, &accounts, &genesis.path, setting, &timeouts, Some(100.0), down).await?;
            let blocks = measured.block_txs.len() as f64;
            rates.push(blocks / plan.duration.as_secs_f64());
            extra.push(measured.extra_rounds as f64 / blocks.max(1.0));
        }
        runs.push(LivenessRun {
            down,
            timeout_propose: timeouts.timeout_propose,
            timeout_precommit: timeouts.timeout_precommit,
            blocks_per_s: Summary::of(&rates),
            extra_rounds_per_block: Summary::of(&extra),
        });
    }
    Ok(Liveness { runs })
}

/// Runs the scenario.
pub(crate) async fn run(plan: &Plan) -> anyhow::Result<Bft> {
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let (mut runs, mut memory) = (Vec::new(), Vec::new());
    for (index, setting) in SETTINGS.iter().enumerate() {
        let timeouts = setting.timeouts();
        let (mut intervals, mut saturated, mut tps, mut txs, mut last) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut ahead_used, mut ahead_dropped, mut cpu) = (0, 0, Vec::new());
        for repeat in 0..plan.repeats {
            tracing::info!(?setting, repeat, "bft: steady load");
            let steady =
                one_repeat(plan, &accounts, &genesis.path, setting, &timeouts, Some(100.0), Down::None).await?;
            tracing::info!(?setting, repeat, "bft: saturated");
            let flood = one_repeat(plan, &accounts, &genesis.path, setting, &timeouts, None, Down::None).await?;
            tracing::info!(steady = percentile(&steady.intervals, 50.0), tps = flood.tps, "bft done");
            intervals.push(percentile(&steady.intervals, 50.0));
            saturated.push(percentile(&flood.intervals, 50.0));
            tps.push(flood.tps);
            txs.push(percentile(&flood.block_txs, 50.0));
            ahead_used += flood.ahead.0;
            ahead_dropped += flood.ahead.1;
            cpu = flood.cpu;
            last = steady.intervals;
            memory.extend(flood.memory);
        }
        runs.push(BftRun {
            timeout_commit: timeouts.timeout_commit,
            build_ms: setting.build_ms,
            flush_throttle: timeouts.flush_throttle,
            build_ahead: setting.build_ahead.to_owned(),
            defaults: index == DEFAULTS,
            ahead_used,
            ahead_dropped,
            validators: setting.validators,
            cpu,
            interval_s: Summary::of(&intervals),
            saturated_interval_s: Summary::of(&saturated),
            tps: Summary::of(&tps),
            saturated_block_txs: Summary::of(&txs),
            intervals: last,
        });
    }
    Ok(Bft { runs, memory })
}

/// What one run of the network measured.
pub(crate) struct Measured {
    intervals: Vec<f64>,
    block_txs: Vec<f64>,
    pub(crate) tps: f64,
    memory: Option<Memory>,
    /// Blocks built ahead used and dropped, all validators.
    ahead: (u64, u64),
    /// Each group of processes' share of all cores over the measured window.
    pub(crate) cpu: Vec<(String, f64)>,
    /// Rounds beyond the first over the measured window, as the first validator's app
    /// counted them.
    extra_rounds: u64,
    /// Transfers included a second in each [`SEGMENT`] of the measured window, in order:
    /// whether a run drifts.
    pub(crate) segments: Vec<f64>,
}

/// The part of a measured window whose rate [`Measured::segments`] gives.
pub(crate) const SEGMENT: f64 = 10.0;

pub(crate) async fn one_repeat(
    plan: &Plan,
    accounts: &Accounts,
    genesis: &std::path::Path,
    setting: &Setting,
    timeouts: &CometTimeouts,
    rate: Option<f64>,
    down: Down,
) -> anyhow::Result<Measured> {
    let profile =
        if rate.is_none() { Duration::from_secs(plan.profile_secs).min(plan.duration) } else { Duration::ZERO };
    // A profile is asked for over JSON-RPC: the peered Geths' namespaces, and `debug`.
    let extra =
        GETH_PEERED_FLAGS.iter().filter(|flag| flag.starts_with("--http.api=")).map(|api| format!("{api},debug"));
    let extra = if profile.is_zero() { Vec::new() } else { extra.collect() };
    let options = GethOptions { genesis: Some(genesis.to_owned()), extra, ..Default::default() };
    let validators = setting.validators;
    let geths = Geth::start_peered_group_with(validators, &options).await?;
    let mut comet = CometNet::init(validators, geths[0].el_chain().await?, timeouts)?;
    let dir = tempfile::tempdir()?;
    let mut apps: Vec<Service> = Vec::new();
    let mut health = Vec::new();
    for (i, geth) in geths.iter().enumerate() {
        health.push(format!("127.0.0.1:{}", common::harness::free_port()?));
        let env = [
            ("ETH_CLIENT_URL", geth.auth_url()),
            ("JWT_SECRET", geth.jwt_path().display().to_string()),
            ("GENESIS", genesis.display().to_string()),
            ("ABCI_ADDR", comet.nodes[i].abci_addr.clone()),
            ("COMETBFT_RPC", format!("http://127.0.0.1:{}", comet.nodes[i].rpc_port)),
            ("STATE_DIR", dir.path().join(format!("app{i}")).display().to_string()),
            ("HEALTH_ADDR", health[i].clone()),
        ];
        let build = setting.build_ms.to_string();
        let args = ["--build-time-ms", build.as_str(), "--build-ahead", setting.build_ahead];
        apps.push(procs::spawn("cometbft-consensus", &format!("app{i}"), &args, &env, dir.path())?);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for i in 0..validators {
        comet.start(i)?;
    }
    let tracker = Tracker::start(&geths[0].http_url()).await?;
    let last = validators - 1;
    match down {
        Down::None => {}
        Down::Killed => {
            comet.process(last).kill();
            apps[last].kill();
        }
        Down::GethHung => geths[last].signal(libc::SIGSTOP),
    }
    let seconds = (plan.warmup + plan.duration).as_secs_f64() + 10.0;
    let transfers = load::presign(accounts, 0, (seconds * 3_000.0 / accounts.len() as f64).ceil() as u64);
    let live = if down == Down::None { validators } else { last };
    let urls = geths[..live].iter().map(Geth::http_url).collect();
    let load = Load::start(urls, transfers, tracker.included.clone(), rate);
    tokio::time::sleep(plan.warmup).await;
    let groups: Vec<(&str, Vec<u32>)> = vec![
        ("Geth", geths.iter().filter_map(Geth::pid).collect()),
        ("CometBFT", (0..validators).filter_map(|i| comet.process(i).pid()).collect()),
        ("app", apps.iter().filter_map(Service::pid).collect()),
        ("load generator", vec![std::process::id()]),
    ];
    let spent = |pids: &[u32]| pids.iter().filter_map(|pid| procs::cpu_seconds(*pid)).sum::<f64>();
    let before: Vec<f64> = groups.iter().map(|(_, pids)| spent(pids)).collect();
    let rounds_before = metric(&health[0], "bft_round_changes_total").await;
    let from = tracker.now();
    let run = SATURATED_RUNS.fetch_add(u64::from(rate.is_none()), std::sync::atomic::Ordering::Relaxed);
    if !profile.is_zero() {
        for (i, geth) in geths.iter().enumerate() {
            let path = crate::procs::kept_dir("bft")?.join(format!("geth{i}-saturated-{run}.pprof"));
            geth.http().call::<_, Value>("debug_startCPUProfile", json!([path]), Duration::from_secs(5)).await?;
        }
        tokio::time::sleep(profile).await;
        for geth in &geths {
            geth.http().call::<_, Value>("debug_stopCPUProfile", json!([]), Duration::from_secs(30)).await?;
        }
    }
    tokio::time::sleep(plan.duration - profile).await;
    let to = tracker.now();
    let extra_rounds = metric(&health[0], "bft_round_changes_total").await.saturating_sub(rounds_before);
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let cpu = groups
        .iter()
        .zip(before)
        .map(|((name, pids), before)| {
            ((*name).to_owned(), (spent(pids) - before) / (cores * plan.duration.as_secs_f64()))
        })
        .collect();
    let memory = procs::memory_of(&apps[0], "cometbft-consensus app, saturated");
    let mut ahead = (0, 0);
    for addr in &health {
        ahead.0 += metric(addr, "bft_ahead_builds_used_total").await;
        ahead.1 += metric(addr, "bft_ahead_builds_dropped_total").await;
    }
    load.stop().await;
    let blocks = tracker.stop().await;
    let window: Vec<_> = blocks.iter().filter(|b| b.seen >= from && b.seen < to).collect();
    if rate.is_none() {
        let kept = crate::procs::kept_dir("bft")?;
        std::fs::write(kept.join(format!("blocks-saturated-{run}.json")), serde_json::to_vec(&window)?)?;
        for i in 0..apps.len() {
            std::fs::copy(dir.path().join(format!("app{i}.log")), kept.join(format!("app{i}-saturated-{run}.log")))?;
        }
        tracing::info!(dir = %kept.display(), "the saturated window's blocks and the apps' logs are kept");
    }
    let intervals = window.windows(2).map(|w| w[1].seen - w[0].seen).collect();
    let block_txs = window.iter().map(|b| b.txs as f64).collect();
    for i in 0..validators {
        comet.process(i).kill();
    }
    if down == Down::GethHung {
        geths[last].signal(libc::SIGCONT);
    }
    let segments = (0..((to - from) / SEGMENT).floor() as usize)
        .map(|k| {
            let start = from + k as f64 * SEGMENT;
            load::throughput(&blocks, start, start + SEGMENT)
        })
        .collect();
    Ok(Measured {
        intervals,
        block_txs,
        tps: load::throughput(&blocks, from, to),
        memory,
        ahead,
        cpu,
        extra_rounds,
        segments,
    })
}

/// Saturated windows measured so far in this run: names what is kept of each.
static SATURATED_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A counter from an app's `/metrics` at `addr` (0 if it cannot be read).
async fn metric(addr: &str, name: &str) -> u64 {
    procs::metrics(addr).await.and_then(|page| procs::sample(&page, name)).map_or(0, |value| value as u64)
}
