//! One RESP client connection: its socket, its session, its input buffer ([`Input`]) and its
//! ordered reply slots ([`Output`]).

pub use crate::net::input::Input;
pub use crate::net::output::{Grant, Output};

use crate::command::admin::Session;
use crate::net::stream::Stream;

/// A client connection owned by one shard thread.
#[derive(Debug)]
pub struct Connection {
    /// The socket, plain or TLS.
    pub stream: Stream,
    /// Protocol version, name, authentication.
    pub session: Session,
    /// Undecoded input.
    pub input: Input,
    /// Replies and output bytes.
    pub output: Output,
    /// Reading is paused because of [`Output::is_backlogged`].
    pub paused: bool,
    /// No more requests are read; close once the queued replies are written.
    pub closing: bool,
    /// Already listed for writing at the end of this loop iteration.
    pub dirty: bool,
    /// When bytes last moved in either direction (unix ms), for `--timeout`.
    pub last_active_ms: u64,
    /// A `LOCK ... WAIT` was sent: when the connection closes, its waits are cancelled on
    /// every shard.
    pub waited: bool,
    /// The peer closed its side: the rest of its input is read up to the end, then the
    /// connection closes.
    pub peer_closed: bool,
    /// No request runs before this time (unix ms): set after repeated failed authentications.
    pub hold_until_ms: u64,
}

impl Connection {
    /// A connection over `stream`, opened at `now_ms`, whose unsent replies may take at most
    /// `output_limit` bytes (0: no limit).
    pub fn new(stream: Stream, session: Session, output_limit: usize, now_ms: u64) -> Self {
        Connection {
            stream,
            session,
            input: Input::default(),
            output: Output::with_limit(output_limit),
            paused: false,
            closing: false,
            dirty: false,
            last_active_ms: now_ms,
            waited: false,
            peer_closed: false,
            hold_until_ms: 0,
        }
    }
}
