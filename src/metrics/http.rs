//! Figures of the HTTP adapter: connections, and requests by endpoint and status.
//!
//! The HTTP worker threads all write these, so they are shared atomics (`fetch_add`); none of
//! them is on a shard's path. The lock command behind a request is also counted by the shard
//! that runs it, in the per-command figures.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::metrics::histogram::Histogram;

/// The paths the adapter serves, as metric labels; `other` for every unknown path.
pub const ENDPOINTS: [&str; 10] = [
    "lock", "unlock", "complete", "renew", "status", "help", "metrics", "health", "ready", "other",
];

/// The statuses counted one by one; any other is counted as `other`.
pub const STATUSES: [u16; 11] = [200, 400, 403, 404, 405, 409, 413, 422, 500, 503, 0];

/// The label of status cell `i`.
pub fn status_label(i: usize) -> String {
    match STATUSES.get(i) {
        Some(0) | None => "other".to_string(),
        Some(code) => code.to_string(),
    }
}

/// The HTTP adapter's figures.
#[derive(Debug)]
pub struct HttpStats {
    /// Connections being served now.
    pub clients: AtomicUsize,
    /// Connections accepted since start.
    pub connections_received: AtomicU64,
    /// Connections refused because of `--maxclients`.
    pub rejected_connections: AtomicU64,
    /// `ENDPOINTS × STATUSES` request counters.
    requests: Box<[AtomicU64]>,
    /// Time from the request head to the response, per endpoint.
    latency: Box<[Histogram]>,
}

impl Default for HttpStats {
    fn default() -> Self {
        HttpStats {
            clients: AtomicUsize::new(0),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            requests: (0..ENDPOINTS.len() * STATUSES.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: (0..ENDPOINTS.len()).map(|_| Histogram::default()).collect(),
        }
    }
}

impl HttpStats {
    /// The endpoint index of `path`.
    pub fn endpoint_of(path: &str) -> usize {
        let name = match path {
            "/" => "help",
            p => p.strip_prefix('/').unwrap_or(p),
        };
        ENDPOINTS
            .iter()
            .position(|e| *e == name && *e != "help")
            .or((path == "/").then_some(5))
            .unwrap_or(ENDPOINTS.len() - 1)
    }

    /// Counts one answered request.
    pub fn record(&self, endpoint: usize, status: u16, elapsed: Duration) {
        let endpoint = endpoint.min(ENDPOINTS.len() - 1);
        let s = STATUSES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(STATUSES.len() - 1);
        if let Some(cell) = self.requests.get(endpoint * STATUSES.len() + s) {
            cell.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = self.latency.get(endpoint) {
            h.record_shared(elapsed);
        }
    }

    /// Requests to endpoint `e` answered with status cell `s`.
    pub fn requests(&self, e: usize, s: usize) -> u64 {
        self.requests
            .get(e * STATUSES.len() + s)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The latency histogram of endpoint `e`.
    pub fn latency(&self, e: usize) -> Option<&Histogram> {
        self.latency.get(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_statuses_map_to_cells() {
        assert_eq!(ENDPOINTS[HttpStats::endpoint_of("/lock")], "lock");
        assert_eq!(ENDPOINTS[HttpStats::endpoint_of("/")], "help");
        assert_eq!(ENDPOINTS[HttpStats::endpoint_of("/help")], "other");
        assert_eq!(ENDPOINTS[HttpStats::endpoint_of("/other")], "other");
        assert_eq!(ENDPOINTS[HttpStats::endpoint_of("/favicon.ico")], "other");
        let s = HttpStats::default();
        s.record(0, 200, Duration::from_micros(5));
        s.record(0, 431, Duration::from_micros(5));
        assert_eq!(s.requests(0, 0), 1);
        assert_eq!(s.requests(0, STATUSES.len() - 1), 1);
        assert_eq!(status_label(STATUSES.len() - 1), "other");
        assert_eq!(status_label(0), "200");
    }
}
