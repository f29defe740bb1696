//! `UNLOCK id key`: the activity failed; free the id so it can be locked again.

use crate::command::{CommandLimits, parse_id, parse_key_arg};
use crate::protocol::Args;
use crate::table::Unlock;
use crate::types::Error;

/// Parses `UNLOCK id key`, the id at `id_pos` and the key after it. The lock is released and
/// its key is void afterwards; the first waiter, if any, gets the id at once.
///
/// # Format
/// ```text
/// UNLOCK id key
/// ```
/// Replies `+OK`, or `-NOTLOCKED` (free id, or the lease ran out), `-BADKEY` (locked under
/// another key), `-COMPLETED` (completed id).
pub fn parse(args: &Args<'_>, id_pos: usize, limits: &CommandLimits) -> Result<Unlock, Error> {
    Ok(Unlock {
        id: parse_id(args.get(id_pos), limits)?,
        key: parse_key_arg(args.get(id_pos + 1)),
    })
}
