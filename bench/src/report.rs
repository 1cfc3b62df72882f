//! `docs/src/benchmarks.md` and its plots, made from the stored results alone: every
//! figure in the report comes from a run, none from a constant.

use std::{fmt::Write, path::Path};

use common::harness::CometTimeouts;

use crate::{
    Results, Scenario,
    plot::{self, Series},
    scenarios::bft::Down,
};

/// A goal from the benchmark issue, and whether a figure meets it.
struct Goal<'a> {
    scenario: &'a str,
    figure: &'a str,
    goal: &'a str,
    result: String,
    met: bool,
}

fn mark(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

/// Writes the report and the plots into `docs` (`docs/src`).
pub(crate) fn write(results: &Results, docs: &Path) -> anyhow::Result<()> {
    let images = docs.join("benchmarks");
    std::fs::create_dir_all(&images)?;
    let mut md = String::new();
    let mut goals: Vec<Goal<'_>> = Vec::new();
    let mut body = String::new();

    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "This page is written by the benchmark runner (`bench/`) from its last results \
         (`docs/src/benchmarks/results.json`); do not edit it by hand. Every figure is \
         the median over the repeats, with the lowest and highest repeat in brackets, \
         unless it says otherwise. The comparisons run in the same process, on the same \
         machine, against the same Geth build, within minutes of each other.\n"
    )?;
    if let Some(m) = &results.machine {
        writeln!(md, "| machine | |\n|---|---|")?;
        writeln!(md, "| CPU | {} ({} logical CPUs) |", m.cpu, m.cpus)?;
        writeln!(md, "| memory | {:.1} GiB |", m.memory_gib)?;
        writeln!(md, "| kernel | {} |", m.kernel)?;
        writeln!(md, "| Geth | {} |", m.geth)?;
        writeln!(md, "| CometBFT | {} |", m.cometbft)?;
        writeln!(md, "| Rust | {} |", m.rustc)?;
        writeln!(md, "| run | {} |\n", m.date)?;
    }
    if let Some(p) = &results.plan {
        writeln!(
            md,
            "Each measurement: {} s after a {} s warm-up, repeated {} times. To reproduce (it \
             installs what it needs and builds the release binaries first):\n",
            p.duration, p.warmup, p.repeats
        )?;
    }
    writeln!(
        md,
        "```sh\nscripts/bench.sh all                  # every scenario, hours on two cores\nscripts/bench.sh throughput           # one scenario: engine-round, block-rate, throughput,\n                                      # member-replay, failover, ha-failover, replicas, bft,\n                                      # liveness, watch, growth, bft-growth, retention\nscripts/bench.sh all --repeats 5 --duration 60\n```\n"
    )?;
    durations(&mut md, results)?;

    if let Some(r) = &results.engine_round {
        writeln!(body, "## The Engine API round\n")?;
        run_apart(&mut body, results, "engine-round")?;
        writeln!(
            body,
            "A bare driver in the benchmark process times each Engine API call on a fresh Geth, \
             back to back, with no build deadline (so Geth hands over an empty block). Part 2's \
             sequencer (`single-node --back-to-back --build-time-ms 0`) logs for each block the \
             time it waited on Geth and the rest of the step: its own overhead (encoding, \
             scheduling, and the store's commit only where it outlasts newPayload, beside which \
             it runs).\n"
        )?;
        writeln!(body, "| method | p50, ms | p99, ms |\n|---|---|---|")?;
        for m in &r.methods {
            writeln!(body, "| `{}` | {} | {} |", m.method, m.p50_ms.show(3), m.p99_ms.show(3))?;
        }
        writeln!(body, "\n| Part 2, per block | p50 | p99 |\n|---|---|---|")?;
        writeln!(body, "| overhead, ms | {} | {} |", r.overhead_p50_ms.show(3), r.overhead_p99_ms.show(3))?;
        if let Some((p50, p99)) = &r.store_ms {
            writeln!(
                body,
                "| the store's commit (redb, fsync), beside newPayload, ms | {} | {} |",
                p50.show(3),
                p99.show(3)
            )?;
        }
        writeln!(body, "| whole cycle, ms | {} | |", r.cycle_p50_ms.show(3))?;
        writeln!(body, "| overhead ÷ cycle, % | {} | |\n", r.overhead_share_pct.show(1))?;
        let series: Vec<Series> = r.samples.iter().map(|(m, v)| (m.clone(), plot::cdf(v))).collect();
        plot::chart(
            &images.join("engine-latency.png"),
            "Engine API latency on Geth (last repeat)",
            ("latency, ms", "fraction of calls at or below"),
            &series,
            false,
            None,
        )?;
        writeln!(body, "![Engine API latency](benchmarks/engine-latency.png)\n")?;
        goals.push(Goal {
            scenario: "engine round",
            figure: "CL overhead per block, p50",
            goal: "≤ 0.2 ms",
            result: format!("{} ms", r.overhead_p50_ms.show(3)),
            met: r.overhead_p50_ms.median <= 0.2,
        });
        goals.push(Goal {
            scenario: "engine round",
            figure: "CL overhead ÷ cycle, back to back (empty blocks)",
            goal: "≤ 2%",
            result: format!("{}% of {} ms", r.overhead_share_pct.show(1), r.cycle_p50_ms.show(2)),
            met: r.overhead_share_pct.median <= 2.0,
        });
        let at_one_second = r.overhead_p50_ms.median / 1_000.0 * 100.0;
        goals.push(Goal {
            scenario: "engine round",
            figure: "CL overhead ÷ cycle, at the default 1 s blocks",
            goal: "≤ 2%",
            result: format!("{at_one_second:.3}%"),
            met: at_one_second <= 2.0,
        });
    }

    if let Some(r) = &results.block_rate {
        writeln!(body, "## Block rate\n")?;
        run_apart(&mut body, results, "block-rate")?;
        writeln!(
            body,
            "Blocks a second. \"Fed one at a time\": a transfer is sent, and the next one once \
             the first has a receipt, so every block carries one transfer. Geth's `--dev \
             --dev.period 0` makes a block per transaction: the reference. Part 2 runs \
             `--back-to-back --skip-empty --build-time-ms 2` for it (asked at once, Geth hands \
             over the empty first draft of a block). Part 1 never runs ahead of the wall clock, \
             so it makes one block a second by design (timed between the blocks it prints).\n"
        )?;
        writeln!(body, "| driver | empty blocks/s | one-transfer blocks/s |\n|---|---|---|")?;
        writeln!(
            body,
            "| `single-node` (Part 2), back to back | {} | {} |",
            r.single_node_empty.show(1),
            r.single_node_one_tx.show(1)
        )?;
        writeln!(body, "| Geth `--dev --dev.period 0` | — | {} |", r.geth_dev_one_tx.show(1))?;
        writeln!(body, "| `engine-api` (Part 1) | {} | |", r.engine_api.show(2))?;
        let ratio = r.single_node_one_tx.median / r.geth_dev_one_tx.median;
        writeln!(body, "\nOne-transfer blocks, `single-node` ÷ Geth `--dev`: **{ratio:.2}**.\n")?;
        goals.push(Goal {
            scenario: "block rate",
            figure: "one-transfer blocks/s, single-node ÷ geth --dev",
            goal: "≥ 1.0",
            result: format!("{ratio:.2}"),
            met: ratio >= 1.0,
        });
    }

    if let Some(r) = &results.throughput {
        writeln!(body, "## Transfer throughput at 1 s blocks\n")?;
        run_apart(&mut body, results, "throughput")?;
        writeln!(
            body,
            "Saturated: 1,000 accounts funded by a benchmark genesis, transfers signed before the \
             clock starts and sent in JSON-RPC batches of 200, keeping up to 4,000 in flight (under \
             Geth's pool of 5,120), with a max fee above any base fee the run reaches. Inclusion \
             is read from the blocks. The gas limit (60M) holds 2,857 transfers a block. \
             `single-node` runs with its defaults (1 s blocks, a 500 ms build deadline); Geth's \
             own `--dev --dev.period 1` drives the same Geth build on the same genesis.\n"
        )?;
        writeln!(body, "| driver | transfers/s |\n|---|---|")?;
        writeln!(body, "| `single-node` (Part 2) | {} |", r.single_node_tps.show(0))?;
        writeln!(body, "| Geth `--dev --dev.period 1` | {} |", r.geth_dev_tps.show(0))?;
        writeln!(body, "| ratio | {} |\n", r.ratio.show(3))?;
        let series: Vec<Series> = r
            .series
            .iter()
            .map(|(name, blocks)| (name.clone(), blocks.iter().map(|&(t, n)| (t, n as f64)).collect()))
            .collect();
        plot::chart(
            &images.join("throughput.png"),
            "Transfers per block, saturated (last repeat)",
            ("seconds since the load started", "transfers in the block"),
            &series,
            true,
            None,
        )?;
        writeln!(body, "![Transfers per block](benchmarks/throughput.png)\n")?;
        goals.push(Goal {
            scenario: "throughput",
            figure: "transfers/s, single-node ÷ geth --dev",
            goal: "≥ 1.2",
            result: r.ratio.show(3),
            met: r.ratio.median >= 1.2,
        });
    }

    if let Some(r) = &results.member_replay {
        writeln!(body, "## Member replay and lag\n")?;
        run_apart(&mut body, results, "member-replay")?;
        writeln!(
            body,
            "The bench makes {} blocks of {:.0} transfers each on a Geth and stores them in \
             PostgreSQL as a leader does. A fresh member then catches up on them \
             (`member-nodes --mode member`, from PostgreSQL). The limit is a bare loop that feeds \
             the same blocks, already decoded in memory, to another fresh Geth: a newPayload per \
             block and a forkchoiceUpdated per 64 blocks, the member's batch. The member is \
             timed from its process start. Then a leader makes 1 s blocks on that chain under \
             {:.0} transfers a second, and the member's log gives, per block, the time from its \
             write to the store (PostgreSQL's clock, just before the leader's commit) to its \
             finalization on the member's Geth.\n",
            r.blocks, r.txs_per_block, r.txs_per_block
        )?;
        writeln!(body, "| | blocks/s |\n|---|---|")?;
        writeln!(body, "| member catching up | {} |", r.member_bps.show(0))?;
        writeln!(body, "| bare newPayload + forkchoiceUpdated loop | {} |", r.bare_bps.show(0))?;
        writeln!(body, "| ratio | {} |\n", r.ratio.show(3))?;
        writeln!(body, "| steady-state lag | ms |\n|---|---|")?;
        writeln!(body, "| p50 | {} |", r.lag_p50_ms.show(2))?;
        writeln!(body, "| p99 | {} |", r.lag_p99_ms.show(2))?;
        if let Some(read) = &r.read_p50_ms {
            writeln!(body, "| p50 until PostgreSQL had read it for the member | {} |", read.show(2))?;
        }
        if let (Some(new_payload), Some(forkchoice)) = (&r.new_payload_ms, &r.forkchoice_ms) {
            writeln!(body, "| the member's newPayload, mean | {} |", new_payload.show(2))?;
            writeln!(body, "| the member's forkchoiceUpdated, mean | {} |", forkchoice.show(2))?;
        }
        if let Some(leader) = &r.leader_new_payload_ms {
            writeln!(body, "| the leader's newPayload of the same blocks, mean | {} |", leader.show(2))?;
        }
        writeln!(body)?;
        goals.push(Goal {
            scenario: "member replay",
            figure: "catch-up, member ÷ bare loop",
            goal: "≥ 0.8",
            result: r.ratio.show(3),
            met: r.ratio.median >= 0.8,
        });
        goals.push(Goal {
            scenario: "member replay",
            figure: "steady-state lag, p50",
            goal: "≤ 20 ms",
            result: format!("{} ms", r.lag_p50_ms.show(2)),
            met: r.lag_p50_ms.median <= 20.0,
        });
    }

    if let Some(r) = &results.failover {
        writeln!(body, "## Failover\n")?;
        run_apart(&mut body, results, "failover")?;
        writeln!(
            body,
            "Two leader candidates and a member, each with its own Geth (peered), on Redis and \
             PostgreSQL, under a steady 100 transfers a second. The leader node (or, where the table \
             says so, only the leader's Geth) is killed with SIGKILL, the kills spread evenly over \
             the second (block timestamps are whole seconds, so where in the second a leader dies \
             decides how long until the next free slot); the time is from the kill to the commit \
             (PostgreSQL's clock, on the same machine) of the first block stored under the new \
             term. Skipped slots are the seconds without a block around each kill: the timestamp \
             gap between the last block before it and the first after, minus one. What was killed \
             is restarted and caught up before the next kill. Afterwards every stored height and \
             every Geth's chain is checked.\n"
        )?;
        writeln!(
            body,
            "| killed | `--lease-ms` | `--build-time-ms` | kills | kill → first block, p50, ms | p99, ms | max, ms | kill → promotion, p50, ms | p99, ms | skipped slots | forks | gaps |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
        )?;
        let mut series = Vec::new();
        for run in &r.runs {
            let max = run.times_ms.iter().copied().fold(0.0, f64::max);
            writeln!(
                body,
                "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
                run.target.name(),
                run.lease_ms,
                run.build_ms,
                run.times_ms.len(),
                run.p50_ms,
                run.p99_ms,
                max,
                crate::stats::percentile(&run.promotion_ms, 50.0),
                crate::stats::percentile(&run.promotion_ms, 99.0),
                run.skipped_slots.iter().sum::<u64>(),
                run.forks,
                run.gaps
            )?;
            let kills = run.times_ms.len();
            let points = run
                .times_ms
                .iter()
                .enumerate()
                .map(|(i, t)| (crate::scenarios::failover::kill_phase(i, kills), *t))
                .collect();
            let defaults = (run.lease_ms, run.build_ms) == crate::scenarios::failover::DEFAULTS;
            let geth = run.target == crate::scenarios::failover::Target::Geth;
            series.push((
                format!("{} killed, lease {} ms, build {} ms", run.target.name(), run.lease_ms, run.build_ms),
                points,
            ));
            goals.push(Goal {
                scenario: "failover",
                figure: match (geth, defaults) {
                    (true, _) => "leader's Geth killed → first block, p50 / p99 (defaults)",
                    (false, true) => "kill → first block, p50 / p99 (defaults)",
                    (false, false) => "kill → first block, p50 / p99 (short lease)",
                },
                goal: if geth { "report; no fork or gap" } else { "≤ 300 ms / ≤ 1 s, no fork or gap" },
                result: format!("{:.0} / {:.0} ms, {} forks, {} gaps", run.p50_ms, run.p99_ms, run.forks, run.gaps),
                met: run.forks == 0 && run.gaps == 0 && (geth || (run.p50_ms <= 300.0 && run.p99_ms <= 1_000.0)),
            });
            let skipped = run.skipped_slots.iter().sum::<u64>();
            goals.push(Goal {
                scenario: "failover",
                figure: if defaults {
                    if geth {
                        "slots skipped, leader's Geth killed (defaults)"
                    } else {
                        "slots skipped, leader killed (defaults)"
                    }
                } else {
                    "slots skipped, leader killed (short lease)"
                },
                goal: "0",
                result: format!("{skipped} in {} kills", run.skipped_slots.len()),
                met: skipped == 0,
            });
        }
        writeln!(body)?;
        plot::chart(
            &images.join("failover.png"),
            "Kill to the new leader's first block",
            ("point of the second the leader was killed at", "kill to first block, ms"),
            &series,
            true,
            Some(300.0),
        )?;
        writeln!(body, "![Failover times](benchmarks/failover.png)\n")?;
    }

    if let Some(r) = &results.ha_failover {
        writeln!(body, "## Failover of Redis and PostgreSQL\n")?;
        run_apart(&mut body, results, "ha-failover")?;
        writeln!(
            body,
            "The same cluster and load, with no single point of failure, as `scripts/cluster.sh start --ha` \
             runs it: Redis with a replica and three Sentinels (a primary is down after 2 s without an \
             answer), PostgreSQL with a synchronous standby; the nodes (`--lease-ms {}`, `--build-time-ms {}`) \
             find each primary through the Sentinels and a multi-host URL. The primary is killed with \
             SIGKILL, at points spread over the second; the Sentinels promote the replica, or the standby \
             is promoted, as a failover tool does. The failover time is from the kill until the Sentinels \
             name the new primary, or until the promotion returns; the longest time without a block is \
             between two blocks stored from a lease before the kill to the first block after the \
             failover (PostgreSQL's `stored_at`; a slot is 1 s, so 1 s means no slot was lost). The killed \
             server comes back as the new primary's replica or standby before the next kill. Afterwards \
             every stored height and every Geth's chain is checked.\n",
            r.lease_ms, r.build_ms
        )?;
        writeln!(
            body,
            "| killed | kills | kill → failover, p50, ms | max, ms | longest time without a block, p50, ms | max, ms | forks | gaps |\n|---|---|---|---|---|---|---|---|"
        )?;
        for run in &r.runs {
            let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
            let stall_max = max(&run.stall_ms);
            writeln!(
                body,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
                run.primary.name(),
                run.stall_ms.len(),
                crate::stats::percentile(&run.failover_ms, 50.0),
                max(&run.failover_ms),
                crate::stats::percentile(&run.stall_ms, 50.0),
                stall_max,
                run.forks,
                run.gaps
            )?;
            // A Redis failover waits 2 s before the Sentinels call the primary down, and the
            // leader stops on its own clock meanwhile; a PostgreSQL one only for the nodes to
            // reconnect.
            let redis = run.primary == crate::scenarios::ha_failover::Primary::Redis;
            let bound = if redis { 5_000.0 } else { 3_000.0 };
            goals.push(Goal {
                scenario: "HA failover",
                figure: if redis {
                    "Redis primary killed: longest time without a block, max"
                } else {
                    "PostgreSQL primary killed: longest time without a block, max"
                },
                goal: if redis { "≤ 5 s, no fork or gap" } else { "≤ 3 s, no fork or gap" },
                result: format!("{:.1} s, {} forks, {} gaps", stall_max / 1e3, run.forks, run.gaps),
                met: stall_max <= bound && run.forks == 0 && run.gaps == 0,
            });
        }
        writeln!(body)?;
    }

    if let Some(r) = &results.bft {
        writeln!(body, "## BFT: four validators\n")?;
        run_apart(&mut body, results, "bft")?;
        writeln!(
            body,
            "Four validators, each with a Geth (peered with the others), the app and a CometBFT \
             v0.38 node, all on this one machine. The interval is between blocks as the first \
             validator's Geth gets them, under a steady 100 transfers a second. CometBFT waits \
             `timeout_commit` after a commit, then runs a round: the proposer builds \
             (`--build-time-ms`, unless a block built ahead is ready), everyone executes the \
             proposal, two voting steps; so the interval is `timeout_commit` plus a round. \
             Throughput is measured saturated, with the throughput scenario's load spread over \
             the four Geths. `--build-ahead`: who starts the next block's build at each commit \
             (`off`, `all` validators, or the next `proposer`); the last row is the project's \
             defaults (`scripts/bft.sh` with a one-second block time).\n"
        )?;
        let single = results.throughput.as_ref().map(|t| t.single_node_tps.median);
        let single_block = results.throughput.as_ref().and_then(|t| {
            let txs: Vec<f64> = t.series.first()?.1.iter().map(|(_, txs)| *txs as f64).collect();
            (!txs.is_empty()).then(|| crate::stats::percentile(&txs, 50.0))
        });
        writeln!(
            body,
            "| validators | `timeout_commit` | `flush_throttle_timeout` | `--build-time-ms` | `--build-ahead` | interval, s | saturated: interval, s | transfers/block | transfers/s | ÷ single-node | built ahead: used / dropped |\n|---|---|---|---|---|---|---|---|---|---|---|"
        )?;
        let mut series = Vec::new();
        for run in &r.runs {
            let ratio = single.map_or("—".to_owned(), |s| format!("{:.2}", run.tps.median / s));
            writeln!(
                body,
                "| {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} / {} |",
                run.validators,
                run.timeout_commit,
                run.flush_throttle,
                run.build_ms,
                run.build_ahead,
                if run.defaults { " (defaults)" } else { "" },
                run.interval_s.show(3),
                run.saturated_interval_s.show(3),
                run.saturated_block_txs.show(0),
                run.tps.show(0),
                ratio,
                run.ahead_used,
                run.ahead_dropped
            )?;
            series.push((
                format!(
                    "{} validators, timeout_commit {}, build ahead: {}",
                    run.validators, run.timeout_commit, run.build_ahead
                ),
                run.intervals.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)).collect(),
            ));
        }
        writeln!(body)?;
        let profiled: Vec<_> = r.runs.iter().filter(|run| !run.cpu.is_empty()).collect();
        if !profiled.is_empty() {
            writeln!(
                body,
                "Where the machine's CPU went while saturated (each group's share of all cores over the measured window, last repeat):\n"
            )?;
            let groups: Vec<&str> = profiled[0].cpu.iter().map(|(name, _)| name.as_str()).collect();
            writeln!(
                body,
                "| validators | `--build-ahead` | {} | idle |\n|---|---|{}---|",
                groups.join(" | "),
                "---|".repeat(groups.len())
            )?;
            for run in profiled {
                let busy: f64 = run.cpu.iter().map(|(_, share)| share).sum();
                let shares: Vec<String> = run.cpu.iter().map(|(_, share)| format!("{:.0}%", share * 100.0)).collect();
                writeln!(
                    body,
                    "| {} | {} | {} | {:.0}% |",
                    run.validators,
                    run.build_ahead,
                    shares.join(" | "),
                    ((1.0 - busy) * 100.0).max(0.0)
                )?;
            }
            writeln!(body)?;
        }
        if let Some(limit) = &results.replicas {
            writeln!(body, "### Against this machine's limit\n")?;
            run_apart(&mut body, results, "replicas")?;
            writeln!(
                body,
                "Four validators on this machine are four Geths executing every block. The most they \
                 can carry here is what {} fresh Geths execute when they are fed the same saturated \
                 blocks at once, with no consensus, no gossip and no transaction pool: {} blocks \
                 made first by a Geth whose pool was kept full (built for 500 ms each; {:.0} \
                 transfers a block, {:.0}% of the gas limit), then each block sent to every Geth \
                 (newPayload, then forkchoiceUpdated), the next only once all are done, as \
                 validators in lockstep. One Geth alone on the same blocks shows what sharing the \
                 cores costs. In each repeat the four validators then run saturated at the \
                 project's defaults, as in the table above, minutes after their limit was measured.\n",
                limit.replicas,
                limit.blocks,
                limit.txs_per_block,
                limit.gas_share * 100.0
            )?;
            writeln!(body, "| executing | transfers/s |\n|---|---|")?;
            writeln!(body, "| {} Geths at once | {} |", limit.replicas, limit.tps.show(0))?;
            writeln!(body, "| one Geth alone | {} |", limit.one_tps.show(0))?;
            writeln!(
                body,
                "| four validators at the project's defaults, saturated, in the same repeats | {} ({} of the limit) |\n",
                limit.validators_tps.show(0),
                limit.ratio.show(2)
            )?;
            writeln!(
                body,
                "CPU the four Geths spent per transfer, all four together: {} ms executing the blocks \
                 alone, {} ms in the validators' network, where each transfer is also checked by \
                 four pools, gossiped, and executed once more by the proposer's build.\n",
                limit.exec_cpu_ms.show(2),
                limit.network_cpu_ms.show(2)
            )?;
            if !limit.segments.is_empty() {
                let repeats: Vec<String> = limit
                    .segments
                    .iter()
                    .map(|rates| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "))
                    .collect();
                writeln!(
                    body,
                    "The validators' transfers a second in each {} s of the window, repeat by repeat \
                     (a run that drifts shows here): {}.\n",
                    crate::scenarios::bft::SEGMENT,
                    repeats.join("; ")
                )?;
            }
        }
        plot::chart(
            &images.join("bft-intervals.png"),
            "Block intervals, four validators, steady load (last repeat)",
            ("block", "seconds since the previous block"),
            &series,
            true,
            Some(1.05),
        )?;
        writeln!(body, "![Block intervals](benchmarks/bft-intervals.png)\n")?;
        // The goals are about the project's defaults; results stored before the defaults
        // were marked count their best run.
        let defaults = r
            .runs
            .iter()
            .find(|run| run.defaults)
            .or_else(|| r.runs.iter().min_by(|a, b| a.interval_s.median.total_cmp(&b.interval_s.median)));
        if let Some(run) = defaults {
            goals.push(Goal {
                scenario: "BFT",
                figure: "median block interval at a 1 s target, project defaults",
                goal: "≤ 1.05 s",
                result: format!(
                    "{} s (timeout_commit {}, build ahead: {})",
                    run.interval_s.show(3),
                    run.timeout_commit,
                    run.build_ahead
                ),
                met: run.interval_s.median <= 1.05,
            });
            if let Some(limit) = &results.replicas {
                goals.push(Goal {
                    scenario: "BFT",
                    figure: "transfers/s, saturated ÷ four Geths executing the same kind of blocks at once (this machine's limit)",
                    goal: "≥ 0.8",
                    result: format!(
                        "{} ({} of {} transfers/s)",
                        limit.ratio.show(2),
                        limit.validators_tps.show(0),
                        limit.tps.show(0)
                    ),
                    met: limit.ratio.median >= 0.8,
                });
            } else if let Some(single) = single {
                let ratio = run.tps.median / single;
                goals.push(Goal {
                    scenario: "BFT",
                    figure: "transfers/s ÷ single-node's, saturated",
                    goal: "≥ 0.8",
                    result: format!("{ratio:.2}"),
                    met: ratio >= 0.8,
                });
            }
            if let Some(block) = single_block.filter(|b| *b > 0.0) {
                let share = run.saturated_block_txs.median / block;
                goals.push(Goal {
                    scenario: "BFT",
                    figure: "saturated proposal, median transfers ÷ single-node's saturated block",
                    goal: "≥ 0.8",
                    result: format!("{share:.2} ({:.0} of {block:.0})", run.saturated_block_txs.median),
                    met: share >= 0.8,
                });
            }
        }
    }

    if let Some(l) = &results.liveness {
        writeln!(body, "## BFT: one validator down\n")?;
        run_apart(&mut body, results, "liveness")?;
        writeln!(
            body,
            "The BFT scenario's network at the project's defaults, under the steady 100 transfers a \
             second (sent to the live validators' Geths only), with the last of the four validators \
             out for the whole run: its CometBFT and app killed with SIGKILL, or its Geth stopped \
             with SIGSTOP (its app and CometBFT run on, but can neither build nor check a block). \
             Every fourth height or so it is the missing validator's turn to propose: the others \
             wait `timeout_propose` for its proposal, vote nil, wait `timeout_precommit` for the \
             last precommits (the dead validator's never come), and the next round's proposer \
             makes the block. Blocks a second over the measured window; extra rounds per block as the first \
             validator's app counts them (`bft_round_changes_total`).\n"
        )?;
        writeln!(
            body,
            "| validator out | `timeout_propose` | `timeout_precommit` | blocks/s | extra rounds per block |\n|---|---|---|---|---|"
        )?;
        for run in &l.runs {
            let down = match run.down {
                Down::None => "none",
                Down::Killed => "killed",
                Down::GethHung => "its Geth hung",
            };
            writeln!(
                body,
                "| {down} | {} | {} | {} | {} |",
                run.timeout_propose,
                run.timeout_precommit,
                run.blocks_per_s.show(2),
                run.extra_rounds_per_block.show(2)
            )?;
        }
        writeln!(body)?;
        let cometbft_default = CometTimeouts::cometbft_defaults().timeout_propose;
        let derived =
            |down: Down| l.runs.iter().find(|run| run.down == down && run.timeout_propose != cometbft_default);
        for (down, figure) in [
            (Down::Killed, "blocks/s at a 1 s target, one of four validators killed"),
            (Down::GethHung, "blocks/s at a 1 s target, one of four validators' Geth hung"),
        ] {
            if let Some(run) = derived(down) {
                goals.push(Goal {
                    scenario: "BFT",
                    figure,
                    goal: "≥ 0.75",
                    result: format!("{} (timeout_propose {})", run.blocks_per_s.show(2), run.timeout_propose),
                    met: run.blocks_per_s.median >= 0.75,
                });
            }
        }
        if let Some(run) = derived(Down::None) {
            goals.push(Goal {
                scenario: "BFT",
                figure: "extra rounds per block, all validators up",
                goal: "≤ 0.01",
                result: format!("{} (timeout_propose {})", run.extra_rounds_per_block.show(3), run.timeout_propose),
                met: run.extra_rounds_per_block.median <= 0.01,
            });
        }
    }

    if let Some(g) = &results.growth {
        growth(&mut body, &mut goals, &images, results, g)?;
    }

    if let Some(g) = &results.bft_growth {
        bft_growth(&mut body, &mut goals, &images, results, g)?;
    }
    if let Some(r) = &results.retention {
        retention(&mut body, &mut goals, &images, results, r)?;
    }

    if let Some(w) = &results.watch {
        writeln!(body, "## A failover, as Prometheus saw it\n")?;
        run_apart(&mut body, results, "watch")?;
        writeln!(
            body,
            "The failover scenario's cluster (defaults: a 2 s lease, a 500 ms build deadline) under a steady \
             100 transfers a second, scraped every second by a real Prometheus with the project's rules \
             (`monitoring/rules.yml`). The leader was killed with SIGKILL {:.0} s into the run and started \
             again at {:.0} s. The plot is drawn from Prometheus's range queries over the run \
             (`cluster_is_leader` per node, and the recording rule `devnet:seconds_since_last_block`): \
             on top, which node leads (high while it does); below, how stale the chain is. The \
             [Watching your chain](watching.md) chapter explains both.\n",
            w.killed_at, w.restarted_at
        )?;
        let (leads, staleness): (Vec<_>, Vec<_>) =
            w.series.iter().cloned().partition(|(name, _)| name.contains("leads"));
        let staleness =
            staleness.into_iter().next().unwrap_or_else(|| ("seconds since the newest block".to_owned(), Vec::new()));
        plot::failover(
            &images.join("watch-failover.png"),
            "A leader killed, as Prometheus recorded it",
            "seconds into the run",
            &leads,
            &staleness,
        )?;
        writeln!(body, "![A failover in Prometheus](benchmarks/watch-failover.png)\n")?;
        writeln!(body, "| alert (firing) | from, s | to, s |\n|---|---|---|")?;
        for (name, from, to) in &w.alerts {
            writeln!(body, "| {name} | {from:.1} | {to:.1} |")?;
        }
        writeln!(body)?;
    }

    let memory: Vec<_> = [
        results.engine_round.as_ref().map(|r| &r.memory),
        results.throughput.as_ref().map(|r| &r.memory),
        results.member_replay.as_ref().map(|r| &r.memory),
        results.failover.as_ref().map(|r| &r.memory),
        results.bft.as_ref().map(|r| &r.memory),
    ]
    .into_iter()
    .flatten()
    .flatten()
    .collect();
    if !memory.is_empty() {
        writeln!(body, "## Memory\n")?;
        writeln!(
            body,
            "Peak resident memory (`VmHWM`) of each consensus-layer process, read at the end of its run.\n"
        )?;
        writeln!(body, "| process, under | peak, MiB (highest repeat) |\n|---|---|")?;
        let mut names: Vec<&str> = memory.iter().map(|m| m.process.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut worst = 0.0_f64;
        for name in names {
            let peak = memory.iter().filter(|m| m.process == name).map(|m| m.peak_mib).fold(0.0, f64::max);
            worst = worst.max(peak);
            writeln!(body, "| {name} | {peak:.1} |")?;
        }
        writeln!(body)?;
        let worst_mb = worst * 1.048_576;
        goals.push(Goal {
            scenario: "memory",
            figure: "peak RSS of any CL process",
            goal: "≤ 20 MB",
            result: format!("{worst:.1} MiB ({worst_mb:.1} MB)"),
            met: worst_mb <= 20.0,
        });
    }

    writeln!(md, "## Goals\n\n| scenario | figure | goal | result | met |\n|---|---|---|---|---|")?;
    for g in &goals {
        writeln!(md, "| {} | {} | {} | {} | {} |", g.scenario, g.figure, g.goal, g.result, mark(g.met))?;
    }
    writeln!(md, "\nWhy a goal is missed, and what limits each figure: see [Benchmark notes](benchmark-notes.md).\n")?;
    md.push_str(&body);
    std::fs::write(docs.join("benchmarks.md"), md)?;
    Ok(())
}

/// The restart's parts against chain length, where every point has them.
fn restart_parts(g: &crate::scenarios::growth::Growth) -> Vec<Series> {
    let phases: Option<Vec<_>> = g.points.iter().map(|p| Some((p.blocks as f64, p.restart_phases.as_ref()?))).collect();
    let Some(phases) = phases else { return Vec::new() };
    let part = |name: &str, y: &dyn Fn(&crate::scenarios::growth::RestartPhases) -> f64| -> Series {
        (name.to_owned(), phases.iter().map(|(x, p)| (*x, y(p))).collect())
    };
    vec![
        part("to the stored head", &|p| p.to_head_s.median),
        part("to the first block, less Geth's calls", &|p| p.between_s.median),
        part("the first block's Engine API calls", &|p| p.engine_s.median),
    ]
}

/// The growth section: one table of bytes per block, one of times and rates, a plot of
/// each against chain length, and the goals.
fn growth(
    body: &mut String,
    goals: &mut Vec<Goal<'_>>,
    images: &Path,
    results: &Results,
    g: &crate::scenarios::growth::Growth,
) -> anyhow::Result<()> {
    writeln!(body, "## A growing chain\n")?;
    run_apart(body, results, "growth")?;
    writeln!(
        body,
        "One chain, made back to back by Part 2's sequencer (`--back-to-back --build-time-ms 20 --retain-blocks 0`: every block kept) \
         under a steady stream of transfers ({:.1} a block on average), stopped and measured at \
         each length: the size of Part 2's store (redb), of Part 3's log (the same blocks appended \
         to PostgreSQL with the leader's own `append`: the `blocks` table with its indexes and \
         out-of-line data) and of Geth's datadir (an archive node, as every devnet here runs); \
         a new Part 3 member from an empty Geth until it is in step (`member-nodes --mode member`, \
         timed from its process start, once at each length, not repeated), beside the bare \
         newPayload loop on the same blocks to another empty Geth; and Part 2 stopped with SIGTERM \
         and started again, timed from its start to its first new block (median of {} restarts, \
         lowest and highest in brackets). The sequencer's peak memory at a length is that of the \
         process that made the blocks since the previous length.\n",
        g.txs_per_block,
        crate::scenarios::growth::RESTARTS
    )?;
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let per_block = |bytes: u64, blocks: u64| bytes as f64 / blocks.max(1) as f64;
    writeln!(
        body,
        "| blocks | Part 2 store, bytes/block (total MB) | Part 3 log, bytes/block (total MB) | Geth, bytes/block (total MB) |\n|---|---|---|---|"
    )?;
    for p in &g.points {
        writeln!(
            body,
            "| {} | {:.0} ({:.1}) | {:.0} ({:.1}) | {:.0} ({:.1}) |",
            p.blocks,
            per_block(p.store_bytes, p.blocks),
            mb(p.store_bytes),
            per_block(p.log_bytes, p.blocks),
            mb(p.log_bytes),
            per_block(p.geth_bytes, p.blocks),
            mb(p.geth_bytes)
        )?;
    }
    writeln!(body)?;
    writeln!(
        body,
        "| blocks | Part 2 restart, s | new member, blocks/s | bare loop, blocks/s | member ÷ bare | sequencer peak, MiB | member peak, MiB |\n|---|---|---|---|---|---|---|"
    )?;
    for p in &g.points {
        writeln!(
            body,
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.1} | {:.1} |",
            p.blocks,
            p.restart_s.show(3),
            p.member_bps,
            p.bare_bps,
            p.member_bps / p.bare_bps,
            p.sequencer_mib,
            p.member_mib
        )?;
    }
    writeln!(body)?;
    if g.points.iter().all(|p| p.restart_phases.is_some()) {
        writeln!(
            body,
            "Where a restart's time went, from each restarted sequencer's log (timestamps of its lines; \
             median of the {} restarts, lowest and highest in brackets): from the start to \
             \"starting from our stored head\" (the process starting, Geth answering, the store \
             opened and its head read); from there to the first block's line, less that block's \
             Engine API calls (Geth brought to the stored head again, the 20 ms Geth is given to \
             build, and the sequencer's own work in the block's step); and the first block's \
             Engine API calls, Geth's time answering them (since 2026-12-07 three: the next \
             build's forkchoiceUpdated makes the block head; before, a fourth of its own did). \
             The restart figure also holds the bench's own polling of Geth's head (every 2 ms), \
             the log line's write and, since 2026-12-07, the next build's forkchoiceUpdated.\n",
            crate::scenarios::growth::RESTARTS
        )?;
        writeln!(
            body,
            "| blocks | restart, ms | to the stored head, ms | to the first block, less Geth's calls, ms | the first block's Engine API calls, ms |\n|---|---|---|---|---|"
        )?;
        let ms = |s: &crate::stats::Summary| {
            crate::stats::Summary { median: s.median * 1e3, min: s.min * 1e3, max: s.max * 1e3 }.show(1)
        };
        for p in &g.points {
            let Some(phases) = &p.restart_phases else { continue };
            writeln!(
                body,
                "| {} | {} | {} | {} | {} |",
                p.blocks,
                ms(&p.restart_s),
                ms(&phases.to_head_s),
                ms(&phases.between_s),
                ms(&phases.engine_s)
            )?;
        }
        writeln!(body)?;
    }
    let split = g.points.iter().map(|p| p.after_first).collect::<Option<Vec<_>>>();
    if let Some(split) = &split {
        writeln!(
            body,
            "Each catch-up in two parts: from its start until the catching-up Geth's head first moved \
             (the end of the first batch of 64 blocks: the member's own start, connecting to \
             PostgreSQL, falls here), and its pace from there to the \
             last block. The growth goals (in the table at the top) are judged on that pace: the \
             first part is a fixed cost, which weighs on a short chain's rate and not on a long \
             one's.\n"
        )?;
        writeln!(
            body,
            "| blocks | member: to the first head, s | member after it, blocks/s | bare loop: to the first head, s | bare loop after it, blocks/s | member ÷ bare |\n|---|---|---|---|---|---|"
        )?;
        for (p, a) in g.points.iter().zip(split) {
            writeln!(
                body,
                "| {} | {:.2} | {:.0} | {:.2} | {:.0} | {:.3} |",
                p.blocks,
                a.member_first_s,
                a.member_bps,
                a.bare_first_s,
                a.bare_bps,
                a.member_bps / a.bare_bps
            )?;
        }
        writeln!(body)?;
    }
    let series = |name: &str, y: &dyn Fn(&crate::scenarios::growth::Point) -> f64| -> Series {
        (name.to_owned(), g.points.iter().map(|p| (p.blocks as f64, y(p))).collect())
    };
    let paces = if split.is_some() {
        vec![
            series("member, after its first head", &|p| p.after_first.map_or(0.0, |a| a.member_bps)),
            series("bare loop, after its first head", &|p| p.after_first.map_or(0.0, |a| a.bare_bps)),
        ]
    } else {
        Vec::new()
    };
    let plots: [(&str, &str, &str, Vec<Series>); 4] = [
        (
            "growth-bytes.png",
            "Bytes on disk per block",
            "bytes per block",
            vec![
                series("Part 2 store", &|p| per_block(p.store_bytes, p.blocks)),
                series("Part 3 log", &|p| per_block(p.log_bytes, p.blocks)),
                series("Geth (archive)", &|p| per_block(p.geth_bytes, p.blocks)),
            ],
        ),
        (
            "growth-restart.png",
            "Part 2: restart to first new block",
            "seconds",
            [
                vec![series(&format!("restart, median of {}", crate::scenarios::growth::RESTARTS), &|p| {
                    p.restart_s.median
                })],
                restart_parts(g),
            ]
            .concat(),
        ),
        (
            "growth-catch-up.png",
            "A new member catching up from an empty Geth",
            "blocks/s",
            [vec![series("member", &|p| p.member_bps), series("bare loop", &|p| p.bare_bps)], paces].concat(),
        ),
        (
            "growth-memory.png",
            "Peak resident memory",
            "MiB",
            vec![series("sequencer", &|p| p.sequencer_mib), series("member", &|p| p.member_mib)],
        ),
    ];
    for (file, title, y, data) in &plots {
        plot::chart(&images.join(file), title, ("chain length, blocks", y), data, false, None)?;
        writeln!(body, "![{title}](benchmarks/{file})\n")?;
    }
    let (Some(short), Some(long)) = (g.points.first(), g.points.last()) else { return Ok(()) };
    let restart = long.restart_s.median / short.restart_s.median;
    goals.push(Goal {
        scenario: "growth",
        figure: "Part 2 restart, longest ÷ shortest chain",
        goal: "≤ 1.10",
        result: format!("{restart:.2} ({} and {} blocks)", long.blocks, short.blocks),
        met: restart <= 1.10,
    });
    // The pace after the first head when the run recorded it, else the whole catch-up.
    let (short_bps, long_bps, long_bare, pace) = match (short.after_first, long.after_first) {
        (Some(s), Some(l)) => (s.member_bps, l.member_bps, l.bare_bps, "after its first head"),
        _ => (short.member_bps, long.member_bps, long.bare_bps, "whole catch-up"),
    };
    let catch_up = long_bps / short_bps;
    goals.push(Goal {
        scenario: "growth",
        figure: "new member's blocks/s, longest ÷ shortest chain",
        goal: "0.90–1.10",
        result: format!("{catch_up:.2} ({pace}: {long_bps:.1} ÷ {short_bps:.1} blocks/s)"),
        met: (0.90..=1.10).contains(&catch_up),
    });
    let against_bare = long_bps / long_bare;
    goals.push(Goal {
        scenario: "growth",
        figure: "new member ÷ bare loop, longest chain",
        goal: "≥ 0.90",
        result: format!("{against_bare:.3} ({pace})"),
        met: against_bare >= 0.90,
    });
    let peak = long.sequencer_mib.max(long.member_mib);
    goals.push(Goal {
        scenario: "growth",
        figure: "peak RSS at the longest chain",
        goal: "≤ 20 MB",
        result: format!("{peak:.1} MiB ({:.1} MB)", peak * 1.048_576),
        met: peak * 1.048_576 <= 20.0,
    });
    Ok(())
}

/// The Part 4 growth section: bytes per block in CometBFT's data and the app's store, a
/// full node that joins, plots against chain length, and the goals.
fn bft_growth(
    body: &mut String,
    goals: &mut Vec<Goal<'_>>,
    images: &Path,
    results: &Results,
    g: &crate::scenarios::bft_growth::BftGrowth,
) -> anyhow::Result<()> {
    writeln!(body, "## A growing chain: Part 4\n")?;
    run_apart(body, results, "bft-growth")?;
    // The join's rate: block sync's where every point has it, else (older runs) until its
    // Geth's head was there; one measure for the whole run.
    let block_sync = g.points.iter().all(|p| p.synced_bps.is_some() && p.tail_s.is_some());
    let pace = |p: &crate::scenarios::bft_growth::BftPoint| match p.synced_bps {
        Some(bps) if block_sync => bps,
        _ => p.join_bps,
    };
    writeln!(
        body,
        "One validator (its CometBFT, app and Geth) makes the chain under the growth scenario's \
         stream of transfers ({:.1} a block on average). A Part 4 chain cannot grow faster than a \
         block a second on its own (an EL timestamp is whole seconds, above its parent's, and the \
         proposer holds a block until the clock reaches it, for a second at most), so the \
         validator makes it with that \
         hold off (`--bench-no-hold`, hidden, for benchmarks only) and `timeout_commit = 0`: its \
         timestamps run ahead of the clock. At each length it is stopped and measured: CometBFT's \
         `data` directory (block store, state, consensus WAL, and the transaction index in runs \
         made before the project turned it off), the app's store (redb, \
         every block: `--retain-blocks 0`) and Geth's datadir; the bare newPayload loop runs on the \
         same blocks to an empty Geth. Then the validator runs with the hold back on (so about a \
         block a second) and a full node joins: its own CometBFT (block \
         sync from genesis), app and empty Geth, timed from its start until its Geth has the \
         validator's head of then. {} The \
         bare loop runs alone, with the validator stopped; the joining node runs beside it.\n",
        g.txs_per_block,
        if block_sync {
            "Its rate is block sync's: from the head its Geth first had (while block sync catches \
             up, the app moves Geth's head every 64th block, and at the first block, which comes \
             after a pause) to the last block that block sync delivered (the validator's head of \
             then at most), timed by the joining app's Commit of each block; the bare loop's from \
             the end of its first batch of 64. The start (CometBFT starting, finding its peer, \
             asking for blocks) and the tail are their own columns. The tail runs from that last \
             Commit until Geth's head is at the validator's head: where that head is the network's \
             newest block, it comes only by consensus, once CometBFT has left block sync (which \
             checks each block against the next one's commit), and the app makes the block it \
             held back Geth's head once CometBFT pauses."
        } else if g.points.iter().all(|p| p.first_head.is_some() && p.bare_after_first_bps.is_some()) {
            "Its rate is counted from the head its Geth first had (while block sync catches up, the \
             app moves Geth's head every 64th block) to that head, and the bare loop's likewise from \
             the end of its first batch of 64; the start (CometBFT starting, finding its peer, asking \
             for blocks, the first batch) is its own column."
        } else {
            "Its rate is counted from its Geth's block 1 to that head (in this run; the scenario now \
             counts from the head its Geth first had, as the app moves the head every 64th block \
             while catching up, and the clock starts there), and the bare loop's over its whole run; \
             the start (CometBFT starting, finding its peer, asking for blocks, and the blocks before \
             the head first moves, 63 of them while block sync catches up) is its own column."
        }
    )?;
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let per_block = |bytes: u64, blocks: u64| bytes as f64 / blocks.max(1) as f64;
    writeln!(
        body,
        "| blocks | CometBFT data, bytes/block (total MB) | app store, bytes/block (total MB) | Geth, bytes/block (total MB) | made, blocks/s |\n|---|---|---|---|---|"
    )?;
    for p in &g.points {
        writeln!(
            body,
            "| {} | {:.0} ({:.1}) | {:.0} ({:.1}) | {:.0} ({:.1}) | {:.1} |",
            p.blocks,
            per_block(p.cometbft_bytes, p.blocks),
            mb(p.cometbft_bytes),
            per_block(p.store_bytes, p.blocks),
            mb(p.store_bytes),
            per_block(p.geth_bytes, p.blocks),
            mb(p.geth_bytes),
            p.made_bps
        )?;
    }
    writeln!(body)?;
    if !g.points.is_empty() && g.points.iter().all(|p| !p.cometbft_parts.is_empty()) {
        writeln!(body, "CometBFT's `data` by what is in it, bytes per block:\n")?;
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in g.points.iter().flat_map(|p| &p.cometbft_parts) {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        writeln!(body, "| blocks | {} |\n|---|{}", names.join(" | "), "---|".repeat(names.len()))?;
        for p in &g.points {
            let cells: Vec<String> = names
                .iter()
                .map(|name| {
                    let bytes = p.cometbft_parts.iter().find(|(n, _)| n == name).map_or(0, |(_, b)| *b);
                    format!("{:.0}", per_block(bytes, p.blocks))
                })
                .collect();
            writeln!(body, "| {} | {} |", p.blocks, cells.join(" | "))?;
        }
        writeln!(body)?;
    }
    writeln!(
        body,
        "| blocks | joining node: from its start until at the validator's head of then, s | its start, s | its {}, blocks/s | the tail, s | bare loop, blocks/s | catch-up ÷ bare | validator's app peak, MiB | joining app peak, MiB | joining CometBFT peak, MiB |\n|---|---|---|---|---|---|---|---|---|---|",
        if block_sync { "block sync" } else { "catch-up" }
    )?;
    for p in &g.points {
        writeln!(
            body,
            "| {} | {:.1} | {:.1} | {:.0} | {} | {:.0} | {:.3} | {:.1} | {:.1} | {:.1} |",
            p.blocks,
            p.join_s,
            p.first_s,
            pace(p),
            p.tail_s.filter(|_| block_sync).map_or("—".to_owned(), |s| format!("{s:.1}")),
            p.bare_pace(),
            pace(p) / p.bare_pace(),
            p.validator_mib,
            p.join_app_mib,
            p.join_cometbft_mib
        )?;
    }
    writeln!(body)?;
    let series = |name: &str, y: &dyn Fn(&crate::scenarios::bft_growth::BftPoint) -> f64| -> Series {
        (name.to_owned(), g.points.iter().map(|p| (p.blocks as f64, y(p))).collect())
    };
    let plots: [(&str, &str, &str, Vec<Series>); 3] = [
        (
            "bft-growth-bytes.png",
            "Part 4: bytes on disk per block",
            "bytes per block",
            vec![
                series("CometBFT data", &|p| per_block(p.cometbft_bytes, p.blocks)),
                series("app store", &|p| per_block(p.store_bytes, p.blocks)),
                series("Geth (archive)", &|p| per_block(p.geth_bytes, p.blocks)),
            ],
        ),
        (
            "bft-growth-catch-up.png",
            "Part 4: a full node catching up from an empty Geth",
            "blocks/s",
            vec![series("joining node", &|p| pace(p)), series("bare loop", &|p| p.bare_pace())],
        ),
        (
            "bft-growth-memory.png",
            "Part 4: peak resident memory of the apps",
            "MiB",
            vec![series("validator's app", &|p| p.validator_mib), series("joining app", &|p| p.join_app_mib)],
        ),
    ];
    for (file, title, y, data) in &plots {
        plot::chart(&images.join(file), title, ("chain length, blocks", y), data, false, None)?;
        writeln!(body, "![{title}](benchmarks/{file})\n")?;
    }
    let (Some(short), Some(long)) = (g.points.first(), g.points.last()) else { return Ok(()) };
    let catch_up = pace(long) / pace(short);
    goals.push(Goal {
        scenario: "bft-growth",
        figure: if block_sync {
            "joining node's block sync, blocks/s, longest ÷ shortest chain"
        } else {
            "joining node's blocks/s, longest ÷ shortest chain"
        },
        goal: "0.90–1.10",
        result: format!(
            "{catch_up:.2} ({} and {} blocks{})",
            long.blocks,
            short.blocks,
            if short.first_head.is_some() { "" } else { "; counted from block 1, see the notes" }
        ),
        met: (0.90..=1.10).contains(&catch_up),
    });
    let against_bare = pace(long) / long.bare_pace();
    goals.push(Goal {
        scenario: "bft-growth",
        figure: if block_sync {
            "joining node's block sync ÷ bare loop, longest chain"
        } else {
            "joining node ÷ bare loop, longest chain"
        },
        goal: "≥ 0.90",
        result: format!("{against_bare:.3}"),
        met: against_bare >= 0.90,
    });
    let peak = long.validator_mib.max(long.join_app_mib);
    goals.push(Goal {
        scenario: "bft-growth",
        figure: "peak RSS of an app at the longest chain",
        goal: "≤ 20 MB",
        result: format!("{peak:.1} MiB ({:.1} MB)", peak * 1.048_576),
        met: peak * 1.048_576 <= 20.0,
    });
    Ok(())
}

/// The retention section: each store's size as the chain grows past its window, in a table
/// and a plot, and the goal that it stops growing.
fn retention(
    body: &mut String,
    goals: &mut Vec<Goal<'_>>,
    images: &Path,
    results: &Results,
    r: &crate::scenarios::retention::Retention,
) -> anyhow::Result<()> {
    use crate::scenarios::retention::{SAMPLE_EVERY, WINDOW};
    writeln!(body, "## Storage that stays bounded\n")?;
    run_apart(body, results, "retention")?;
    writeln!(
        body,
        "Part 2's sequencer, then a Part 3 leader (alone), each on its own Geth, make blocks back to \
         back (`--back-to-back --build-time-ms 20`) under the growth scenario's stream of transfers, \
         with `--retain-blocks {WINDOW}`. Every {SAMPLE_EVERY} blocks, while they run, the size of \
         Part 2's store file and of Part 3's log (the `blocks` table with its indexes and \
         out-of-line data) is read.\n"
    )?;
    writeln!(body, "| height | Part 2 store, MB | Part 3 log, MB |\n|---|---|---|")?;
    let mb = |bytes: u64| bytes as f64 / 1e6;
    for ((height, store), (_, log)) in r.store.iter().zip(&r.log) {
        writeln!(body, "| {height} | {:.2} | {:.2} |", mb(*store), mb(*log))?;
    }
    writeln!(body)?;
    let series = |name: &str, samples: &[(u64, u64)]| -> Series {
        (name.to_owned(), samples.iter().map(|(height, bytes)| (*height as f64, mb(*bytes))).collect())
    };
    let title = format!("Size on disk, {WINDOW} blocks kept");
    plot::chart(
        &images.join("retention-bytes.png"),
        &title,
        ("chain length, blocks", "MB"),
        &[series("Part 2 store", &r.store), series("Part 3 log", &r.log)],
        false,
        None,
    )?;
    writeln!(body, "![{title}](benchmarks/retention-bytes.png)\n")?;
    // Whether a store keeps growing: the room the second half of the run needed against
    // the first half's (PostgreSQL's table settles only after a few windows, as its
    // autovacuum reclaims dead rows, so the size at any one early height would mislead).
    for (figure, samples) in [
        ("Part 2 store, largest size in the second half of the run ÷ in the first", &r.store),
        ("Part 3 log, largest size in the second half of the run ÷ in the first", &r.log),
    ] {
        let Some(&(end, _)) = samples.last() else { continue };
        let largest = |half: &dyn Fn(u64) -> bool| {
            samples.iter().filter(|(height, _)| half(*height)).map(|(_, bytes)| *bytes).max().unwrap_or(0)
        };
        let (first, second) = (largest(&|h| h <= end / 2), largest(&|h| h > end / 2));
        let grown = second as f64 / first.max(1) as f64;
        goals.push(Goal {
            scenario: "retention",
            figure,
            goal: "≤ 1.10",
            result: format!("{grown:.2} ({:.2} and {:.2} MB)", mb(second), mb(first)),
            met: grown <= 1.10,
        });
    }
    Ok(())
}

/// How long each scenario's last run took, as the runner stored it, and how long they took
/// together: what a whole run costs on the machine, from runs rather than a guess.
fn durations(md: &mut String, results: &Results) -> std::fmt::Result {
    let (secs, timed) = total_time(results, &Scenario::IN_ORDER);
    if timed == 0 {
        return writeln!(
            md,
            "The runner keeps how long each scenario's run took, from its next run on; the runs \
             on this page came before it did.\n"
        );
    }
    writeln!(md, "How long each scenario's last run took:\n\n| scenario | its last run took |\n|---|---|")?;
    for scenario in Scenario::IN_ORDER {
        let took = results.took.get(&scenario.name()).map_or("not timed".to_owned(), |&secs| span(secs));
        writeln!(md, "| {} | {took} |", scenario.name())?;
    }
    match Scenario::IN_ORDER.len() - timed {
        0 => writeln!(
            md,
            "\nTogether: {} (the scenarios alone; `scripts/bench.sh` installs and builds first).\n",
            span(secs)
        ),
        untimed => writeln!(
            md,
            "\n{} took {}; the other {untimed} have no time stored yet (their last runs came before the \
             runner kept one).\n",
            if timed == 1 { "The one timed".to_owned() } else { format!("The {timed} timed together") },
            span(secs)
        ),
    }
}

/// The seconds the last runs of `scenarios` took together, and how many of them were timed.
pub(crate) fn total_time(results: &Results, scenarios: &[Scenario]) -> (u64, usize) {
    scenarios
        .iter()
        .filter_map(|scenario| results.took.get(&scenario.name()))
        .fold((0, 0), |(secs, timed), took| (secs + took, timed + 1))
}

/// A length of time as a reader wants it: "40 s", "33 min", "3 h 12 min".
pub(crate) fn span(secs: u64) -> String {
    let minutes = (secs + 30) / 60;
    match secs {
        0..120 => format!("{secs} s"),
        _ if minutes < 60 => format!("{minutes} min"),
        _ => format!("{} h {} min", minutes / 60, minutes % 60),
    }
}

/// A line under a section's heading when its scenario was run on its own, after the run
/// the machine table at the top describes: when, and on what.
fn run_apart(body: &mut String, results: &Results, scenario: &str) -> std::fmt::Result {
    if let Some(apart) = results.apart.get(scenario) {
        let m = &apart.machine;
        let plan = apart.plan.as_ref().map_or(String::new(), |p| {
            format!(", {} s measured after a {} s warm-up, {} repeats", p.duration, p.warmup, p.repeats)
        });
        let took = results.took.get(scenario).map_or(String::new(), |&secs| format!(", in {}", span(secs)));
        writeln!(
            body,
            "*Run on its own, {}, on {} ({} logical CPUs, {:.1} GiB), Geth {}, CometBFT {}{plan}{took}.*\n",
            m.date,
            m.cpu,
            m.cpus,
            m.memory_gib,
            m.geth.trim_start_matches("Version: "),
            m.cometbft
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of every table has as many cells as the table's header.
    fn check_tables(md: &str) {
        let cells = |line: &str| line.trim().trim_matches('|').split(" | ").count();
        let mut header: Option<(usize, &str)> = None;
        for line in md.lines() {
            if !line.starts_with('|') {
                header = None;
                continue;
            }
            match header {
                None => header = Some((cells(line), line)),
                Some((n, head)) if !line.starts_with("|---") => {
                    assert_eq!(cells(line), n, "row {line:?} does not fit header {head:?}");
                }
                Some(_) => {}
            }
        }
    }

    #[test]
    fn the_committed_page_is_what_the_stored_results_give() {
        let results = crate::load_results().expect("docs/src/benchmarks/results.json");
        assert!(results.machine.is_some(), "no stored benchmark results: run scripts/bench.sh all");
        plot::init_font().expect("the plot font (scripts/setup.sh fonts)");
        let dir = tempfile::tempdir().expect("temporary directory");
        write(&results, dir.path()).expect("report");
        let written = std::fs::read_to_string(dir.path().join("benchmarks.md")).expect("written page");
        let committed = std::fs::read_to_string(crate::out_dir().join("benchmarks.md")).expect("committed page");
        assert!(
            written == committed,
            "docs/src/benchmarks.md is not what the stored results give: run `scripts/bench.sh report`"
        );
        check_tables(&written);
        for plot in ["engine-latency", "throughput", "failover", "bft-intervals", "watch-failover"] {
            assert!(dir.path().join(format!("benchmarks/{plot}.png")).is_file(), "{plot}.png not drawn");
        }
    }

    #[test]
    fn the_page_adds_up_the_scenarios_times_and_names_those_not_timed() {
        let mut results = Results::default();
        let mut md = String::new();
        durations(&mut md, &results).expect("write");
        assert!(md.contains("from its next run on") && !md.contains('|'), "{md}");

        results.took.insert("growth".into(), 33 * 60 + 10);
        results.took.insert("bft".into(), 95);
        let mut md = String::new();
        durations(&mut md, &results).expect("write");
        assert!(md.contains("| growth | 33 min |") && md.contains("| bft | 95 s |"), "{md}");
        assert!(md.contains("| retention | not timed |"), "{md}");
        assert!(md.contains("The 2 timed together took 35 min; the other 11 have no time stored yet"), "{md}");
        check_tables(&md);

        for scenario in Scenario::IN_ORDER {
            results.took.insert(scenario.name(), 20 * 60);
        }
        let mut md = String::new();
        durations(&mut md, &results).expect("write");
        assert!(md.contains("Together: 4 h 20 min (the scenarios alone"), "{md}");
        assert_eq!(total_time(&results, &[Scenario::Bft, Scenario::All]), (20 * 60, 1));
    }

    /// A scenario added to the command line but not to the run order would run and never be
    /// listed or added up.
    #[test]
    fn every_scenario_is_in_the_run_order() {
        use clap::ValueEnum;
        let scenarios: Vec<Scenario> = Scenario::value_variants()
            .iter()
            .copied()
            .filter(|scenario| !matches!(scenario, Scenario::All | Scenario::Report))
            .collect();
        assert_eq!(scenarios.len(), Scenario::IN_ORDER.len());
        assert!(scenarios.iter().all(|scenario| Scenario::IN_ORDER.contains(scenario)));
    }

    #[test]
    fn a_row_that_does_not_fit_its_header_is_caught() {
        let result = std::panic::catch_unwind(|| check_tables("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n"));
        assert!(result.is_err());
        check_tables("| a | b |\n|---|---|\n| 1 | 2 |\n\ntext\n| c |\n|---|\n| 3 |\n");
    }
}
