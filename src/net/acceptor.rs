//! The acceptors: one thread per RESP listener (plain, and TLS with `--tls-port`) that accepts
//! connections and deals them round-robin to the shards, so each connection lives on one
//! shard thread for its whole life.
//!
//! Before a connection reaches a shard, its acceptor enforces protected mode ([`access`]) and
//! `--maxclients` (counted over both listeners together), answering a refused client with
//! Redis's error. A TLS connection leaves with a fresh rustls session for a handshake thread
//! ([`crate::net::handshake`]), which passes it on to a shard once the session is established: neither
//! the accept loop nor any shard spends time on a handshake.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustls::{ServerConfig, ServerConnection};
use tracing::{debug, error, warn};

use crate::context::{ClientFigures, ServerContext};
use crate::lifecycle::Lifecycle;
use crate::net::access;
use crate::net::handshake::Handshakers;
use crate::sparse::Sparse;

/// The answer to a client accepted when the process had no file descriptor left.
const OUT_OF_FDS: &[u8] = b"-ERR max number of clients reached (out of file descriptors)\r\n";

/// Hands an accepted connection to a shard (the next one, round-robin); false when the shards
/// have stopped. The server builds it over the shards' inboxes, so this module needs to know
/// nothing of how shards are reached.
pub type Deal = Arc<dyn Fn(Accepted) -> bool + Send + Sync>;

/// An accepted connection on its way to a shard.
#[derive(Debug)]
pub struct Accepted {
    /// The socket, already nonblocking.
    pub stream: TcpStream,
    /// The TLS session over it, established, for a connection to `--tls-port`.
    pub tls: Option<Box<ServerConnection>>,
}

/// What an acceptor (or handshake thread) reads of the server, and nothing more: the client
/// figures it keeps, the shutdown switch, and two settings.
#[derive(Clone, Debug)]
pub struct AcceptorCtx {
    /// Connected, received and refused clients.
    pub clients: Arc<ClientFigures>,
    /// The shutdown switch.
    pub lifecycle: Arc<Lifecycle>,
    /// `--maxclients`, over both RESP listeners.
    pub maxclients: usize,
    /// Protected mode is in force: only loopback clients are served.
    pub protected: bool,
}

impl AcceptorCtx {
    /// The parts of `ctx` an acceptor reads.
    pub fn of(ctx: &ServerContext) -> Self {
        AcceptorCtx {
            clients: ctx.figures.clients.clone(),
            lifecycle: ctx.lifecycle.clone(),
            maxclients: ctx.config.maxclients as usize,
            protected: access::protects(&ctx.config),
        }
    }
}

/// Accepts connections on `listener` forever, handing each to a shard through `deal`. With
/// `tls`, every connection is a TLS one, handed to `tls`'s handshake threads first.
pub fn run(
    listener: TcpListener,
    deal: Deal,
    ctx: AcceptorCtx,
    mut tls: Option<(Arc<ServerConfig>, Handshakers)>,
) {
    // A descriptor kept in reserve, so that a client can be answered when none is left.
    let mut spare = std::fs::File::open("/dev/null").ok();
    let accept_errors = Sparse::default();
    let refusals = Sparse::default();
    for stream in listener.incoming() {
        if ctx.lifecycle.is_stopping() {
            // The listener was shut down (or a connection slipped in just before): stop.
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Usually out of file descriptors. The client would wait in the backlog
                // unanswered: free the spare descriptor, accept it, tell it why and close it.
                let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if out_of_fds && spare.take().is_some() {
                    if let Ok((refused, _)) = listener.accept() {
                        ctx.clients.rejected.fetch_add(1, Ordering::Relaxed);
                        refuse(refused, OUT_OF_FDS, tls.is_none());
                    }
                    spare = std::fs::File::open("/dev/null").ok();
                }
                if let Some(skipped) = accept_errors.ready() {
                    warn!(error = %e, skipped, "accept failed (logged at most once a second)");
                }
                // Back off briefly instead of spinning.
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        ctx.clients.received.fetch_add(1, Ordering::Relaxed);
        if let Ok(peer) = stream.peer_addr()
            && ctx.protected
            && !access::is_loopback(peer.ip())
        {
            debug!(%peer, "refused a connection: protected mode");
            refuse(stream, access::DENIED, tls.is_none());
            continue;
        }
        let limit = ctx.maxclients;
        if !ctx.clients.admit(limit) {
            refuse(
                stream,
                b"-ERR max number of clients reached\r\n",
                tls.is_none(),
            );
            if let Some(skipped) = refusals.ready() {
                warn!(
                    limit,
                    skipped, "refused a connection: max number of clients reached"
                );
            }
            continue;
        }
        if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
            ctx.clients.left();
            continue;
        }
        if let Some((config, handshakers)) = &mut tls {
            match ServerConnection::new(config.clone()) {
                Ok(session) => {
                    if !handshakers.hand(stream, session) {
                        ctx.clients.left();
                        error!("the TLS handshake threads have stopped; no longer accepting");
                        return;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot start a TLS session");
                    ctx.clients.left();
                }
            }
            continue;
        }
        if !deal(Accepted { stream, tls: None }) {
            ctx.clients.left();
            error!("a shard has stopped; no longer accepting connections");
            return;
        }
    }
}

/// Closes a refused connection, first sending `reply` on a plain one if the fresh socket
/// takes it at once (never blocking the loop). A TLS client that has not shaken hands could
/// not read a reply, so it only sees the connection close.
fn refuse(mut stream: TcpStream, reply: &[u8], plain: bool) {
    if plain {
        let _ = stream.set_nonblocking(true);
        let _ = stream.write_all(reply);
    }
}
