//! A RESP connection's byte stream: a plain socket or a TLS session over one.
//!
//! The shard loop reads, writes and registers a [`Stream`] without knowing which it is, so the
//! request path is the same for both. Both keep the nonblocking socket contract (`WouldBlock`
//! means wait for readiness); `flush` is a no-op for a plain socket and pushes pending TLS
//! records for a TLS one.

use std::io::{self, Read, Write};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::net::tls::TlsStream;

/// A client connection's transport.
#[derive(Debug)]
pub enum Stream {
    /// Bytes straight on the socket.
    Plain(TcpStream),
    /// A TLS session (boxed: rustls's state is large, plain sockets stay small).
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Whether a read that returns less than it was offered proves the connection drained:
    /// true for a plain socket (epoll reports the next arrival as a new edge), false for TLS,
    /// whose session may hold decrypted bytes the socket no longer has.
    pub fn short_read_drains(&self) -> bool {
        matches!(self, Stream::Plain(_))
    }

    /// Whether the peer has closed its side and sent nothing more: a peek at the socket finds
    /// its end (or an error). Used before handing a lock to a connection, so that a client
    /// that went away is not given one. Data still unread reads as open.
    pub fn peer_has_closed(&self) -> bool {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.tcp,
        };
        let mut byte = [0u8; 1];
        match tcp.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
    }

    fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &mut t.tcp,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.flush(),
        }
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp().deregister(registry)
    }
}
