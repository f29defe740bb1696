//! Counting what happened and printing it.
//!
//! Each connection keeps its own [`Tally`]; they are merged once at the end, so the hot path
//! shares nothing. Latencies are kept in nanoseconds in an HDR histogram (3 significant
//! digits) and printed in microseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histogram tracks exactly (longer ones are clamped to it): one hour.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// What one connection (or, merged, the whole run) did.
pub struct Tally {
    /// Operations finished (a cycle counts once, whatever its number of requests).
    pub ops: u64,
    /// Requests answered.
    pub requests: u64,
    /// Per-request latency in nanoseconds: from writing the batch to reading this reply.
    pub latency: Histogram<u64>,
    /// Refusals the workload expects, by kind.
    pub expected: BTreeMap<String, u64>,
    /// Every other error or odd reply, by kind.
    pub unexpected: BTreeMap<String, u64>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally {
            ops: 0,
            requests: 0,
            // 1 ns .. 1 h with 3 significant digits: the bounds are constants, so this holds.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            expected: BTreeMap::new(),
            unexpected: BTreeMap::new(),
        }
    }

    /// Records one reply that arrived `latency` after its batch was written.
    pub fn record(&mut self, latency: Duration) {
        self.requests += 1;
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
    }

    /// Counts one error of `kind`, expected or not.
    pub fn count_error(&mut self, expected: bool, kind: &str) {
        let map = if expected {
            &mut self.expected
        } else {
            &mut self.unexpected
        };
        match map.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                map.insert(kind.to_owned(), 1);
            }
        }
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.ops += other.ops;
        self.requests += other.requests;
        // Both histograms share the same bounds, so adding cannot fail; saturate regardless.
        let _ = self.latency.add(&other.latency);
        for (kind, n) in &other.expected {
            *self.expected.entry(kind.clone()).or_default() += n;
        }
        for (kind, n) in &other.unexpected {
            *self.unexpected.entry(kind.clone()).or_default() += n;
        }
    }
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new()
    }
}

/// The settings a report describes.
pub struct Header<'a> {
    /// Workload name.
    pub workload: &'a str,
    /// Target name.
    pub target: &'a str,
    /// Address loaded.
    pub addr: String,
    /// Connections opened.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Runtime worker threads.
    pub threads: usize,
}

/// A finished run: settings, wall time and the merged tally.
pub struct Summary<'a> {
    /// The settings.
    pub header: Header<'a>,
    /// Wall time from the first request to the last reply.
    pub elapsed: Duration,
    /// Everything counted.
    pub tally: Tally,
    /// Connections that ended early on an error.
    pub failed_connections: usize,
}

impl Summary<'_> {
    fn per_sec(&self, n: u64) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { n as f64 / secs } else { 0.0 }
    }

    fn percentile_us(&self, q: f64) -> f64 {
        if self.tally.latency.is_empty() {
            return 0.0;
        }
        self.tally.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn total(map: &BTreeMap<String, u64>) -> u64 {
        map.values().sum()
    }

    /// A few lines for people.
    pub fn text(&self) -> String {
        let h = &self.header;
        let t = &self.tally;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "token-bench {} against {} at {}: {} connections, pipeline {}, {} thread(s)",
            h.workload, h.target, h.addr, h.connections, h.pipeline, h.threads
        );
        let _ = writeln!(
            s,
            "  ops       {} in {:.3} s = {:.0} ops/s ({} requests = {:.0} requests/s)",
            t.ops,
            self.elapsed.as_secs_f64(),
            self.per_sec(t.ops),
            t.requests,
            self.per_sec(t.requests)
        );
        let _ = writeln!(
            s,
            "  latency   p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us (per request)",
            self.percentile_us(0.5),
            self.percentile_us(0.99),
            self.percentile_us(0.999),
            self.percentile_us(1.0)
        );
        let _ = write!(
            s,
            "  errors    {} unexpected, {} expected",
            Self::total(&t.unexpected),
            Self::total(&t.expected)
        );
        for (kind, n) in &t.unexpected {
            let _ = write!(s, "; {kind} {n}");
        }
        for (kind, n) in &t.expected {
            let _ = write!(s, "; {kind} {n} (expected)");
        }
        s.push('\n');
        if self.failed_connections > 0 {
            let _ = writeln!(
                s,
                "  FAILED    {} connection(s) ended early",
                self.failed_connections
            );
        }
        s
    }

    /// One line of `key=value` fields for scripts.
    pub fn kv(&self) -> String {
        let h = &self.header;
        let t = &self.tally;
        let kinds = |map: &BTreeMap<String, u64>| {
            let list: Vec<String> = map.iter().map(|(k, n)| format!("{k}:{n}")).collect();
            if list.is_empty() {
                "-".to_owned()
            } else {
                list.join(",")
            }
        };
        format!(
            "workload={} target={} connections={} pipeline={} threads={} seconds={:.3} \
             ops={} ops_per_sec={:.1} requests={} requests_per_sec={:.1} \
             p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} \
             unexpected_errors={} expected_errors={} unexpected={} expected={} \
             failed_connections={}\n",
            h.workload,
            h.target,
            h.connections,
            h.pipeline,
            h.threads,
            self.elapsed.as_secs_f64(),
            t.ops,
            self.per_sec(t.ops),
            t.requests,
            self.per_sec(t.requests),
            self.percentile_us(0.5),
            self.percentile_us(0.99),
            self.percentile_us(0.999),
            self.percentile_us(1.0),
            Self::total(&t.unexpected),
            Self::total(&t.expected),
            kinds(&t.unexpected),
            kinds(&t.expected),
            self.failed_connections,
        )
    }
}
