//! `ECHO message`.

use crate::protocol::{Args, Reply};

/// # Format
/// ```text
/// ECHO message
/// ```
/// The message, as a bulk string.
pub fn echo(args: &Args<'_>) -> Reply {
    Reply::bulk(args.get(1).unwrap_or_default())
}
