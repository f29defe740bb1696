//! TLS handshakes, off the shard loops: connections to `--tls-port` shake hands on their own
//! threads and reach a shard only once the session is established.
//!
//! A handshake costs about a millisecond of CPU (key exchange and signature); run on a shard
//! it holds up every client of that shard for as long, so a burst of reconnecting TLS clients
//! would slow everyone's replies. Here the acceptor hands each fresh TLS connection to one of
//! a few handshake threads (round-robin), each a mio loop over many nonblocking handshakes. When
//! one completes, the socket and its session go to the next shard like a plain connection.
//!
//! Invariants:
//! - A connection is counted in `--maxclients` from its accept on; one that fails or times out
//!   here is uncounted as it is dropped.
//! - A handshake has [`HANDSHAKE_TIMEOUT`] to finish; a client that stalls is dropped, so
//!   connections that never shake hands cannot hold client slots.
//! - Failures (bad certificates, protocol errors, plaintext on the TLS port) are logged at
//!   info, at most one line a second with the count held back.
//! - Plaintext the client sent right after its last handshake message stays in the rustls
//!   session; the shard reads the session before the socket when it takes the connection over.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::ServerConnection;
use slab::Slab;
use tracing::{debug, info, warn};

use crate::net::acceptor::{Accepted, AcceptorCtx, Deal};
use crate::sparse::Sparse;

/// How long a client has to complete its TLS handshake after the connection is accepted.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often, at most, a handshake thread looks for handshakes past their time (and for a
/// shutdown) when nothing else wakes it.
const SWEEP: Duration = Duration::from_millis(250);

const WAKER: Token = Token(usize::MAX);

/// The acceptor's handle on the handshake threads: hands each new TLS connection to the next.
#[derive(Debug)]
pub struct Handshakers {
    threads: Vec<Handoff>,
    next: usize,
}

#[derive(Debug)]
struct Handoff {
    sender: Sender<(std::net::TcpStream, ServerConnection)>,
    waker: Arc<Waker>,
}

impl Handshakers {
    /// Starts `threads` handshake threads (at least one) that deliver established
    /// connections to the shards through `deal`.
    pub fn spawn(threads: usize, deal: Deal, ctx: AcceptorCtx) -> io::Result<Self> {
        let failures = Arc::new(Sparse::default());
        let mut handoffs = Vec::new();
        for n in 0..threads.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (sender, receiver) = mpsc::channel();
            let mut worker = Worker {
                poll,
                receiver,
                pending: Slab::new(),
                deal: deal.clone(),
                ctx: ctx.clone(),
                failures: failures.clone(),
            };
            std::thread::Builder::new()
                .name(format!("tls-handshake-{n}"))
                .spawn(move || worker.run())?;
            handoffs.push(Handoff { sender, waker });
        }
        Ok(Handshakers {
            threads: handoffs,
            next: 0,
        })
    }

    /// Hands `stream` (nonblocking, counted in `--maxclients`) to a handshake thread. Fails
    /// only when the threads have stopped; the caller then uncounts the connection.
    pub fn hand(&mut self, stream: std::net::TcpStream, session: ServerConnection) -> bool {
        let Some(handoff) = self.threads.get(self.next % self.threads.len().max(1)) else {
            return false;
        };
        self.next = self.next.wrapping_add(1);
        handoff.sender.send((stream, session)).is_ok() && handoff.waker.wake().is_ok()
    }
}

/// A connection shaking hands.
struct Pending {
    tcp: TcpStream,
    tls: ServerConnection,
    peer: Option<SocketAddr>,
    deadline: Instant,
}

/// Where a handshake stands after it was driven as far as the socket allows.
enum Progress {
    Established,
    Waiting,
    Failed(io::Error),
}

impl Pending {
    /// Reads, processes and writes handshake records until the socket would block, the
    /// handshake completes or it fails.
    fn drive(&mut self) -> Progress {
        loop {
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.tcp) {
                    Ok(0) => return Progress::Failed(ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // Records still to send after the handshake (session tickets) go with the
                    // first reply; during it, writability wakes this thread again.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if self.tls.is_handshaking() {
                            return Progress::Waiting;
                        }
                        break;
                    }
                    Err(e) => return Progress::Failed(e),
                }
            }
            if !self.tls.is_handshaking() {
                return Progress::Established;
            }
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => {
                    return Progress::Failed(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the client closed the connection during the handshake",
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Waiting,
                Err(e) => return Progress::Failed(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Send the alert rustls queued, if the socket takes it at once.
                let _ = self.tls.write_tls(&mut self.tcp);
                return Progress::Failed(io::Error::new(ErrorKind::InvalidData, e));
            }
        }
    }
}

/// Gives the calling thread a lower CPU priority (nice 10) than the shards, so that when the
/// cores are busy, served clients go first and handshakes wait; with idle cores it changes
/// nothing. Failing to lower it is harmless and ignored.
fn lower_priority() {
    // SAFETY: gettid takes no arguments and cannot fail; setpriority takes plain integers
    // (PRIO_PROCESS with a thread id applies to that thread alone on Linux) and touches no
    // memory of ours.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// One handshake thread.
struct Worker {
    poll: Poll,
    receiver: Receiver<(std::net::TcpStream, ServerConnection)>,
    pending: Slab<Pending>,
    deal: Deal,
    ctx: AcceptorCtx,
    failures: Arc<Sparse>,
}

impl Worker {
    fn run(&mut self) {
        lower_priority();
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            if self.ctx.lifecycle.is_stopping() {
                for p in self.pending.drain() {
                    drop(p);
                    self.ctx.clients.left();
                }
                return;
            }
            let wait = next_sweep.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    warn!(error = %e, "TLS handshake poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    if !self.take_new() {
                        return;
                    }
                } else {
                    self.advance(event.token().0);
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.expire(now);
                next_sweep = now + SWEEP;
            }
        }
    }

    /// Registers the connections the acceptor has handed over and starts their handshakes.
    /// False when the acceptor has gone and nothing is left to do.
    fn take_new(&mut self) -> bool {
        loop {
            match self.receiver.try_recv() {
                Ok((stream, tls)) => {
                    let peer = stream.peer_addr().ok();
                    let entry = self.pending.vacant_entry();
                    let token = Token(entry.key());
                    let mut tcp = TcpStream::from_std(stream);
                    if let Err(e) = self.poll.registry().register(
                        &mut tcp,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!(error = %e, "cannot register a TLS connection");
                        self.ctx.clients.left();
                        continue;
                    }
                    entry.insert(Pending {
                        tcp,
                        tls,
                        peer,
                        deadline: Instant::now() + HANDSHAKE_TIMEOUT,
                    });
                    // The ClientHello may be there already; edge-triggered polling would not
                    // say so.
                    self.advance(token.0);
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return !self.pending.is_empty(),
            }
        }
    }

    /// Drives handshake `idx`; hands it to a shard when established, drops it when failed.
    fn advance(&mut self, idx: usize) {
        let Some(pending) = self.pending.get_mut(idx) else {
            return;
        };
        match pending.drive() {
            Progress::Waiting => {}
            Progress::Established => {
                let mut p = self.pending.remove(idx);
                let _ = self.poll.registry().deregister(&mut p.tcp);
                self.deliver(p);
            }
            Progress::Failed(e) => {
                let p = self.pending.remove(idx);
                self.fail(p, &e.to_string());
            }
        }
    }

    /// Sends an established connection to a shard.
    fn deliver(&mut self, p: Pending) {
        debug!(peer = ?p.peer, "TLS handshake completed");
        let accepted = Accepted {
            stream: p.tcp.into(),
            tls: Some(Box::new(p.tls)),
        };
        if !(self.deal)(accepted) {
            // The shard has stopped: the server is shutting down.
            self.ctx.clients.left();
        }
    }

    /// Drops a connection whose handshake failed, saying why at a bounded rate.
    fn fail(&self, p: Pending, reason: &str) {
        self.ctx.clients.left();
        if let Some(skipped) = self.failures.ready() {
            let peer = p
                .peer
                .map_or_else(|| "unknown".to_string(), |a| a.to_string());
            info!(%peer, error = reason, skipped,
                  "TLS handshake failed (logged at most once a second)");
        }
    }

    /// Drops the handshakes that have run past [`HANDSHAKE_TIMEOUT`].
    fn expire(&mut self, now: Instant) {
        let late: Vec<usize> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(idx, _)| idx)
            .collect();
        for idx in late {
            let p = self.pending.remove(idx);
            self.fail(p, "the handshake did not complete in time");
        }
    }
}
