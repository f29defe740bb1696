//! `STATUS id`: where an id stands, without its key.

use crate::command::{ApplyCtx, CommandLimits, parse_id};
use crate::protocol::{Args, Reply};
use crate::shard::table::{Id, LockTable, State};

/// Reports an id's state. Never contains the key.
///
/// # Format
/// ```text
/// STATUS id
/// ```
/// A map (RESP3) or flat array (RESP2): `state` (`free`|`locked`|`completed`), `ttl_ms` (lease
/// left; -1 for none), `fence` (of the current or last grant; 0 for a free id), `waiters`, and
/// for a completed id `result` (null if none was stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The activity id.
    pub id: Id,
}

impl Status {
    /// Parses `STATUS id`.
    pub fn parse(args: &Args<'_>, limits: &CommandLimits) -> Result<Self, Reply> {
        Ok(Status {
            id: parse_id(args.get(1), limits)?,
        })
    }

    /// Runs the command.
    pub fn apply(self, table: &mut LockTable, ctx: &mut ApplyCtx<'_>) -> Reply {
        let now = ctx.now_ms;
        let (state, ttl, fence, result) = match table.live(&self.id, ctx) {
            None => ("free", -1, 0, None),
            Some(e) => match e.state() {
                State::Locked => {
                    let ttl = if e.at_ms() == 0 {
                        -1
                    } else {
                        i64::try_from(e.at_ms().saturating_sub(now)).unwrap_or(i64::MAX)
                    };
                    ("locked", ttl, e.fence(), None)
                }
                State::Completed => (
                    "completed",
                    -1,
                    e.fence(),
                    Some(e.result().map_or(Reply::Null, Reply::bulk)),
                ),
            },
        };
        let mut fields = vec![
            (Reply::bulk("state"), Reply::bulk(state)),
            (Reply::bulk("ttl_ms"), Reply::Integer(ttl)),
            (
                Reply::bulk("fence"),
                Reply::Integer(i64::try_from(fence).unwrap_or(i64::MAX)),
            ),
            (
                Reply::bulk("waiters"),
                Reply::Integer(table.waiters(&self.id) as i64),
            ),
        ];
        if let Some(result) = result {
            fields.push((Reply::bulk("result"), result));
        }
        Reply::Map(fields)
    }
}
