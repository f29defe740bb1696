//! The command spec table: the single source of truth for every command's name, arity, flags
//! and id position. Dispatch, the central arity check, `COMMAND` replies and `docs/COMMANDS.md`
//! all follow from [`COMMANDS`].
//!
//! Arity follows Redis: it counts the command name, a positive value is exact, a negative one
//! is a minimum (`-2` = the name and at least one argument).

/// What a command does, for dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// `LOCK id [options]`
    Lock,
    /// `UNLOCK id key`
    Unlock,
    /// `COMPLETE id key [RESULT value]`
    Complete,
    /// `RENEW id key PX ms | EX s`
    Renew,
    /// `STATUS id`
    Status,
    /// `PING [message]`
    Ping,
    /// `ECHO message`
    Echo,
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`
    Hello,
    /// `AUTH [user] password`
    Auth,
    /// `SELECT index`
    Select,
    /// `CLIENT subcommand ...`
    Client,
    /// `COMMAND [subcommand ...]`
    Command,
    /// `INFO [section ...]`
    Info,
    /// `CONFIG GET pattern ...`
    Config,
    /// `DBSIZE`
    Dbsize,
    /// `QUIT`
    Quit,
    /// `RESET`
    Reset,
    /// `SLOWLOG GET [count] | LEN | RESET | HELP`
    Slowlog,
    /// `SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]`
    Shutdown,
    /// `MULTI`
    Multi,
    /// `EXEC`
    Exec,
    /// `DISCARD`
    Discard,
    /// `WATCH id [id ...]`
    Watch,
    /// `UNWATCH`
    Unwatch,
    /// `TRYLOCK id [options]`
    Trylock,
}

impl CommandKind {
    /// The number of kinds: per-command counters are arrays of this size (plus one cell for
    /// unknown commands).
    pub const COUNT: usize = CommandKind::Trylock as usize + 1;

    /// This kind's position in per-command arrays, `0..COUNT`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lowercase name of the command of this kind, from the spec table.
    pub fn name(self) -> &'static str {
        COMMANDS
            .iter()
            .find(|c| c.kind == self)
            .map_or("unknown", |c| c.name)
    }
}

/// One row of the spec table.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lowercase name.
    pub name: &'static str,
    /// Redis-style arity (see the module docs).
    pub arity: i32,
    /// Redis command flags, as `COMMAND INFO` reports them.
    pub flags: &'static [&'static str],
    /// Position of the id argument (the Redis "first key"); `None` for commands without one.
    pub id_pos: Option<usize>,
    /// Dispatch target.
    pub kind: CommandKind,
    /// The argument syntax after the name, for docs and `COMMAND DOCS`.
    pub syntax: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// The command group (`COMMAND DOCS`): `locks` for lock commands, Redis's group otherwise.
    pub group: &'static str,
}

impl CommandSpec {
    /// Whether `argc` arguments (including the name) satisfy this command's arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// Whether the command may run before the client has authenticated.
    pub fn allowed_before_auth(&self) -> bool {
        self.flags.contains(&"no_auth")
    }
}

/// Every command the server knows.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "lock",
        arity: -2,
        flags: &["write", "fast"],
        id_pos: Some(1),
        kind: CommandKind::Lock,
        syntax: "id [PX ms | EX s] [WAIT ms] [FINGERPRINT fp] [KEY key] [WITHFENCE]",
        summary: "Locks an id that is neither locked nor completed and returns a fresh key.",
        group: "locks",
    },
    CommandSpec {
        name: "unlock",
        arity: 3,
        flags: &["write", "fast"],
        id_pos: Some(1),
        kind: CommandKind::Unlock,
        syntax: "id key",
        summary: "Releases a lock after a failed activity: the id becomes lockable again.",
        group: "locks",
    },
    CommandSpec {
        name: "complete",
        arity: -3,
        flags: &["write", "fast"],
        id_pos: Some(1),
        kind: CommandKind::Complete,
        syntax: "id key [RESULT value]",
        summary: "Marks a locked id completed for good; a retry with the same key succeeds again.",
        group: "locks",
    },
    CommandSpec {
        name: "renew",
        arity: 5,
        flags: &["write", "fast"],
        id_pos: Some(1),
        kind: CommandKind::Renew,
        syntax: "id key PX ms | EX s",
        summary: "Extends the lease of a lock held under the key.",
        group: "locks",
    },
    CommandSpec {
        name: "status",
        arity: 2,
        flags: &["readonly", "fast"],
        id_pos: Some(1),
        kind: CommandKind::Status,
        syntax: "id",
        summary: "Reports an id's state, lease, fence, waiters and result; never its key.",
        group: "locks",
    },
    CommandSpec {
        name: "ping",
        arity: -1,
        flags: &["fast"],
        id_pos: None,
        kind: CommandKind::Ping,
        syntax: "[message]",
        summary: "Returns PONG, or the message.",
        group: "connection",
    },
    CommandSpec {
        name: "echo",
        arity: 2,
        flags: &["fast"],
        id_pos: None,
        kind: CommandKind::Echo,
        syntax: "message",
        summary: "Returns the message.",
        group: "connection",
    },
    CommandSpec {
        name: "hello",
        arity: -1,
        flags: &["no_auth", "fast"],
        id_pos: None,
        kind: CommandKind::Hello,
        syntax: "[protover [AUTH username password] [SETNAME clientname]]",
        summary: "Handshakes: selects RESP2 or RESP3, optionally authenticates and names the client.",
        group: "connection",
    },
    CommandSpec {
        name: "auth",
        arity: -2,
        flags: &["no_auth", "fast"],
        id_pos: None,
        kind: CommandKind::Auth,
        syntax: "[username] password",
        summary: "Authenticates the connection against --requirepass.",
        group: "connection",
    },
    CommandSpec {
        name: "select",
        arity: 2,
        flags: &["fast"],
        id_pos: None,
        kind: CommandKind::Select,
        syntax: "index",
        summary: "Accepts database 0, the only one.",
        group: "connection",
    },
    CommandSpec {
        name: "client",
        arity: -2,
        flags: &[],
        id_pos: None,
        kind: CommandKind::Client,
        syntax: "SETNAME name | GETNAME | SETINFO LIB-NAME|LIB-VER value | ID | INFO | HELP",
        summary: "Names the connection and reports on it.",
        group: "connection",
    },
    CommandSpec {
        name: "command",
        arity: -1,
        flags: &[],
        id_pos: None,
        kind: CommandKind::Command,
        syntax: "[COUNT | INFO [name ...] | DOCS [name ...] | HELP]",
        summary: "Describes the commands of this server, from the spec table.",
        group: "server",
    },
    CommandSpec {
        name: "info",
        arity: -1,
        flags: &[],
        id_pos: None,
        kind: CommandKind::Info,
        syntax: "[section ...]",
        summary: "Reports server, clients, stats and locks figures.",
        group: "server",
    },
    CommandSpec {
        name: "config",
        arity: -2,
        flags: &[],
        id_pos: None,
        kind: CommandKind::Config,
        syntax: "GET pattern [pattern ...] | HELP",
        summary: "Reads the running configuration.",
        group: "server",
    },
    CommandSpec {
        name: "dbsize",
        arity: 1,
        flags: &["fast"],
        id_pos: None,
        kind: CommandKind::Dbsize,
        syntax: "",
        summary: "Returns the number of ids held: locked plus completed.",
        group: "server",
    },
    CommandSpec {
        name: "quit",
        arity: -1,
        flags: &["no_auth", "fast"],
        id_pos: None,
        kind: CommandKind::Quit,
        syntax: "",
        summary: "Replies OK and closes the connection.",
        group: "connection",
    },
    CommandSpec {
        name: "reset",
        arity: 1,
        flags: &["no_auth", "fast"],
        id_pos: None,
        kind: CommandKind::Reset,
        syntax: "",
        summary: "Resets the connection: RESP2, no name, not authenticated.",
        group: "connection",
    },
    CommandSpec {
        name: "slowlog",
        arity: -2,
        flags: &["admin"],
        id_pos: None,
        kind: CommandKind::Slowlog,
        syntax: "GET [count] | LEN | RESET | HELP",
        summary: "Reads or clears the log of commands slower than --slowlog-log-slower-than.",
        group: "server",
    },
    CommandSpec {
        name: "shutdown",
        arity: -1,
        flags: &["admin", "noscript", "loading", "stale"],
        id_pos: None,
        kind: CommandKind::Shutdown,
        syntax: "[NOSAVE | SAVE] [NOW] [FORCE] [ABORT]",
        summary: "Stops the server: finishes in-flight commands, syncs the logs, exits 0.",
        group: "server",
    },
    CommandSpec {
        name: "multi",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast"],
        id_pos: None,
        kind: CommandKind::Multi,
        syntax: "",
        summary: "Starts a transaction: lock commands of one hash slot are queued until EXEC.",
        group: "transactions",
    },
    CommandSpec {
        name: "exec",
        arity: 1,
        flags: &["noscript", "loading", "stale", "skip_slowlog"],
        id_pos: None,
        kind: CommandKind::Exec,
        syntax: "",
        summary: "Runs the queued commands in order, nothing in between, and answers their replies.",
        group: "transactions",
    },
    CommandSpec {
        name: "discard",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast"],
        id_pos: None,
        kind: CommandKind::Discard,
        syntax: "",
        summary: "Drops the queued commands and ends the transaction.",
        group: "transactions",
    },
    CommandSpec {
        name: "watch",
        arity: -2,
        flags: &["noscript", "loading", "stale", "fast"],
        id_pos: None,
        kind: CommandKind::Watch,
        syntax: "id [id ...]",
        summary: "Not supported: answers an error that says what to do instead.",
        group: "transactions",
    },
    CommandSpec {
        name: "unwatch",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast"],
        id_pos: None,
        kind: CommandKind::Unwatch,
        syntax: "",
        summary: "Answers OK: nothing is ever watched.",
        group: "transactions",
    },
    CommandSpec {
        name: "trylock",
        arity: -2,
        flags: &["write", "fast"],
        id_pos: Some(1),
        kind: CommandKind::Trylock,
        syntax: "id [PX ms | EX s] [FINGERPRINT fp] [KEY key]",
        summary: "Takes an id like LOCK, but answers where a held or completed id stands instead of an error.",
        group: "locks",
    },
];

/// Finds a command by name, ignoring ASCII case, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .find(|c| c.name.len() == name.len() && c.name.as_bytes().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(lookup(b"LoCk").map(|c| c.kind), Some(CommandKind::Lock));
        assert!(lookup(b"lockx").is_none());
    }

    #[test]
    fn arity_rules() {
        let unlock = lookup(b"unlock").unwrap();
        assert!(unlock.arity_ok(3));
        assert!(!unlock.arity_ok(2) && !unlock.arity_ok(4));
        let lock = lookup(b"lock").unwrap();
        assert!(lock.arity_ok(2) && lock.arity_ok(7) && !lock.arity_ok(1));
        let ping = lookup(b"ping").unwrap();
        assert!(ping.arity_ok(1) && ping.arity_ok(2));
        assert!(!lookup(b"auth").unwrap().arity_ok(1));
    }

    #[test]
    fn every_kind_has_one_row() {
        for c in COMMANDS {
            assert!(c.kind.index() < CommandKind::COUNT, "{}", c.name);
            assert_eq!(c.kind.name(), c.name);
            assert_eq!(COMMANDS.iter().filter(|d| d.kind == c.kind).count(), 1);
        }
        assert_eq!(COMMANDS.len(), CommandKind::COUNT);
    }

    #[test]
    fn names_are_unique_and_lowercase() {
        for (i, a) in COMMANDS.iter().enumerate() {
            assert_eq!(a.name, a.name.to_ascii_lowercase());
            assert!(COMMANDS[i + 1..].iter().all(|b| b.name != a.name));
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use super::COMMANDS;

    #[test]
    fn docs_list_every_command() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/COMMANDS.md"))
            .expect("docs/COMMANDS.md exists");
        for c in COMMANDS {
            let usage = format!("{} {}", c.name.to_ascii_uppercase(), c.syntax);
            let plain = usage.trim_end();
            let escaped = plain.replace('|', "\\|");
            // The line that shows the command must give its arity too: `| arity |` in a table
            // row, `arity N` in a heading line.
            let line = doc
                .lines()
                .find(|l| {
                    [&escaped, plain].iter().any(|u| {
                        l.starts_with(&format!("| `{u}` |")) || l.starts_with(&format!("`{u}` —"))
                    })
                })
                .unwrap_or_else(|| panic!("docs/COMMANDS.md does not show `{plain}`"));
            let arity = c.arity;
            assert!(
                line.contains(&format!("| {arity} |")) || line.contains(&format!("arity {arity}")),
                "docs/COMMANDS.md shows `{plain}` without its arity {arity}: {line}"
            );
            if line.contains("— arity") {
                let flags = c.flags.join(" ");
                assert!(
                    line.contains(&format!("flags `{flags}`")),
                    "docs/COMMANDS.md shows `{plain}` without its flags `{flags}`: {line}"
                );
            }
        }
    }
}
