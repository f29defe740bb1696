//! Connection and server commands, answered on the connection's own thread.
//!
//! They read the connection's [`Session`] and the shared [`ServerContext`], never a lock table.
//! Each has its own file with its `# Format`; [`run`] only dispatches.

mod auth;
mod client;
mod command;
mod config;
mod dbsize;
mod echo;
mod hello;
mod info;
mod multi;
mod ping;
mod quit;
mod reset;
mod select;
mod shutdown;
mod slowlog;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::command::CommandKind;
use crate::command::transaction::{self, Transaction};
use crate::context::ServerContext;
use crate::protocol::{Args, Protocol, Reply};

/// Per-connection state that commands can read and change.
#[derive(Debug)]
pub struct Session {
    /// CLIENT ID.
    pub id: u64,
    /// RESP2 or RESP3.
    pub protocol: Protocol,
    /// CLIENT SETNAME.
    pub name: Option<Bytes>,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: Option<Bytes>,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: Option<Bytes>,
    /// Whether the connection may run commands (always, without `--requirepass`).
    pub authenticated: bool,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address on this connection.
    pub local: SocketAddr,
    /// When the connection was accepted.
    pub created: Instant,
    /// Set by QUIT: close once the replies before it are written.
    pub close_after_reply: bool,
    /// The transaction being queued, between MULTI and EXEC or DISCARD.
    pub multi: Option<Transaction>,
    /// Failed AUTH (or HELLO ... AUTH) attempts on this connection.
    pub auth_failures: u32,
}

impl Session {
    /// A fresh session for a new connection.
    pub fn new(ctx: &ServerContext, peer: SocketAddr, local: SocketAddr) -> Self {
        Session {
            id: ctx.figures.clients.next_id(),
            protocol: Protocol::Resp2,
            name: None,
            lib_name: None,
            lib_ver: None,
            authenticated: ctx.config.requirepass.is_none(),
            peer,
            local,
            created: Instant::now(),
            close_after_reply: false,
            multi: None,
            auth_failures: 0,
        }
    }
}

/// Failed AUTH attempts on one connection answered at full speed; after them, the connection's
/// next request waits [`auth_penalty_ms`].
pub const FREE_AUTH_FAILURES: u32 = 3;

/// How long a connection's next request waits after its `failures`-th failed authentication:
/// nothing for the first [`FREE_AUTH_FAILURES`], then 100 ms, doubling up to 2 s, so guessing
/// passwords on one connection goes at under one guess a second.
pub fn auth_penalty_ms(failures: u32) -> u64 {
    match failures.checked_sub(FREE_AUTH_FAILURES + 1) {
        None => 0,
        Some(n) => (100u64 << n.min(5)).min(2000),
    }
}

pub use auth::WRONGPASS;

/// `NOAUTH`, Redis's text.
pub const NOAUTH: Reply = Reply::error("NOAUTH Authentication required.");

/// Runs a connection or server command. Lock commands are not handled here. `None`: no reply
/// at all, the connection closes after the replies before it (SHUTDOWN).
pub fn run(
    kind: CommandKind,
    args: &Args<'_>,
    s: &mut Session,
    ctx: &ServerContext,
) -> Option<Reply> {
    Some(match kind {
        CommandKind::Ping => ping::ping(args, s),
        CommandKind::Echo => echo::echo(args),
        CommandKind::Hello => hello::hello(args, s, ctx),
        CommandKind::Auth => auth::auth(args, s, ctx),
        CommandKind::Select => select::select(args),
        CommandKind::Client => client::client(args, s, ctx),
        CommandKind::Command => command::command(args),
        CommandKind::Info => info::info(args, ctx),
        CommandKind::Config => config::config(args, ctx),
        CommandKind::Dbsize => dbsize::dbsize(ctx),
        CommandKind::Quit => quit::quit(s),
        CommandKind::Reset => reset::reset(s, ctx),
        CommandKind::Slowlog => slowlog::slowlog(args, ctx),
        CommandKind::Shutdown => return shutdown::shutdown(args, s, ctx),
        CommandKind::Multi => multi::multi(s),
        CommandKind::Discard => multi::discard(s),
        CommandKind::Watch => multi::watch(s),
        CommandKind::Unwatch => multi::unwatch(),
        // The shard runs EXEC: its commands go to the shard owning their ids.
        CommandKind::Exec => match s.multi.take() {
            Some(_) => Reply::error("ERR internal: EXEC dispatched as an admin command"),
            None => transaction::EXEC_WITHOUT_MULTI,
        },
        CommandKind::Lock
        | CommandKind::Trylock
        | CommandKind::Unlock
        | CommandKind::Complete
        | CommandKind::Renew
        | CommandKind::Status => {
            Reply::error("ERR internal: lock command dispatched as admin command")
        }
    })
}

/// `ERR unknown subcommand 'x'. Try NAME HELP.`, Redis's text.
fn unknown_subcommand(sub: &[u8], name: &str) -> Reply {
    Reply::Error(
        format!(
            "ERR unknown subcommand '{}'. Try {name} HELP.",
            String::from_utf8_lossy(&sub[..sub.len().min(128)])
        )
        .into(),
    )
}

#[cfg(test)]
mod tests;
