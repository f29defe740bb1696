//! `MULTI`, `DISCARD`, `WATCH` and `UNWATCH`: the connection side of transactions, one file
//! for the four since they only open, drop or refuse the transaction a session queues. `EXEC`
//! runs on the shard that owns its ids (see [`crate::command::transaction`]).

use crate::command::admin::Session;
use crate::command::transaction::{self, Transaction};
use crate::protocol::Reply;

/// # Format
/// ```text
/// MULTI
/// ```
/// `+OK`, and the commands that follow are queued until `EXEC` or `DISCARD`; an error inside
/// a transaction.
pub fn multi(s: &mut Session) -> Reply {
    if s.multi.is_some() {
        transaction::NESTED
    } else {
        s.multi = Some(Transaction::default());
        Reply::Ok
    }
}

/// # Format
/// ```text
/// DISCARD
/// ```
/// `+OK`, dropping the queued commands; an error outside a transaction.
pub fn discard(s: &mut Session) -> Reply {
    match s.multi.take() {
        Some(_) => Reply::Ok,
        None => transaction::DISCARD_WITHOUT_MULTI,
    }
}

/// # Format
/// ```text
/// WATCH id [id ...]
/// ```
/// An error: ids cannot be watched (a transaction's commands are checked as they are queued).
pub fn watch(s: &Session) -> Reply {
    if s.multi.is_some() {
        transaction::WATCH_INSIDE_MULTI
    } else {
        transaction::WATCH_UNSUPPORTED
    }
}

/// # Format
/// ```text
/// UNWATCH
/// ```
/// `+OK`: nothing is ever watched.
pub fn unwatch() -> Reply {
    Reply::Ok
}
