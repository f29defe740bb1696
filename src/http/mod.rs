//! The HTTP adapter: `GET /lock?id=`, `/unlock?id=&key=`, `/complete?id=&key=`, and `/` (help).
//!
//! It runs hyper (HTTP/1.1 with keep-alive and pipelining) on a small tokio runtime of its own,
//! apart from the shard threads. Each request becomes the same [`Command`] value the RESP path
//! builds ([`query`]), goes to the inbox of the shard that owns its id (`shard_for`), and its
//! reply comes back on a oneshot channel; [`status::reply_response`] is the one function that
//! turns that reply into a status and body ([`router`]). docs/HTTP.md is the contract.
//!
//! Invariants:
//! - No lock semantics live here: the shard decides, this module only names the outcome.
//! - Nothing a client sends can panic the server or hold up another client: the request head is
//!   capped at [`MAX_HEAD_BYTES`] (hyper answers 431 and closes), a head must arrive within
//!   `--http-header-timeout` (otherwise the connection is closed without an answer; this also
//!   bounds how long a keep-alive connection may sit idle), bodies are read only up to a small
//!   cap, and at most `--maxclients` connections are served at once (the next one gets
//!   `503 busy` and is closed).
//! - A response body never holds a key, except the key a successful `/lock` hands out.
//!
//! [`Command`]: crate::command::Command

pub mod query;
pub mod router;
pub mod status;

use std::convert::Infallible;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::context::ServerContext;
use crate::shard::mesh::Inbox;

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
connection: close\r\n\
\r\n\
busy";

/// Starts serving HTTP on `listener`: builds the runtime, then runs the accept loop on a new
/// thread named `http`. The returned handle ends only if the listener cannot be used.
pub fn spawn(
    listener: TcpListener,
    inboxes: Vec<Inbox>,
    ctx: &ServerContext,
) -> io::Result<JoinHandle<io::Result<()>>> {
    listener.set_nonblocking(true)?;
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
    let server = HttpServer {
        router: Arc::new(Router {
            inboxes,
            limits: ctx.limits,
        }),
        builder: Arc::new(builder),
        connections: Arc::new(Semaphore::new(ctx.config.maxclients as usize)),
        maxclients: ctx.config.maxclients,
    };
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || runtime.block_on(server.accept_loop(listener)))
}

/// The accept loop's state.
struct HttpServer {
    router: Arc<Router>,
    builder: Arc<http1::Builder>,
    /// One permit per connection being served.
    connections: Arc<Semaphore>,
    maxclients: u32,
}

impl HttpServer {
    /// Accepts connections forever, each served on its own task.
    async fn accept_loop(self, listener: TcpListener) -> io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Usually out of file descriptors; back off briefly instead of spinning.
                    warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                warn!(
                    limit = self.maxclients,
                    "refused an http connection: max number of clients reached"
                );
                // A fresh socket's send buffer takes these few bytes at once; then it closes.
                let _ = stream.try_write(BUSY);
                drop(stream);
                continue;
            };
            // Small replies must leave at once rather than wait for more to send.
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(
                stream,
                self.router.clone(),
                self.builder.clone(),
                permit,
            ));
        }
    }
}

/// Serves one connection until the client closes it or breaks a limit; the permit is released
/// when it ends.
async fn serve(
    stream: TcpStream,
    router: Arc<Router>,
    builder: Arc<http1::Builder>,
    _permit: OwnedSemaphorePermit,
) {
    let service = service_fn(move |request| {
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.handle(request).await) }
    });
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        debug!(error = %e, "http connection ended with an error");
    }
}
