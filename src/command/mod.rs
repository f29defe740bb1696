//! Commands on the wire: the spec table, parsing arguments into the table's typed
//! operations, and answering their outcomes as replies.
//!
//! [`spec`] declares every command as data. Lock commands ([`lock`], [`unlock`], [`complete`],
//! [`renew`], [`status`]) parse into an [`Op`], the id taken from the position the spec gives,
//! so it can travel to the shard owning its id, where the table runs it; [`reply`] turns its
//! [`Outcome`] into the [`Reply`]. Connection and server commands live in [`admin`] and run on
//! the connection's own thread. [`number`] reads numbers for RESP and HTTP alike.
//!
//! Nothing here does I/O or reads the clock.

pub mod admin;
pub mod complete;
pub mod lock;
pub mod number;
pub mod renew;
pub mod status;
pub mod transaction;
pub mod unlock;

#[cfg(test)]
pub(crate) mod table_tests;

#[cfg(test)]
mod lease_tests;

use std::borrow::Cow;

use crate::protocol::{Args, Reply};
use crate::table::{Op, Outcome, Standing};
use crate::types::{Error, Id, KeyBytes, parse_key};

pub use crate::types::spec;
pub use crate::types::{COMMANDS, CommandKind, CommandLimits, CommandSpec, lookup};
pub use number::{parse_lease, parse_wait};

/// The error replies of the lock commands, as [`Reply`] values; each is the wire spelling of
/// an [`Error`]. Their sentences never contain a key.
pub mod errors {
    use crate::protocol::Reply;
    use crate::types::Error;

    /// The id is held by someone.
    pub const LOCKED: Reply = Reply::error(Error::Locked.text());
    /// The id is completed for good.
    pub const COMPLETED: Reply = Reply::error(Error::Completed.text());
    /// The id is not locked.
    pub const NOT_LOCKED: Reply = Reply::error(Error::NotLocked.text());
    /// The key is not the one of the current holder.
    pub const BAD_KEY: Reply = Reply::error(Error::BadKey.text());
    /// The id argument is empty.
    pub const EMPTY_ID: Reply = Reply::error(Error::EmptyId.text());
    /// The id argument is over the configured maximum length.
    pub const ID_TOO_LONG: Reply = Reply::error(Error::IdTooLong.text());
    /// A LOCK with a fingerprint other than the one the id was locked or completed with.
    pub const MISMATCH: Reply = Reply::error(Error::Mismatch.text());
    /// The wait queue of an id is full.
    pub const QUEUE_FULL: Reply = Reply::error(Error::QueueFull.text());
    /// A malformed option list.
    pub const SYNTAX: Reply = Reply::error(Error::Syntax.text());
    /// The RESULT of COMPLETE is over `--max-result-size`.
    pub const RESULT_TOO_LARGE: Reply = Reply::error(Error::ResultTooLarge.text());
    /// A fingerprint over the id length limit.
    pub const FINGERPRINT_TOO_LONG: Reply = Reply::error(Error::FingerprintTooLong.text());
}

/// Parses the lock command of `spec` from `args` (index 0 is the name; arity is already
/// checked), its id at the spec's id position. `None` if `spec` is not a lock command.
pub fn parse(
    spec: &CommandSpec,
    args: &Args<'_>,
    limits: &CommandLimits,
) -> Option<Result<Op, Error>> {
    let at = spec.id_pos?;
    Some(match spec.kind {
        CommandKind::Lock => lock::parse(args, at, limits).map(Op::Lock),
        CommandKind::Trylock => lock::parse_try(args, at, limits).map(Op::Lock),
        CommandKind::Unlock => unlock::parse(args, at, limits).map(Op::Unlock),
        CommandKind::Complete => complete::parse(args, at, limits).map(Op::Complete),
        CommandKind::Renew => renew::parse(args, at, limits).map(Op::Renew),
        CommandKind::Status => status::parse(args, at, limits).map(Op::Status),
        _ => return None,
    })
}

/// The reply to an operation's outcome. A parked `LOCK ... WAIT` has no reply yet: `None`.
pub fn reply(outcome: Outcome) -> Option<Reply> {
    Some(match outcome {
        Outcome::Granted {
            key,
            fence,
            with_fence,
        } => lock_reply(key, fence, with_fence),
        Outcome::Done => Reply::Ok,
        Outcome::Status { standing, waiters } => status::reply(standing, waiters),
        Outcome::Refused { error, .. } => Reply::from(error),
        Outcome::Taken { standing } => taken_reply(standing),
        Outcome::Parked => return None,
    })
}

/// TRYLOCK's answer for an id it could not take: `[nil, "locked", ttl_ms]` (-1 without a
/// lease) or `[nil, "completed", result]` (nil without one).
fn taken_reply(standing: Standing) -> Reply {
    let (state, detail) = match standing {
        Standing::Locked { ttl_ms, .. } => (
            "locked",
            Reply::Integer(ttl_ms.map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX))),
        ),
        Standing::Completed { result, .. } => {
            ("completed", result.map_or(Reply::Null, |r| Reply::bulk(&r)))
        }
        Standing::Free => ("free", Reply::Null),
    };
    Reply::Array(vec![Reply::Null, Reply::bulk(state.as_bytes()), detail])
}

/// The reply to a granted LOCK: the key, or `[key, fence]` with WITHFENCE.
pub fn lock_reply(key: KeyBytes, fence: u64, with_fence: bool) -> Reply {
    if with_fence {
        Reply::Array(vec![
            Reply::Key(key),
            Reply::Integer(i64::try_from(fence).unwrap_or(i64::MAX)),
        ])
    } else {
        Reply::Key(key)
    }
}

/// Validates and copies an id argument.
pub fn parse_id(arg: Option<&[u8]>, limits: &CommandLimits) -> Result<Id, Error> {
    let arg = arg.unwrap_or_default();
    if arg.is_empty() {
        return Err(Error::EmptyId);
    }
    if arg.len() > limits.max_id_len {
        return Err(Error::IdTooLong);
    }
    Ok(arg.into())
}

/// Parses a key argument. A malformed key is not an error: it is a key that matches nothing.
pub fn parse_key_arg(arg: Option<&[u8]>) -> Option<KeyBytes> {
    arg.and_then(parse_key)
}

/// `ERR wrong number of arguments for 'name' command`, Redis's exact text.
pub fn wrong_arity(name: &str) -> Reply {
    Reply::Error(Cow::Owned(format!(
        "ERR wrong number of arguments for '{name}' command"
    )))
}

/// `ERR unknown command 'x', with args beginning with: 'a' 'b' `, Redis's exact text.
pub fn unknown_command(args: &Args<'_>) -> Reply {
    let name = args.get(0).unwrap_or_default();
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&name[..name.len().min(128)])
    );
    for arg in args.iter_from(1) {
        if text.len() >= 1024 {
            break;
        }
        text.push('\'');
        text.push_str(&String::from_utf8_lossy(&arg[..arg.len().min(128)]));
        text.push_str("' ");
    }
    Reply::Error(Cow::Owned(text))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders shared by the command unit tests.
    use crate::keys::KeySource;
    use crate::types::KeyBytes;

    pub use crate::protocol::test_support::OwnedArgs;

    /// Effects collected while applying commands in tests.
    #[derive(Default)]
    pub struct Sink {
        pub records: Vec<crate::types::LogRecord>,
        pub deliveries: Vec<crate::table::Delivery>,
        pub fences: std::sync::atomic::AtomicU64,
    }

    /// Parses a lock command of `kind` from `parts` through the spec table, with refusals as
    /// the replies a client would see. `None` if `kind` is not a lock command.
    pub fn parse_op(
        kind: crate::command::CommandKind,
        parts: &[&[u8]],
        limits: &crate::command::CommandLimits,
    ) -> Option<Result<crate::table::Op, crate::protocol::Reply>> {
        let spec = crate::command::COMMANDS.iter().find(|c| c.kind == kind)?;
        let args = OwnedArgs::new(parts);
        crate::command::parse(spec, &args.view(), limits)
            .map(|r| r.map_err(crate::protocol::Reply::from))
    }

    /// What a test reads for a parked `LOCK ... WAIT`, which has no reply yet.
    pub const PARKED: crate::protocol::Reply =
        crate::protocol::Reply::error("(parked: no reply yet)");

    /// The reply an outcome becomes on the wire; [`PARKED`] for a parked wait.
    pub fn reply_of(outcome: crate::table::Outcome) -> crate::protocol::Reply {
        crate::command::reply(outcome).unwrap_or(PARKED)
    }

    /// Keys 1, 2, 3, … as big-endian 128-bit numbers: predictable in tests.
    #[derive(Default)]
    pub struct CountingKeys(pub u128);

    impl KeySource for CountingKeys {
        fn next_key(&mut self) -> KeyBytes {
            self.0 += 1;
            self.0.to_be_bytes()
        }
    }
}
