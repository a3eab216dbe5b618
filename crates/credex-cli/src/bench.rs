//! `credexctl bench …`: benchmarks through the real node (gRPC, mutual TLS, sled), each printed
//! beside what it is measured against in the same run. Build with `--release` for meaningful
//! figures.
//!
//! # Layout
//! - [`catchup`]: one node catches up N entries from another; ceiling: Ed25519 verification on
//!   all cores.
//! - [`publish`]: durable publish throughput; ceiling: sled writing the same leaves, one flush per
//!   batch of the same size.
//! - [`propagation`]: latency from a publish call to the record entering every peer's view.
//! - `cluster`: nodes run in-process for the benchmarks.

pub mod catchup;
mod cluster;
pub mod propagation;
pub mod publish;

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted in place); all zero when there are none.
    pub fn of(samples: &mut [f64]) -> Percentiles {
        samples.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest sample with at least p% of the samples at or below it.
            let n = samples.len() as f64;
            let i = ((p / 100.0 * n).ceil() as usize).clamp(1, samples.len());
            samples[i - 1]
        };
        Percentiles {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: rank(100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        // Hand-checked: of 1..=10, p50 is the 5th sample, p90 the 9th, p99 and max the 10th.
        let mut samples: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (5.0, 9.0, 10.0, 10.0));
        // Of 1..=200, p99 is the 198th.
        let mut samples: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(Percentiles::of(&mut samples).p99, 198.0);
        assert_eq!(Percentiles::of(&mut []).max, 0.0);
    }
}
