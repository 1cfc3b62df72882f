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

/// The cumulative distribution of `values` as (value, fraction ≤ value) points.
pub(crate) fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted.into_iter().enumerate().map(|(i, v)| (v, (i + 1) as f64 / n)).collect()
}
