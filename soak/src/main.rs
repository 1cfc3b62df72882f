//! The soak: Part 3's cluster or Part 4's network, on the real Geth, Redis, PostgreSQL and
//! CometBFT, every link through toxiproxy, under a steady load of transfers sent through
//! every node, while random faults, several at a time, are injected and healed. At the end
//! everything is healed and what the clients saw is checked against the chain that stands
//! ([`check`]): no fork, no gap, no confirmed transaction lost, production back after each
//! heal, no block from the future.
//!
//! ```text
//! SOAK_PROFILE=release scripts/soak.sh part3 --minutes 30 --seed 1
//! ```
//!
//! The run's history, verdict, summary and plot go to `.soak/PART-seedS/`; `--record`
//! also writes the summary and the plot into the book (`docs/src/soak/`).

mod check;
mod faults;
mod history;
mod load;
mod part3;
mod part4;
mod processes;
mod report;

use std::{collections::HashMap, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use alloy_primitives::B256;
use anyhow::Context;
use clap::Parser;
use common::{harness::Accounts, rpc::RpcClient};
use serde_json::{Value, json};

use crate::{
    faults::Devnet,
    history::{Final, History, Recorder, now},
    load::Load,
};

/// Soaks Part 3 or Part 4 in random overlapping faults under load, and checks what the
/// clients saw.
#[derive(Debug, Parser)]
struct Args {
    /// Which part.
    #[arg(value_enum)]
    part: Part,

    /// How long faults are injected, minutes.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,

    /// The seed of the fault schedule and the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Where the run's files go.
    #[arg(long, default_value = ".soak")]
    out: PathBuf,

    /// Also write the summary and the plot into the book (docs/src/soak/).
    #[arg(long)]
    record: bool,

    /// Check the arguments, print what would run, and exit without running anything (the
    /// docs' checker runs the book's 30-minute commands this way).
    #[arg(long)]
    dry_run: bool,

    /// Run nothing: check the run of this part and seed again from the files it left
    /// (`history.json`, `final.json`), and write its summary and plot again.
    #[arg(long)]
    again: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// A leader cluster on Redis and PostgreSQL.
    Part3,
    /// A CometBFT validator network.
    Part4,
}

impl Part {
    /// Its fault menu.
    fn menu(self) -> Vec<faults::Kind> {
        match self {
            Self::Part3 => part3::menu(),
            Self::Part4 => part4::menu(),
        }
    }

    /// What its devnet runs.
    fn devnet(self) -> &'static str {
        match self {
            Self::Part3 => "3 nodes (2 leader candidates, 1 member), Redis, PostgreSQL",
            Self::Part4 => "4 validators",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Part3 => "part3",
            Self::Part4 => "part4",
        }
    }
}

/// The clients: one per account.
const CLIENTS: usize = 48;

/// How long the cluster gets, after the last heal, for every node to be back at the head.
const SETTLE: Duration = Duration::from_secs(180);

/// How long transactions in flight at the end get to be confirmed.
const DRAIN: Duration = Duration::from_secs(60);

/// How long one call may take.
const CALL: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    common::logging::init();
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("soak: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.minutes > 0.0 && args.minutes.is_finite(), "--minutes must be a positive number");
    if args.dry_run {
        let (kinds, nodes) = (args.part.menu(), args.part.devnet());
        println!(
            "would run {} ({nodes}) for {} minutes of faults, seed {}, {} clients, {} fault kinds: {}",
            args.part.name(),
            args.minutes,
            args.seed,
            CLIENTS,
            kinds.len(),
            kinds.into_iter().map(faults::Kind::name).collect::<Vec<_>>().join(" ")
        );
        return Ok(true);
    }
    let dir = args.out.join(format!("{}-seed{}", args.part.name(), args.seed));
    let menu: Vec<String> = args.part.menu().into_iter().map(faults::Kind::name).collect();
    let (history, last) = if args.again { report::read(&dir)? } else { run_devnet(args, &dir).await? };
    let verdict = check::check(&history, &last, check::BOUNDS);
    report::write(&dir, &history, &last, &verdict, &menu)?;
    let summary = report::summary(&history, &verdict, &menu);
    if args.record {
        let book = common::harness::workspace_root().join("docs/src/soak");
        std::fs::create_dir_all(&book)?;
        std::fs::write(book.join(format!("{}.md", args.part.name())), &summary)?;
        std::fs::copy(dir.join("heads.png"), book.join(format!("{}.png", args.part.name())))?;
    }
    println!("{summary}");
    println!("history, verdict and plot: {}", dir.display());
    let failures = verdict.failures(&menu);
    for failure in &failures {
        eprintln!("soak: FAILED: {failure}");
    }
    Ok(failures.is_empty())
}

/// Starts the devnet of `args.part`, soaks it, and reads the chain at the end.
async fn run_devnet(args: &Args, dir: &std::path::Path) -> anyhow::Result<(History, Final)> {
    let accounts = Accounts::new(CLIENTS)?;
    let genesis = common::harness::funded_genesis(&accounts)?;
    match args.part {
        Part::Part3 => soaked(part3::Cluster::start(&genesis).await?, args, &accounts, dir).await,
        Part::Part4 => soaked(part4::Network::start(&genesis).await?, args, &accounts, dir).await,
    }
}

/// Soaks `devnet`, keeps the history, and reads the chain at the end.
async fn soaked<D: Devnet>(
    mut devnet: D,
    args: &Args,
    accounts: &Accounts,
    dir: &std::path::Path,
) -> anyhow::Result<(History, Final)> {
    tracing::info!(part = args.part.name(), logs = %devnet.log_dir().display(), toxiproxy = devnet.toxiproxy(), "devnet started");
    let urls = devnet.rpc_urls();
    let soaked = async {
        let history = soak(&mut devnet, &urls, args, accounts, dir).await?;
        report::write_history(dir, &history)?;
        let mut last = final_chain(&urls, &history).await?;
        last.log = devnet.block_log().await?;
        anyhow::Ok((history, last))
    }
    .await;
    // Kept whether the run went through or stopped: a run that stopped needs them most.
    if let Err(error) = keep_logs(&devnet, dir) {
        tracing::warn!(error = %format!("{error:#}"), "cannot keep the logs");
    }
    soaked
}

/// Copies every process's log to `dir/logs`, before the devnet's directories are deleted:
/// a run that fails must leave what it takes to find out why.
fn keep_logs<D: Devnet>(devnet: &D, dir: &std::path::Path) -> anyhow::Result<()> {
    let logs = dir.join("logs");
    if logs.exists() {
        std::fs::remove_dir_all(&logs)?;
    }
    std::fs::create_dir_all(&logs)?;
    let mut files = devnet.server_logs();
    for entry in std::fs::read_dir(devnet.log_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            files.push((path.file_name().unwrap_or_default().to_string_lossy().into_owned(), path));
        }
    }
    for (name, path) in files {
        // A server that never wrote has no log; that is not worth failing the run over.
        if path.exists() {
            std::fs::copy(&path, logs.join(&name)).with_context(|| format!("cannot keep {}", path.display()))?;
        }
    }
    Ok(())
}

/// The load and the faults, for `args.minutes`; then every fault healed, the nodes given
/// time to get back in step and the clients time to see their last receipts.
async fn soak<D: Devnet>(
    devnet: &mut D,
    urls: &[String],
    args: &Args,
    accounts: &Accounts,
    dir: &std::path::Path,
) -> anyhow::Result<History> {
    let rpcs: Vec<RpcClient> = urls.iter().map(|u| RpcClient::new(u, None)).collect::<anyhow::Result<_>>()?;
    wait_for_heads(&rpcs, 2, SETTLE).await.context("the devnet made no blocks")?;
    let recorder = Recorder::new(History {
        part: args.part.name().to_owned(),
        seed: args.seed,
        nodes: devnet.nodes(),
        started: now(),
        ..History::default()
    });
    let load = Load::start(accounts.signers(), urls, &recorder, args.seed)?;
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let bound = Duration::from_secs_f64(check::BOUNDS.recovery);
    if let Err(error) = faults::inject(devnet, duration, args.seed, bound, &recorder).await {
        // What was seen up to the error is kept for whoever looks into it.
        let kept = report::write_history(dir, &recorder.snapshot());
        return Err(error.context(format!("the soak stopped ({})", kept.unwrap_or_else(|e| format!("{e:#}")))));
    }
    recorder.with(|h| h.healed = now());
    let top = recorder.with(|h| h.heads.iter().map(|head| head.number).max().unwrap_or(0));
    tracing::info!(top, "every fault healed; waiting for every node to pass the top");
    let deadline = tokio::time::Instant::now() + SETTLE;
    while tokio::time::Instant::now() < deadline && !all_at(&rpcs, top + 2).await {
        faults::wait_until(devnet, tokio::time::Instant::now() + Duration::from_secs(1), &recorder).await?;
    }
    load.finish(DRAIN).await;
    Ok(recorder.snapshot())
}

async fn head(rpc: &RpcClient) -> Option<u64> {
    let number: alloy_primitives::U64 = rpc.call("eth_blockNumber", json!([]), CALL).await.ok()?;
    Some(number.to())
}

async fn all_at(rpcs: &[RpcClient], height: u64) -> bool {
    for rpc in rpcs {
        if head(rpc).await.is_none_or(|h| h < height) {
            return false;
        }
    }
    true
}

async fn wait_for_heads(rpcs: &[RpcClient], height: u64, bound: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + bound;
    while !all_at(rpcs, height).await {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not every node reached block {height} in {bound:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Every node's chain, and where the first node holds each confirmed transaction.
async fn final_chain(urls: &[String], history: &History) -> anyhow::Result<Final> {
    let rpcs: Vec<RpcClient> = urls.iter().map(|u| RpcClient::new(u, None)).collect::<anyhow::Result<_>>()?;
    let mut chains = Vec::new();
    for (i, rpc) in rpcs.iter().enumerate() {
        let top = head(rpc).await.with_context(|| format!("{} does not answer", history.nodes[i]))?;
        let mut chain = Vec::new();
        for number in 0..=top {
            let block: Value = rpc.call("eth_getBlockByNumber", json!([format!("{number:#x}"), false]), CALL).await?;
            let hash: B256 = block["hash"].as_str().context("a block without a hash")?.parse()?;
            chain.push(hash);
        }
        chains.push(chain);
    }
    let rpcs: Arc<Vec<RpcClient>> = Arc::new(rpcs);
    let mut included = HashMap::new();
    let confirmed: Vec<B256> = history.txs.iter().filter(|t| t.confirmed.is_some()).map(|t| t.hash).collect();
    for batch in confirmed.chunks(32) {
        let mut tasks = tokio::task::JoinSet::new();
        for &hash in batch {
            let rpcs = rpcs.clone();
            tasks.spawn(async move { Ok::<_, anyhow::Error>((hash, holder(&rpcs, hash).await?)) });
        }
        while let Some(found) = tasks.join_next().await {
            if let (hash, Some(block)) = found?? {
                included.insert(hash, block);
            }
        }
    }
    Ok(Final { chains, log: None, included })
}

/// The block (number, hash) that holds transaction `hash`, by the receipt of the first node
/// that answers; `None` if every node that answered has no receipt. A node that cannot
/// answer (down, or still indexing after a wipe) is passed over; if none can, it is asked
/// again, and an error after a minute.
async fn holder(rpcs: &[RpcClient], hash: B256) -> anyhow::Result<Option<(u64, B256)>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut answered = false;
        for rpc in rpcs {
            let Ok(receipt) = rpc.call::<_, Option<Value>>("eth_getTransactionReceipt", json!([hash]), CALL).await
            else {
                continue;
            };
            answered = true;
            let block = receipt.and_then(|r| {
                let number = u64::from_str_radix(r["blockNumber"].as_str()?.trim_start_matches("0x"), 16).ok()?;
                Some((number, r["blockHash"].as_str()?.parse::<B256>().ok()?))
            });
            if block.is_some() {
                return Ok(block);
            }
        }
        if answered {
            return Ok(None);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no node answers for the receipt of {hash}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
