//! Fixed-bucket latency histograms made of atomics, cheap enough for a shard's hot path.
//!
//! Buckets are powers of two of microseconds: up to 1 µs, up to 2 µs, … up to 2^20 µs (about
//! one second), and the rest. Each cell counts the samples of its own bucket (not cumulative);
//! the exposition adds them up. There is no separate count cell: the count is the sum of the
//! buckets, so a scrape always sees a `_count` equal to its `+Inf` bucket.
//!
//! Invariant: a histogram written with [`Histogram::record_owned`] has exactly one writer
//! thread (the shard that owns it), so an update is a relaxed load and store: no
//! read-modify-write, no bus lock, the cost of incrementing a plain integer. One written by
//! several threads (the HTTP workers) uses [`Histogram::record_shared`] (`fetch_add`).
//! Readers on other threads see each cell's latest value; two cells read a moment apart may
//! disagree by the samples recorded in between, which scrapers tolerate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Finite buckets (≤ 2^0 … ≤ 2^20 µs) plus the overflow bucket.
pub const BUCKETS: usize = 22;

/// The upper bound of bucket `i` in microseconds; `None` for the overflow bucket.
pub fn upper_bound_us(i: usize) -> Option<u64> {
    (i + 1 < BUCKETS).then(|| 1u64 << i)
}

/// The bucket a duration of `ns` nanoseconds falls in.
pub fn bucket_of(ns: u64) -> usize {
    let us = ns.div_ceil(1000);
    if us <= 1 {
        return 0;
    }
    let index = (u64::BITS - (us - 1).leading_zeros()) as usize;
    index.min(BUCKETS - 1)
}

/// A latency histogram (see the module docs for who may write it how).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one sample. Only the single thread that owns this histogram may call it.
    pub fn record_owned(&self, elapsed: Duration) {
        let ns = duration_ns(elapsed);
        bump_owned(&self.buckets[bucket_of(ns)], 1);
        bump_owned(&self.sum_ns, ns);
    }

    /// Records one sample from any thread.
    pub fn record_shared(&self, elapsed: Duration) {
        let ns = duration_ns(elapsed);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The current figures.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        s.add(self);
        s
    }
}

/// Adds `n` to a counter that only the calling thread writes.
pub fn bump_owned(cell: &AtomicU64, n: u64) {
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Figures read from one or more histograms at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Samples per bucket (not cumulative).
    pub buckets: [u64; BUCKETS],
    /// Sum of all samples in nanoseconds.
    pub sum_ns: u64,
}

impl Snapshot {
    /// Adds the figures of `h` (merging shards).
    pub fn add(&mut self, h: &Histogram) {
        for (mine, cell) in self.buckets.iter_mut().zip(&h.buckets) {
            *mine += cell.load(Ordering::Relaxed);
        }
        self.sum_ns += h.sum_ns.load(Ordering::Relaxed);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound in microseconds of the bucket holding quantile `q` (0..=1): a value no
    /// sample at that rank exceeds, rounded up to a power of two. `None` without samples;
    /// for the overflow bucket, twice the largest finite bound.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper_bound_us(i).unwrap_or(1 << (BUCKETS - 1)));
            }
        }
        Some(1 << (BUCKETS - 1))
    }

    /// `(upper bound in seconds, samples)` per bucket, the overflow bucket last with an
    /// infinite bound, as the Prometheus encoder takes them.
    pub fn prometheus_buckets(&self) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let le = upper_bound_us(i).map_or(f64::INFINITY, |us| us as f64 / 1e6);
                (le, n)
            })
            .collect()
    }

    /// The sum of all samples in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_microseconds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1_000), 0);
        assert_eq!(bucket_of(1_001), 1);
        assert_eq!(bucket_of(2_000), 1);
        assert_eq!(bucket_of(3_000), 2);
        assert_eq!(bucket_of(4_000), 2);
        assert_eq!(bucket_of(5_000), 3);
        assert_eq!(bucket_of((1 << 20) * 1000), 20);
        assert_eq!(bucket_of((1 << 20) * 1000 + 1), 21);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_bound_us(0), Some(1));
        assert_eq!(upper_bound_us(20), Some(1 << 20));
        assert_eq!(upper_bound_us(21), None);
    }

    #[test]
    fn snapshot_counts_sums_and_quantiles() {
        let h = Histogram::default();
        for us in [1u64, 3, 3, 3, 100] {
            h.record_owned(Duration::from_micros(us));
        }
        h.record_shared(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.count(), 6);
        assert_eq!(s.sum_ns, (1 + 9 + 100) * 1000 + 5_000_000_000);
        assert_eq!(s.quantile_us(0.5), Some(4));
        assert_eq!(s.quantile_us(0.8), Some(128));
        assert_eq!(s.quantile_us(1.0), Some(1 << 21));
        assert_eq!(Snapshot::default().quantile_us(0.5), None);
        let b = s.prometheus_buckets();
        assert_eq!(b.len(), BUCKETS);
        assert_eq!(b[0], (0.000001, 1));
        assert!(b[BUCKETS - 1].0.is_infinite());
    }
}
