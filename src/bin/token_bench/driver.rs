//! The closed loop of one connection.
//!
//! A connection writes a batch of `pipeline` requests, reads exactly that many replies, and
//! repeats until the deadline passes or the shared operation budget runs out. Two-step
//! workloads (cycle, contended, http) send the batch of locks, then one batch with the
//! completion or release of each granted lock. Every reply is judged and its latency recorded
//! from the moment its batch was written. A closed, silent (past `--timeout-ms`) or garbled
//! connection ends with a [`ConnError`] that says which and after how many requests.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http;
use crate::report::Tally;
use crate::workload::{self, Finish, Outcome, Rng, Target, Workload};
use token_server::protocol::reply_reader as resp;

/// Everything the connections share, read-only but for the operation budget.
pub struct Plan {
    /// What to send.
    pub workload: Workload,
    /// Which server's commands to use.
    pub target: Target,
    /// Requests per batch.
    pub pipeline: usize,
    /// Lease in ms as decimal text, or `None` for no lease.
    pub ttl: Option<Vec<u8>>,
    /// Ids are drawn from this many (raced for) instead of fresh per operation.
    pub shared_ids: Option<u64>,
    /// Prefix of every id.
    pub prefix: Vec<u8>,
    /// Number of connections (ids of connection `i` are `i`, `i + connections`, ...).
    pub connections: usize,
    /// Longest wait for a reply (or a write) before the connection is declared stuck.
    pub timeout: Duration,
    /// No new batch starts after this instant.
    pub deadline: Option<Instant>,
    /// Operations left to start; `u64::MAX` for no limit.
    pub budget: AtomicU64,
    /// Seed for ids and tokens, varied per connection.
    pub seed: u64,
}

impl Plan {
    /// Takes up to `want` operations from the budget; 0 means stop.
    fn claim(&self, want: u64) -> u64 {
        let mut left = self.budget.load(Ordering::Relaxed);
        loop {
            let take = left.min(want);
            if take == 0 {
                return 0;
            }
            match self.budget.compare_exchange_weak(
                left,
                left - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => left = now,
            }
        }
    }
}

/// Why a connection stopped early.
#[derive(Debug)]
pub struct ConnError {
    /// Which connection.
    pub index: usize,
    /// Requests it had answered by then.
    pub requests: u64,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection {} failed after {} replies: {}",
            self.index, self.requests, self.reason
        )
    }
}

/// Opens one connection, with `TCP_NODELAY` as every Redis client sets it.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot connect to {addr}: {e} (is the server running?)"
            ));
        }
        Err(_) => {
            return Err(format!(
                "cannot connect to {addr}: no answer within {timeout:?}"
            ));
        }
    };
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY on {addr}: {e}"))?;
    Ok(stream)
}

/// The socket and its receive buffer.
struct Wire {
    stream: TcpStream,
    buf: BytesMut,
    http: bool,
    timeout: Duration,
}

impl Wire {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err(format!("write blocked for {:?}", self.timeout)),
        }
    }

    /// Reads until a whole reply is at the front of the buffer; returns its length.
    async fn next_reply(&mut self) -> Result<usize, String> {
        loop {
            let found = if self.http {
                http::parse(&self.buf)
                    .map_err(|e| e.to_string())?
                    .map(|(_, n)| n)
            } else {
                resp::parse(&self.buf)
                    .map_err(|e| e.to_string())?
                    .map(|(_, n)| n)
            };
            if let Some(n) = found {
                return Ok(n);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            match tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Err("the server closed the connection".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("read failed: {e}")),
                Err(_) => return Err(format!("no reply within {:?}", self.timeout)),
            }
        }
    }
}

/// One granted lock waiting for its second step.
struct Held {
    id: u64,
    key: Vec<u8>,
}

/// Runs one connection's loop to the end and returns what it counted.
pub async fn run(
    stream: TcpStream,
    plan: &Plan,
    index: usize,
) -> Result<Tally, (Tally, ConnError)> {
    let mut conn = Conn {
        wire: Wire {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            http: plan.workload == Workload::Http,
            timeout: plan.timeout,
        },
        plan,
        tally: Tally::new(),
        out: Vec::with_capacity(plan.pipeline * 96),
        id: Vec::with_capacity(plan.prefix.len() + 16),
        held: (0..plan.pipeline)
            .map(|_| Held {
                id: 0,
                key: Vec::with_capacity(32),
            })
            .collect(),
        granted: 0,
        ids: Vec::with_capacity(plan.pipeline),
        rng: Rng::new(plan.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        next_id: index as u64,
    };
    match conn.run_loop().await {
        Ok(()) => Ok(conn.tally),
        Err(reason) => {
            let requests = conn.tally.requests;
            Err((
                conn.tally,
                ConnError {
                    index,
                    requests,
                    reason,
                },
            ))
        }
    }
}

struct Conn<'p> {
    wire: Wire,
    plan: &'p Plan,
    tally: Tally,
    out: Vec<u8>,
    id: Vec<u8>,
    /// Slots for this batch's granted locks; the first `granted` are in use.
    held: Vec<Held>,
    granted: usize,
    /// The ids of the batch in flight, in request order.
    ids: Vec<u64>,
    rng: Rng,
    next_id: u64,
}

impl Conn<'_> {
    async fn run_loop(&mut self) -> Result<(), String> {
        let plan = self.plan;
        loop {
            if plan.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
            let n = plan.claim(plan.pipeline as u64) as usize;
            if n == 0 {
                return Ok(());
            }
            match plan.workload {
                Workload::Ping => self.ping_batch(n).await?,
                Workload::Lock => self.lock_batch(n).await?,
                Workload::Cycle => {
                    self.lock_batch(n).await?;
                    self.finish_batch(Finish::Complete).await?;
                }
                Workload::Contended => {
                    self.lock_batch(n).await?;
                    self.finish_batch(Finish::Release).await?;
                }
                Workload::Http => {
                    self.lock_batch(n).await?;
                    self.finish_batch(Finish::Complete).await?;
                }
            }
            self.tally.ops += n as u64;
        }
    }

    async fn ping_batch(&mut self, n: usize) -> Result<(), String> {
        self.out.clear();
        for _ in 0..n {
            workload::push_command(&mut self.out, &[b"PING"]);
        }
        let start = Instant::now();
        self.wire.send(&self.out).await?;
        for _ in 0..n {
            let len = self.wire.next_reply().await?;
            self.tally.record(start.elapsed());
            let outcome = match resp::parse(&self.wire.buf[..len]) {
                Ok(Some((reply, _))) => workload::judge_ping(reply),
                _ => Outcome::Unexpected("unparsed"),
            };
            count_into(&mut self.tally, outcome);
            self.wire.buf.advance(len);
        }
        Ok(())
    }

    fn pick_id(&mut self) -> u64 {
        match self.plan.shared_ids {
            Some(space) => self.rng.below(space),
            None => {
                let id = self.next_id;
                self.next_id += self.plan.connections as u64;
                id
            }
        }
    }

    /// Sends `n` lock requests and keeps the granted ones in `held`.
    async fn lock_batch(&mut self, n: usize) -> Result<(), String> {
        let plan = self.plan;
        let ttl = plan.ttl.as_deref();
        self.out.clear();
        self.granted = 0;
        self.ids.clear();
        for slot in 0..n {
            let id_n = self.pick_id();
            self.ids.push(id_n);
            self.id.clear();
            workload::push_id(&mut self.id, &plan.prefix, id_n);
            if plan.workload == Workload::Http {
                workload::push_http_lock(&mut self.out, &self.id, ttl);
            } else {
                // Redis stores our token; token-server makes its own key.
                let token = &mut self.held[slot].key;
                if plan.target == Target::Redis {
                    self.rng.fill_token(token);
                }
                workload::push_lock(&mut self.out, plan.target, &self.id, token, ttl);
            }
        }
        let start = Instant::now();
        self.wire.send(&self.out).await?;
        let shared = plan.shared_ids.is_some();
        for slot in 0..n {
            let id_n = self.ids[slot];
            let len = self.wire.next_reply().await?;
            self.tally.record(start.elapsed());
            let bytes = &self.wire.buf[..len];
            let outcome = if self.wire.http {
                match http::parse(bytes) {
                    Ok(Some((response, _))) => {
                        if response.closing {
                            return Err("the server closed the HTTP connection".into());
                        }
                        workload::judge_http(false, shared, response)
                    }
                    _ => Outcome::Unexpected("unparsed"),
                }
            } else {
                match resp::parse(bytes) {
                    Ok(Some((reply, _))) => workload::judge_lock(plan.target, shared, reply),
                    _ => Outcome::Unexpected("unparsed"),
                }
            };
            match outcome {
                Outcome::Ok(Some(key))
                    if self.wire.http && !key.iter().all(u8::is_ascii_alphanumeric) =>
                {
                    count_into(&mut self.tally, Outcome::Unexpected("bad-key"));
                }
                Outcome::Ok(key) => {
                    // Slots before `slot` are done with, so the token (or key buffer) at
                    // `slot` can move down to the next free place among the granted.
                    self.held.swap(slot, self.granted);
                    let held = &mut self.held[self.granted];
                    held.id = id_n;
                    if let Some(key) = key {
                        held.key.clear();
                        held.key.extend_from_slice(key);
                    }
                    self.granted += 1;
                }
                other => count_into(&mut self.tally, other),
            }
            self.wire.buf.advance(len);
        }
        Ok(())
    }

    /// Completes or releases every lock granted by the last batch.
    async fn finish_batch(&mut self, finish: Finish) -> Result<(), String> {
        let plan = self.plan;
        let n = self.granted;
        if n == 0 {
            return Ok(());
        }
        self.out.clear();
        for held in &self.held[..n] {
            self.id.clear();
            workload::push_id(&mut self.id, &plan.prefix, held.id);
            if self.wire.http {
                workload::push_http_complete(&mut self.out, &self.id, &held.key);
            } else {
                workload::push_finish(&mut self.out, plan.target, finish, &self.id, &held.key);
            }
        }
        let start = Instant::now();
        self.wire.send(&self.out).await?;
        for _ in 0..n {
            let len = self.wire.next_reply().await?;
            self.tally.record(start.elapsed());
            let bytes = &self.wire.buf[..len];
            let outcome = if self.wire.http {
                match http::parse(bytes) {
                    Ok(Some((response, _))) => workload::judge_http(true, false, response),
                    _ => Outcome::Unexpected("unparsed"),
                }
            } else {
                match resp::parse(bytes) {
                    Ok(Some((reply, _))) => workload::judge_finish(plan.target, finish, reply),
                    _ => Outcome::Unexpected("unparsed"),
                }
            };
            count_into(&mut self.tally, outcome);
            self.wire.buf.advance(len);
        }
        self.granted = 0;
        Ok(())
    }
}

fn count_into(tally: &mut Tally, outcome: Outcome<'_>) {
    match outcome {
        Outcome::Ok(_) => {}
        Outcome::Expected(kind) => tally.count_error(true, kind),
        Outcome::Unexpected(kind) => tally.count_error(false, kind),
    }
}
