//! The acceptor: one thread that accepts RESP connections and deals them round-robin to the
//! shards, so each connection lives on one shard thread for its whole life.
//!
//! It also enforces `--maxclients`, answering the excess connection with Redis's error.

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{error, warn};

use crate::context::ServerContext;
use crate::shard::mesh::{External, Inbox};

/// Accepts connections on `listener` forever, handing each to the next shard's inbox.
pub fn run(listener: TcpListener, inboxes: Vec<Inbox>, ctx: Arc<ServerContext>) {
    let mut next = 0usize;
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Usually out of file descriptors; back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        ctx.connections_received.fetch_add(1, Ordering::Relaxed);
        let limit = ctx.config.maxclients as usize;
        if ctx.clients.fetch_add(1, Ordering::Relaxed) >= limit {
            ctx.clients.fetch_sub(1, Ordering::Relaxed);
            ctx.rejected_connections.fetch_add(1, Ordering::Relaxed);
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
            warn!(limit, "refused a connection: max number of clients reached");
            continue;
        }
        if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
            ctx.clients.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let Some(inbox) = inboxes.get(next % inboxes.len().max(1)) else {
            error!("no shard to serve connections");
            return;
        };
        next = next.wrapping_add(1);
        if inbox.send(External::Connection(stream)).is_err() {
            ctx.clients.fetch_sub(1, Ordering::Relaxed);
            error!("a shard has stopped; no longer accepting connections");
            return;
        }
    }
}
