//! SLOWLOG: the commands that ran longer than `--slowlog-log-slower-than` microseconds.
//!
//! Each shard keeps its own bounded ring (`--slowlog-max-len` entries, oldest dropped) of the
//! slow commands it ran. The ring sits behind a `Mutex`, touched only by a command that was
//! already slow and by `SLOWLOG` itself: a fast command only compares its duration with the
//! threshold. This is not table data, and a slow command has already cost far more than an
//! uncontended lock. `SLOWLOG GET` merges the shards' rings by entry id (one server-wide
//! counter), newest first, as Redis shows them.
//!
//! What an entry shows, as in Redis: at most 32 arguments (the last one then says how many
//! more there were) and at most 128 bytes of each (followed by how many more bytes there
//! were). What it never shows: a lock key (shown as `(redacted)`), a password (AUTH's
//! arguments and HELLO's after `AUTH` are redacted), or a result or fingerprint (shown as their
//! size). Lock commands are shown from the parsed command, in canonical form.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

use crate::protocol::Args;
use crate::table::Op;
use crate::types::CommandKind;

/// Longest argument shown, in bytes.
pub const MAX_ARG_BYTES: usize = 128;
/// Most arguments shown.
pub const MAX_ARGS: usize = 32;
/// What stands for a secret argument.
pub const REDACTED: &str = "(redacted)";

/// One slow command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowEntry {
    /// Unique, increasing over the life of the server (across shards).
    pub id: u64,
    /// When it ran, in Unix seconds.
    pub unix_secs: u64,
    /// How long it ran, in microseconds.
    pub duration_us: u64,
    /// The command and its arguments, shortened and redacted.
    pub args: Vec<Bytes>,
    /// The client's address (`ip:port`); empty when the command came from another shard or
    /// over HTTP.
    pub client_addr: String,
    /// The client's name (CLIENT SETNAME), or `http`, or `shard-N` for a command forwarded by
    /// shard N.
    pub client_name: Bytes,
}

/// One shard's ring of slow commands.
#[derive(Debug, Default)]
pub struct SlowLog {
    entries: Mutex<VecDeque<SlowEntry>>,
}

impl SlowLog {
    /// Adds `entry`, dropping the oldest ones beyond `max_len`.
    pub fn push(&self, entry: SlowEntry, max_len: usize) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.push_back(entry);
        while entries.len() > max_len {
            entries.pop_front();
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry.
    pub fn reset(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// A copy of every entry.
    pub fn entries(&self) -> Vec<SlowEntry> {
        self.entries
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// An argument as shown: at most [`MAX_ARG_BYTES`] bytes, then how many more there were.
fn shown(arg: &[u8]) -> Bytes {
    if arg.len() <= MAX_ARG_BYTES {
        return Bytes::copy_from_slice(arg);
    }
    let mut out = arg[..MAX_ARG_BYTES].to_vec();
    out.extend_from_slice(format!("... ({} more bytes)", arg.len() - MAX_ARG_BYTES).as_bytes());
    out.into()
}

/// Caps an argument list at [`MAX_ARGS`], the last one saying how many more there were.
fn capped(mut args: Vec<Bytes>, total: usize) -> Vec<Bytes> {
    if total > MAX_ARGS {
        args.truncate(MAX_ARGS - 1);
        let more = total - (MAX_ARGS - 1);
        args.push(Bytes::from(format!("... ({more} more arguments)")));
    }
    args
}

/// The arguments of a connection or server command as the slow log shows them.
pub fn from_args(kind: Option<CommandKind>, args: &Args<'_>) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(args.len().min(MAX_ARGS));
    // How many of the next arguments are secret (HELLO ... AUTH user pass).
    let mut hide = 0usize;
    for i in 0..args.len().min(MAX_ARGS) {
        let arg = args.get(i).unwrap_or_default();
        let secret = (kind == Some(CommandKind::Auth) && i >= 1) || hide > 0;
        hide = hide.saturating_sub(1);
        if secret {
            out.push(Bytes::from_static(REDACTED.as_bytes()));
            continue;
        }
        out.push(shown(arg));
        if kind == Some(CommandKind::Hello) && arg.eq_ignore_ascii_case(b"AUTH") {
            hide = 2;
        }
    }
    capped(out, args.len())
}

/// What the slow log needs of a lock command, taken before it runs (running it consumes the
/// command). Cheap: the id is copied only up to [`MAX_ARG_BYTES`] bytes, without allocating.
#[derive(Clone, Copy, Debug)]
pub struct Capture {
    kind: CommandKind,
    id: [u8; MAX_ARG_BYTES],
    id_shown: usize,
    id_len: usize,
    lease_ms: Option<u64>,
    wait_ms: Option<u64>,
    fingerprint_len: Option<usize>,
    result_len: Option<usize>,
    with_fence: bool,
}

impl Capture {
    /// Notes what `cmd` looks like.
    pub fn of(cmd: &Op) -> Capture {
        let id_full = cmd.id();
        let id_shown = id_full.len().min(MAX_ARG_BYTES);
        let mut id = [0u8; MAX_ARG_BYTES];
        id[..id_shown].copy_from_slice(&id_full[..id_shown]);
        let mut c = Capture {
            kind: cmd.kind(),
            id,
            id_shown,
            id_len: id_full.len(),
            lease_ms: None,
            wait_ms: None,
            fingerprint_len: None,
            result_len: None,
            with_fence: false,
        };
        match cmd {
            Op::Lock(l) => {
                c.lease_ms = l.lease_ms;
                c.wait_ms = l.wait_ms;
                c.fingerprint_len = l.fingerprint.as_ref().map(|f| f.len());
                // TRYLOCK always answers the fence; it takes no WITHFENCE.
                c.with_fence = l.with_fence && !l.trying;
            }
            Op::Complete(x) => c.result_len = x.result.as_ref().map(|r| r.len()),
            Op::Renew(r) => c.lease_ms = Some(r.lease_ms),
            Op::Unlock(_) | Op::Status(_) => {}
        }
        c
    }

    /// The command in canonical form, the key redacted.
    pub fn args(&self) -> Vec<Bytes> {
        let mut out = vec![Bytes::from(self.kind.name().to_ascii_uppercase())];
        let mut id = self.id[..self.id_shown].to_vec();
        if self.id_len > self.id_shown {
            id.extend_from_slice(
                format!("... ({} more bytes)", self.id_len - self.id_shown).as_bytes(),
            );
        }
        out.push(id.into());
        let text = |s: &str| Bytes::from(s.to_string());
        if matches!(
            self.kind,
            CommandKind::Unlock | CommandKind::Complete | CommandKind::Renew
        ) {
            out.push(Bytes::from_static(REDACTED.as_bytes()));
        }
        if let Some(ms) = self.lease_ms {
            out.extend([text("PX"), text(&ms.to_string())]);
        }
        if let Some(ms) = self.wait_ms {
            out.extend([text("WAIT"), text(&ms.to_string())]);
        }
        if let Some(n) = self.fingerprint_len {
            out.extend([text("FINGERPRINT"), text(&format!("({n} bytes)"))]);
        }
        if let Some(n) = self.result_len {
            out.extend([text("RESULT"), text(&format!("({n} bytes)"))]);
        }
        if self.with_fence {
            out.push(text("WITHFENCE"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::test_support::OwnedArgs;
    use crate::table::{Lock, Unlock};

    fn texts(args: &[Bytes]) -> Vec<String> {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn passwords_are_redacted() {
        let a = OwnedArgs::new(&[b"AUTH", b"user", b"secret"]);
        assert_eq!(
            texts(&from_args(Some(CommandKind::Auth), &a.view())),
            ["AUTH", REDACTED, REDACTED]
        );
        let a = OwnedArgs::new(&[b"HELLO", b"3", b"AUTH", b"default", b"pw", b"SETNAME", b"n"]);
        assert_eq!(
            texts(&from_args(Some(CommandKind::Hello), &a.view())),
            ["HELLO", "3", "AUTH", REDACTED, REDACTED, "SETNAME", "n"]
        );
    }

    #[test]
    fn long_arguments_and_lists_are_cut() {
        let long = vec![b'x'; 200];
        let a = OwnedArgs::new(&[b"ECHO", &long]);
        let shown = from_args(Some(CommandKind::Echo), &a.view());
        assert_eq!(shown[1].len(), 128 + "... (72 more bytes)".len());
        let many: Vec<&[u8]> = std::iter::repeat_n(&b"a"[..], 40).collect();
        let a = OwnedArgs::new(&many);
        let shown = from_args(None, &a.view());
        assert_eq!(shown.len(), MAX_ARGS);
        assert_eq!(&shown[MAX_ARGS - 1][..], b"... (9 more arguments)");
    }

    #[test]
    fn lock_commands_never_show_the_key() {
        let cmd = Op::Unlock(Unlock {
            id: b"job-1"[..].into(),
            key: Some([7; 16]),
        });
        assert_eq!(
            texts(&Capture::of(&cmd).args()),
            ["UNLOCK", "job-1", REDACTED]
        );
        let mut lock = Lock::new(vec![b'i'; 300].into());
        lock.lease_ms = Some(30_000);
        lock.with_fence = true;
        let shown = Capture::of(&Op::Lock(lock)).args();
        assert_eq!(shown[1].len(), 128 + "... (172 more bytes)".len());
        assert_eq!(texts(&shown[2..]), ["PX", "30000", "WITHFENCE"]);
    }
}
