//! `LOCK id [PX ms | EX s] [WAIT ms] [FINGERPRINT fp] [WITHFENCE]`: take an id that is neither
//! locked nor completed.

use crate::command::{ApplyCtx, CommandLimits, errors, parse_id, parse_lease};
use crate::protocol::{Args, Reply};
use crate::shard::table::{Id, LockTable, State, Waiter, lock_reply};

/// Locks an id and returns a fresh key.
///
/// # Format
/// ```text
/// LOCK id [PX ms | EX s] [WAIT ms] [FINGERPRINT fp] [WITHFENCE]
/// ```
/// Replies with the key as a 32-character hex bulk string (`[key, fence]` with WITHFENCE), or
/// `-LOCKED` if the id is held, `-COMPLETED` if it was completed, `-MISMATCH` if it was locked
/// or completed with a different fingerprint. With WAIT, a held id is waited for (FIFO) up to
/// `ms`: granted when freed, `-COMPLETED` if completed meanwhile, `-LOCKED` on timeout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    /// The activity id.
    pub id: Id,
    /// Lease in ms: the id is freed when it runs out. `None`: `--default-lease`.
    pub lease_ms: Option<u64>,
    /// Wait up to this many ms for a held id.
    pub wait_ms: Option<u64>,
    /// Opaque bytes identifying the request payload.
    pub fingerprint: Option<Box<[u8]>>,
    /// Reply `[key, fence]`.
    pub with_fence: bool,
}

impl Lock {
    /// A plain `LOCK id`.
    pub fn new(id: Id) -> Self {
        Lock {
            id,
            ..Lock::default()
        }
    }

    /// Parses `LOCK id [options]`.
    pub fn parse(args: &Args<'_>, limits: &CommandLimits) -> Result<Self, Reply> {
        let mut lock = Lock::new(parse_id(args.get(1), limits)?);
        let mut i = 2;
        while let Some(opt) = args.get(i) {
            let value = args.get(i + 1);
            if opt.eq_ignore_ascii_case(b"PX") || opt.eq_ignore_ascii_case(b"EX") {
                let value = value.ok_or(errors::SYNTAX)?;
                if lock.lease_ms.is_some() {
                    return Err(errors::SYNTAX);
                }
                lock.lease_ms = Some(
                    parse_lease(opt, value)
                        .ok_or(Reply::error("ERR invalid expire time in 'lock' command"))?,
                );
                i += 2;
            } else if opt.eq_ignore_ascii_case(b"WAIT") {
                let value = value.ok_or(errors::SYNTAX)?;
                if lock.wait_ms.is_some() {
                    return Err(errors::SYNTAX);
                }
                let ms = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|&ms| ms <= 1 << 40)
                    .ok_or(Reply::error(
                        "ERR timeout is not an integer or out of range",
                    ))?;
                lock.wait_ms = Some(ms);
                i += 2;
            } else if opt.eq_ignore_ascii_case(b"FINGERPRINT") {
                let value = value.ok_or(errors::SYNTAX)?;
                if lock.fingerprint.is_some() {
                    return Err(errors::SYNTAX);
                }
                if value.len() > limits.max_id_len {
                    return Err(errors::FINGERPRINT_TOO_LONG);
                }
                lock.fingerprint = Some(value.into());
                i += 2;
            } else if opt.eq_ignore_ascii_case(b"WITHFENCE") && !lock.with_fence {
                lock.with_fence = true;
                i += 1;
            } else {
                return Err(errors::SYNTAX);
            }
        }
        Ok(lock)
    }

    /// Runs the command.
    pub fn apply(self, table: &mut LockTable, ctx: &mut ApplyCtx<'_>) -> Reply {
        let fingerprint = self.fingerprint.as_deref();
        let vacant = match table.lookup(&self.id, ctx) {
            Err(vacant) => vacant,
            Ok(entry) => {
                if let (Some(mine), Some(theirs)) = (fingerprint, entry.fingerprint())
                    && mine != theirs
                {
                    table.counters.mismatches += 1;
                    return errors::MISMATCH;
                }
                return match (entry.state(), self.wait_ms) {
                    (State::Completed, _) => errors::COMPLETED,
                    (State::Locked, Some(wait_ms)) if wait_ms > 0 => {
                        let waiter = Waiter::new(
                            ctx.origin,
                            self.lease_ms,
                            self.fingerprint,
                            self.with_fence,
                            ctx.now_ms.saturating_add(wait_ms),
                        );
                        let parked = table.park(&self.id, waiter);
                        if parked {
                            Reply::Parked
                        } else {
                            errors::QUEUE_FULL
                        }
                    }
                    (State::Locked, _) => errors::LOCKED,
                };
            }
        };
        let (key, fence) = table.grant(vacant, self.id, self.lease_ms, self.fingerprint, ctx);
        lock_reply(key, fence, self.with_fence)
    }
}
