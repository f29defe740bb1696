//! `SHUTDOWN`: stops the server the way SIGTERM does, as Redis's command does.

use crate::command::admin::Session;
use crate::context::ServerContext;
use crate::protocol::{Args, Reply};

/// # Format
/// ```text
/// SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]
/// ```
/// Starts a shutdown: the server stops accepting, finishes in-flight commands, syncs every
/// log and exits 0 (see [`crate::lifecycle`]). As in Redis, a successful SHUTDOWN sends no
/// reply (`None`): the connection is closed after the replies to earlier commands. The options are
/// accepted for compatibility and change nothing (every log is synced anyway); `ABORT` is an
/// error, since a shutdown cannot be called back.
pub fn shutdown(args: &Args<'_>, s: &mut Session, ctx: &ServerContext) -> Option<Reply> {
    for opt in args.iter_from(1) {
        let known = [&b"NOSAVE"[..], b"SAVE", b"NOW", b"FORCE"];
        if opt.eq_ignore_ascii_case(b"ABORT") {
            return Some(if ctx.lifecycle.is_stopping() {
                Reply::error("ERR a shutdown in progress cannot be aborted")
            } else {
                Reply::error("ERR No shutdown in progress.")
            });
        }
        if !known.iter().any(|k| opt.eq_ignore_ascii_case(k)) {
            return Some(Reply::error("ERR syntax error"));
        }
    }
    let reason = format!("SHUTDOWN from client {} ({})", s.id, s.peer);
    ctx.lifecycle.request_shutdown(&reason);
    s.close_after_reply = true;
    None
}
