//! Logging a repeated event at a bounded rate: at most one line a second, saying how many
//! occurrences it stands for. Shared by threads (lock-free), so the acceptor's errors and the
//! authentication failures of every shard and the HTTP workers use one kind of limiter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Lets one log line through per second, counting the occurrences held back in between.
#[derive(Debug)]
pub struct Sparse {
    origin: Instant,
    /// When a line last went through, in ms since `origin` plus one (0: never).
    last_ms: AtomicU64,
    /// Occurrences held back since then.
    held_back: AtomicU64,
}

impl Default for Sparse {
    fn default() -> Self {
        Sparse {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }
}

impl Sparse {
    /// Records one occurrence: `Some(occurrences held back since the last line)` if a line
    /// may be logged now, `None` if it must be held back.
    pub fn ready(&self) -> Option<u64> {
        let now = u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= 1000;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_second_with_the_count_held_back() {
        let s = Sparse::default();
        assert_eq!(s.ready(), Some(0));
        assert_eq!(s.ready(), None);
        assert_eq!(s.ready(), None);
        let s = Sparse {
            origin: Instant::now() - std::time::Duration::from_secs(2),
            last_ms: AtomicU64::new(1),
            held_back: AtomicU64::new(2),
        };
        assert_eq!(s.ready(), Some(2));
        assert_eq!(s.ready(), None);
    }
}
