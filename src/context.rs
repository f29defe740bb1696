//! What every thread may read about the running server: its configuration and counters.
//!
//! Counters are atomics written by exactly one thread each (a shard publishes its own figures
//! once per loop iteration, or bumps its own per-command cells as it runs commands), so `INFO`,
//! `DBSIZE` and `/metrics` read them from any thread without touching table data or taking a
//! lock. The one lock here guards a shard's slow-log ring, which only slow commands and
//! `SLOWLOG` touch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::metrics::commands::CommandStats;
use crate::metrics::histogram::Histogram;
use crate::metrics::http::HttpStats;
use crate::metrics::slowlog::SlowLog;
use crate::types::CommandLimits;

/// Figures one shard publishes for the others.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Locked ids in this shard's table.
    pub locked: AtomicU64,
    /// Completed ids in this shard's table.
    pub completed: AtomicU64,
    /// Commands run on connections owned by this shard.
    pub commands_processed: AtomicU64,
    /// Lock commands this shard sent to other shards.
    pub forwarded: AtomicU64,
    /// Queued LOCK ... WAIT requests.
    pub waiters: AtomicU64,
    /// Leases that ran out.
    pub expired: AtomicU64,
    /// Completed ids removed by retention.
    pub reaped: AtomicU64,
    /// LOCKs refused for a different fingerprint.
    pub mismatches: AtomicU64,
    /// Bytes in this shard's log file.
    pub log_bytes: AtomicU64,
    /// Bytes this shard's lock table has allocated ([`crate::table::LockTable::memory`]).
    pub table_memory: AtomicU64,
    /// Completed log rewrites.
    pub log_rewrites: AtomicU64,
    /// Failed log writes or syncs.
    pub log_errors: AtomicU64,
    /// 1 while the log cannot be written (writes get -IOERR).
    pub log_failed: AtomicU64,
    /// Calls by command and outcome, and execution times, of the commands this shard ran.
    pub commands: CommandStats,
    /// Time of each sync of this shard's log.
    pub fsync: Histogram,
    /// Messages this shard sent to other shards.
    pub messages_sent: AtomicU64,
    /// Messages this shard received from other shards.
    pub messages_received: AtomicU64,
    /// Requests chaos mode refused before running them.
    pub chaos_refused: AtomicU64,
    /// Requests chaos mode ran and then dropped the connection of, without the reply.
    pub chaos_dropped: AtomicU64,
    /// The slow commands this shard ran.
    pub slowlog: SlowLog,
    /// Where this shard stands in a shutdown ([`crate::lifecycle::DrainState`]).
    pub drain: AtomicU8,
}

/// Totals over all shards, as `INFO` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Locked ids.
    pub locked: u64,
    /// Completed ids.
    pub completed: u64,
    /// Commands processed.
    pub commands_processed: u64,
    /// Lock commands forwarded between shards.
    pub forwarded: u64,
    /// Queued waiters.
    pub waiters: u64,
    /// Leases that ran out.
    pub expired: u64,
    /// Completed ids reaped by retention.
    pub reaped: u64,
    /// Fingerprint mismatches.
    pub mismatches: u64,
    /// Bytes in all logs.
    pub log_bytes: u64,
    /// Completed log rewrites.
    pub log_rewrites: u64,
    /// Failed log writes or syncs.
    pub log_errors: u64,
    /// Shards whose log cannot be written now.
    pub log_failed: u64,
}

/// The RESP connections: how many are open, how many came and were refused, failed
/// authentications (both protocols), and the client ids handed out.
#[derive(Debug)]
pub struct ClientFigures {
    /// Connected RESP clients right now (counted from the accept, handshakes included).
    pub connected: AtomicUsize,
    /// RESP connections accepted since start.
    pub received: AtomicU64,
    /// RESP connections refused because of `--maxclients`.
    pub rejected: AtomicU64,
    /// Failed authentications (AUTH, HELLO ... AUTH, and HTTP credentials), both protocols.
    pub auth_failures: AtomicU64,
    /// Failed authentications are logged at most once a second.
    auth_log: crate::sparse::Sparse,
    next_id: AtomicU64,
}

impl Default for ClientFigures {
    fn default() -> Self {
        ClientFigures {
            connected: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            auth_log: crate::sparse::Sparse::default(),
            next_id: AtomicU64::new(1),
        }
    }
}

impl ClientFigures {
    /// Counts a failed authentication from `peer` (a RESP peer address, or `http`) and logs
    /// it, at most once a second, with the number of failures since the last line.
    pub fn auth_failed(&self, peer: &dyn std::fmt::Display) {
        let total = self.auth_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(held_back) = self.auth_log.ready() {
            tracing::warn!(
                %peer,
                failures = held_back + 1,
                total,
                "failed authentication attempts (logged at most once a second)"
            );
        }
    }

    /// Counts a new connection in, unless `limit` are in already: then it is counted as
    /// refused instead. Whether it was let in.
    pub fn admit(&self, limit: usize) -> bool {
        if self.connected.fetch_add(1, Ordering::Relaxed) < limit {
            return true;
        }
        self.connected.fetch_sub(1, Ordering::Relaxed);
        self.rejected.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// A connection counted in by [`ClientFigures::admit`] is gone: closed, failed, or never
    /// served.
    pub fn left(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    /// A fresh client id, unique for the life of the process (CLIENT ID).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Fencing tokens: the last one handed out on any shard, and the reservation on disk that no
/// acknowledged fence may pass.
#[derive(Debug, Default)]
pub struct Fences {
    /// The last fencing token handed out, on any shard.
    pub issued: AtomicU64,
    /// Fences reserved on disk apart from the logs (set at start; absent in unit tests).
    pub reservation: std::sync::OnceLock<crate::log::FenceReservation>,
}

/// What the server counts, read by INFO and /metrics on any thread.
#[derive(Debug)]
pub struct Figures {
    /// One entry per shard, each written by its shard.
    pub shards: Vec<ShardStats>,
    /// The RESP connections' figures (shared with the acceptors on their own).
    pub clients: Arc<ClientFigures>,
    /// The HTTP adapter's figures.
    pub http: HttpStats,
    /// The id of the next slow-log entry, on any shard.
    pub slowlog_ids: AtomicU64,
}

/// Read-mostly state shared by all threads, grouped by concern: the settings (configuration,
/// parse limits, bound addresses), the figures, the fences and the shutdown switch.
#[derive(Debug)]
pub struct ServerContext {
    /// The effective configuration.
    pub config: Config,
    /// Limits applied while parsing lock commands.
    pub limits: CommandLimits,
    /// The bound RESP address (the real port when `--port 0`).
    pub resp_addr: SocketAddr,
    /// The bound HTTP address (the real port when `--http-port 0`); the configured one until
    /// the server has bound it.
    pub http_addr: SocketAddr,
    /// What the server counts: per shard, per client, over HTTP.
    pub figures: Figures,
    /// When the server started.
    pub started: Instant,
    /// Fencing tokens handed out and reserved.
    pub fences: Fences,
    /// The shutdown switch (shared with the acceptors on its own).
    pub lifecycle: Arc<Lifecycle>,
}

impl ServerContext {
    /// A context for `shards` shards.
    pub fn new(config: Config, resp_addr: SocketAddr, shards: usize) -> Self {
        let config_timeout = config.shutdown_timeout;
        ServerContext {
            limits: CommandLimits {
                max_id_len: config.max_id_len as usize,
                max_result_size: config.max_result_size as usize,
            },
            http_addr: SocketAddr::new(config.bind, config.http_port),
            config,
            resp_addr,
            started: Instant::now(),
            figures: Figures {
                shards: (0..shards).map(|_| ShardStats::default()).collect(),
                clients: Arc::new(ClientFigures::default()),
                http: HttpStats::default(),
                slowlog_ids: AtomicU64::new(0),
            },
            fences: Fences::default(),
            lifecycle: Arc::new(Lifecycle::new(Duration::from_secs(u64::from(
                config_timeout,
            )))),
        }
    }

    /// Whether the server is ready for traffic (`/ready`): recovery is done (it finishes
    /// before the server listens), no shard's log has failed, and no shutdown is under way.
    pub fn is_ready(&self) -> bool {
        !self.lifecycle.is_stopping()
            && self
                .figures
                .shards
                .iter()
                .all(|s| s.log_failed.load(Ordering::Relaxed) == 0)
    }

    /// Sums the shards' published figures.
    pub fn totals(&self) -> Totals {
        self.figures
            .shards
            .iter()
            .fold(Totals::default(), |t, s| Totals {
                locked: t.locked + s.locked.load(Ordering::Relaxed),
                completed: t.completed + s.completed.load(Ordering::Relaxed),
                commands_processed: t.commands_processed
                    + s.commands_processed.load(Ordering::Relaxed),
                forwarded: t.forwarded + s.forwarded.load(Ordering::Relaxed),
                waiters: t.waiters + s.waiters.load(Ordering::Relaxed),
                expired: t.expired + s.expired.load(Ordering::Relaxed),
                reaped: t.reaped + s.reaped.load(Ordering::Relaxed),
                mismatches: t.mismatches + s.mismatches.load(Ordering::Relaxed),
                log_bytes: t.log_bytes + s.log_bytes.load(Ordering::Relaxed),
                log_rewrites: t.log_rewrites + s.log_rewrites.load(Ordering::Relaxed),
                log_errors: t.log_errors + s.log_errors.load(Ordering::Relaxed),
                log_failed: t.log_failed + s.log_failed.load(Ordering::Relaxed),
            })
    }
}
