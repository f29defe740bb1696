//! Time, behind a trait so tests can fake it.
//!
//! A shard reads its clock once per loop iteration and passes the value down; nothing in the
//! table or the commands reads time on its own. Times are absolute wall-clock milliseconds since
//! the Unix epoch, so a deadline means the same thing after a restart.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}
