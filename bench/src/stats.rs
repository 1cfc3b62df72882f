//! Percentiles and summaries over repeated measurements (pure).

use serde::{Deserialize, Serialize};

/// The `p`-th percentile (0–100) of `values`, by the nearest-rank method; 0 if empty.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A figure measured in several repeats: the median, and the spread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// Median over the repeats.
    pub(crate) median: f64,
    /// Lowest repeat.
    pub(crate) min: f64,
    /// Highest repeat.
    pub(crate) max: f64,
}

impl Summary {
    /// The summary of one value per repeat.
    pub(crate) fn of(values: &[f64]) -> Self {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self { median: percentile(values, 50.0), min, max }
    }

    /// `median (min–max)` with `digits` decimals.
    pub(crate) fn show(&self, digits: usize) -> String {
        if (self.max - self.min).abs() < f64::EPSILON {
            format!("{:.digits$}", self.median)
        } else {
            format!("{:.digits$} ({:.digits$}–{:.digits$})", self.median, self.min, self.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn summaries_show_the_spread() {
        let summary = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!(summary, Summary { median: 2.0, min: 1.0, max: 3.0 });
        assert_eq!(summary.show(1), "2.0 (1.0–3.0)");
        assert_eq!(Summary::of(&[4.0]).show(0), "4");
    }
}
