//! `RENEW id key PX ms | EX s`: extend the lease of a lock you hold.

use crate::command::unlock::check_holder;
use crate::command::{ApplyCtx, CommandLimits, errors, parse_id, parse_key_arg, parse_lease};
use crate::protocol::{Args, KeyBytes, Reply};
use crate::shard::table::{Id, LockTable};

/// Sets the lease of a lock held under `key` to end `ms` from now. Renew as often as you like
/// while working; once a lease has run out the key is void and RENEW fails.
///
/// # Format
/// ```text
/// RENEW id key PX ms | EX s
/// ```
/// Replies `+OK`, or the errors of UNLOCK: `-NOTLOCKED`, `-BADKEY`, `-COMPLETED`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renew {
    /// The activity id.
    pub id: Id,
    /// The key given by LOCK; `None` if it was malformed (it matches nothing).
    pub key: Option<KeyBytes>,
    /// The new lease, from now, in ms.
    pub lease_ms: u64,
}

impl Renew {
    /// Parses `RENEW id key PX ms | EX s`.
    pub fn parse(args: &Args<'_>, limits: &CommandLimits) -> Result<Self, Reply> {
        let id = parse_id(args.get(1), limits)?;
        let (Some(unit), Some(value)) = (args.get(3), args.get(4)) else {
            return Err(errors::SYNTAX);
        };
        if !unit.eq_ignore_ascii_case(b"PX") && !unit.eq_ignore_ascii_case(b"EX") {
            return Err(errors::SYNTAX);
        }
        let lease_ms = parse_lease(unit, value)
            .ok_or(Reply::error("ERR invalid expire time in 'renew' command"))?;
        Ok(Renew {
            id,
            key: parse_key_arg(args.get(2)),
            lease_ms,
        })
    }

    /// Runs the command.
    pub fn apply(self, table: &mut LockTable, ctx: &mut ApplyCtx<'_>) -> Reply {
        let entry = table.live(&self.id, ctx);
        if let Err(reply) = check_holder(entry.as_deref(), self.key) {
            return reply;
        }
        if let Some(at) = entry.map(|e| e.at()) {
            table.renew(&self.id, at, self.lease_ms, ctx);
        }
        Reply::Ok
    }
}
