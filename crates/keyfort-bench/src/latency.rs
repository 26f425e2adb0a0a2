//! Latencies in an HDR histogram: constant memory whatever the request count, and
//! percentiles within 0.1 % of the recorded values up to a minute.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Longest latency kept exactly; anything slower is recorded as this (a request this slow
/// has failed by any measure, and the timeout is shorter anyway).
const MAX_MICROS: u64 = 60_000_000;

/// The percentiles of the percentile curve in every report: dense in the tail, where
/// servers differ.
pub const CURVE_PERCENTILES: &[f64] =
    &[0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9, 99.95, 99.99, 100.0];

/// Request latencies, recorded in microseconds.
#[derive(Clone, Debug)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // Three significant digits: 0.1 % resolution, a few hundred KiB per histogram.
        Self(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"))
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS).clamp(1, MAX_MICROS);
        self.0.record(micros).expect("clamped into the histogram's range");
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("histograms of the same bounds");
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at `percentile` (0–100), in milliseconds; 0 when nothing was recorded.
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_percentile(percentile) as f64 / 1000.0
    }

    pub fn summary(&self) -> LatencySummary {
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            mean: round3(self.0.mean() / 1000.0),
            p50: round3(self.percentile_ms(50.0)),
            p90: round3(self.percentile_ms(90.0)),
            p99: round3(self.percentile_ms(99.0)),
            p999: round3(self.percentile_ms(99.9)),
            max: round3(self.0.max() as f64 / 1000.0),
        }
    }

    /// The latency at each of [`CURVE_PERCENTILES`].
    pub fn curve(&self) -> Vec<PercentilePoint> {
        CURVE_PERCENTILES
            .iter()
            .map(|&percentile| PercentilePoint { percentile, ms: round3(self.percentile_ms(percentile)) })
            .collect()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The usual latency figures, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut l = Latencies::new();
        for i in 1..=1000 {
            l.record(ms(i));
        }
        assert_eq!(l.count(), 1000);
        let s = l.summary();
        // Within the histogram's 0.1 % resolution, and one sample (1 ms) of rank rounding.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1.0;
        assert!(close(s.p50, 500.0), "p50 {}", s.p50);
        assert!(close(s.p90, 900.0), "p90 {}", s.p90);
        assert!(close(s.p99, 990.0), "p99 {}", s.p99);
        assert!(close(s.p999, 999.0), "p99.9 {}", s.p999);
        assert!(close(s.max, 1000.0), "max {}", s.max);
        assert!(close(s.mean, 500.5), "mean {}", s.mean);
    }

    #[test]
    fn a_slow_tail_shows_only_in_the_high_percentiles() {
        let mut l = Latencies::new();
        for _ in 0..990 {
            l.record(Duration::from_micros(800));
        }
        for _ in 0..10 {
            l.record(ms(250));
        }
        let s = l.summary();
        assert!((s.p50 - 0.8).abs() < 0.01 && (s.p90 - 0.8).abs() < 0.01, "{s:?}");
        assert!((s.p999 - 250.0).abs() < 0.5, "{s:?}");
        let curve = l.curve();
        assert_eq!(curve.len(), CURVE_PERCENTILES.len());
        assert!(curve.windows(2).all(|w| w[0].ms <= w[1].ms), "the curve never goes down: {curve:?}");
        assert!((curve.last().unwrap().ms - 250.0).abs() < 0.5);
    }

    #[test]
    fn merged_histograms_count_everything() {
        let (mut a, mut b) = (Latencies::new(), Latencies::new());
        for i in 1..=100 {
            a.record(ms(i));
            b.record(ms(100 + i));
        }
        a.merge(&b);
        assert_eq!(a.count(), 200);
        assert!((a.percentile_ms(50.0) - 100.0).abs() < 0.2);
        assert!((a.summary().max - 200.0).abs() < 0.2);
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut l = Latencies::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(3600));
        assert_eq!(l.count(), 2);
        assert!((l.summary().max - 60_000.0).abs() < 60.0);
        assert_eq!(Latencies::new().summary(), LatencySummary::default(), "empty: zeros, no panic");
    }
}
