//! The typed operations on a table, and what each one means: [`LockTable::apply`] takes an
//! [`Op`] and the time and returns an [`Outcome`], with the records to log and the answers
//! owed to waiters left in the [`ApplyCtx`].

use crate::table::{ApplyCtx, Entry, Grant, LockTable, State, View, Waiter};
use crate::types::{CommandKind, Error, Id, KeyBytes};

/// `LOCK id [PX ms | EX s] [WAIT ms] [FINGERPRINT fp] [WITHFENCE]`: take an id that is
/// neither locked nor completed.
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
    /// The holder's key, chosen by the client (`KEY k`) instead of drawn by the server; a
    /// LOCK repeated with it while the id is held under it is answered as the first was.
    pub key: Option<KeyBytes>,
    /// Answer `[key, fence]`.
    pub with_fence: bool,
    /// TRYLOCK: a held or completed id is answered with where it stands
    /// ([`Outcome::Taken`]) instead of being refused.
    pub trying: bool,
}

impl Lock {
    /// A plain `LOCK id`.
    pub fn new(id: Id) -> Self {
        Lock {
            id,
            ..Lock::default()
        }
    }
}

/// `UNLOCK id key`: the activity failed; free the id so it can be locked again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlock {
    /// The activity id.
    pub id: Id,
    /// The key given by LOCK; `None` if it was malformed (it matches nothing).
    pub key: Option<KeyBytes>,
}

/// `COMPLETE id key [RESULT value]`: the activity succeeded; the id stays completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Complete {
    /// The activity id.
    pub id: Id,
    /// The key given by LOCK; `None` if it was malformed (it matches nothing).
    pub key: Option<KeyBytes>,
    /// The result to store.
    pub result: Option<Box<[u8]>>,
}

/// `RENEW id key PX ms | EX s`: extend the lease of a lock one holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renew {
    /// The activity id.
    pub id: Id,
    /// The key given by LOCK; `None` if it was malformed (it matches nothing).
    pub key: Option<KeyBytes>,
    /// The new lease, from now, in ms.
    pub lease_ms: u64,
}

/// `STATUS id`: where an id stands, without its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The activity id.
    pub id: Id,
}

/// One operation on the table, owned so it can travel to the shard that owns its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Take a free id.
    Lock(Lock),
    /// Free a held id.
    Unlock(Unlock),
    /// Complete a held id for good.
    Complete(Complete),
    /// Move the lease of a held id.
    Renew(Renew),
    /// Read where an id stands.
    Status(Status),
}

impl Op {
    /// The id this operation is about: it decides which shard runs it.
    pub fn id(&self) -> &[u8] {
        match self {
            Op::Lock(c) => &c.id,
            Op::Unlock(c) => &c.id,
            Op::Complete(c) => &c.id,
            Op::Renew(c) => &c.id,
            Op::Status(c) => &c.id,
        }
    }

    /// Which command of the spec table this operation is.
    pub fn kind(&self) -> CommandKind {
        match self {
            Op::Lock(lock) if lock.trying => CommandKind::Trylock,
            Op::Lock(_) => CommandKind::Lock,
            Op::Unlock(_) => CommandKind::Unlock,
            Op::Complete(_) => CommandKind::Complete,
            Op::Renew(_) => CommandKind::Renew,
            Op::Status(_) => CommandKind::Status,
        }
    }

    /// Whether the operation can change the table (and so may need the log).
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Status(_))
    }
}

/// Where an id stands, as STATUS reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Neither locked nor completed.
    Free,
    /// Held.
    Locked {
        /// The lease left, in ms; `None` for a lock without a lease.
        ttl_ms: Option<u64>,
        /// The fence of the grant.
        fence: u64,
    },
    /// Completed for good.
    Completed {
        /// The fence of the grant that completed it.
        fence: u64,
        /// The stored result, if any.
        result: Option<Box<[u8]>>,
    },
}

/// What an operation came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The id is now held under `key`, with fencing token `fence`.
    Granted {
        /// The holder's key.
        key: KeyBytes,
        /// The fence of this grant.
        fence: u64,
        /// The caller asked for the fence in the answer.
        with_fence: bool,
    },
    /// UNLOCK, COMPLETE (or its retry with the same key) or RENEW did what it asked.
    Done,
    /// Where the id stands, and how many callers wait for it.
    Status {
        /// The id's state.
        standing: Standing,
        /// Queued `LOCK ... WAIT` callers.
        waiters: usize,
    },
    /// `LOCK ... WAIT` is queued: its answer comes later, as a [`crate::table::Delivery`].
    Parked,
    /// TRYLOCK of an id that is held or completed: where it stands (never [`Standing::Free`]).
    Taken {
        /// The id's state: its lease left, or its stored result.
        standing: Standing,
    },
    /// Refused, with the reason.
    Refused {
        /// Why.
        error: Error,
        /// For a held id, the holder's lease left in ms (`None` without a lease): when a retry
        /// may succeed.
        lease_left_ms: Option<u64>,
    },
}

impl Standing {
    /// The error LOCK answers for an id standing so: what a TRYLOCK's [`Outcome::Taken`]
    /// counts as, and reads as where it has no reply of its own (HTTP).
    pub fn refusal(&self) -> Error {
        match self {
            Standing::Completed { .. } => Error::Completed,
            Standing::Locked { .. } | Standing::Free => Error::Locked,
        }
    }
}

impl Outcome {
    /// A refusal that says nothing of a lease.
    pub fn refused(error: Error) -> Outcome {
        Outcome::Refused {
            error,
            lease_left_ms: None,
        }
    }

    /// The error, if refused.
    pub fn error(&self) -> Option<Error> {
        match self {
            Outcome::Refused { error, .. } => Some(*error),
            _ => None,
        }
    }
}

impl From<Error> for Outcome {
    fn from(error: Error) -> Outcome {
        Outcome::refused(error)
    }
}

/// Checks that `entry` is locked under `key`: what UNLOCK and RENEW refuse otherwise.
fn check_holder(entry: Option<&Entry>, key: Option<KeyBytes>) -> Result<(), Error> {
    let Some(entry) = entry else {
        return Err(Error::NotLocked);
    };
    match entry.state() {
        State::Completed => Err(Error::Completed),
        State::Locked if key.is_some_and(|k| entry.key_matches(&k)) => Ok(()),
        State::Locked => Err(Error::BadKey),
    }
}

/// Where a live entry stands at `now`.
fn standing_of(entry: &View<'_>, now_ms: u64) -> Standing {
    match entry.state() {
        State::Locked => Standing::Locked {
            ttl_ms: lease_left(entry, now_ms),
            fence: entry.fence(),
        },
        State::Completed => Standing::Completed {
            fence: entry.fence(),
            result: entry.result().map(Box::from),
        },
    }
}

/// The lease left on a locked entry at `now`, in ms; `None` for no lease.
fn lease_left(entry: &Entry, now_ms: u64) -> Option<u64> {
    (entry.at_ms() != 0).then(|| entry.at_ms().saturating_sub(now_ms))
}

impl LockTable {
    /// Runs one operation on the table at `ctx.now_ms`.
    pub fn apply(&mut self, op: Op, ctx: &mut ApplyCtx<'_>) -> Outcome {
        match op {
            Op::Lock(c) => self.apply_lock(c, ctx),
            Op::Unlock(c) => self.apply_unlock(c, ctx),
            Op::Complete(c) => self.apply_complete(c, ctx),
            Op::Renew(c) => self.apply_renew(c, ctx),
            Op::Status(c) => self.apply_status(c, ctx),
        }
    }

    fn apply_lock(&mut self, lock: Lock, ctx: &mut ApplyCtx<'_>) -> Outcome {
        let fingerprint = lock.fingerprint.as_deref();
        let now = ctx.now_ms;
        let vacant = match self.lookup(&lock.id, ctx) {
            Err(vacant) => vacant,
            Ok(entry) => {
                if let (Some(mine), Some(theirs)) = (fingerprint, entry.fingerprint())
                    && mine != theirs
                {
                    self.counters.mismatches += 1;
                    return Error::Mismatch.into();
                }
                let lease_left_ms = lease_left(&entry, now);
                if entry.state() == State::Locked
                    && let Some(key) = lock.key.filter(|k| entry.key_matches(k))
                {
                    // The same LOCK again (its reply was lost): the same grant, unchanged.
                    return Outcome::Granted {
                        key,
                        fence: entry.fence(),
                        with_fence: lock.with_fence,
                    };
                }
                if lock.trying {
                    return Outcome::Taken {
                        standing: standing_of(&entry, now),
                    };
                }
                return match (entry.state(), lock.wait_ms) {
                    (State::Completed, _) => Error::Completed.into(),
                    (State::Locked, Some(wait_ms)) if wait_ms > 0 => {
                        let mut waiter = Waiter::new(
                            ctx.origin,
                            lock.lease_ms,
                            lock.fingerprint,
                            lock.with_fence,
                            now.saturating_add(wait_ms),
                        );
                        waiter.key = lock.key;
                        if self.park(&lock.id, waiter) {
                            Outcome::Parked
                        } else {
                            Outcome::Refused {
                                error: Error::QueueFull,
                                lease_left_ms,
                            }
                        }
                    }
                    (State::Locked, _) => Outcome::Refused {
                        error: Error::Locked,
                        lease_left_ms,
                    },
                };
            }
        };
        let grant = Grant {
            lease_ms: lock.lease_ms,
            fingerprint: lock.fingerprint,
            key: lock.key,
        };
        let (key, fence) = self.grant(vacant, lock.id, grant, ctx);
        Outcome::Granted {
            key,
            fence,
            with_fence: lock.with_fence,
        }
    }

    fn apply_unlock(&mut self, unlock: Unlock, ctx: &mut ApplyCtx<'_>) -> Outcome {
        let entry = self.live(&unlock.id, ctx);
        if let Err(error) = check_holder(entry.as_deref(), unlock.key) {
            return error.into();
        }
        if let Some(at) = entry.map(|e| e.at()) {
            self.release(&unlock.id, at, ctx);
        }
        Outcome::Done
    }

    fn apply_complete(&mut self, complete: Complete, ctx: &mut ApplyCtx<'_>) -> Outcome {
        let Some(entry) = self.live(&complete.id, ctx) else {
            return Error::NotLocked.into();
        };
        let same_key = complete.key.is_some_and(|k| entry.key_matches(&k));
        match (entry.state(), same_key) {
            (State::Locked, true) => {
                let at = entry.at();
                self.complete(&complete.id, at, complete.result, ctx);
                Outcome::Done
            }
            (State::Locked, false) => Error::BadKey.into(),
            (State::Completed, true) => Outcome::Done,
            (State::Completed, false) => Error::Completed.into(),
        }
    }

    fn apply_renew(&mut self, renew: Renew, ctx: &mut ApplyCtx<'_>) -> Outcome {
        let entry = self.live(&renew.id, ctx);
        if let Err(error) = check_holder(entry.as_deref(), renew.key) {
            return error.into();
        }
        if let Some(at) = entry.map(|e| e.at()) {
            self.renew(&renew.id, at, renew.lease_ms, ctx);
        }
        Outcome::Done
    }

    fn apply_status(&mut self, status: Status, ctx: &mut ApplyCtx<'_>) -> Outcome {
        let now = ctx.now_ms;
        let standing = self
            .live(&status.id, ctx)
            .map_or(Standing::Free, |e| standing_of(&e, now));
        Outcome::Status {
            standing,
            waiters: self.waiters(&status.id),
        }
    }
}
