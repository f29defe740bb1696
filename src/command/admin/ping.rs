//! `PING [message]`.

use crate::command::admin::Session;
use crate::protocol::{Args, Reply};

/// # Format
/// ```text
/// PING [message]
/// ```
/// `+PONG`, or the message as a bulk string.
pub fn ping(args: &Args<'_>, _s: &Session) -> Reply {
    match args.len() {
        1 => Reply::Simple("PONG"),
        2 => Reply::bulk(args.get(1).unwrap_or_default()),
        _ => crate::command::wrong_arity("ping"),
    }
}
