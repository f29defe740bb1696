//! The per-client limits a shard enforces on its own connections, and taking over accepted
//! connections (plain or TLS).
//!
//! - Query buffer (`--client-query-buffer-limit`): checked after every read; a client over it
//!   is closed (its pending replies dropped) and logged.
//! - Output buffer (`--client-output-buffer-limit`): checked after every write attempt; a
//!   client whose unsent replies exceed it is closed and logged. Below it, reading pauses
//!   (see [`crate::net::connection`]), so a client that merely reads slowly is slowed down,
//!   not dropped.
//! - Idle time (`--timeout`): about once a second, connections with no traffic for that long
//!   are closed, except those waiting for a reply owed to them (a `LOCK ... WAIT`, a command
//!   on another shard), which have deadlines of their own. A client that stopped reading
//!   while its replies pile up is idle too: no bytes move.
//!
//! The argument size and count limits live in the request decoder ([`Limits`]).

use mio::net::TcpStream;
use mio::{Interest, Token};
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::command::admin::Session;
use crate::config::Config;
use crate::net::acceptor::Accepted;
use crate::net::connection::Connection;
use crate::net::stream::Stream;
use crate::net::tls::TlsStream;
use crate::protocol::Limits;

use super::Shard;

/// How often idle connections are looked for, in milliseconds.
const IDLE_CHECK_MS: u64 = 1000;

/// The per-client limits from the configuration.
#[derive(Clone, Copy, Debug)]
pub(super) struct ClientLimits {
    /// Argument size and count, applied while decoding.
    pub decoder: Limits,
    /// Most undecoded bytes a client may buffer.
    pub query_buffer: usize,
    /// Most unsent reply bytes a client may have; 0 means no limit.
    pub output_buffer: usize,
    /// Idle time after which a connection is closed, in milliseconds; 0 means never.
    pub idle_ms: u64,
    /// When to look for idle connections next (unix ms).
    pub next_idle_check_ms: u64,
}

impl ClientLimits {
    /// The limits `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        let s = &config.security;
        ClientLimits {
            decoder: Limits {
                max_arg_len: usize::try_from(s.proto_max_bulk_len).unwrap_or(usize::MAX),
                max_args: s.max_args as usize,
                max_inline_len: Limits::default().max_inline_len,
            },
            query_buffer: usize::try_from(s.client_query_buffer_limit).unwrap_or(usize::MAX),
            output_buffer: usize::try_from(s.client_output_buffer_limit).unwrap_or(usize::MAX),
            idle_ms: u64::from(s.timeout) * 1000,
            next_idle_check_ms: 0,
        }
    }
}

impl<C: Clock> Shard<C> {
    /// Takes over an accepted connection.
    pub(super) fn adopt(&mut self, accepted: Accepted) {
        let Accepted { stream, tls } = accepted;
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            self.core.ctx.figures.clients.left();
            return;
        };
        let tcp = TcpStream::from_std(stream);
        let mut stream = match tls {
            None => Stream::Plain(tcp),
            Some(session) => Stream::Tls(Box::new(TlsStream::new(tcp, *session))),
        };
        let entry = self.conns.vacant_entry();
        let token = Token(entry.key());
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(error = %e, "cannot register a connection");
            self.core.ctx.figures.clients.left();
            return;
        }
        let session = Session::new(&self.core.ctx, peer, local);
        let tls = matches!(stream, Stream::Tls(_));
        debug!(client = session.id, %peer, tls, shard = self.core.id, "connection accepted");
        let limit = self.limits.output_buffer;
        entry.insert(Connection::new(stream, session, limit, self.core.now_ms));
        // Bytes may have arrived before registration; edge-triggered polling would not say so.
        self.resume.push(token.0);
    }

    /// Whether connection `idx` has gone past the query buffer limit; if so it is told to
    /// close, dropping the replies it has not read.
    pub(super) fn query_buffer_exceeded(&mut self, idx: usize) -> bool {
        let limit = self.limits.query_buffer;
        let Some(conn) = self.conns.get_mut(idx) else {
            return false;
        };
        if conn.input.len() <= limit {
            return false;
        }
        warn!(client = conn.session.id, peer = %conn.session.peer, limit,
              "closing client that reached the query buffer limit (--client-query-buffer-limit)");
        conn.closing = true;
        conn.output = Default::default();
        true
    }

    /// Closes connection `idx` if its unsent replies exceed the output buffer limit. Returns
    /// whether it was closed.
    pub(super) fn output_buffer_exceeded(&mut self, idx: usize) -> bool {
        let Some(conn) = self.conns.get(idx) else {
            return false;
        };
        if !conn.output.over_limit() {
            return false;
        }
        warn!(client = conn.session.id, peer = %conn.session.peer,
              bytes = conn.output.pending_bytes(), limit = self.limits.output_buffer,
              "closing client that reached the output buffer limit \
               (--client-output-buffer-limit): it sends requests without reading the replies");
        self.close(idx);
        true
    }

    /// About once a second with `--timeout`, closes connections idle for longer than that.
    pub(super) fn close_idle(&mut self) {
        let now = self.core.now_ms;
        if self.limits.idle_ms == 0 || now < self.limits.next_idle_check_ms {
            return;
        }
        self.limits.next_idle_check_ms = now + IDLE_CHECK_MS;
        let idle_ms = self.limits.idle_ms;
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                now.saturating_sub(c.last_active_ms) > idle_ms && !c.output.awaits_reply()
            })
            .map(|(idx, _)| idx)
            .collect();
        for idx in idle {
            if let Some(conn) = self.conns.get(idx) {
                debug!(client = conn.session.id, peer = %conn.session.peer, "closing idle client");
            }
            self.close(idx);
        }
    }

    /// The longest the loop may sleep so that idle connections are closed on time.
    pub(super) fn idle_poll_cap(&self) -> Option<std::time::Duration> {
        (self.limits.idle_ms > 0).then_some(std::time::Duration::from_millis(IDLE_CHECK_MS))
    }
}
