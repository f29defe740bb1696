//! `token-bench`: a closed-loop load generator for token-server and, with the equivalent
//! commands, for a stock Redis, so both are measured by the same tool.
//!
//! Each connection keeps `--pipeline` requests in flight, waits for all their replies, and sends
//! the next batch, until `--duration` has passed or `--count` operations have been started.
//! It reports operations per second, per-request latency percentiles (HDR histogram) and error
//! replies by kind; refusals a workload expects (LOCKED when racing for few ids) are counted,
//! never fatal. See `token-bench --help` and docs/performance.md.
//!
//! Code map: `token_bench/workload.rs` (what is sent and how replies are judged),
//! `token_bench/driver.rs` (one connection's loop), `token_bench/resp.rs` and
//! `token_bench/http.rs` (incremental reply parsers), `token_bench/report.rs` (tallies and
//! output).

#[path = "token_bench/driver.rs"]
mod driver;
#[path = "token_bench/http.rs"]
mod http;
#[path = "token_bench/report.rs"]
mod report;
#[path = "token_bench/workload.rs"]
mod workload;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};

use driver::Plan;
use report::{Header, Summary, Tally};
use workload::{Target, Workload};

/// Seconds a run lasts when neither --duration nor --count is given.
const DEFAULT_SECONDS: f64 = 5.0;

/// Shown at the end of `--help`.
const EXAMPLES: &str = "\
Examples:
  token-bench lock -c 50 -P 16 -d 10              LOCK fresh ids on 127.0.0.1:6409
  token-bench cycle --target redis -p 6379        SET NX PX + SET XX on a redis-server
  token-bench contended --ids 4 -n 100000         100,000 attempts racing for 4 ids
  token-bench http --http-port 8409 -c 20         GET /lock + GET /complete
  token-bench ping --output kv                    one key=value line for scripts";

/// How the result is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// A few lines for people.
    Text,
    /// One line of key=value fields for scripts.
    Kv,
}

/// Closed-loop load generator for token-server (and Redis, with the equivalent commands).
///
/// Every load is bounded: it stops after --duration seconds (default 5) or --count operations,
/// whichever comes first. Exit status: 0 when every connection ran to the end (error replies
/// are counted, not fatal), 1 when a connection failed (refused, closed, silent past
/// --timeout-ms, or garbled), 2 for bad options.
#[derive(Debug, Parser)]
#[command(name = "token-bench", version, about, long_about, after_long_help = EXAMPLES)]
struct Options {
    /// What to run. Against Redis the same steps are SET id token NX PX ms (lock), SET id done
    /// XX (complete) and an EVAL compare-and-delete (release).
    #[arg(value_enum)]
    workload: Workload,

    /// Which server is loaded, and so which commands express the workload.
    #[arg(long, value_enum, default_value_t = Target::TokenServer)]
    target: Target,

    /// Host of the server.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// RESP port.
    #[arg(short = 'p', long, default_value_t = 6409)]
    port: u16,

    /// HTTP port (the `http` workload).
    #[arg(long = "http-port", default_value_t = 8409)]
    http_port: u16,

    /// Connections, all opened before the clock starts.
    #[arg(short = 'c', long, default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    connections: u64,

    /// Requests in flight per connection: each sends this many, then reads as many replies.
    #[arg(short = 'P', long, default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pipeline: u64,

    /// Seconds to run (default 5 unless --count is given).
    #[arg(short = 'd', long)]
    duration: Option<f64>,

    /// Operations to run in all (with --duration too, whichever ends first).
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Draw ids at random from this many instead of a fresh id per operation (then LOCKED,
    /// COMPLETED and Redis's null reply are expected refusals). `contended` uses 10 by default.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    ids: Option<u64>,

    /// Lease of each lock in milliseconds (PX); 0 for none.
    #[arg(long = "ttl-ms", default_value_t = 30_000)]
    ttl_ms: u64,

    /// Prefix of every id (letters, digits, `-`, `_`, `.`); default: 4 random characters, so ids
    /// are 12 bytes (the prefix and 8 hex digits).
    #[arg(long = "id-prefix")]
    id_prefix: Option<String>,

    /// Runtime worker threads driving the connections (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: u64,

    /// Longest wait in milliseconds to connect, write, or get a reply before the connection
    /// is counted as failed.
    #[arg(long = "timeout-ms", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,

    /// Output format: text, or one line of key=value fields (kv) for scripts.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

fn main() -> ExitCode {
    let options = Options::parse();
    match run(options) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("token-bench: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(options: Options) -> Result<ExitCode, String> {
    if options.workload == Workload::Http && options.target == Target::Redis {
        return Err("the http workload needs --target token-server".into());
    }
    let duration = match (options.duration, options.count) {
        (Some(d), _) if !(d.is_finite() && d > 0.0 && d <= 86_400.0) => {
            return Err(format!("--duration {d}: give seconds between 0 and 86400"));
        }
        (Some(d), _) => Some(Duration::from_secs_f64(d)),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs_f64(DEFAULT_SECONDS)),
    };
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    let prefix = match &options.id_prefix {
        Some(p)
            if p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            p.clone().into_bytes()
        }
        Some(p) => {
            return Err(format!(
                "--id-prefix {p:?}: use letters, digits, '-', '_', '.'"
            ));
        }
        None => random_prefix(seed),
    };
    let port = if options.workload == Workload::Http {
        options.http_port
    } else {
        options.port
    };
    let addr = (options.host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}:{port}: {e}", options.host))?
        .next()
        .ok_or_else(|| format!("{}:{port} resolves to no address", options.host))?;
    let shared_ids = match (options.workload, options.ids) {
        (_, Some(n)) => Some(n),
        (Workload::Contended, None) => Some(10),
        _ => None,
    };
    let threads = options.threads as usize;
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let plan = Plan {
        workload: options.workload,
        target: options.target,
        pipeline: options.pipeline as usize,
        ttl: (options.ttl_ms > 0).then(|| options.ttl_ms.to_string().into_bytes()),
        shared_ids,
        prefix,
        connections: options.connections as usize,
        timeout: Duration::from_millis(options.timeout_ms),
        deadline: None,
        budget: AtomicU64::new(options.count.unwrap_or(u64::MAX)),
        seed,
    };
    let (elapsed, tally, failures) = match runtime.block_on(drive(addr, plan, duration)) {
        Ok(done) => done,
        Err(message) => {
            // Could not open the connections: a failed run, not a bad option.
            eprintln!("token-bench: {message}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let summary = Summary {
        header: Header {
            workload: options.workload.name(),
            target: options.target.name(),
            addr: addr.to_string(),
            connections: options.connections as usize,
            pipeline: options.pipeline as usize,
            threads,
        },
        elapsed,
        tally,
        failed_connections: failures.len(),
    };
    match options.output {
        Output::Text => print!("{}", summary.text()),
        Output::Kv => print!("{}", summary.kv()),
    }
    for failure in failures.iter().take(5) {
        eprintln!("token-bench: {failure}");
    }
    if failures.len() > 5 {
        eprintln!(
            "token-bench: ... and {} more failed connections",
            failures.len() - 5
        );
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Opens every connection, then runs them all from one start instant; returns the wall time,
/// the merged tally and the connections that failed.
async fn drive(
    addr: SocketAddr,
    mut plan: Plan,
    duration: Option<Duration>,
) -> Result<(Duration, Tally, Vec<driver::ConnError>), String> {
    let mut streams = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        streams.push(driver::connect(addr, plan.timeout).await?);
    }
    let start = Instant::now();
    plan.deadline = duration.map(|d| start + d);
    let plan = Arc::new(plan);
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(index, stream)| {
            let plan = Arc::clone(&plan);
            tokio::spawn(async move { driver::run(stream, &plan, index).await })
        })
        .collect();
    let mut total = Tally::new();
    let mut failures = Vec::new();
    for (index, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(tally)) => total.merge(&tally),
            Ok(Err((tally, failure))) => {
                total.merge(&tally);
                failures.push(failure);
            }
            Err(e) => failures.push(driver::ConnError {
                index,
                requests: 0,
                reason: format!("task ended abnormally: {e}"),
            }),
        }
    }
    Ok((start.elapsed(), total, failures))
}

/// Four random lowercase letters and digits.
fn random_prefix(seed: u64) -> Vec<u8> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = workload::Rng::new(seed);
    (0..4)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
        .collect()
}
