//! PNG plots of the results, drawn by the runner itself (plotters, with the system's
//! DejaVu Sans font, which Debian's `fonts-dejavu-core` package provides).

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::{
    prelude::*,
    style::{FontStyle, register_font},
};

/// Where the font is read from; `BENCH_FONT` overrides it.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the font plotters draws text with. Call once before plotting.
pub(crate) fn init_font() -> anyhow::Result<()> {
    let path = std::env::var("BENCH_FONT").unwrap_or_else(|_| FONT.to_owned());
    let bytes = std::fs::read(&path)
        .with_context(|| format!("cannot read the plot font {path} (install fonts-dejavu-core, or set BENCH_FONT)"))?;
    register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| anyhow!("{path} is not a font plotters can use"))
}

const COLOURS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// One named series of (x, y) points.
pub(crate) type Series = (String, Vec<(f64, f64)>);

/// A line chart of `series` into `path`; `points` draws dots instead of lines; `goal`
/// draws a horizontal dashed line at that y.
pub(crate) fn chart(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
    points: bool,
    goal: Option<f64>,
) -> anyhow::Result<()> {
    let all = series.iter().flat_map(|(_, s)| s.iter());
    let (x_max, y_max) = all.fold((0.0_f64, goal.unwrap_or(0.0)), |(x, y), (a, b)| (x.max(*a), y.max(*b)));
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max.max(1e-9) * 1.02, 0.0..y_max.max(1e-9) * 1.1)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (name, data)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let drawn = if points {
            chart.draw_series(data.iter().map(|&(x, y)| Circle::new((x, y), 4, colour.filled())))
        } else {
            chart.draw_series(LineSeries::new(data.iter().copied(), colour.stroke_width(2)))
        }
        .map_err(|e| anyhow!("{e}"))?;
        drawn
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3)));
    }
    if let Some(goal) = goal {
        let dashes = (0..60).map(|i| {
            let x = x_max * f64::from(i) / 60.0;
            PathElement::new(vec![(x, goal), (x + x_max / 120.0, goal)], BLACK)
        });
        chart
            .draw_series(dashes)
            .map_err(|e| anyhow!("{e}"))?
            .label("goal")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Samples further apart than this (seconds) are a gap: the series had no data between.
const GAP: f64 = 2.0;

/// A hand-over at a glance, in two panels sharing the time axis: on top, which node leads
/// (each node's `leads` series as a step line in a band of its own, high while it leads);
/// below, `staleness` (seconds since the newest block).
pub(crate) fn failover(
    path: &Path,
    title: &str,
    x_label: &str,
    leads: &[Series],
    staleness: &Series,
) -> anyhow::Result<()> {
    let all = leads.iter().chain(std::iter::once(staleness)).flat_map(|(_, s)| s.iter());
    let x_max = all.fold(0.0_f64, |x, (a, _)| x.max(*a)).max(1e-9) * 1.02;
    let y_max = staleness.1.iter().fold(0.0_f64, |y, (_, b)| y.max(*b)).max(1e-9) * 1.1;
    let root = BitMapBackend::new(path, (900, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(260);
    let bands = leads.len().max(1) as f64;
    let names: Vec<String> =
        leads.iter().map(|(name, _)| name.split_whitespace().next().unwrap_or("").to_owned()).collect();
    let mut upper = ChartBuilder::on(&top)
        .margin(15)
        .x_label_area_size(10)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..bands)
        .map_err(|e| anyhow!("{e}"))?;
    upper
        .configure_mesh()
        .y_desc("who leads")
        .y_labels(leads.len() * 2 + 1)
        .y_label_formatter(&|y| {
            let band = y.floor();
            let in_band = y - band;
            if (in_band - 0.5).abs() < 0.01 {
                names.get(band as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_labels(0)
        .disable_y_mesh()
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (_, data)) in leads.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let level = |y: f64| i as f64 + 0.15 + 0.7 * y;
        // A node that is down has no samples: its line stops there, rather than drawing
        // its last value across the gap.
        for run in data.chunk_by(|a, b| b.0 - a.0 <= GAP) {
            let mut steps: Vec<(f64, f64)> = run
                .windows(2)
                .flat_map(|pair| [(pair[0].0, level(pair[0].1)), (pair[1].0, level(pair[0].1))])
                .collect();
            steps.extend(run.last().map(|&(x, y)| (x, level(y))));
            upper.draw_series(LineSeries::new(steps, colour.stroke_width(3))).map_err(|e| anyhow!("{e}"))?;
        }
    }
    let mut lower = ChartBuilder::on(&bottom)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    lower
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(staleness.0.as_str())
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    lower
        .draw_series(LineSeries::new(staleness.1.iter().copied(), BLACK.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// The cumulative distribution of `values` as (value, fraction ≤ value) points.
pub(crate) fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted.into_iter().enumerate().map(|(i, v)| (v, (i + 1) as f64 / n)).collect()
}
