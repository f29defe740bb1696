//! `COMPLETE id key`: the activity succeeded; the id stays completed for good.

use crate::command::{ApplyCtx, CommandLimits, errors, parse_id, parse_key_arg};
use crate::protocol::{Args, KeyBytes, Reply};
use crate::shard::table::{Id, LockTable, State};

/// Completes a lock held under `key`. A retry with the same key gets the same `+OK`.
///
/// # Format
/// ```text
/// COMPLETE id key
/// ```
/// Replies `+OK`, or `-NOTLOCKED` (free id), `-BADKEY` (locked under another key),
/// `-COMPLETED` (completed under another key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Complete {
    /// The activity id.
    pub id: Id,
    /// The key given by LOCK; `None` if it was malformed (it matches nothing).
    pub key: Option<KeyBytes>,
}

impl Complete {
    /// Parses `COMPLETE id key`.
    pub fn parse(args: &Args<'_>, limits: &CommandLimits) -> Result<Self, Reply> {
        Ok(Complete {
            id: parse_id(args.get(1), limits)?,
            key: parse_key_arg(args.get(2)),
        })
    }

    /// Runs the command.
    pub fn apply(self, table: &mut LockTable, _ctx: &mut ApplyCtx<'_>) -> Reply {
        let Some(entry) = table.get(&self.id) else {
            return errors::NOT_LOCKED;
        };
        let same_key = self.key.is_some_and(|k| entry.key_matches(&k));
        match (entry.state, same_key) {
            (State::Locked, true) => {
                table.mark_completed(&self.id);
                Reply::Ok
            }
            (State::Locked, false) => errors::BAD_KEY,
            (State::Completed, true) => Reply::Ok,
            (State::Completed, false) => errors::COMPLETED,
        }
    }
}
