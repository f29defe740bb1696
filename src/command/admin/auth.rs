//! `AUTH [username] password`.

use crate::command::admin::Session;
use crate::context::ServerContext;
use crate::protocol::{Args, Reply};

/// `WRONGPASS`, Redis's text.
pub const WRONGPASS: Reply =
    Reply::error("WRONGPASS invalid username-password pair or user is disabled.");

/// # Format
/// ```text
/// AUTH [username] password
/// ```
/// The only user is `default`. Replies `+OK` or `-WRONGPASS`.
pub fn auth(args: &Args<'_>, s: &mut Session, ctx: &ServerContext) -> Reply {
    let (user, pass) = match args.len() {
        2 => (None, args.get(1).unwrap_or_default()),
        3 => (args.get(1), args.get(2).unwrap_or_default()),
        _ => return Reply::error("ERR syntax error"),
    };
    if ctx.config.requirepass.is_none() && user.is_none() {
        return Reply::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    }
    if check(user, pass, ctx) {
        s.authenticated = true;
        Reply::Ok
    } else {
        WRONGPASS
    }
}

/// Whether `user`/`pass` are valid credentials. Compares the password in constant time.
pub fn check(user: Option<&[u8]>, pass: &[u8], ctx: &ServerContext) -> bool {
    if user.is_some_and(|u| u != b"default") {
        return false;
    }
    match &ctx.config.requirepass {
        None => true,
        Some(expected) => crate::types::password_matches(expected.as_bytes(), pass),
    }
}
