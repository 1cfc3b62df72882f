//! The fault menu and the injector: random faults, several at a time, healed after a few
//! seconds, every kind on the menu at least once per pass through it.
//!
//! Faults come in bursts: one to three faults injected a moment apart (on different
//! targets, so they overlap), each healed after its own random time, then a few quiet
//! seconds once the last is healed, so that the time production takes to resume after a
//! heal can be measured.

use std::time::Duration;

use anyhow::Context;

use crate::history::{FaultEvent, Recorder, now};

/// A process of the devnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Process {
    /// A node's consensus process (`member-nodes`, `cometbft-consensus`).
    Consensus,
    Geth,
    Redis,
    Postgres,
    /// A validator's CometBFT.
    Comet,
}

/// A kind of network link, each through toxiproxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// A node to Redis.
    Redis,
    /// A node to PostgreSQL.
    Postgres,
    /// A node to its Geth's Engine API.
    Engine,
    /// A validator's CometBFT to every other.
    Peers,
}

/// What a link fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Toxic {
    /// Connections closed, new ones refused.
    Cut,
    /// Every reply late, by a varying amount.
    Latency,
    /// Connections up, nothing through either way, nothing closed.
    HalfOpen,
    /// A slow line.
    Bandwidth,
}

/// One kind of fault on the menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// SIGKILL; healed by starting it again.
    Kill(Process),
    /// SIGSTOP; healed by SIGCONT.
    Stop(Process),
    /// A Geth killed and its chain deleted; healed by starting it from genesis.
    Wipe,
    /// A link fault; healed by removing it.
    Link(Link, Toxic),
    /// The consensus process's wall clock stepped forward or back by [`CLOCK_STEP`];
    /// healed by setting it right.
    ClockForward,
    ClockBack,
}

/// How far a clock fault steps a clock, seconds.
pub(crate) const CLOCK_STEP: i64 = 30;

/// The latency a latency fault adds, and its jitter.
pub(crate) const LATENCY: (Duration, Duration) = (Duration::from_millis(300), Duration::from_millis(250));

/// The bandwidth a bandwidth fault leaves, KiB/s.
pub(crate) const BANDWIDTH_KIB: u64 = 16;

impl Kind {
    /// How the history and the report name it.
    pub(crate) fn name(self) -> String {
        let process = |p: Process| match p {
            Process::Consensus => "consensus",
            Process::Geth => "geth",
            Process::Redis => "redis",
            Process::Postgres => "postgres",
            Process::Comet => "cometbft",
        };
        let link = |l: Link| match l {
            Link::Redis => "redis",
            Link::Postgres => "postgres",
            Link::Engine => "engine",
            Link::Peers => "peers",
        };
        match self {
            Self::Kill(p) => format!("{}-kill", process(p)),
            Self::Stop(p) => format!("{}-stop", process(p)),
            Self::Wipe => "geth-wipe".to_owned(),
            Self::Link(l, Toxic::Cut) => format!("link-cut:{}", link(l)),
            Self::Link(l, Toxic::Latency) => format!("link-latency:{}", link(l)),
            Self::Link(l, Toxic::HalfOpen) => format!("link-half-open:{}", link(l)),
            Self::Link(l, Toxic::Bandwidth) => format!("link-bandwidth:{}", link(l)),
            Self::ClockForward => "clock-forward".to_owned(),
            Self::ClockBack => "clock-back".to_owned(),
        }
    }

    /// Whether it hits one node (else a shared server: Redis, PostgreSQL).
    fn per_node(self) -> bool {
        !matches!(self, Self::Kill(Process::Redis | Process::Postgres) | Self::Stop(Process::Redis | Process::Postgres))
    }

    /// What it holds while active: two faults on the same thing are never active at once
    /// (a process both killed and stopped heals into nonsense).
    fn resource(self, node: &str) -> String {
        match self {
            Self::Kill(Process::Redis) | Self::Stop(Process::Redis) => "redis".to_owned(),
            Self::Kill(Process::Postgres) | Self::Stop(Process::Postgres) => "postgres".to_owned(),
            Self::Kill(Process::Geth) | Self::Stop(Process::Geth) | Self::Wipe => format!("{node}/geth"),
            Self::Kill(Process::Comet) | Self::Stop(Process::Comet) => format!("{node}/cometbft"),
            // A validator's links to its peers are the peers' links to it: one such fault
            // at a time.
            Self::Link(Link::Peers, _) => "peer links".to_owned(),
            Self::Link(link, _) => format!("{node}/link-{link:?}"),
            Self::Kill(Process::Consensus) | Self::Stop(Process::Consensus) | Self::ClockForward | Self::ClockBack => {
                node.to_owned()
            }
        }
    }
}

/// Every toxic, on each of `links`.
pub(crate) fn link_faults(links: &[Link]) -> Vec<Kind> {
    let toxics = [Toxic::Cut, Toxic::Latency, Toxic::HalfOpen, Toxic::Bandwidth];
    links.iter().flat_map(|&l| toxics.iter().map(move |&t| Kind::Link(l, t))).collect()
}

/// A devnet the injector can hurt.
pub(crate) trait Devnet {
    /// The node names, by index.
    fn nodes(&self) -> Vec<String>;
    /// The public JSON-RPC URL of each node's Geth, where clients send.
    fn rpc_urls(&self) -> Vec<String>;
    /// Toxiproxy's API, where every link of the devnet can be hurt by hand too.
    fn toxiproxy(&self) -> &str;
    /// Where the consensus processes' logs are.
    fn log_dir(&self) -> &std::path::Path;
    /// The servers' logs (Geths, CometBFT, Redis, PostgreSQL, toxiproxy): a name to keep each under,
    /// and where it is.
    fn server_logs(&self) -> Vec<(String, std::path::PathBuf)>;
    /// Part 3's block log, `(number, hash)` per row; `None` for a devnet without one.
    async fn block_log(&self) -> anyhow::Result<Option<Vec<(u64, alloy_primitives::B256)>>>;
    /// The kinds of fault it can take.
    fn menu(&self) -> Vec<Kind>;
    /// Injects `kind` on node `node` (ignored for a shared server).
    async fn inject(&mut self, kind: Kind, node: usize) -> anyhow::Result<()>;
    /// Heals it.
    async fn heal(&mut self, kind: Kind, node: usize) -> anyhow::Result<()>;
    /// Starts again every process that ended by itself (or was killed by hand while the
    /// soak ran), as a service manager would; their names.
    async fn supervise(&mut self) -> anyhow::Result<Vec<String>>;
}

/// A small seeded generator (SplitMix64): the same seed gives the same faults, in the same
/// order, at the same offsets.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in `from..to`, seconds.
    pub(crate) fn seconds(&mut self, from: f64, to: f64) -> Duration {
        let unit = (self.next() >> 11) as f64 / (1_u64 << 53) as f64;
        Duration::from_secs_f64(from + (to - from) * unit)
    }
}

/// One fault in force.
struct Active {
    kind: Kind,
    node: usize,
    resource: String,
    heal_at: tokio::time::Instant,
    event: usize,
}

/// Injects bursts of faults into `devnet` for `duration`, recording each; returns once the
/// last burst is healed. After each burst it waits (up to `bound`) for a new block before
/// the quiet seconds, so that every burst's recovery is timed. Whatever happens, no fault
/// is left in force: on an error the faults of the burst are healed before returning it.
pub(crate) async fn inject<D: Devnet>(
    devnet: &mut D,
    duration: Duration,
    seed: u64,
    bound: Duration,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let mut deck: Vec<Kind> = Vec::new();
    let end = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < end {
        let mut active: Vec<Active> = Vec::new();
        let burst = burst(devnet, &mut rng, &mut deck, &mut active, recorder).await;
        let healed = heal_all(devnet, &mut active, recorder).await;
        burst.and(healed)?;
        let top = recorder.with(|h| h.heads.iter().map(|head| head.number).max().unwrap_or(0));
        let deadline = tokio::time::Instant::now() + bound;
        while tokio::time::Instant::now() < deadline && recorder.with(|h| h.heads.iter().all(|x| x.number <= top)) {
            wait_until(devnet, tokio::time::Instant::now() + Duration::from_millis(250), recorder).await?;
        }
        let quiet = tokio::time::Instant::now() + rng.seconds(2.0, 5.0);
        wait_until(devnet, quiet, recorder).await?;
    }
    Ok(())
}

/// Injects one to three faults a moment apart into `devnet`, each on a free target,
/// into `active`.
async fn burst<D: Devnet>(
    devnet: &mut D,
    rng: &mut Rng,
    deck: &mut Vec<Kind>,
    active: &mut Vec<Active>,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let nodes = devnet.nodes();
    for _ in 0..1 + rng.below(3) {
        if deck.is_empty() {
            *deck = devnet.menu();
            shuffle(deck, rng);
        }
        let node = rng.below(nodes.len());
        // The first kind in the deck whose target is free; a later burst takes the rest.
        let free = deck.iter().position(|k| {
            let resource = k.resource(&nodes[node]);
            !active.iter().any(|a| a.resource == resource)
        });
        let Some(at) = free else { break };
        let kind = deck.remove(at);
        let target = if kind.per_node() { nodes[node].clone() } else { kind.resource("") };
        tracing::info!(fault = kind.name(), %target, "inject");
        let event = recorder.with(|h| {
            h.faults.push(FaultEvent { kind: kind.name(), target: target.clone(), injected: now(), healed: None });
            h.faults.len() - 1
        });
        let heal_at = tokio::time::Instant::now() + rng.seconds(1.0, 6.0);
        // In force from here on, even if injecting it failed half-way: it will be healed.
        active.push(Active { kind, node, resource: kind.resource(&nodes[node]), heal_at, event });
        devnet.inject(kind, node).await.with_context(|| format!("injecting {} on {target}", kind.name()))?;
        let next = tokio::time::Instant::now() + rng.seconds(0.0, 2.0);
        wait_until(devnet, next, recorder).await?;
    }
    Ok(())
}

/// Heals every fault in `active`, each at its time; all of them even if one fails (the
/// first error is returned).
async fn heal_all<D: Devnet>(devnet: &mut D, active: &mut Vec<Active>, recorder: &Recorder) -> anyhow::Result<()> {
    active.sort_by_key(|a| a.heal_at);
    let mut result = Ok(());
    for fault in active.drain(..) {
        if result.is_ok() {
            result = wait_until(devnet, fault.heal_at, recorder).await;
        }
        tracing::info!(fault = fault.kind.name(), "heal");
        let healed =
            devnet.heal(fault.kind, fault.node).await.with_context(|| format!("healing {}", fault.kind.name()));
        recorder.with(|h| h.faults[fault.event].healed = Some(now()));
        result = result.and(healed);
    }
    result
}

/// Waits until `until`, restarting meanwhile, several times a second, what ended by
/// itself; each restart is in the history's `exits`.
pub(crate) async fn wait_until<D: Devnet>(
    devnet: &mut D,
    until: tokio::time::Instant,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    loop {
        for target in devnet.supervise().await? {
            tracing::warn!(%target, "ended by itself: started again");
            let at = now();
            recorder.with(|h| h.exits.push((at, target)));
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        tokio::time::sleep(left.min(Duration::from_millis(250))).await;
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// The clock offset a clock fault sets (none for any other fault).
pub(crate) fn clock_offset(kind: Kind) -> String {
    match kind {
        Kind::ClockForward => format!("+{CLOCK_STEP}"),
        Kind::ClockBack => format!("-{CLOCK_STEP}"),
        _ => "+0".to_owned(),
    }
}

/// Applies a link fault to `proxy`.
pub(crate) async fn apply_toxic(proxy: &common::harness::Proxy, toxic: Toxic) -> anyhow::Result<()> {
    match toxic {
        Toxic::Cut => proxy.cut().await,
        Toxic::Latency => proxy.jittery(LATENCY.0, LATENCY.1).await,
        Toxic::HalfOpen => proxy.half_open().await,
        Toxic::Bandwidth => proxy.narrow(BANDWIDTH_KIB).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let draws = |seed| {
            let mut rng = Rng::new(seed);
            (0..8).map(|_| rng.below(100)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn a_shuffled_deck_holds_every_kind_once() {
        let mut deck = link_faults(&[Link::Redis, Link::Engine]);
        let before = deck.clone();
        shuffle(&mut deck, &mut Rng::new(3));
        assert_eq!(deck.len(), before.len());
        assert!(before.iter().all(|k| deck.contains(k)));
    }

    #[test]
    fn faults_on_one_process_share_a_resource_and_other_targets_do_not() {
        assert_eq!(Kind::Kill(Process::Geth).resource("node1"), Kind::Wipe.resource("node1"));
        assert_eq!(Kind::ClockBack.resource("node2"), Kind::Stop(Process::Consensus).resource("node2"));
        assert_ne!(Kind::Kill(Process::Geth).resource("node1"), Kind::Kill(Process::Geth).resource("node2"));
        assert_ne!(
            Kind::Link(Link::Redis, Toxic::Cut).resource("n"),
            Kind::Link(Link::Engine, Toxic::Cut).resource("n")
        );
        assert_eq!(Kind::Kill(Process::Redis).resource("node1"), Kind::Stop(Process::Redis).resource("node3"));
    }
}
