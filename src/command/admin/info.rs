//! `INFO [section ...]`: the server's figures as `name:value` lines, as Redis prints them.
//!
//! The figures are the ones `/metrics` shows (read from the same atomics), arranged the way
//! redis-cli users and Redis client libraries expect: `# Section` headers, `name:value`
//! lines, and `k=v,k=v` values for per-command and per-shard lines (redis-py's `info()` turns
//! those into dicts).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::command::admin::hello::REDIS_COMPAT_VERSION;
use crate::context::ServerContext;
use crate::metrics::commands::{Outcome, ROWS, row_name};
use crate::metrics::histogram::Snapshot;
use crate::protocol::{Args, Reply};

/// Every section, in order.
const SECTIONS: [&str; 9] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "locks",
    "shards",
    "commandstats",
    "latencystats",
];
/// The sections `INFO` and `INFO default` give; `all` and `everything` give every one.
const DEFAULT_SECTIONS: [&str; 7] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "locks",
    "shards",
];

/// # Format
/// ```text
/// INFO [section ...]
/// ```
/// Sections: `server`, `clients`, `memory`, `persistence`, `stats`, `locks`, `shards` (the default
/// set), `commandstats` and `latencystats`; `default` gives the default set, `all` and
/// `everything` every section. Lines are `name:value`, sections start with `# Name`, as in Redis.
pub fn info(args: &Args<'_>, ctx: &ServerContext) -> Reply {
    let wanted: Vec<String> = args
        .iter_from(1)
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let every = wanted.iter().any(|w| w == "all" || w == "everything");
    let default = wanted.is_empty() || wanted.iter().any(|w| w == "default");
    let mut out = String::new();
    for section in SECTIONS {
        let on = every
            || (default && DEFAULT_SECTIONS.contains(&section))
            || wanted.iter().any(|w| w == section);
        if on {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            write_section(&mut out, section, ctx);
        }
    }
    Reply::Verbatim(out)
}

/// Sum of one per-shard atomic.
fn sum(ctx: &ServerContext, field: impl Fn(&crate::context::ShardStats) -> u64) -> u64 {
    ctx.figures.shards.iter().map(field).sum()
}

/// A quantile in microseconds, as Redis prints latencies (three decimals).
fn usec(snap: &Snapshot, q: f64) -> String {
    format!("{:.3}", snap.quantile_us(q).unwrap_or(0) as f64)
}

fn write_section(out: &mut String, section: &str, ctx: &ServerContext) {
    let t = ctx.totals();
    let c = &ctx.config;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    // Writing to a String cannot fail.
    let _ = match section {
        "server" => write!(
            out,
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\ntoken_server_version:{}\r\n\
             redis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nhttp_port:{}\r\nuptime_in_seconds:{}\r\nshards:{}\r\n\
             shutting_down:{}\r\nready:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            usize::BITS,
            std::process::id(),
            ctx.resp_addr.port(),
            ctx.http_addr.port(),
            ctx.started.elapsed().as_secs(),
            ctx.figures.shards.len(),
            u8::from(ctx.lifecycle.is_stopping()),
            u8::from(ctx.is_ready()),
        ),
        "clients" => write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nhttp_connected_clients:{}\r\nmaxclients:{}\r\n",
            ctx.figures.clients.connected.load(Ordering::Relaxed),
            ctx.figures.http.clients.load(Ordering::Relaxed),
            c.maxclients,
        ),
        "memory" => {
            use crate::metrics::process::{human, resident};
            let (rss, peak) = resident().map_or((0, 0), |r| (r.now, r.peak));
            let table = sum(ctx, |s| load(&s.table_memory));
            write!(
                out,
                "# Memory\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\n\
                 used_memory_peak_rss:{peak}\r\nused_memory_peak_rss_human:{}\r\n\
                 table_memory:{table}\r\ntable_memory_human:{}\r\n",
                human(rss),
                human(peak),
                human(table),
            )
        }
        "persistence" => {
            let mut fsync = Snapshot::default();
            for s in &ctx.figures.shards {
                fsync.add(&s.fsync);
            }
            write!(
                out,
                "# Persistence\r\naof_enabled:1\r\nappendfsync:{}\r\nlog_bytes:{}\r\n\
                 log_rewrites:{}\r\nlog_write_errors:{}\r\nlog_failed_shards:{}\r\n\
                 log_fsyncs:{}\r\nlog_fsync_usec_p50:{}\r\nlog_fsync_usec_p99:{}\r\n\
                 log_fsync_usec_p99.9:{}\r\n",
                c.appendfsync.as_str(),
                t.log_bytes,
                t.log_rewrites,
                t.log_errors,
                t.log_failed,
                fsync.count(),
                usec(&fsync, 0.5),
                usec(&fsync, 0.99),
                usec(&fsync, 0.999),
            )
        }
        "stats" => write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             rejected_connections:{}\r\ntotal_http_connections_received:{}\r\n\
             rejected_http_connections:{}\r\ncross_shard_commands:{}\r\n\
             cross_shard_messages_sent:{}\r\ncross_shard_messages_received:{}\r\n\
             slowlog_len:{}\r\nchaos_rate:{}\r\nchaos_refused:{}\r\nchaos_dropped:{}\r\n\
             acl_access_denied_auth:{}\r\n",
            ctx.figures.clients.received.load(Ordering::Relaxed),
            t.commands_processed,
            ctx.figures.clients.rejected.load(Ordering::Relaxed),
            ctx.figures
                .http
                .connections_received
                .load(Ordering::Relaxed),
            ctx.figures
                .http
                .rejected_connections
                .load(Ordering::Relaxed),
            t.forwarded,
            sum(ctx, |s| load(&s.messages_sent)),
            sum(ctx, |s| load(&s.messages_received)),
            ctx.figures
                .shards
                .iter()
                .map(|s| s.slowlog.len())
                .sum::<usize>(),
            c.chaos_rate,
            sum(ctx, |s| load(&s.chaos_refused)),
            sum(ctx, |s| load(&s.chaos_dropped)),
            ctx.figures.clients.auth_failures.load(Ordering::Relaxed),
        ),
        "locks" => write!(
            out,
            "# Locks\r\nlocked:{}\r\ncompleted:{}\r\nwaiters:{}\r\nexpired_total:{}\r\n\
             reaped_total:{}\r\nmismatch_total:{}\r\nlast_fence:{}\r\n",
            t.locked,
            t.completed,
            t.waiters,
            t.expired,
            t.reaped,
            t.mismatches,
            ctx.fences.issued.load(Ordering::Relaxed),
        ),
        "shards" => {
            out.push_str("# Shards\r\n");
            for (i, s) in ctx.figures.shards.iter().enumerate() {
                let _ = write!(
                    out,
                    "shard{i}:locked={},completed={},waiters={},commands={},forwarded={},\
                     messages_sent={},messages_received={},log_bytes={},log_failed={}\r\n",
                    load(&s.locked),
                    load(&s.completed),
                    load(&s.waiters),
                    load(&s.commands_processed),
                    load(&s.forwarded),
                    load(&s.messages_sent),
                    load(&s.messages_received),
                    load(&s.log_bytes),
                    load(&s.log_failed),
                );
            }
            Ok(())
        }
        "commandstats" => {
            out.push_str("# Commandstats\r\n");
            for_each_command(ctx, |name, snap, calls, failed, rejected| {
                let usec = snap.sum_ns / 1000;
                let per_call = if calls > 0 {
                    usec as f64 / calls as f64
                } else {
                    0.0
                };
                let _ = write!(
                    out,
                    "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},\
                     rejected_calls={rejected},failed_calls={failed}\r\n"
                );
            });
            Ok(())
        }
        "latencystats" => {
            out.push_str("# Latencystats\r\n");
            for_each_command(ctx, |name, snap, _, _, _| {
                if snap.count() > 0 {
                    let _ = write!(
                        out,
                        "latency_percentiles_usec_{name}:p50={},p99={},p99.9={}\r\n",
                        usec(snap, 0.5),
                        usec(snap, 0.99),
                        usec(snap, 0.999),
                    );
                }
            });
            Ok(())
        }
        _ => Ok(()),
    };
}

/// Calls `each(name, latency, calls, failed_calls, rejected_calls)` for every command that
/// was called at all, summed over the shards. As in Redis, `calls` counts the commands that
/// ran (failed ones included) and `rejected_calls` those refused before running.
fn for_each_command(ctx: &ServerContext, mut each: impl FnMut(&str, &Snapshot, u64, u64, u64)) {
    for row in 0..ROWS {
        let mut snap = Snapshot::default();
        let (mut calls, mut failed, mut rejected) = (0, 0, 0);
        for s in &ctx.figures.shards {
            if let Some(h) = s.commands.latency(row) {
                snap.add(h);
            }
            for outcome in Outcome::ALL {
                let n = s.commands.calls(row, outcome);
                match outcome {
                    Outcome::Rejected => rejected += n,
                    o if o.is_error() => {
                        failed += n;
                        calls += n;
                    }
                    _ => calls += n,
                }
            }
        }
        if calls + rejected > 0 {
            each(row_name(row), &snap, calls, failed, rejected);
        }
    }
}
