//! `RENEW id key PX ms | EX s`: extend the lease of a lock you hold.

use crate::command::{CommandLimits, parse_id, parse_key_arg, parse_lease};
use crate::protocol::Args;
use crate::table::Renew;
use crate::types::Error;

/// Parses `RENEW id key PX ms | EX s`, the id at `id_pos`. The lease of a lock held under
/// `key` is set to end `ms` from now. Renew as often as you like while working; once a lease
/// has run out the key is void and RENEW fails.
///
/// # Format
/// ```text
/// RENEW id key PX ms | EX s
/// ```
/// Replies `+OK`, or the errors of UNLOCK: `-NOTLOCKED`, `-BADKEY`, `-COMPLETED`.
pub fn parse(args: &Args<'_>, id_pos: usize, limits: &CommandLimits) -> Result<Renew, Error> {
    let id = parse_id(args.get(id_pos), limits)?;
    let (Some(unit), Some(value)) = (args.get(id_pos + 2), args.get(id_pos + 3)) else {
        return Err(Error::Syntax);
    };
    if !unit.eq_ignore_ascii_case(b"PX") && !unit.eq_ignore_ascii_case(b"EX") {
        return Err(Error::Syntax);
    }
    let lease_ms = parse_lease(unit, value).ok_or(Error::RenewExpire)?;
    Ok(Renew {
        id,
        key: parse_key_arg(args.get(id_pos + 1)),
        lease_ms,
    })
}
