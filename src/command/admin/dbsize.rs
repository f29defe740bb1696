//! `DBSIZE`: the ids the server holds.

use crate::context::ServerContext;
use crate::protocol::Reply;

/// # Format
/// ```text
/// DBSIZE
/// ```
/// Locked plus completed ids, over every shard.
pub fn dbsize(ctx: &ServerContext) -> Reply {
    let t = ctx.totals();
    Reply::Integer(i64::try_from(t.locked + t.completed).unwrap_or(i64::MAX))
}
