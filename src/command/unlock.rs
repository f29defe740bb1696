//! `UNLOCK id key`: the activity failed; free the id so it can be locked again.

use crate::command::{ApplyCtx, CommandLimits, errors, parse_id, parse_key_arg};
use crate::protocol::{Args, KeyBytes, Reply};
use crate::shard::table::{Id, LockTable, State};

/// Releases a lock held under `key`; the key is void afterwards.
///
/// # Format
/// ```text
/// UNLOCK id key
/// ```
/// Replies `+OK`, or `-NOTLOCKED` (free id), `-BADKEY` (locked under another key),
/// `-COMPLETED` (completed id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlock {
    /// The activity id.
    pub id: Id,
    /// The key given by LOCK; `None` if it was malformed (it matches nothing).
    pub key: Option<KeyBytes>,
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
    pub fn apply(self, table: &mut LockTable, _ctx: &mut ApplyCtx<'_>) -> Reply {
        let Some(entry) = table.get(&self.id) else {
            return errors::NOT_LOCKED;
        };
        match entry.state {
            State::Completed => errors::COMPLETED,
            State::Locked if self.key.is_some_and(|k| entry.key_matches(&k)) => {
                table.remove_locked(&self.id);
                Reply::Ok
            }
            State::Locked => errors::BAD_KEY,
        }
    }
}
