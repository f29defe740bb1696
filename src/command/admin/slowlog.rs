//! `SLOWLOG GET [count] | LEN | RESET | HELP`: the commands slower than
//! `--slowlog-log-slower-than`, gathered from every shard's ring (see
//! [`crate::metrics::slowlog`]).

use crate::command::admin::unknown_subcommand;
use crate::context::ServerContext;
use crate::protocol::{Args, Reply};

/// How many entries `SLOWLOG GET` returns without a count (Redis's default).
const DEFAULT_COUNT: usize = 10;

const HELP: [&str; 12] = [
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Print this help.",
];

/// # Format
/// ```text
/// SLOWLOG GET [count] | LEN | RESET | HELP
/// ```
/// `GET` replies with the newest `count` entries (default 10, -1 for all), newest first, each
/// `[id, unix time, microseconds, [arguments], client address, client name]` as in Redis.
/// `LEN` counts the entries of every shard, `RESET` empties them.
pub fn slowlog(args: &Args<'_>, ctx: &ServerContext) -> Reply {
    let sub = args.get(1).unwrap_or_default();
    if sub.eq_ignore_ascii_case(b"GET") && args.len() <= 3 {
        let count = match args.get(2) {
            None => DEFAULT_COUNT,
            Some(raw) => match std::str::from_utf8(raw)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
            {
                Some(-1) => usize::MAX,
                Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                Some(_) => {
                    return Reply::error("ERR count should be greater than or equal to -1");
                }
                None => return Reply::error("ERR value is not an integer or out of range"),
            },
        };
        let mut entries: Vec<_> = ctx
            .figures
            .shards
            .iter()
            .flat_map(|s| s.slowlog.entries())
            .collect();
        entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
        let items = entries
            .into_iter()
            .take(count)
            .map(|e| {
                Reply::Array(vec![
                    Reply::Integer(e.id as i64),
                    Reply::Integer(e.unix_secs as i64),
                    Reply::Integer(e.duration_us as i64),
                    Reply::Array(e.args.into_iter().map(Reply::Bulk).collect()),
                    Reply::bulk(e.client_addr),
                    Reply::Bulk(e.client_name),
                ])
            })
            .collect();
        Reply::Array(items)
    } else if sub.eq_ignore_ascii_case(b"LEN") && args.len() == 2 {
        Reply::Integer(
            ctx.figures
                .shards
                .iter()
                .map(|s| s.slowlog.len())
                .sum::<usize>() as i64,
        )
    } else if sub.eq_ignore_ascii_case(b"RESET") && args.len() == 2 {
        for s in &ctx.figures.shards {
            s.slowlog.reset();
        }
        Reply::Ok
    } else if sub.eq_ignore_ascii_case(b"HELP") && args.len() == 2 {
        Reply::Array(HELP.iter().map(|l| Reply::Simple(l)).collect())
    } else if [&b"GET"[..], b"LEN", b"RESET", b"HELP"]
        .iter()
        .any(|k| sub.eq_ignore_ascii_case(k))
    {
        crate::command::wrong_arity(&format!(
            "slowlog|{}",
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        ))
    } else {
        unknown_subcommand(sub, "SLOWLOG")
    }
}
