//! `LOCK id`: take an id that is neither locked nor completed.

use crate::command::{ApplyCtx, CommandLimits, errors, parse_id};
use crate::protocol::{Args, Reply};
use crate::shard::table::{Id, LockTable, State};

/// Locks an id and returns a fresh key.
///
/// # Format
/// ```text
/// LOCK id
/// ```
/// Replies with the key as a 32-character hex bulk string, or `-LOCKED` if the id is held, or
/// `-COMPLETED` if it was completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// The activity id.
    pub id: Id,
}

impl Lock {
    /// Parses `LOCK id`.
    pub fn parse(args: &Args<'_>, limits: &CommandLimits) -> Result<Self, Reply> {
        Ok(Lock {
            id: parse_id(args.get(1), limits)?,
        })
    }

    /// Runs the command.
    pub fn apply(self, table: &mut LockTable, ctx: &mut ApplyCtx<'_>) -> Reply {
        match table.get(&self.id).map(|e| e.state) {
            Some(State::Locked) => errors::LOCKED,
            Some(State::Completed) => errors::COMPLETED,
            None => {
                let key = ctx.keys.next_key();
                table.insert_locked(self.id, key);
                Reply::Key(key)
            }
        }
    }
}
