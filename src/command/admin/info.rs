//! `INFO [section ...]`: server, clients, stats and locks figures.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::command::admin::hello::REDIS_COMPAT_VERSION;
use crate::context::ServerContext;
use crate::protocol::{Args, Reply};

const SECTIONS: [&str; 5] = ["server", "clients", "persistence", "stats", "locks"];

/// # Format
/// ```text
/// INFO [section ...]
/// ```
/// Sections: `server`, `clients`, `persistence`, `stats`, `locks`; `all`, `everything` and `default` give
/// every one. Lines are `name:value`, sections start with `# Name`, as in Redis.
pub fn info(args: &Args<'_>, ctx: &ServerContext) -> Reply {
    let wanted: Vec<String> = args
        .iter_from(1)
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "all" || w == "everything" || w == "default");
    let mut out = String::new();
    for section in SECTIONS {
        if all || wanted.iter().any(|w| w == section) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            write_section(&mut out, section, ctx);
        }
    }
    Reply::Verbatim(out)
}

fn write_section(out: &mut String, section: &str, ctx: &ServerContext) {
    let t = ctx.totals();
    let c = &ctx.config;
    // Writing to a String cannot fail.
    let _ = match section {
        "server" => write!(
            out,
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\ntoken_server_version:{}\r\n\
             redis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nuptime_in_seconds:{}\r\nshards:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            usize::BITS,
            std::process::id(),
            ctx.resp_addr.port(),
            ctx.started.elapsed().as_secs(),
            ctx.shards.len(),
        ),
        "clients" => write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n",
            ctx.clients.load(Ordering::Relaxed),
            c.maxclients,
        ),
        "persistence" => write!(
            out,
            "# Persistence\r\naof_enabled:1\r\nappendfsync:{}\r\nlog_bytes:{}\r\n\
             log_rewrites:{}\r\nlog_write_errors:{}\r\nlog_failed_shards:{}\r\n",
            c.appendfsync.as_str(),
            t.log_bytes,
            t.log_rewrites,
            t.log_errors,
            t.log_failed,
        ),
        "stats" => write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             rejected_connections:{}\r\ncross_shard_commands:{}\r\n",
            ctx.connections_received.load(Ordering::Relaxed),
            t.commands_processed,
            ctx.rejected_connections.load(Ordering::Relaxed),
            t.forwarded,
        ),
        "locks" => write!(
            out,
            "# Locks\r\nlocked:{}\r\ncompleted:{}\r\nwaiters:{}\r\nexpired_total:{}\r\n\
             reaped_total:{}\r\nmismatch_total:{}\r\n",
            t.locked, t.completed, t.waiters, t.expired, t.reaped, t.mismatches
        ),
        _ => Ok(()),
    };
}
