//! `COMPLETE id key [RESULT value]`: the activity succeeded; the id stays completed.

use crate::command::{CommandLimits, parse_id, parse_key_arg};
use crate::protocol::Args;
use crate::table::Complete;
use crate::types::Error;

/// Parses `COMPLETE id key [RESULT value]`, the id at `id_pos`. A lock held under `key` is
/// completed, optionally storing a result (STATUS returns it). A retry with the same key gets
/// the same `+OK` and keeps the first result. Waiters are told `-COMPLETED`.
///
/// # Format
/// ```text
/// COMPLETE id key [RESULT value]
/// ```
/// Replies `+OK`, or `-NOTLOCKED` (free id, or the lease ran out), `-BADKEY` (locked under
/// another key), `-COMPLETED` (completed under another key).
pub fn parse(args: &Args<'_>, id_pos: usize, limits: &CommandLimits) -> Result<Complete, Error> {
    let id = parse_id(args.get(id_pos), limits)?;
    let rest = args.len().saturating_sub(id_pos + 2);
    let result = match (rest, args.get(id_pos + 2), args.get(id_pos + 3)) {
        (0, _, _) => None,
        (2, Some(opt), Some(value)) if opt.eq_ignore_ascii_case(b"RESULT") => {
            if value.len() > limits.max_result_size {
                return Err(Error::ResultTooLarge);
            }
            Some(value.into())
        }
        _ => return Err(Error::Syntax),
    };
    Ok(Complete {
        id,
        key: parse_key_arg(args.get(id_pos + 1)),
        result,
    })
}
