//! `CONFIG GET pattern [pattern ...]`, answered from the running configuration.

use crate::command::admin::unknown_subcommand;
use crate::context::ServerContext;
use crate::protocol::{Args, Reply};

/// `CONFIG HELP`, in Redis's layout.
const HELP: [&str; 7] = [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Not supported: settings change with a restart.",
    "HELP",
    "    Print this help.",
];

/// # Format
/// ```text
/// CONFIG GET pattern [pattern ...] | HELP
/// ```
/// Patterns are globs (`*`, `?`). Replies with a map of matching names to values. The password
/// is never reported. `CONFIG SET` is refused: settings change with a restart.
pub fn config(args: &Args<'_>, ctx: &ServerContext) -> Reply {
    let sub = args.get(1).unwrap_or_default();
    if sub.eq_ignore_ascii_case(b"GET") {
        if args.len() < 3 {
            return crate::command::wrong_arity("config|get");
        }
        let params = parameters(ctx);
        let pairs = params
            .into_iter()
            .filter(|(name, _)| args.iter_from(2).any(|p| glob_match(p, name.as_bytes())))
            .map(|(name, value)| (Reply::bulk(name), Reply::bulk(value)))
            .collect();
        Reply::Map(pairs)
    } else if sub.eq_ignore_ascii_case(b"HELP") && args.len() == 2 {
        Reply::Array(HELP.iter().map(|l| Reply::Simple(l)).collect())
    } else if sub.eq_ignore_ascii_case(b"SET") {
        Reply::error("ERR CONFIG SET is not supported: restart the server with the new setting")
    } else {
        unknown_subcommand(sub, "CONFIG")
    }
}

/// Every reportable setting, with its current value.
fn parameters(ctx: &ServerContext) -> Vec<(&'static str, String)> {
    let c = &ctx.config;
    vec![
        ("bind", c.bind.to_string()),
        ("port", ctx.resp_addr.port().to_string()),
        ("http-port", ctx.http_addr.port().to_string()),
        ("shards", ctx.figures.shards.len().to_string()),
        ("dir", c.dir.display().to_string()),
        ("appendonly", "yes".to_string()),
        ("appendfsync", c.appendfsync.as_str().to_string()),
        ("save", String::new()),
        ("databases", "1".to_string()),
        ("maxclients", c.maxclients.to_string()),
        ("max-id-len", c.max_id_len.to_string()),
        (
            "proto-max-bulk-len",
            c.security.proto_max_bulk_len.to_string(),
        ),
        ("timeout", c.security.timeout.to_string()),
        (
            "protected-mode",
            if c.security.protected_mode {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ),
        (
            "client-query-buffer-limit",
            c.security.client_query_buffer_limit.to_string(),
        ),
        ("default-lease", c.default_lease.to_string()),
        ("completed-retention", c.completed_retention.to_string()),
        ("max-waiters", c.max_waiters.to_string()),
        ("max-result-size", c.max_result_size.to_string()),
        (
            "slowlog-log-slower-than",
            c.slowlog_log_slower_than.to_string(),
        ),
        ("slowlog-max-len", c.slowlog_max_len.to_string()),
    ]
}

/// Glob matching with `*` and `?`, ignoring ASCII case, as `CONFIG GET` patterns use.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"save"));
        assert!(glob_match(b"SAVE", b"save"));
        assert!(glob_match(b"app*", b"appendfsync"));
        assert!(glob_match(b"*fsync", b"appendfsync"));
        assert!(glob_match(b"p?rt", b"port"));
        assert!(!glob_match(b"port?", b"port"));
        assert!(!glob_match(b"x*", b"save"));
    }
}
