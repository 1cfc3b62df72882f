//! What a run leaves behind: the history and the verdict as JSON, a Markdown summary, and a
//! plot of every node's head over time with the faults in force shaded.

use std::{collections::BTreeMap, fmt::Write, path::Path};

use anyhow::{Context, anyhow};
use plotters::{
    prelude::*,
    style::{FontStyle, register_font},
};

use crate::{
    check::Verdict,
    history::{Final, History},
};

/// The font plotters draws text with (Debian's `fonts-dejavu-core`); `BENCH_FONT`
/// overrides it, as for the benchmarks.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Writes `final.json` (the chain at the end), `verdict.json`, `summary.md` and
/// `heads.png` into `dir`, beside the `history.json` the run wrote there.
pub(crate) fn write(
    dir: &Path,
    history: &History,
    last: &Final,
    verdict: &Verdict,
    menu: &[String],
) -> anyhow::Result<()> {
    std::fs::write(dir.join("final.json"), serde_json::to_vec(last)?)?;
    std::fs::write(dir.join("verdict.json"), serde_json::to_vec_pretty(verdict)?)?;
    std::fs::write(dir.join("summary.md"), summary(history, verdict, menu))?;
    plot(&dir.join("heads.png"), history)
}

/// The history and the final chain a run left in `dir`.
pub(crate) fn read(dir: &Path) -> anyhow::Result<(History, Final)> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| format!("cannot read {} (was the run finished?)", path.display()))
    };
    let history = serde_json::from_slice(&read("history.json")?).context("history.json does not parse")?;
    let last = serde_json::from_slice(&read("final.json")?).context("final.json does not parse")?;
    Ok((history, last))
}

/// Writes `history.json` into `dir`; where it went.
pub(crate) fn write_history(dir: &Path, history: &History) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let path = dir.join("history.json");
    std::fs::write(&path, serde_json::to_vec(history)?)?;
    Ok(format!("its history is in {}", path.display()))
}

/// The run in Markdown: its totals, and the recovery after each kind of fault.
pub(crate) fn summary(history: &History, verdict: &Verdict, menu: &[String]) -> String {
    let minutes = (history.healed - history.started) / 60.0;
    let bounds = verdict.bounds.unwrap_or(crate::check::BOUNDS);
    let failures = verdict.failures(menu);
    let mut out = String::new();
    let _ = writeln!(out, "Run: `{}`, {minutes:.1} minutes of faults, seed {}.\n", history.part, history.seed);
    let _ = writeln!(out, "| What the clients saw | |\n|---|---|");
    let rows = [
        ("transactions sent".to_owned(), verdict.sent.to_string()),
        ("shown a receipt".to_owned(), verdict.confirmed.to_string()),
        ("never shown one (in flight at the end)".to_owned(), verdict.unconfirmed.to_string()),
        ("**lost**: shown a receipt, then not in that block".to_owned(), verdict.lost.len().to_string()),
        ("**forks**: heights where two nodes or the block log disagree".to_owned(), verdict.forks.len().to_string()),
        (
            "**heads a client saw that the final chain does not hold**".to_owned(),
            verdict.replaced_heads.len().to_string(),
        ),
        ("**gaps**: heights missing from the block log".to_owned(), gaps(history, verdict)),
        ("nodes behind at the end".to_owned(), verdict.behind.len().to_string()),
        (
            format!("nodes stuck behind for over {} s with no fault on them", bounds.recovery),
            verdict.stuck.len().to_string(),
        ),
        ("heights compared on every node".to_owned(), (verdict.compared_to + 1).to_string()),
        (
            "longest time without a new block".to_owned(),
            format!("{:.1} s, {:.0} s into the run", verdict.longest_stall.1, verdict.longest_stall.0),
        ),
        (
            "furthest a block was ahead of the client's clock".to_owned(),
            format!("{:.2} s (bound {} s)", verdict.max_ahead, bounds.ahead),
        ),
        ("faults injected".to_owned(), injected(history, menu)),
        ("processes that ended by themselves, started again".to_owned(), exits(history)),
        ("verdict".to_owned(), if failures.is_empty() { "passed".to_owned() } else { failures.join("; ") }),
    ];
    for (what, value) in rows {
        let _ = writeln!(out, "| {what} | {value} |");
    }
    let _ = writeln!(
        out,
        "\nRecovery: from a heal that left no fault in force to the next block (bound {} s). A heal \
         followed by another fault before any block is not timed.\n",
        bounds.recovery
    );
    let _ = writeln!(out, "| Fault | Injected | Timed | p50 (s) | max (s) |\n|---|---:|---:|---:|---:|");
    for (kind, count) in &verdict.injected {
        let times = verdict.recoveries.get(kind).cloned().unwrap_or_default();
        let (p50, max) = if times.is_empty() {
            ("–".to_owned(), "–".to_owned())
        } else {
            (format!("{:.1}", median(&times)), format!("{:.1}", times.iter().copied().fold(0.0, f64::max)))
        };
        let _ = writeln!(out, "| `{kind}` | {count} | {} | {p50} | {max} |", times.len());
    }
    out
}

fn gaps(history: &History, verdict: &Verdict) -> String {
    if history.part == "part4" { "– (no block log)".to_owned() } else { verdict.gaps.len().to_string() }
}

fn injected(history: &History, menu: &[String]) -> String {
    let kinds: BTreeMap<&str, ()> = history.faults.iter().map(|f| (f.kind.as_str(), ())).collect();
    format!("{}, of {} of the menu's {} kinds", history.faults.len(), kinds.len(), menu.len())
}

fn exits(history: &History) -> String {
    let mut by_process: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, process) in &history.exits {
        *by_process.entry(process.as_str()).or_default() += 1;
    }
    if by_process.is_empty() {
        return "none".to_owned();
    }
    by_process.iter().map(|(p, n)| format!("{p} ×{n}")).collect::<Vec<_>>().join(", ")
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Every node's head over the run, the faults in force shaded.
fn plot(path: &Path, history: &History) -> anyhow::Result<()> {
    let font = std::env::var("BENCH_FONT").unwrap_or_else(|_| FONT.to_owned());
    let bytes = std::fs::read(&font)
        .with_context(|| format!("cannot read the plot font {font} (install fonts-dejavu-core, or set BENCH_FONT)"))?;
    // Registering twice (a second plot in one process) is harmless.
    let _ = register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()));
    let t = |at: f64| at - history.started;
    let x_max = history.heads.iter().map(|h| t(h.at)).fold(1.0, f64::max);
    let y_max = history.heads.iter().map(|h| h.number).max().unwrap_or(1) as f64;
    let err = |e: &dyn std::fmt::Display| anyhow!("plot: {e}");
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!("{}: head of every node, faults in force shaded (seed {})", history.part, history.seed);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max * 1.01, 0.0..y_max * 1.05)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds into the run")
        .y_desc("block height")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    let shade = RGBColor(214, 39, 40).mix(0.12);
    let bands = history.faults.iter().map(|f| {
        let end = f.healed.unwrap_or(history.healed);
        Rectangle::new([(t(f.injected), 0.0), (t(end), y_max * 1.05)], shade.filled())
    });
    chart.draw_series(bands).map_err(|e| err(&e))?;
    let colours = [RGBColor(31, 119, 180), RGBColor(44, 160, 44), RGBColor(148, 103, 189), RGBColor(255, 127, 14)];
    for (node, name) in history.nodes.iter().enumerate() {
        let colour = colours[node % colours.len()];
        let points = history.heads.iter().filter(|h| h.node == node).map(|h| (t(h.at), h.number as f64));
        chart
            // One pixel wide: a thick line's joins overshoot at a wiped Geth's drop to 0.
            .draw_series(LineSeries::new(points, colour.stroke_width(1)))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
