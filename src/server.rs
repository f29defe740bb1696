//! Starting the server: bind, build the shards and their mesh, spawn the threads.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::{Poll, Waker};
use tracing::info;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::context::ServerContext;
use crate::keys::KeyGenerator;
use crate::net::acceptor;
use crate::shard::event_loop::{Shard, WAKER_TOKEN};
use crate::shard::mesh::{self, Inbox};

/// A started server.
pub struct Running {
    /// The bound RESP address.
    pub resp_addr: SocketAddr,
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// The shared context.
    pub ctx: Arc<ServerContext>,
    /// How outside threads reach each shard.
    pub inboxes: Vec<Inbox>,
    shard_threads: Vec<JoinHandle<io::Result<()>>>,
    /// The acceptor and the HTTP server: they end with the process.
    _edge_threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Asks every shard to finish its current loop iteration, make its log durable and stop.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.inboxes.clone())
    }

    /// Waits for the shard threads to stop; returns the first error any of them stopped with.
    pub fn wait(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.shard_threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a server thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Stops a running server from another thread (a signal handler, a test).
#[derive(Clone, Debug)]
pub struct ShutdownHandle(Vec<Inbox>);

impl ShutdownHandle {
    /// Sends every shard the order to stop.
    pub fn shutdown(&self) {
        for inbox in &self.0 {
            let _ = inbox.send(crate::shard::mesh::External::Shutdown);
        }
    }
}

/// Binds the listeners and starts the shard threads, the acceptor and the HTTP server.
pub fn start(config: Config) -> io::Result<Running> {
    let shards = config.shard_count();
    let listener = bind(&config, config.port)?;
    let resp_addr = listener.local_addr()?;
    let http_listener = bind(&config, config.http_port)?;
    let http_addr = http_listener.local_addr()?;
    let mut ctx = ServerContext::new(config, resp_addr, shards);
    ctx.http_addr = http_addr;
    let ctx = Arc::new(ctx);

    let mut polls = Vec::with_capacity(shards);
    let mut wakers = Vec::with_capacity(shards);
    for _ in 0..shards {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?));
        polls.push(poll);
    }
    let (endpoints, inboxes) = mesh::build(wakers);

    let mut threads = Vec::with_capacity(shards);
    let mut edge_threads = Vec::with_capacity(2);
    for (poll, endpoint) in polls.into_iter().zip(endpoints) {
        let keys = KeyGenerator::from_os()?;
        let shard = Shard::new(poll, endpoint, ctx.clone(), SystemClock, keys);
        let name = format!("shard-{}", threads.len());
        threads.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || shard.run())?,
        );
    }
    {
        let inboxes = inboxes.clone();
        let ctx = ctx.clone();
        edge_threads.push(std::thread::Builder::new().name("acceptor".into()).spawn(
            move || {
                acceptor::run(listener, inboxes, ctx);
                Ok(())
            },
        )?);
    }
    edge_threads.push(crate::http::spawn(http_listener, inboxes.clone(), &ctx)?);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        shards,
        dir = %ctx.config.dir.display(),
        appendfsync = ctx.config.appendfsync.as_str(),
        "token-server started"
    );
    // HTTP first: the RESP line tells watchers that the whole server is up.
    info!("listening http={http_addr}");
    info!("listening resp={resp_addr}");
    Ok(Running {
        resp_addr,
        http_addr,
        ctx,
        inboxes,
        shard_threads: threads,
        _edge_threads: edge_threads,
    })
}

/// Binds a listener on the configured address and `port`, naming both in the error.
fn bind(config: &Config, port: u16) -> io::Result<TcpListener> {
    TcpListener::bind((config.bind, port)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}:{port}: {e}", config.bind),
        )
    })
}
