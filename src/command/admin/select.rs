//! `SELECT index`: there is one database, 0.

use crate::protocol::{Args, Reply};

/// # Format
/// ```text
/// SELECT index
/// ```
/// `+OK` for 0; Redis's errors for any other number and for a non-number.
pub fn select(args: &Args<'_>) -> Reply {
    match args.get(1) {
        Some(b"0") => Reply::Ok,
        Some(a) if std::str::from_utf8(a).is_ok_and(|t| t.parse::<i64>().is_ok()) => {
            Reply::error("ERR DB index is out of range")
        }
        _ => Reply::error("ERR value is not an integer or out of range"),
    }
}
