//! `COMPLETE id key [RESULT value]`: the activity succeeded; the id stays completed.

use crate::command::{ApplyCtx, CommandLimits, errors, parse_id, parse_key_arg};
use crate::protocol::{Args, KeyBytes, Reply};
use crate::shard::table::{Id, LockTable, State};

/// Completes a lock held under `key`, optionally storing a result (STATUS returns it). A retry
/// with the same key gets the same `+OK` and keeps the first result. Waiters are told
/// `-COMPLETED`.
///
/// # Format
/// ```text
/// COMPLETE id key [RESULT value]
/// ```
/// Replies `+OK`, or `-NOTLOCKED` (free id, or the lease ran out), `-BADKEY` (locked under
/// another key), `-COMPLETED` (completed under another key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Complete {
    /// The activity id.
    pub id: Id,
    /// The key given by LOCK; `None` if it was malformed (it matches nothing).
    pub key: Option<KeyBytes>,
    /// The result to store.
    pub result: Option<Box<[u8]>>,
}

impl Complete {
    /// Parses `COMPLETE id key [RESULT value]`.
    pub fn parse(args: &Args<'_>, limits: &CommandLimits) -> Result<Self, Reply> {
        let id = parse_id(args.get(1), limits)?;
        let result = match (args.len(), args.get(3), args.get(4)) {
            (3, _, _) => None,
            (5, Some(opt), Some(value)) if opt.eq_ignore_ascii_case(b"RESULT") => {
                if value.len() > limits.max_result_size {
                    return Err(errors::RESULT_TOO_LARGE);
                }
                Some(value.into())
            }
            _ => return Err(errors::SYNTAX),
        };
        Ok(Complete {
            id,
            key: parse_key_arg(args.get(2)),
            result,
        })
    }

    /// Runs the command.
    pub fn apply(self, table: &mut LockTable, ctx: &mut ApplyCtx<'_>) -> Reply {
        let Some(entry) = table.live(&self.id, ctx) else {
            return errors::NOT_LOCKED;
        };
        let same_key = self.key.is_some_and(|k| entry.key_matches(&k));
        match (entry.state(), same_key) {
            (State::Locked, true) => {
                let at = entry.at();
                table.complete(&self.id, at, self.result, ctx);
                Reply::Ok
            }
            (State::Locked, false) => errors::BAD_KEY,
            (State::Completed, true) => Reply::Ok,
            (State::Completed, false) => errors::COMPLETED,
        }
    }
}
