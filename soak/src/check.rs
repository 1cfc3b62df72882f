//! The checker: what the clients saw, against the chain that stands at the end.
//!
//! - **0 forks**: every Geth has the same block at every height they all have, and Part 3's
//!   block log holds that block too.
//! - **0 gaps**: the block log has a row for every height.
//! - **0 lost**: every receipt a client was shown names a block of the final chain, and
//!   that block holds the transaction.
//! - **Every node back**: after the last heal each node reaches the height the cluster had.
//! - **Production resumes**: after each heal that leaves no fault behind, a new block comes
//!   within [`Bounds::recovery`].
//! - **No node stuck**: a node more than [`LAG`] blocks behind the cluster gains a block
//!   within [`Bounds::recovery`] of falling behind, of its last new block, or of the last
//!   heal of a fault on it or on a server every node uses.
//! - **No block from the future**: no head a client saw was more than [`Bounds::ahead`]
//!   ahead of the client's clock.
//!
//! It is tested here on doctored histories: a fork, a gap, a lost receipt, a block from
//! the future, a stall; each must fail it.

use std::collections::BTreeMap;

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::history::{Final, History};

/// What the soak promises, in seconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Bounds {
    /// From a heal that leaves no fault active to the next new block.
    pub(crate) recovery: f64,
    /// How far a block's timestamp may be ahead of the clock of the client that saw it.
    pub(crate) ahead: f64,
}

/// How many blocks behind the highest head a node may be and still count as in step: a
/// head sampled while a block spreads is one behind, and one sampled just before the
/// next block's sample elsewhere can be two.
pub(crate) const LAG: u64 = 2;

/// The bounds the soak checks.
pub(crate) const BOUNDS: Bounds = Bounds { recovery: 30.0, ahead: 2.0 };

/// What the checker found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Verdict {
    pub(crate) bounds: Option<Bounds>,
    /// Transactions sent, shown a receipt, and neither.
    pub(crate) sent: usize,
    pub(crate) confirmed: usize,
    pub(crate) unconfirmed: usize,
    /// Confirmed transactions the final chain does not hold in the block the client saw.
    pub(crate) lost: Vec<B256>,
    /// Heights where two nodes, or a node and the block log, hold different blocks.
    pub(crate) forks: Vec<u64>,
    /// Heights the block log has no row for.
    pub(crate) gaps: Vec<u64>,
    /// Heads a client was shown, `(node, height)`, that the final chain does not hold: a
    /// fork that was there and is gone.
    pub(crate) replaced_heads: Vec<(usize, u64)>,
    /// Nodes that did not reach, by the end, the height the cluster had at the last heal.
    pub(crate) behind: Vec<String>,
    /// Nodes that stayed behind the cluster without a new block for longer than the bound
    /// with no fault on them or on a shared server: node, when the wait began (seconds
    /// into the run), and how long it lasted (the longest such wait of each stretch).
    #[serde(default)]
    pub(crate) stuck: Vec<(String, f64, f64)>,
    /// The height up to which every node's chain was compared.
    pub(crate) compared_to: u64,
    /// The furthest a block was ahead of the clock of the client that saw it, seconds
    /// (below 0 if every block was seen after its timestamp), and the blocks beyond the
    /// bound.
    pub(crate) max_ahead: f64,
    pub(crate) ahead: Vec<(u64, f64)>,
    /// The longest time without a new block anywhere: when it began (seconds into the
    /// run) and how long it was.
    pub(crate) longest_stall: (f64, f64),
    /// Seconds from a heal that left no fault active to the next block, by the kind of
    /// the fault healed.
    pub(crate) recoveries: BTreeMap<String, Vec<f64>>,
    /// Heals after which no block came within the bound: kind, seconds into the run.
    pub(crate) unrecovered: Vec<(String, f64)>,
    /// Faults injected, by kind.
    pub(crate) injected: BTreeMap<String, usize>,
}

impl Verdict {
    /// Everything that breaks a promise, or makes the run prove too little; empty if none.
    /// `menu` is every kind of fault the run had to inject at least once.
    pub(crate) fn failures(&self, menu: &[String]) -> Vec<String> {
        let mut failures = Vec::new();
        let mut fail = |cond: bool, what: String| {
            if cond {
                failures.push(what);
            }
        };
        fail(!self.forks.is_empty(), format!("forks at heights {:?}", first(&self.forks)));
        fail(!self.gaps.is_empty(), format!("the block log lacks heights {:?}", first(&self.gaps)));
        fail(
            !self.lost.is_empty(),
            format!("{} confirmed transactions lost: {:?}", self.lost.len(), first(&self.lost)),
        );
        fail(
            !self.replaced_heads.is_empty(),
            format!("heads shown to clients and later replaced (node, height): {:?}", first(&self.replaced_heads)),
        );
        fail(!self.behind.is_empty(), format!("nodes behind at the end: {:?}", self.behind));
        fail(
            !self.stuck.is_empty(),
            format!(
                "nodes stuck behind the cluster for longer than the bound with no fault on them (node, from, seconds): {:?}",
                first(&self.stuck)
            ),
        );
        fail(
            !self.ahead.is_empty(),
            format!("blocks ahead of the clock by more than the bound: {:?}", first(&self.ahead)),
        );
        fail(
            !self.unrecovered.is_empty(),
            format!("no block within the bound after heals: {:?}", first(&self.unrecovered)),
        );
        fail(self.confirmed == 0, "no transaction was confirmed: the run proves nothing".to_owned());
        let missing: Vec<&String> = menu.iter().filter(|k| !self.injected.contains_key(*k)).collect();
        fail(!missing.is_empty(), format!("fault kinds never injected: {missing:?}"));
        failures
    }
}

fn first<T: Clone>(items: &[T]) -> Vec<T> {
    items.iter().take(10).cloned().collect()
}

/// Checks `history` against `last`, the chain at the end.
pub(crate) fn check(history: &History, last: &Final, bounds: Bounds) -> Verdict {
    let mut verdict = Verdict { bounds: Some(bounds), ..Verdict::default() };
    chain(history, last, &mut verdict);
    transactions(history, last, &mut verdict);
    timing(history, bounds, &mut verdict);
    stuck(history, bounds, &mut verdict);
    for fault in &history.faults {
        *verdict.injected.entry(fault.kind.clone()).or_default() += 1;
    }
    verdict
}

/// The final chain: every node's chain where they agree, the longest beyond that.
fn reference(last: &Final) -> &[B256] {
    last.chains.iter().max_by_key(|c| c.len()).map_or(&[], Vec::as_slice)
}

/// Forks, gaps, heads that were replaced, and nodes left behind.
fn chain(history: &History, last: &Final, verdict: &mut Verdict) {
    let common = last.chains.iter().map(Vec::len).min().unwrap_or(0);
    verdict.compared_to = common.saturating_sub(1) as u64;
    let reference = reference(last);
    let mut forks = std::collections::BTreeSet::new();
    for height in 0..common {
        if last.chains.iter().any(|chain| chain[height] != reference[height]) {
            forks.insert(height as u64);
        }
    }
    if let Some(log) = &last.log {
        // The log begins at its anchor; from there every height has a row.
        let mut expected = log.first().map_or(0, |row| row.0);
        for &(number, hash) in log {
            verdict.gaps.extend(expected..number);
            expected = number + 1;
            let index = usize::try_from(number).unwrap_or(usize::MAX);
            if last.chains.iter().any(|chain| chain.get(index).is_some_and(|held| *held != hash)) {
                forks.insert(number);
            }
        }
        // A Geth holding a block the log has no row for holds a block nobody stored.
        verdict.gaps.extend((expected..reference.len() as u64).filter(|n| !forks.contains(n)));
    }
    verdict.forks = forks.into_iter().collect();
    for head in &history.heads {
        let held = usize::try_from(head.number).ok().and_then(|n| reference.get(n));
        if held.is_some_and(|hash| *hash != head.hash) && !verdict.replaced_heads.contains(&(head.node, head.number)) {
            verdict.replaced_heads.push((head.node, head.number));
        }
    }
    let at_heal = height_at(&timeline(history), history.healed);
    for (i, chain) in last.chains.iter().enumerate() {
        if (chain.len() as u64) <= at_heal {
            verdict.behind.push(history.nodes.get(i).cloned().unwrap_or_else(|| format!("node {i}")));
        }
    }
}

/// Sent, confirmed and lost.
fn transactions(history: &History, last: &Final, verdict: &mut Verdict) {
    verdict.sent = history.txs.len();
    let reference = reference(last);
    for tx in &history.txs {
        let Some(seen) = tx.confirmed else {
            verdict.unconfirmed += 1;
            continue;
        };
        verdict.confirmed += 1;
        let included = last.included.get(&tx.hash) == Some(&(seen.number, seen.block));
        let on_chain =
            usize::try_from(seen.number).ok().and_then(|n| reference.get(n)).is_none_or(|hash| *hash == seen.block);
        if !included || !on_chain {
            verdict.lost.push(tx.hash);
        }
    }
}

/// The cluster's height over time: `(when, height)` at each new height any node showed.
fn timeline(history: &History) -> Vec<(f64, u64)> {
    let mut heads: Vec<(f64, u64)> = history.heads.iter().map(|h| (h.at, h.number)).collect();
    heads.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rises = Vec::new();
    for (at, number) in heads {
        if rises.last().is_none_or(|&(_, top)| number > top) {
            rises.push((at, number));
        }
    }
    rises
}

/// The highest block any node showed by `at`.
fn height_at(rises: &[(f64, u64)], at: f64) -> u64 {
    match rises.partition_point(|(t, _)| *t <= at) {
        0 => 0,
        seen => rises[seen - 1].1,
    }
}

/// Nodes stuck behind the cluster: each node's samples in time order, and for each
/// stretch where it is more than [`LAG`] blocks behind the highest head shown by then, the
/// time since the latest of: the stretch began, the node's head last rose (a node that
/// replays or syncs is catching up, not stuck), and a fault on that node or on a server
/// every node uses (Redis, PostgreSQL) was last in force. Beyond the recovery bound, the
/// node is stuck with nothing wrong around it.
fn stuck(history: &History, bounds: Bounds, verdict: &mut Verdict) {
    let rises = timeline(history);
    for (node, name) in history.nodes.iter().enumerate() {
        let mut samples: Vec<(f64, u64)> =
            history.heads.iter().filter(|h| h.node == node).map(|h| (h.at, h.number)).collect();
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let shared = |target: &str| !history.nodes.iter().any(|n| n == target);
        let faults: Vec<_> = history.faults.iter().filter(|f| f.target == *name || shared(&f.target)).collect();
        // The latest moment up to `at` when such a fault was in force.
        let last_fault = |at: f64| {
            faults
                .iter()
                .filter(|f| f.injected <= at)
                .map(|f| f.healed.map_or(at, |h| h.min(at)))
                .fold(f64::NEG_INFINITY, f64::max)
        };
        // While behind: since when the head has not moved.
        let mut still: Option<(f64, u64)> = None;
        let mut worst: Option<(f64, f64)> = None;
        let mut record = |worst: Option<(f64, f64)>| {
            if let Some((from, waited)) = worst {
                verdict.stuck.push((name.clone(), from - history.started, waited));
            }
        };
        for (at, number) in samples {
            if number + LAG >= height_at(&rises, at) {
                record(worst.take());
                still = None;
                continue;
            }
            let (since, _) = *still.insert(match still {
                Some((since, seen)) if number <= seen => (since, seen),
                _ => (at, number),
            });
            let from = since.max(last_fault(at));
            if at - from > bounds.recovery && worst.is_none_or(|(_, w)| at - from > w) {
                worst = Some((from, at - from));
            }
        }
        record(worst);
    }
}

/// Stalls, recoveries, and blocks from the future.
fn timing(history: &History, bounds: Bounds, verdict: &mut Verdict) {
    let rises = timeline(history);
    for pair in rises.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        if gap > verdict.longest_stall.1 {
            verdict.longest_stall = (pair[0].0 - history.started, gap);
        }
    }
    let end = history.heads.iter().map(|h| h.at).fold(history.healed, f64::max);
    for (i, fault) in history.faults.iter().enumerate() {
        let Some(healed) = fault.healed else { continue };
        let still_active = history
            .faults
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.injected <= healed && other.healed.is_none_or(|h| h > healed));
        if still_active {
            continue;
        }
        let height = height_at(&rises, healed);
        let resumed = rises.iter().find(|(t, n)| *t > healed && *n > height).map(|(t, _)| *t);
        let next_fault =
            history.faults.iter().map(|f| f.injected).filter(|t| *t > healed).fold(f64::INFINITY, f64::min);
        let into_run = healed - history.started;
        match resumed {
            Some(at) if at <= next_fault => {
                verdict.recoveries.entry(fault.kind.clone()).or_default().push(at - healed);
                if at - healed > bounds.recovery {
                    verdict.unrecovered.push((fault.kind.clone(), into_run));
                }
            }
            // The next fault came first: the heal is not measured, unless the cluster had
            // already been still for longer than the bound with nothing wrong.
            _ if next_fault.min(end) - healed > bounds.recovery => {
                verdict.unrecovered.push((fault.kind.clone(), into_run));
            }
            _ => {}
        }
    }
    verdict.max_ahead = f64::NEG_INFINITY;
    for head in &history.heads {
        let ahead = head.timestamp as f64 - head.at;
        verdict.max_ahead = verdict.max_ahead.max(ahead);
        if ahead > bounds.ahead && !verdict.ahead.iter().any(|(n, _)| *n == head.number) {
            verdict.ahead.push((head.number, ahead));
        }
    }
    if history.heads.is_empty() {
        verdict.max_ahead = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{FaultEvent, Head, Seen, Tx};

    const START: f64 = 1_000_000.0;

    /// A fault of `kind` on `target`, from `injected` to `healed` seconds into the run.
    fn fault(kind: &str, target: &str, injected: f64, healed: Option<f64>) -> FaultEvent {
        FaultEvent {
            kind: kind.into(),
            target: target.into(),
            injected: START + injected,
            healed: healed.map(|h| START + h),
        }
    }

    fn hash(height: u64, fork: u8) -> B256 {
        let mut bytes = [fork; 32];
        bytes[..8].copy_from_slice(&height.to_be_bytes());
        B256::from(bytes)
    }

    /// Three nodes and 40 s of a healthy run: a block a second, each node sampled every
    /// half second; one transaction a block, each confirmed; one fault from 10 s to 13 s
    /// during which nothing was made; the heal at 40 s.
    fn healthy() -> (History, Final) {
        let stalled = |t: f64| (10.0..14.0).contains(&t);
        let mut heads = Vec::new();
        let mut height = 0;
        for step in 0..80 {
            let t = f64::from(step) * 0.5;
            if step % 2 == 0 && !stalled(t) {
                height += 1;
            }
            for node in 0..3 {
                let timestamp = (START + t) as u64;
                heads.push(Head { at: START + t, node, number: height, hash: hash(height, 0), timestamp });
            }
        }
        let txs = (1..=height)
            .map(|n| Tx {
                hash: hash(n, 0xaa),
                account: 0,
                nonce: n - 1,
                sends: vec![(START, 0)],
                confirmed: Some(Seen { at: START, node: 1, number: n, block: hash(n, 0) }),
            })
            .collect();
        let faults = vec![fault("geth-kill", "node1", 10.0, Some(13.0))];
        let history = History {
            part: "part3".into(),
            seed: 1,
            nodes: vec!["node1".into(), "node2".into(), "node3".into()],
            started: START,
            healed: START + 40.0,
            txs,
            heads,
            faults,
            exits: Vec::new(),
        };
        let chain: Vec<B256> = (0..=height).map(|n| hash(n, 0)).collect();
        let last = Final {
            chains: vec![chain.clone(), chain.clone(), chain],
            log: Some((0..=height).map(|n| (n, hash(n, 0))).collect()),
            included: (1..=height).map(|n| (hash(n, 0xaa), (n, hash(n, 0)))).collect(),
        };
        (history, last)
    }

    fn menu() -> Vec<String> {
        vec!["geth-kill".into()]
    }

    fn failures(history: &History, last: &Final) -> Vec<String> {
        check(history, last, BOUNDS).failures(&menu())
    }

    #[test]
    fn a_healthy_run_passes_and_its_figures_are_read_right() {
        let (history, last) = healthy();
        let verdict = check(&history, &last, BOUNDS);
        assert_eq!(verdict.failures(&menu()), Vec::<String>::new());
        assert_eq!((verdict.sent, verdict.confirmed, verdict.unconfirmed), (36, 36, 0));
        // The heal at 13 s is followed by the block at 14 s.
        assert_eq!(verdict.recoveries["geth-kill"], vec![1.0]);
        // The last block before the stall came at 9 s, the next at 14 s.
        assert_eq!(verdict.longest_stall, (9.0, 5.0));
        assert_eq!(verdict.compared_to, 36);
    }

    #[test]
    fn a_fork_between_two_geths_fails() {
        let (history, mut last) = healthy();
        last.chains[2][20] = hash(20, 1);
        let verdict = check(&history, &last, BOUNDS);
        assert_eq!(verdict.forks, vec![20]);
        assert!(failures(&history, &last).iter().any(|f| f.starts_with("forks at heights [20]")));
    }

    #[test]
    fn a_block_log_row_no_geth_holds_is_a_fork() {
        let (history, mut last) = healthy();
        if let Some(log) = last.log.as_mut() {
            log[12].1 = hash(12, 9);
        }
        assert_eq!(check(&history, &last, BOUNDS).forks, vec![12]);
    }

    #[test]
    fn a_head_a_client_saw_that_the_final_chain_replaced_fails() {
        let (mut history, last) = healthy();
        // node3 showed a block at 20 that no node holds at the end: a fork that healed.
        let shown = history.heads.iter_mut().find(|h| h.node == 2 && h.number == 20).map(|h| h.hash = hash(20, 4));
        assert!(shown.is_some());
        let verdict = check(&history, &last, BOUNDS);
        assert_eq!(verdict.replaced_heads, vec![(2, 20)]);
        assert!(verdict.forks.is_empty());
        assert!(!verdict.failures(&menu()).is_empty());
    }

    #[test]
    fn every_node_is_compared_with_the_block_log_up_to_its_own_head() {
        let (history, mut last) = healthy();
        // The longest chain differs from the log at 36, beyond the other nodes' heads.
        last.chains[0].truncate(30);
        last.chains[1].truncate(30);
        last.chains[2][36] = hash(36, 5);
        assert_eq!(check(&history, &last, BOUNDS).forks, vec![36]);
    }

    #[test]
    fn a_block_log_begins_at_its_anchor() {
        let (history, mut last) = healthy();
        if let Some(log) = last.log.as_mut() {
            log.drain(..5);
        }
        assert_eq!(check(&history, &last, BOUNDS).gaps, Vec::<u64>::new());
    }

    #[test]
    fn a_gap_in_the_block_log_fails() {
        let (history, mut last) = healthy();
        if let Some(log) = last.log.as_mut() {
            log.remove(7);
        }
        let verdict = check(&history, &last, BOUNDS);
        assert_eq!(verdict.gaps, vec![7]);
        assert!(!verdict.failures(&menu()).is_empty());
    }

    #[test]
    fn blocks_geth_holds_beyond_the_block_log_are_a_gap() {
        let (history, mut last) = healthy();
        if let Some(log) = last.log.as_mut() {
            log.truncate(30);
        }
        assert_eq!(check(&history, &last, BOUNDS).gaps, (30..=36).collect::<Vec<u64>>());
    }

    #[test]
    fn a_receipt_whose_block_was_replaced_is_lost() {
        let (mut history, last) = healthy();
        // The client saw the transaction in a block the final chain does not have at 5.
        if let Some(seen) = history.txs[4].confirmed.as_mut() {
            seen.block = hash(5, 3);
        }
        let verdict = check(&history, &last, BOUNDS);
        assert_eq!(verdict.lost, vec![history.txs[4].hash]);
        assert!(failures(&history, &last).iter().any(|f| f.starts_with("1 confirmed transactions lost")));
    }

    #[test]
    fn a_confirmed_transaction_missing_from_the_final_chain_is_lost() {
        let (history, mut last) = healthy();
        last.included.remove(&history.txs[9].hash);
        assert_eq!(check(&history, &last, BOUNDS).lost, vec![history.txs[9].hash]);
    }

    #[test]
    fn an_unconfirmed_transaction_is_not_lost() {
        let (mut history, mut last) = healthy();
        history.txs[3].confirmed = None;
        last.included.remove(&history.txs[3].hash);
        let verdict = check(&history, &last, BOUNDS);
        assert!(verdict.lost.is_empty());
        assert_eq!(verdict.unconfirmed, 1);
    }

    #[test]
    fn a_node_left_behind_fails() {
        let (history, mut last) = healthy();
        last.chains[1].truncate(20);
        assert!(failures(&history, &last).iter().any(|f| f.contains("behind at the end: [\"node2\"]")));
    }

    #[test]
    fn a_block_from_the_future_fails() {
        let (mut history, last) = healthy();
        history.heads[100].timestamp += 5;
        let verdict = check(&history, &last, BOUNDS);
        assert_eq!(verdict.ahead.len(), 1);
        assert!(verdict.max_ahead >= 4.5);
        assert!(!verdict.failures(&menu()).is_empty());
    }

    #[test]
    fn no_block_long_after_a_heal_fails() {
        let (mut history, last) = healthy();
        // Nothing new after the heal at 13 s for the rest of the run (and long after it).
        let top = history.heads.iter().filter(|h| h.at <= START + 13.0).map(|h| h.number).max().unwrap_or(0);
        for head in &mut history.heads {
            head.number = head.number.min(top);
        }
        history.heads.push(Head { at: START + 60.0, node: 0, number: top, hash: hash(top, 0), timestamp: 0 });
        let verdict = check(&history, &last, BOUNDS);
        assert_eq!(verdict.unrecovered, vec![("geth-kill".to_owned(), 13.0)]);
        assert!(!verdict.failures(&menu()).is_empty());
    }

    #[test]
    fn a_heal_with_another_fault_still_active_is_not_timed() {
        let (mut history, last) = healthy();
        history.faults.push(fault("redis-stop", "redis", 12.0, Some(13.5)));
        let verdict = check(&history, &last, BOUNDS);
        assert!(!verdict.recoveries.contains_key("geth-kill"));
        assert_eq!(verdict.recoveries["redis-stop"], vec![0.5]);
    }

    /// `node` (an index) shows height 10 from 12 s to the end, while the others go on.
    fn stuck(history: &mut History, node: usize) {
        for head in history.heads.iter_mut().filter(|h| h.node == node && h.at >= START + 12.0) {
            head.number = 10;
            head.hash = hash(10, 0);
        }
    }

    #[test]
    fn a_node_stuck_behind_with_no_fault_on_it_fails() {
        let (mut history, last) = healthy();
        stuck(&mut history, 2);
        let bounds = Bounds { recovery: 10.0, ..BOUNDS };
        let verdict = check(&history, &last, bounds);
        assert_eq!(verdict.stuck.len(), 1, "{:?}", verdict.stuck);
        let (node, from, waited) = &verdict.stuck[0];
        assert_eq!(node, "node3");
        // More than LAG behind from 16 s (the cluster at 13 by then) to the last sample.
        assert_eq!((*from, *waited), (16.0, 23.5));
        assert!(verdict.failures(&menu()).iter().any(|f| f.contains("behind the cluster for longer")));
    }

    #[test]
    fn a_node_behind_while_a_fault_on_it_is_active_is_not_stuck() {
        let (mut history, last) = healthy();
        stuck(&mut history, 2);
        history.faults.push(fault("geth-wipe", "node3", 12.0, Some(33.0)));
        let bounds = Bounds { recovery: 10.0, ..BOUNDS };
        assert_eq!(check(&history, &last, bounds).stuck, Vec::new());
        // The same stretch, timed from an earlier heal, is too long.
        history.faults.last_mut().unwrap().healed = Some(START + 20.0);
        let stuck = check(&history, &last, bounds).stuck;
        assert_eq!(stuck, vec![("node3".to_owned(), 20.0, 19.5)]);
    }

    #[test]
    fn a_node_that_catches_up_block_by_block_is_not_stuck() {
        let (mut history, last) = healthy();
        // node3 replays from 12 s: a block every 2 s, far behind the others, then is in
        // step from 34 s. Behind all the while, but never still for long.
        for head in history.heads.iter_mut().filter(|h| h.node == 2 && h.at >= START + 12.0 && h.at < START + 34.0) {
            head.number = ((head.at - START - 12.0) / 2.0) as u64;
        }
        let bounds = Bounds { recovery: 10.0, ..BOUNDS };
        assert_eq!(check(&history, &last, bounds).stuck, Vec::new());
        // The same replay stalled at block 3 from 18 s to 34 s is stuck, then back.
        for head in history.heads.iter_mut().filter(|h| h.node == 2 && h.at >= START + 18.0 && h.at < START + 34.0) {
            head.number = 3;
        }
        assert_eq!(check(&history, &last, bounds).stuck, vec![("node3".to_owned(), 18.0, 15.5)]);
    }

    #[test]
    fn a_fault_on_a_server_every_node_uses_stops_every_nodes_clock() {
        let (mut history, last) = healthy();
        stuck(&mut history, 2);
        history.faults.push(fault("postgres-kill", "postgres", 12.0, Some(33.0)));
        let bounds = Bounds { recovery: 10.0, ..BOUNDS };
        assert_eq!(check(&history, &last, bounds).stuck, Vec::new());
    }

    #[test]
    fn a_kind_never_injected_fails() {
        let (history, last) = healthy();
        let menu = vec!["geth-kill".to_owned(), "redis-kill".to_owned()];
        let failures = check(&history, &last, BOUNDS).failures(&menu);
        assert_eq!(failures, vec!["fault kinds never injected: [\"redis-kill\"]".to_owned()]);
    }
}
