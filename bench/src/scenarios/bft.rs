//! Part 4: four validators, each with a peered Geth, its app and its CometBFT node. The
//! block interval (the target is one second) under a steady 100 transfers a second, and
//! the transfer throughput saturated with the load of the single-node throughput scenario.

use common::harness::{CometNet, Geth, GethOptions, Service};
use serde::{Deserialize, Serialize};

use super::Plan;
use crate::{
    load::{self, Accounts, Load, Tracker},
    procs::{self, Memory},
    stats::{Summary, percentile},
};

/// Validators in the network.
pub(crate) const VALIDATORS: usize = 4;

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

/// (`timeout_commit`, `--build-time-ms`, `flush_throttle_timeout`) settings: CometBFT's
/// defaults; with connections flushed every 10 ms; and with the commit wait shortened so
/// that it plus one round of proposal and votes comes to about a second
/// (`scripts/bft.sh`'s settings); and a longer build deadline, so that a loaded Geth can
/// finish its first full block before the proposer takes it.
pub(crate) const SETTINGS: [(&str, u64, &str); 4] = [
    ("1s", 200, "100ms"),
    ("1s", 200, common::harness::FLUSH_THROTTLE),
    ("750ms", 200, common::harness::FLUSH_THROTTLE),
    ("500ms", 500, common::harness::FLUSH_THROTTLE),
];

fn unmeasured() -> Summary {
    Summary::of(&[0.0])
}

/// Runs the scenario.
pub(crate) async fn run(plan: &Plan) -> anyhow::Result<Bft> {
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let (mut runs, mut memory) = (Vec::new(), Vec::new());
    for (timeout_commit, build_ms, flush_throttle) in SETTINGS {
        let setting = (timeout_commit, build_ms, flush_throttle);
        let (mut intervals, mut saturated, mut tps, mut txs, mut last) = (vec![], vec![], vec![], vec![], vec![]);
        for repeat in 0..plan.repeats {
            tracing::info!(timeout_commit, build_ms, repeat, "bft: steady load");
            let steady = one_repeat(plan, &accounts, &genesis.path, setting, Some(100.0)).await?;
            tracing::info!(timeout_commit, build_ms, repeat, "bft: saturated");
            let flood = one_repeat(plan, &accounts, &genesis.path, setting, None).await?;
            tracing::info!(steady = percentile(&steady.intervals, 50.0), tps = flood.tps, "bft done");
            intervals.push(percentile(&steady.intervals, 50.0));
            saturated.push(percentile(&flood.intervals, 50.0));
            tps.push(flood.tps);
            txs.push(percentile(&flood.block_txs, 50.0));
            last = steady.intervals;
            memory.extend(flood.memory);
        }
        runs.push(BftRun {
            timeout_commit: timeout_commit.to_owned(),
            build_ms,
            flush_throttle: flush_throttle.to_owned(),
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
struct Measured {
    intervals: Vec<f64>,
    block_txs: Vec<f64>,
    tps: f64,
    memory: Option<Memory>,
}

async fn one_repeat(
    plan: &Plan,
    accounts: &Accounts,
    genesis: &std::path::Path,
    (timeout_commit, build_ms, flush_throttle): (&str, u64, &str),
    rate: Option<f64>,
) -> anyhow::Result<Measured> {
    let options = GethOptions { genesis: Some(genesis.to_owned()), ..Default::default() };
    let geths = Geth::start_peered_group_with(VALIDATORS, &options).await?;
    let mut comet = CometNet::init_with(VALIDATORS, timeout_commit, flush_throttle)?;
    let dir = tempfile::tempdir()?;
    let mut apps: Vec<Service> = Vec::new();
    for (i, geth) in geths.iter().enumerate() {
        let env = [
            ("ETH_CLIENT_URL", geth.auth_url()),
            ("JWT_SECRET", geth.jwt_path().display().to_string()),
            ("GENESIS", genesis.display().to_string()),
            ("ABCI_ADDR", comet.nodes[i].abci_addr.clone()),
            ("STATE_DIR", dir.path().join(format!("app{i}")).display().to_string()),
            ("HEALTH_ADDR", format!("127.0.0.1:{}", common::harness::free_port()?)),
        ];
        let build = build_ms.to_string();
        let args = ["--build-time-ms", build.as_str()];
        apps.push(procs::spawn("cometbft-consensus", &format!("app{i}"), &args, &env, dir.path())?);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for i in 0..VALIDATORS {
        comet.start(i)?;
    }
    let tracker = Tracker::start(&geths[0].http_url()).await?;
    let seconds = (plan.warmup + plan.duration).as_secs_f64() + 10.0;
    let transfers = load::presign(accounts, 0, (seconds * 3_000.0 / accounts.len() as f64).ceil() as u64);
    let urls = geths.iter().map(Geth::http_url).collect();
    let load = Load::start(urls, transfers, tracker.included.clone(), rate);
    tokio::time::sleep(plan.warmup).await;
    let from = tracker.now();
    tokio::time::sleep(plan.duration).await;
    let to = tracker.now();
    let memory = procs::memory_of(&apps[0], "cometbft-consensus app, saturated");
    load.stop().await;
    let blocks = tracker.stop().await;
    let window: Vec<_> = blocks.iter().filter(|b| b.seen >= from && b.seen < to).collect();
    let intervals = window.windows(2).map(|w| w[1].seen - w[0].seen).collect();
    let block_txs = window.iter().map(|b| b.txs as f64).collect();
    for i in 0..VALIDATORS {
        comet.process(i).kill();
    }
    Ok(Measured { intervals, block_txs, tps: load::throughput(&blocks, from, to), memory })
}
