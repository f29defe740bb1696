//! `RESET`: the connection as it was when it connected.

use crate::command::admin::Session;
use crate::context::ServerContext;
use crate::protocol::{Protocol, Reply};

/// # Format
/// ```text
/// RESET
/// ```
/// `+RESET`: back to RESP2, no name, no transaction, and not authenticated when a password is
/// set.
pub fn reset(s: &mut Session, ctx: &ServerContext) -> Reply {
    s.multi = None;
    s.protocol = Protocol::Resp2;
    s.name = None;
    s.authenticated = ctx.config.requirepass.is_none();
    Reply::Simple("RESET")
}
