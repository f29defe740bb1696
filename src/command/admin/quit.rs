//! `QUIT`.

use crate::command::admin::Session;
use crate::protocol::Reply;

/// # Format
/// ```text
/// QUIT
/// ```
/// `+OK`; the connection closes once the replies before it are written.
pub fn quit(s: &mut Session) -> Reply {
    s.close_after_reply = true;
    Reply::Ok
}
