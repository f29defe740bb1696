//! Command semantics, pure and synchronous.
//!
//! [`spec`] declares every command as data. Lock commands ([`lock`], [`unlock`], [`complete`])
//! parse into a [`Command`] value that can travel to the shard owning its id, where
//! [`Command::apply`] runs it against that shard's [`LockTable`]. Connection and server commands
//! live in [`admin`] and run on the connection's own thread.
//!
//! Nothing here does I/O or reads the clock: time and key generation come in an [`ApplyCtx`].

pub mod admin;
pub mod complete;
pub mod lock;
pub mod renew;
pub mod spec;
pub mod status;
pub mod unlock;

#[cfg(test)]
pub(crate) mod table_tests;

#[cfg(test)]
mod lease_tests;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::keys::KeySource;
use crate::log::LogRecord;
use crate::protocol::{Args, KeyBytes, Reply, reply::parse_key};
use crate::shard::Origin;
use crate::shard::table::{Delivery, Id, LockTable};

pub use complete::Complete;
pub use lock::Lock;
pub use renew::Renew;
pub use spec::{COMMANDS, CommandKind, CommandSpec, lookup};
pub use status::Status;
pub use unlock::Unlock;

/// The error replies of the lock commands. Their sentences never contain a key.
pub mod errors {
    use crate::protocol::Reply;

    /// The id is held by someone.
    pub const LOCKED: Reply = Reply::error("LOCKED the id is locked by another holder");
    /// The id is completed for good.
    pub const COMPLETED: Reply = Reply::error("COMPLETED the id is already completed");
    /// The id is not locked.
    pub const NOT_LOCKED: Reply = Reply::error("NOTLOCKED the id is not locked");
    /// The key is not the one of the current holder.
    pub const BAD_KEY: Reply = Reply::error("BADKEY the key does not match the lock");
    /// The id argument is empty.
    pub const EMPTY_ID: Reply = Reply::error("ERR the id must not be empty");
    /// The id argument is over the configured maximum length.
    pub const ID_TOO_LONG: Reply = Reply::error("ERR id too long");
    /// A LOCK with a fingerprint other than the one the id was locked or completed with.
    pub const MISMATCH: Reply =
        Reply::error("MISMATCH the id was locked with a different fingerprint");
    /// The wait queue of an id is full.
    pub const QUEUE_FULL: Reply =
        Reply::error("LOCKED the id is locked and its wait queue is full");
    /// A malformed option list.
    pub const SYNTAX: Reply = Reply::error("ERR syntax error");
    /// The RESULT of COMPLETE is over `--max-result-size`.
    pub const RESULT_TOO_LARGE: Reply = Reply::error("ERR result too large");
    /// A fingerprint over the id length limit.
    pub const FINGERPRINT_TOO_LONG: Reply = Reply::error("ERR fingerprint too long");
}

/// What the lock commands need besides the table, and where their effects go.
pub struct ApplyCtx<'a> {
    /// Now, in milliseconds since the Unix epoch, read once per loop iteration.
    pub now_ms: u64,
    /// Where fresh keys come from.
    pub keys: &'a mut dyn KeySource,
    /// The server-wide fence counter: every grant takes the next value.
    pub fences: &'a AtomicU64,
    /// Who sent the command (a waiting LOCK is answered there later).
    pub origin: Origin,
    /// Changes to log, in order.
    pub records: &'a mut Vec<LogRecord>,
    /// Replies owed to waiters, produced as a side effect.
    pub deliveries: &'a mut Vec<Delivery>,
}

impl ApplyCtx<'_> {
    /// The next fencing token: larger than every one handed out before, on any shard.
    pub fn next_fence(&self) -> u64 {
        self.fences.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Limits applied while parsing lock commands.
#[derive(Clone, Copy, Debug)]
pub struct CommandLimits {
    /// Longest accepted id (and fingerprint) in bytes.
    pub max_id_len: usize,
    /// Longest accepted COMPLETE ... RESULT value in bytes.
    pub max_result_size: usize,
}

impl Default for CommandLimits {
    fn default() -> Self {
        CommandLimits {
            max_id_len: 512,
            max_result_size: 64 * 1024,
        }
    }
}

/// A lock command, owned so it can travel to another shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `LOCK id`
    Lock(Lock),
    /// `UNLOCK id key`
    Unlock(Unlock),
    /// `COMPLETE id key [RESULT value]`
    Complete(Complete),
    /// `RENEW id key PX ms | EX s`
    Renew(Renew),
    /// `STATUS id`
    Status(Status),
}

impl Command {
    /// Parses the lock command `kind` from `args` (index 0 is the name; arity is already
    /// checked). `None` if `kind` is not a lock command.
    pub fn parse(
        kind: CommandKind,
        args: &Args<'_>,
        limits: &CommandLimits,
    ) -> Option<Result<Command, Reply>> {
        Some(match kind {
            CommandKind::Lock => Lock::parse(args, limits).map(Command::Lock),
            CommandKind::Unlock => Unlock::parse(args, limits).map(Command::Unlock),
            CommandKind::Complete => Complete::parse(args, limits).map(Command::Complete),
            CommandKind::Renew => Renew::parse(args, limits).map(Command::Renew),
            CommandKind::Status => Status::parse(args, limits).map(Command::Status),
            _ => return None,
        })
    }

    /// The id this command is about: it decides which shard runs it.
    pub fn id(&self) -> &[u8] {
        match self {
            Command::Lock(c) => &c.id,
            Command::Unlock(c) => &c.id,
            Command::Complete(c) => &c.id,
            Command::Renew(c) => &c.id,
            Command::Status(c) => &c.id,
        }
    }

    /// Which command of the spec table this is.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Lock(_) => CommandKind::Lock,
            Command::Unlock(_) => CommandKind::Unlock,
            Command::Complete(_) => CommandKind::Complete,
            Command::Renew(_) => CommandKind::Renew,
            Command::Status(_) => CommandKind::Status,
        }
    }

    /// Whether the command can change the table (and so may need the log).
    pub fn is_write(&self) -> bool {
        !matches!(self, Command::Status(_))
    }

    /// Runs the command against the table of the shard that owns its id.
    pub fn apply(self, table: &mut LockTable, ctx: &mut ApplyCtx<'_>) -> Reply {
        match self {
            Command::Lock(c) => c.apply(table, ctx),
            Command::Unlock(c) => c.apply(table, ctx),
            Command::Complete(c) => c.apply(table, ctx),
            Command::Renew(c) => c.apply(table, ctx),
            Command::Status(c) => c.apply(table, ctx),
        }
    }
}

/// Validates and copies an id argument.
pub fn parse_id(arg: Option<&[u8]>, limits: &CommandLimits) -> Result<Id, Reply> {
    let arg = arg.unwrap_or_default();
    if arg.is_empty() {
        return Err(errors::EMPTY_ID);
    }
    if arg.len() > limits.max_id_len {
        return Err(errors::ID_TOO_LONG);
    }
    Ok(arg.into())
}

/// Parses a lease given as `PX ms` or `EX s` into milliseconds; `None` if invalid. Leases are
/// capped at 2^40 ms (about 34 years).
pub fn parse_lease(unit: &[u8], value: &[u8]) -> Option<u64> {
    let n: u64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    let ms = if unit.eq_ignore_ascii_case(b"PX") {
        n
    } else if unit.eq_ignore_ascii_case(b"EX") {
        n.checked_mul(1000)?
    } else {
        return None;
    };
    (ms > 0 && ms <= 1 << 40).then_some(ms)
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
    use std::ops::Range;

    use crate::keys::KeySource;
    use crate::protocol::KeyBytes;

    /// Owned arguments that can lend an [`crate::protocol::Args`] view.
    pub struct OwnedArgs {
        pub buf: Vec<u8>,
        pub ranges: Vec<Range<usize>>,
    }

    impl OwnedArgs {
        pub fn new(parts: &[&[u8]]) -> Self {
            let mut buf = Vec::new();
            let mut ranges = Vec::new();
            for p in parts {
                let start = buf.len();
                buf.extend_from_slice(p);
                ranges.push(start..buf.len());
            }
            OwnedArgs { buf, ranges }
        }

        pub fn view(&self) -> crate::protocol::Args<'_> {
            crate::protocol::Args::new(&self.buf, &self.ranges)
        }
    }

    /// Effects collected while applying commands in tests.
    #[derive(Default)]
    pub struct Sink {
        pub records: Vec<crate::log::LogRecord>,
        pub deliveries: Vec<crate::shard::table::Delivery>,
        pub fences: std::sync::atomic::AtomicU64,
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
