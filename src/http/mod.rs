//! The HTTP adapter: `GET /lock?id=`, `/unlock?id=&key=`, `/complete?id=&key=`, and `/` (help).
//!
//! It runs hyper (HTTP/1.1 with keep-alive and pipelining) on a small tokio runtime of its own,
//! apart from the shard threads. Each request becomes the same [`crate::table::Op`] value the
//! RESP path builds ([`query`]), goes to the inbox of the shard that owns its id (`shard_for`),
//! and its typed outcome comes back on a oneshot channel; [`status::outcome_response`] is the
//! one function that turns that outcome into a status and body ([`router`]). docs/HTTP.md is
//! the contract.
//!
//! Invariants:
//! - No lock semantics live here: the shard decides, this module only names the outcome.
//! - Every request passes the [`gate`] first: `Authorization: Bearer` with `--requirepass`,
//!   protected mode without one; only the probes (`/health`, `/ready`) are always open.
//! - With `--tls-http-port`, the same service is also served over TLS (rustls); the handshake
//!   must finish within `--http-header-timeout` and counts against `--maxclients` like any
//!   connection.
//! - Nothing a client sends can panic the server or hold up another client: the request head is
//!   capped at [`MAX_HEAD_BYTES`] (hyper answers 431 and closes), a head must arrive within
//!   `--http-header-timeout` (otherwise the connection is closed without an answer; this also
//!   bounds how long a keep-alive connection may sit idle), bodies are read only up to a small
//!   cap and within the same time (`408` otherwise), a response that waits that long for the
//!   client to read it ends the connection ([`stall`]), and at most `--maxclients` connections
//!   are served at once (the next one gets `503 busy` and is closed).
//! - A response body never holds a key, except the key a successful `/lock` hands out.

pub mod exposition;
pub mod gate;
pub mod probes;
pub mod query;
pub mod router;
pub mod stall;
pub mod status;

use std::io;
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sparse::Sparse;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::context::ServerContext;
use crate::shard::mesh::Inbox;

use self::gate::Gate;
use self::router::Router;

/// The largest request head (request line and headers) accepted, in bytes; over it the answer
/// is 431. This is also hyper's smallest allowed read buffer.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The most worker threads the HTTP runtime uses; fewer on smaller machines.
const MAX_WORKER_THREADS: usize = 4;

/// What a connection over `--maxclients` gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 4\r\n\
cache-control: no-store\r\n\
connection: close\r\n\
\r\n\
busy";

/// Starts serving HTTP on `listener`, and HTTPS on `tls` (a listener and its TLS settings)
/// when given: builds the runtime, then runs the accept loops on a new thread named `http`.
/// The returned handle ends only if a listener cannot be used.
pub fn spawn(
    listener: TcpListener,
    tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    inboxes: Vec<Inbox>,
    ctx: &Arc<ServerContext>,
) -> io::Result<JoinHandle<io::Result<()>>> {
    listener.set_nonblocking(true)?;
    if let Some((tls_listener, _)) = &tls {
        tls_listener.set_nonblocking(true)?;
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKER_THREADS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("http-worker")
        .enable_io()
        .enable_time()
        .build()?;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(u64::from(
            ctx.config.http_header_timeout,
        )))
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        // `pipeline_flush` stays off: with it, hyper 1.12 closes without sending its own
        // 400/431 answers to malformed or oversized heads.
        .keep_alive(true);
    let server = Arc::new(HttpServer {
        router: Arc::new(Router {
            inboxes,
            limits: ctx.limits,
            ctx: ctx.clone(),
            body_timeout: Duration::from_secs(u64::from(ctx.config.http_header_timeout)),
        }),
        builder: Arc::new(builder),
        connections: Arc::new(Semaphore::new(ctx.config.maxclients as usize)),
        maxclients: ctx.config.maxclients,
        gate: Arc::new(Gate::new(&ctx.config)),
        handshake_timeout: Duration::from_secs(u64::from(ctx.config.http_header_timeout)),
        handshake_failures: Arc::new(Sparse::default()),
    });
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Some((tls_listener, config)) = tls {
                    let acceptor = TlsAcceptor::from(config);
                    tokio::spawn(server.clone().accept_loop(tls_listener, Some(acceptor)));
                }
                server.accept_loop(listener, None).await
            })
        })
}

/// The accept loop's state.
struct HttpServer {
    router: Arc<Router>,
    builder: Arc<http1::Builder>,
    /// One permit per connection being served.
    connections: Arc<Semaphore>,
    maxclients: u32,
    /// Protected mode and the password.
    gate: Arc<Gate>,
    /// How long a TLS handshake may take, and a write may wait for the client to read.
    handshake_timeout: Duration,
    /// Failed handshakes, logged at most once a second.
    handshake_failures: Arc<Sparse>,
}

impl HttpServer {
    /// Accepts connections forever, each served on its own task; over TLS with `tls`.
    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let http = &self.router.ctx.figures.http;
        let mut stopping = self.router.ctx.lifecycle.subscribe();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => Some(accepted),
                _ = stopped(&mut stopping) => None,
            };
            let Some(accepted) = accepted else {
                // A shutdown: the port closes now; connections being served finish their
                // request and close (see `Served::serve`); the process exits after them.
                drop(listener);
                std::future::pending::<()>().await;
                return Ok(());
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    http.connections_received.fetch_add(1, Ordering::Relaxed);
                    accepted
                }
                Err(e) => {
                    // Usually out of file descriptors; back off briefly instead of spinning.
                    warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                http.rejected_connections.fetch_add(1, Ordering::Relaxed);
                warn!(
                    limit = self.maxclients,
                    "refused an http connection: max number of clients reached"
                );
                // A fresh socket's send buffer takes these few bytes at once; then it closes.
                // A TLS client that has not shaken hands could not read it: it sees the close.
                if tls.is_none() {
                    let _ = stream.try_write(BUSY);
                }
                drop(stream);
                continue;
            };
            // Small replies must leave at once rather than wait for more to send.
            let _ = stream.set_nodelay(true);
            let conn = Served {
                io_timeout: self.handshake_timeout,
                router: self.router.clone(),
                builder: self.builder.clone(),
                gate: self.gate.clone(),
                peer: peer.ip(),
                _permit: permit,
            };
            match &tls {
                None => {
                    tokio::spawn(conn.serve(stream));
                }
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    let limit = self.handshake_timeout;
                    let failures = self.handshake_failures.clone();
                    tokio::spawn(async move {
                        let error = match tokio::time::timeout(limit, handshake).await {
                            Ok(Ok(stream)) => return conn.serve(stream).await,
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => "the handshake did not complete in time".to_string(),
                        };
                        if let Some(skipped) = failures.ready() {
                            info!(%peer, error, skipped,
                                  "https TLS handshake failed (logged at most once a second)");
                        }
                    });
                }
            }
        }
    }
}

/// Resolves once the server is stopping (at once if it already is).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await: drop it here.
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// One accepted connection and what serving it needs.
struct Served {
    /// How long a response may wait for the client to read it.
    io_timeout: Duration,
    router: Arc<Router>,
    builder: Arc<http1::Builder>,
    gate: Arc<Gate>,
    peer: IpAddr,
    /// Released when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Served {
    /// Serves the connection until the client closes it or breaks a limit.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Served {
            io_timeout,
            router,
            builder,
            gate,
            peer,
            _permit,
        } = self;
        let ctx = router.ctx.clone();
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let router = router.clone();
            let refused = gate.check(
                peer,
                request.uri().path(),
                request.headers().get(hyper::header::AUTHORIZATION),
            );
            if refused.as_ref().is_some_and(gate::is_wrong_credentials) {
                router.ctx.figures.clients.auth_failed(&peer);
            }
            async move {
                match refused {
                    Some(response) => Ok(response),
                    None => router.handle(request).await,
                }
            }
        });
        ctx.figures.http.clients.fetch_add(1, Ordering::Relaxed);
        let stream = stall::Stalled::new(stream, io_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let mut stopping = ctx.lifecycle.subscribe();
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            _ = stopped(&mut stopping) => {
                // A shutdown: finish the request in progress, if any, then close.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        ctx.figures.http.clients.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = ended {
            debug!(error = %e, "http connection ended with an error");
        }
    }
}
