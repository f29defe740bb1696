//! `STATUS id`: where an id stands, without its key.

use crate::command::{CommandLimits, parse_id};
use crate::protocol::{Args, Reply};
use crate::table::{Standing, Status};
use crate::types::Error;

/// Parses `STATUS id`, the id at `id_pos`. Never answers with the key.
///
/// # Format
/// ```text
/// STATUS id
/// ```
/// A map (RESP3) or flat array (RESP2): `state` (`free`|`locked`|`completed`), `ttl_ms` (lease
/// left; -1 for none), `fence` (of the current or last grant; 0 for a free id), `waiters`, and
/// for a completed id `result` (null if none was stored).
pub fn parse(args: &Args<'_>, id_pos: usize, limits: &CommandLimits) -> Result<Status, Error> {
    Ok(Status {
        id: parse_id(args.get(id_pos), limits)?,
    })
}

/// The STATUS map of an id that stands as `standing` with `waiters` queued.
pub fn reply(standing: Standing, waiters: usize) -> Reply {
    let int = |n: u64| Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let (state, ttl, fence, result) = match standing {
        Standing::Free => ("free", Reply::Integer(-1), 0, None),
        Standing::Locked { ttl_ms, fence } => (
            "locked",
            ttl_ms.map_or(Reply::Integer(-1), int),
            fence,
            None,
        ),
        Standing::Completed { fence, result } => (
            "completed",
            Reply::Integer(-1),
            fence,
            Some(result.map_or(Reply::Null, |r| Reply::Bulk(r.into()))),
        ),
    };
    let mut fields = vec![
        (Reply::bulk("state"), Reply::bulk(state)),
        (Reply::bulk("ttl_ms"), ttl),
        (Reply::bulk("fence"), int(fence)),
        (Reply::bulk("waiters"), int(waiters as u64)),
    ];
    if let Some(result) = result {
        fields.push((Reply::bulk("result"), result));
    }
    Reply::Map(fields)
}
