//! Stopping the server: one request (SIGTERM, SIGINT, `SHUTDOWN`, a test's handle) that every
//! thread hears.
//!
//! [`Lifecycle::request_shutdown`] flips one flag, tells every shard (through its inbox: the
//! server attaches how) and wakes the HTTP accept loop. Then, bounded by `--shutdown-timeout`:
//! - the RESP acceptor stops accepting (its listening socket is shut down) and the HTTP
//!   server stops accepting, lets each connection finish the request it is serving and closes
//!   it; a request that arrives meanwhile gets `503 shutting down`;
//! - each shard stops reading requests but keeps running its loop until every request it has
//!   read is answered (including those it sent to other shards) and every other shard has
//!   got that far too, so that no shard leaves while another still waits on it. Only replies
//!   to `LOCK ... WAIT` that is still queued are not waited for: those connections just close.
//!   Every iteration syncs the log, so everything answered is on disk;
//! - `main` waits for the shards, then for the HTTP connections, then exits 0.
//!
//! Invariant: a shard publishes its [`DrainState`] only from its own thread, and leaves only
//! when every shard is [`DrainState::Idle`] or the deadline has passed.

use std::net::TcpListener;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

/// Where a shard stands in a shutdown, as it publishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DrainState {
    /// Serving as usual; it has not seen the shutdown yet.
    Running = 0,
    /// Stopped reading requests; some it read are still unanswered.
    Busy = 1,
    /// Stopped reading requests; everything it read is answered.
    Idle = 2,
}

impl DrainState {
    /// Publishes `self` into `cell`.
    pub fn publish(self, cell: &AtomicU8) {
        cell.store(self as u8, Ordering::Relaxed);
    }

    /// Reads a published state.
    pub fn load(cell: &AtomicU8) -> DrainState {
        match cell.load(Ordering::Relaxed) {
            0 => DrainState::Running,
            1 => DrainState::Busy,
            _ => DrainState::Idle,
        }
    }
}

/// How the switch tells the shards: given by whoever built them, so this module needs to know
/// nothing of how shards are reached.
struct TellShards(Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for TellShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TellShards")
    }
}

/// The shutdown switch shared by every thread.
#[derive(Debug)]
pub struct Lifecycle {
    stopping: AtomicBool,
    /// When the shutdown was asked for.
    started: OnceLock<Instant>,
    /// How long the shutdown may take before the shards stop without waiting further.
    timeout: Duration,
    /// Tells every shard; set once the shards exist.
    tell_shards: OnceLock<TellShards>,
    /// Clones of the RESP listeners, shut down to stop their acceptors.
    resp_listeners: OnceLock<Vec<TcpListener>>,
    /// Tells the HTTP server (true once stopping).
    http: watch::Sender<bool>,
}

impl Lifecycle {
    /// A running server's switch, with `timeout` for a shutdown.
    pub fn new(timeout: Duration) -> Self {
        Lifecycle {
            stopping: AtomicBool::new(false),
            started: OnceLock::new(),
            timeout,
            tell_shards: OnceLock::new(),
            resp_listeners: OnceLock::new(),
            http: watch::Sender::new(false),
        }
    }

    /// Connects the switch to the shards (`tell_shards` tells every one of them the server is
    /// stopping) and to clones of the RESP listeners (once, at start-up).
    pub fn attach(
        &self,
        tell_shards: impl Fn() + Send + Sync + 'static,
        resp_listeners: Vec<TcpListener>,
    ) {
        let _ = self.tell_shards.set(TellShards(Box::new(tell_shards)));
        let _ = self.resp_listeners.set(resp_listeners);
    }

    /// Whether a shutdown was asked for.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// When the shards stop waiting for each other; `None` before a shutdown.
    pub fn deadline(&self) -> Option<Instant> {
        self.started.get().map(|s| *s + self.timeout)
    }

    /// A receiver that sees `true` once the server is stopping (for the HTTP server).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.http.subscribe()
    }

    /// Starts stopping the server, for `reason` (logged). Returns false if it was already
    /// stopping (nothing more is done).
    pub fn request_shutdown(&self, reason: &str) -> bool {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return false;
        }
        let _ = self.started.set(Instant::now());
        info!(
            reason,
            timeout_s = self.timeout.as_secs(),
            "shutting down: no new connections; finishing in-flight commands"
        );
        for listener in self.resp_listeners.get().into_iter().flatten() {
            // Wakes the acceptor's blocking accept with an error, and refuses new connections.
            if let Err(e) = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Both) {
                warn!(error = %e, "cannot shut a RESP listener; new connections will be closed");
            }
        }
        self.http.send_replace(true);
        if let Some(TellShards(tell)) = self.tell_shards.get() {
            tell();
        }
        true
    }

    /// Time since the shutdown began.
    pub fn elapsed(&self) -> Option<Duration> {
        self.started.get().map(Instant::elapsed)
    }
}

/// Whether every shard has answered everything it read.
pub fn all_idle<'a>(states: impl IntoIterator<Item = &'a AtomicU8>) -> bool {
    states
        .into_iter()
        .all(|s| DrainState::load(s) == DrainState::Idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_is_asked_once() {
        let l = Lifecycle::new(Duration::from_secs(3));
        assert!(!l.is_stopping());
        assert!(l.deadline().is_none());
        let mut rx = l.subscribe();
        assert!(l.request_shutdown("test"));
        assert!(!l.request_shutdown("again"));
        assert!(l.is_stopping());
        assert!(l.deadline().is_some());
        assert!(*rx.borrow_and_update());
    }

    #[test]
    fn drain_states_round_trip() {
        let cells = [AtomicU8::new(0), AtomicU8::new(0)];
        assert!(!all_idle(&cells));
        DrainState::Idle.publish(&cells[0]);
        DrainState::Busy.publish(&cells[1]);
        assert_eq!(DrainState::load(&cells[1]), DrainState::Busy);
        assert!(!all_idle(&cells));
        DrainState::Idle.publish(&cells[1]);
        assert!(all_idle(&cells));
    }
}
