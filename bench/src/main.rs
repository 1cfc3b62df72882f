//! The benchmarks: every part measured on the real components, beside Geth's own driver
//! and the physical limit, as ratios taken in one run on one machine.
//!
//! Each scenario stores its result in `docs/src/benchmarks/results.json`; after every run
//! the report (`docs/src/benchmarks.md`) and its plots are made again from all stored
//! results, so running one scenario updates only its own section.
//!
//! ```text
//! scripts/bench.sh all
//! scripts/bench.sh throughput --repeats 5
//! ```

mod load;
mod machine;
mod plot;
mod procs;
mod report;
mod scenarios;
mod stats;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::scenarios::{
    Plan,
    bft::{Bft, Liveness},
    bft_growth::BftGrowth,
    block_rate::BlockRate,
    engine_round::EngineRound,
    failover::Failover,
    growth::Growth,
    ha_failover::HaFailover,
    member_replay::MemberReplay,
    replicas::Replicas,
    retention::Retention,
    throughput::Throughput,
    watch::Watch,
};

/// Runs benchmarks against real Geth, Redis, PostgreSQL and CometBFT, and writes the
/// report.
#[derive(Debug, Parser)]
struct Args {
    /// What to run.
    #[arg(value_enum)]
    scenario: Scenario,

    /// Measurement time per repeat, seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,

    /// Warm-up before each measurement, seconds.
    #[arg(long, default_value_t = 10)]
    warmup: u64,

    /// Repeats per measurement.
    #[arg(long, default_value_t = 3)]
    repeats: usize,

    /// Leader kills per failover setting.
    #[arg(long, default_value_t = 20)]
    kills: usize,

    /// Blocks a member replays.
    #[arg(long, default_value_t = 500)]
    replay_blocks: u64,

    /// Transfers in each block a member replays, and a second while it follows.
    #[arg(long, default_value_t = scenarios::member_replay::TXS_PER_BLOCK)]
    replay_txs: usize,

    /// Chain lengths the growth scenario measures at, in blocks, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 50_000])]
    lengths: Vec<u64>,

    /// Seconds of Go CPU profile (0: none), kept in target/bench-logs/: bft-growth, of the
    /// joining node's Geth and CometBFT and of the bare loop's Geth at each length; bft and
    /// replicas, of each validator's Geth in each saturated window.
    #[arg(long, default_value_t = 0)]
    profile_secs: u64,

    /// Blocks the retention scenario makes with each store kept to its window.
    #[arg(long, default_value_t = 10_000)]
    chain_blocks: u64,

    /// Check the arguments, print what would run, and exit without running anything (the
    /// docs' checker runs the documented benchmark commands this way).
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    EngineRound,
    BlockRate,
    Throughput,
    MemberReplay,
    Failover,
    /// Saturated blocks executed by four Geths at once: the machine's limit for Part 4.
    Replicas,
    /// Part 3's Redis and PostgreSQL primaries killed, with no single point of failure.
    HaFailover,
    Bft,
    /// Part 4's blocks a second with one of four validators down.
    Liveness,
    /// What a chain costs as it grows: bytes per block in every store, Part 2's restart,
    /// Part 3's new member, at each of `--lengths`.
    Growth,
    /// The growth scenario's figures for Part 4: CometBFT's and the app's bytes per block,
    /// and a full node that joins, at each of `--lengths`.
    BftGrowth,
    /// Part 2's store and Part 3's log kept to a window (`--retain-blocks`), sampled while
    /// the chain grows to `--chain-blocks`.
    Retention,
    /// A failover as Prometheus records it (the plot of the "Watching your chain" chapter).
    Watch,
    /// Every scenario, in this order.
    All,
    /// Only write the report again from the stored results.
    Report,
}

impl Scenario {
    /// Every scenario `all` runs, in its order.
    const IN_ORDER: [Self; 13] = [
        Self::EngineRound,
        Self::BlockRate,
        Self::Throughput,
        Self::MemberReplay,
        Self::Failover,
        Self::HaFailover,
        Self::Replicas,
        Self::Bft,
        Self::Liveness,
        Self::Watch,
        Self::Growth,
        Self::BftGrowth,
        Self::Retention,
    ];

    /// Its name on the command line ("bft-growth").
    fn name(self) -> String {
        self.to_possible_value().map(|value| value.get_name().to_owned()).unwrap_or_default()
    }
}

/// Every stored result; a scenario not run yet is `None`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Results {
    /// Where the last run of every scenario (`all`) was made.
    pub(crate) machine: Option<machine::Machine>,
    /// Where and when each scenario run on its own since was made, by scenario name: its
    /// section of the report says so.
    #[serde(default)]
    pub(crate) apart: std::collections::BTreeMap<String, Apart>,
    /// The plan of the last run.
    pub(crate) plan: Option<PlanRecord>,
    /// Results per scenario.
    pub(crate) engine_round: Option<EngineRound>,
    /// See [`BlockRate`].
    pub(crate) block_rate: Option<BlockRate>,
    /// See [`Throughput`].
    pub(crate) throughput: Option<Throughput>,
    /// See [`MemberReplay`].
    pub(crate) member_replay: Option<MemberReplay>,
    /// See [`Failover`].
    pub(crate) failover: Option<Failover>,
    /// See [`HaFailover`].
    #[serde(default)]
    pub(crate) ha_failover: Option<HaFailover>,
    /// See [`Replicas`].
    #[serde(default)]
    pub(crate) replicas: Option<Replicas>,
    /// See [`Bft`].
    pub(crate) bft: Option<Bft>,
    /// See [`Watch`].
    #[serde(default)]
    pub(crate) watch: Option<Watch>,
    /// See [`Liveness`].
    #[serde(default)]
    pub(crate) liveness: Option<Liveness>,
    /// See [`Growth`].
    #[serde(default)]
    pub(crate) growth: Option<Growth>,
    /// See [`Retention`].
    #[serde(default)]
    pub(crate) retention: Option<Retention>,
    /// See [`BftGrowth`].
    #[serde(default)]
    pub(crate) bft_growth: Option<BftGrowth>,
    /// How long each scenario's last run took, in whole seconds, by scenario name, whether
    /// it ran in `all` or on its own (runs stored before this was kept have none).
    #[serde(default)]
    pub(crate) took: std::collections::BTreeMap<String, u64>,
}

/// A scenario run on its own: where, when, and with which plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Apart {
    /// The machine and the date.
    #[serde(flatten)]
    pub(crate) machine: machine::Machine,
    /// Its plan (runs stored before plans were kept per scenario have none).
    #[serde(default)]
    pub(crate) plan: Option<PlanRecord>,
}

/// The plan, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PlanRecord {
    /// Seconds measured per repeat.
    pub(crate) duration: u64,
    /// Seconds of warm-up.
    pub(crate) warmup: u64,
    /// Repeats.
    pub(crate) repeats: usize,
}

fn out_dir() -> PathBuf {
    common::harness::workspace_root().join("docs/src")
}

fn load_results() -> anyhow::Result<Results> {
    let path = out_dir().join("benchmarks/results.json");
    if !path.exists() {
        return Ok(Results::default());
    }
    serde_json::from_slice(&std::fs::read(&path)?).with_context(|| format!("cannot read {}", path.display()))
}

/// Stores how long `scenario` took, from `started`, with the results so far.
fn finish(results: &mut Results, scenario: Scenario, started: Instant) -> anyhow::Result<()> {
    results.took.insert(scenario.name(), started.elapsed().as_secs());
    save_results(results)
}

fn save_results(results: &Results) -> anyhow::Result<()> {
    let dir = out_dir().join("benchmarks");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(results)?)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::logging::init();
    let args = Args::parse();
    let plan = Plan {
        duration: Duration::from_secs(args.duration),
        warmup: Duration::from_secs(args.warmup),
        repeats: args.repeats.max(1),
        profile_secs: args.profile_secs,
    };
    if args.dry_run {
        println!(
            "would run {:?}: {} s warm-up and {} s measured per repeat, {} repeats, {} failover kills per setting, {} blocks of {} transfers replayed, growth measured at {:?} blocks, {} blocks made with a window",
            args.scenario,
            args.warmup,
            args.duration,
            plan.repeats,
            args.kills,
            args.replay_blocks,
            args.replay_txs,
            args.lengths,
            args.chain_blocks
        );
        let scenarios = match args.scenario {
            Scenario::All => &Scenario::IN_ORDER[..],
            Scenario::Report => &[],
            _ => std::slice::from_ref(&args.scenario),
        };
        let (secs, timed) = match load_results() {
            Ok(results) => report::total_time(&results, scenarios),
            Err(error) => {
                println!("the stored results cannot be read, so no times are added up: {error:#}");
                return Ok(());
            }
        };
        match (scenarios.len(), timed) {
            (0, _) => {}
            (1, 1) => println!("its last run took {}", report::span(secs)),
            (1, _) => println!("its last run was not timed"),
            (_, 0) => println!("its scenarios' last runs were not timed"),
            (all, _) => println!(
                "the last runs of its scenarios took {} together ({timed} of the {all} timed; the benchmarks page lists each), besides bench.sh's install and build",
                report::span(secs)
            ),
        }
        return Ok(());
    }
    plot::init_font()?;
    let mut results = load_results()?;
    if args.scenario != Scenario::Report {
        ensure!(
            common::harness::max_concurrent() >= 4,
            "the benchmarks run up to four Geths at once: set GETH_TEST_SLOTS=4 or more (scripts/bench.sh does)"
        );
        let record = PlanRecord { duration: args.duration, warmup: args.warmup, repeats: plan.repeats };
        if args.scenario == Scenario::All {
            results.machine = Some(machine::Machine::read());
            results.plan = Some(record);
            results.apart.clear();
        } else {
            // The growth and retention scenarios measure along a chain, not for a time.
            let plan = (!matches!(args.scenario, Scenario::Growth | Scenario::BftGrowth | Scenario::Retention))
                .then_some(record);
            let apart = Apart { machine: machine::Machine::read(), plan };
            results.apart.insert(args.scenario.name(), apart);
        }
    }
    let all = args.scenario == Scenario::All;
    if all || args.scenario == Scenario::EngineRound {
        let started = Instant::now();
        results.engine_round = Some(scenarios::engine_round::run(&plan).await?);
        finish(&mut results, Scenario::EngineRound, started)?;
    }
    if all || args.scenario == Scenario::BlockRate {
        let started = Instant::now();
        results.block_rate = Some(scenarios::block_rate::run(&plan).await?);
        finish(&mut results, Scenario::BlockRate, started)?;
    }
    if all || args.scenario == Scenario::Throughput {
        let started = Instant::now();
        results.throughput = Some(scenarios::throughput::run(&plan).await?);
        finish(&mut results, Scenario::Throughput, started)?;
    }
    if all || args.scenario == Scenario::MemberReplay {
        let started = Instant::now();
        results.member_replay = Some(scenarios::member_replay::run(&plan, args.replay_blocks, args.replay_txs).await?);
        finish(&mut results, Scenario::MemberReplay, started)?;
    }
    if all || args.scenario == Scenario::Failover {
        let started = Instant::now();
        results.failover = Some(scenarios::failover::run(args.kills).await?);
        finish(&mut results, Scenario::Failover, started)?;
    }
    if all || args.scenario == Scenario::HaFailover {
        let started = Instant::now();
        results.ha_failover = Some(scenarios::ha_failover::run(args.kills).await?);
        finish(&mut results, Scenario::HaFailover, started)?;
    }
    if all || args.scenario == Scenario::Replicas {
        let started = Instant::now();
        results.replicas = Some(scenarios::replicas::run(&plan).await?);
        finish(&mut results, Scenario::Replicas, started)?;
    }
    if all || args.scenario == Scenario::Bft {
        let started = Instant::now();
        results.bft = Some(scenarios::bft::run(&plan).await?);
        finish(&mut results, Scenario::Bft, started)?;
    }
    if all || args.scenario == Scenario::Liveness {
        let started = Instant::now();
        results.liveness = Some(scenarios::bft::liveness(&plan).await?);
        finish(&mut results, Scenario::Liveness, started)?;
    }
    if all || args.scenario == Scenario::Watch {
        let started = Instant::now();
        results.watch = Some(scenarios::watch::run().await?);
        finish(&mut results, Scenario::Watch, started)?;
    }
    if all || args.scenario == Scenario::Growth {
        let started = Instant::now();
        results.growth = Some(scenarios::growth::run(&args.lengths).await?);
        finish(&mut results, Scenario::Growth, started)?;
    }
    if all || args.scenario == Scenario::BftGrowth {
        let started = Instant::now();
        results.bft_growth = Some(scenarios::bft_growth::run(&args.lengths, args.profile_secs).await?);
        finish(&mut results, Scenario::BftGrowth, started)?;
    }
    if all || args.scenario == Scenario::Retention {
        let started = Instant::now();
        results.retention = Some(scenarios::retention::run(args.chain_blocks).await?);
        finish(&mut results, Scenario::Retention, started)?;
    }
    report::write(&results, &out_dir())?;
    tracing::info!(report = %out_dir().join("benchmarks.md").display(), "report written");
    Ok(())
}
