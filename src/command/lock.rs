//! `LOCK id [PX ms | EX s] [WAIT ms] [FINGERPRINT fp] [KEY key] [WITHFENCE]`: take an id that
//! is neither locked nor completed.

use crate::command::{CommandLimits, parse_id, parse_lease, parse_wait};
use crate::protocol::Args;
use crate::table::Lock;
use crate::types::{Error, parse_key};

/// Parses `LOCK id [options]`, the id at `id_pos` and the options after it.
///
/// # Format
/// ```text
/// LOCK id [PX ms | EX s] [WAIT ms] [FINGERPRINT fp] [KEY key] [WITHFENCE]
/// ```
/// Replies with the key as a 32-character hex bulk string (`[key, fence]` with WITHFENCE), or
/// `-LOCKED` if the id is held, `-COMPLETED` if it was completed, `-MISMATCH` if it was locked
/// or completed with a different fingerprint. With WAIT, a held id is waited for (FIFO) up to
/// `ms`: granted when freed, `-COMPLETED` if completed meanwhile, `-LOCKED` on timeout. With
/// KEY, the grant's key is the client's own (32 hex characters, else an error), and a LOCK
/// repeated with it while the id is still held under it gets the same key and fence again.
pub fn parse(args: &Args<'_>, id_pos: usize, limits: &CommandLimits) -> Result<Lock, Error> {
    let mut lock = Lock::new(parse_id(args.get(id_pos), limits)?);
    let mut i = id_pos + 1;
    while let Some(opt) = args.get(i) {
        let value = args.get(i + 1);
        if opt.eq_ignore_ascii_case(b"PX") || opt.eq_ignore_ascii_case(b"EX") {
            let value = value.ok_or(Error::Syntax)?;
            if lock.lease_ms.is_some() {
                return Err(Error::Syntax);
            }
            lock.lease_ms = Some(parse_lease(opt, value).ok_or(Error::LockExpire)?);
            i += 2;
        } else if opt.eq_ignore_ascii_case(b"WAIT") {
            let value = value.ok_or(Error::Syntax)?;
            if lock.wait_ms.is_some() {
                return Err(Error::Syntax);
            }
            lock.wait_ms = Some(parse_wait(value).ok_or(Error::WaitTimeout)?);
            i += 2;
        } else if opt.eq_ignore_ascii_case(b"FINGERPRINT") {
            let value = value.ok_or(Error::Syntax)?;
            if lock.fingerprint.is_some() {
                return Err(Error::Syntax);
            }
            if value.len() > limits.max_id_len {
                return Err(Error::FingerprintTooLong);
            }
            lock.fingerprint = Some(value.into());
            i += 2;
        } else if opt.eq_ignore_ascii_case(b"KEY") {
            let value = value.ok_or(Error::Syntax)?;
            if lock.key.is_some() {
                return Err(Error::Syntax);
            }
            lock.key = Some(parse_key(value).ok_or(Error::KeyForm)?);
            i += 2;
        } else if opt.eq_ignore_ascii_case(b"WITHFENCE") && !lock.with_fence {
            lock.with_fence = true;
            i += 1;
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(lock)
}

/// Parses `TRYLOCK id [PX ms | EX s] [FINGERPRINT fp] [KEY key]`: a LOCK that answers where a held or
/// completed id stands instead of an error, so a batch of them never throws for a routine
/// refusal.
///
/// # Format
/// ```text
/// TRYLOCK id [PX ms | EX s] [FINGERPRINT fp] [KEY key]
/// ```
/// Replies `[key, fence]` when granted, `[nil, "locked", ttl_ms]` when held (`ttl_ms` -1
/// without a lease), `[nil, "completed", result]` when completed (`result` nil if none);
/// `-MISMATCH` for another fingerprint, and errors for bad arguments, as LOCK. With KEY, an id
/// held under that key answers `[key, fence]` again, as LOCK does.
pub fn parse_try(args: &Args<'_>, id_pos: usize, limits: &CommandLimits) -> Result<Lock, Error> {
    let mut lock = parse(args, id_pos, limits)?;
    if lock.wait_ms.is_some() || lock.with_fence {
        return Err(Error::Syntax);
    }
    lock.trying = true;
    lock.with_fence = true;
    Ok(lock)
}
