//! `UNLOCK id key`: the activity failed; free the id so it can be locked again.

use crate::command::{ApplyCtx, CommandLimits, errors, parse_id, parse_key_arg};
use crate::protocol::{Args, KeyBytes, Reply};
use crate::shard::table::{Entry, Id, LockTable, State};

/// Releases a lock held under `key`; the key is void afterwards. The first waiter, if any,
/// gets the id at once.
///
/// # Format
/// ```text
/// UNLOCK id key
/// ```
/// Replies `+OK`, or `-NOTLOCKED` (free id, or the lease ran out), `-BADKEY` (locked under
/// another key), `-COMPLETED` (completed id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlock {
    /// The activity id.
    pub id: Id,
    /// The key given by LOCK; `None` if it was malformed (it matches nothing).
    pub key: Option<KeyBytes>,
}

/// Checks that `entry` is locked under `key`: `Ok` or the error reply UNLOCK and RENEW give.
pub fn check_holder(entry: Option<&Entry>, key: Option<KeyBytes>) -> Result<(), Reply> {
    let Some(entry) = entry else {
        return Err(errors::NOT_LOCKED);
    };
    match entry.state() {
        State::Completed => Err(errors::COMPLETED),
        State::Locked if key.is_some_and(|k| entry.key_matches(&k)) => Ok(()),
        State::Locked => Err(errors::BAD_KEY),
    }
}

impl Unlock {
    /// Parses `UNLOCK id key`.
    pub fn parse(args: &Args<'_>, limits: &CommandLimits) -> Result<Self, Reply> {
        Ok(Unlock {
            id: parse_id(args.get(1), limits)?,
            key: parse_key_arg(args.get(2)),
        })
    }

    /// Runs the command.
    pub fn apply(self, table: &mut LockTable, ctx: &mut ApplyCtx<'_>) -> Reply {
        let entry = table.live(&self.id, ctx);
        if let Err(reply) = check_holder(entry.as_deref(), self.key) {
            return reply;
        }
        if let Some(at) = entry.map(|e| e.at()) {
            table.release(&self.id, at, ctx);
        }
        Reply::Ok
    }
}
