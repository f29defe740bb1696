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
pub mod spec;
pub mod unlock;

#[cfg(test)]
mod table_tests;

use std::borrow::Cow;

use crate::keys::KeySource;
use crate::protocol::{Args, KeyBytes, Reply, reply::parse_key};
use crate::shard::table::{Id, LockTable};

pub use complete::Complete;
pub use lock::Lock;
pub use spec::{COMMANDS, CommandKind, CommandSpec, lookup};
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
}

/// What the lock commands need besides the table: the time and a key source.
pub struct ApplyCtx<'a> {
    /// Now, in milliseconds since the Unix epoch, read once per loop iteration.
    pub now_ms: u64,
    /// Where fresh keys come from.
    pub keys: &'a mut dyn KeySource,
}

/// Limits applied while parsing lock commands.
#[derive(Clone, Copy, Debug)]
pub struct CommandLimits {
    /// Longest accepted id in bytes.
    pub max_id_len: usize,
}

impl Default for CommandLimits {
    fn default() -> Self {
        CommandLimits { max_id_len: 512 }
    }
}

/// A lock command, owned so it can travel to another shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `LOCK id`
    Lock(Lock),
    /// `UNLOCK id key`
    Unlock(Unlock),
    /// `COMPLETE id key`
    Complete(Complete),
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
            _ => return None,
        })
    }

    /// The id this command is about: it decides which shard runs it.
    pub fn id(&self) -> &[u8] {
        match self {
            Command::Lock(c) => &c.id,
            Command::Unlock(c) => &c.id,
            Command::Complete(c) => &c.id,
        }
    }

    /// Runs the command against the table of the shard that owns its id.
    pub fn apply(self, table: &mut LockTable, ctx: &mut ApplyCtx<'_>) -> Reply {
        match self {
            Command::Lock(c) => c.apply(table, ctx),
            Command::Unlock(c) => c.apply(table, ctx),
            Command::Complete(c) => c.apply(table, ctx),
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
