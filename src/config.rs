//! Command-line, environment and config-file settings.
//!
//! Every setting is a long flag, an environment variable `TOKEN_SERVER_<FLAG>` and a key of the
//! TOML file given with `--config FILE` (`port = 6409`, `appendfsync = "always"`). Precedence:
//! flags, then the environment, then the file, then the defaults ([`load`] keeps it). Unknown
//! keys and bad values are errors that name the key or the variable. `--check-config` prints
//! the result ([`show`]) with the password hidden.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

pub mod load;
pub mod security;
pub mod show;

pub use security::{Security, TlsAuthClients};

/// When the append-only log is synced to disk, with Redis's meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AppendFsync {
    /// Sync before any reply of a write goes out (group-committed per loop iteration).
    Always,
    /// Sync about once a second.
    Everysec,
    /// Leave syncing to the operating system.
    No,
}

impl AppendFsync {
    /// The name as written in flags and `CONFIG GET`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppendFsync::Always => "always",
            AppendFsync::Everysec => "everysec",
            AppendFsync::No => "no",
        }
    }
}

/// token-server: a run-once lock server speaking the Redis protocol.
#[derive(Clone, Debug, Parser)]
#[command(name = "token-server", version, about, args_override_self = true)]
pub struct Config {
    /// Address to listen on (RESP and HTTP).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// RESP (Redis protocol) port; 0 picks a free one.
    #[arg(long, default_value_t = 6409)]
    pub port: u16,

    /// HTTP port; 0 picks a free one.
    #[arg(long = "http-port", default_value_t = 8409)]
    pub http_port: u16,

    /// Number of shard threads (default: the number of available cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub shards: Option<u16>,

    /// Directory for the append-only logs.
    #[arg(long, default_value = "./data")]
    pub dir: PathBuf,

    /// When to sync the log: always, everysec or no.
    #[arg(long, value_enum, default_value_t = AppendFsync::Always)]
    pub appendfsync: AppendFsync,

    /// Password clients must give with AUTH (or HELLO ... AUTH), and HTTP clients as
    /// `Authorization: Bearer`. Prefer TOKEN_SERVER_PASSWORD or --requirepass-file: a flag
    /// shows in `ps`.
    #[arg(long, env = "TOKEN_SERVER_PASSWORD", hide_env_values = true)]
    pub requirepass: Option<String>,

    /// TOML file with settings; keys are these flags' long names. Flags and TOKEN_SERVER_*
    /// variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// Longest accepted id, in bytes.
    #[arg(long = "max-id-len", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub max_id_len: u32,

    /// Start even if a log is damaged before its end, cutting it there (what is cut is lost).
    #[arg(long = "repair-log")]
    pub repair_log: bool,

    /// Rewrite a shard's log when it has grown this many percent over its size after the
    /// last rewrite (Redis's auto-aof-rewrite-percentage); 0 disables rewriting.
    #[arg(long = "log-rewrite-percentage", default_value_t = 100)]
    pub log_rewrite_percentage: u32,

    /// Never rewrite a log smaller than this many bytes (auto-aof-rewrite-min-size).
    #[arg(long = "log-rewrite-min-size", default_value_t = 64 * 1024 * 1024)]
    pub log_rewrite_min_size: u64,

    /// Lease in milliseconds for a LOCK without PX/EX; 0 means none (held until released).
    #[arg(long = "default-lease", default_value_t = 0)]
    pub default_lease: u64,

    /// Seconds a completed id is kept before it becomes free again; 0 keeps it forever.
    #[arg(long = "completed-retention", default_value_t = 0)]
    pub completed_retention: u64,

    /// Largest COMPLETE ... RESULT value, in bytes.
    #[arg(long = "max-result-size", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(0..=16_777_216))]
    pub max_result_size: u32,

    /// Most LOCK ... WAIT requests queued for one id.
    #[arg(long = "max-waiters", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_waiters: u32,

    /// Maximum number of simultaneous client connections (RESP and HTTP each).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub maxclients: u32,

    /// Seconds an HTTP client has to send a request's headers (and an idle keep-alive
    /// connection has to start its next request) before it is disconnected.
    #[arg(long = "http-header-timeout", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub http_header_timeout: u32,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: tracing::Level,

    /// Log line format: text (for people) or json (one object per line, for collectors).
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seconds a shutdown (SIGTERM, SIGINT, SHUTDOWN) may spend finishing in-flight commands
    /// and HTTP requests before the server stops without waiting further.
    #[arg(long = "shutdown-timeout", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub shutdown_timeout: u32,

    /// Log commands that run at least this many microseconds in the slow log (SLOWLOG);
    /// 0 logs every command, a negative value none (Redis's slowlog-log-slower-than).
    #[arg(
        long = "slowlog-log-slower-than",
        default_value_t = 10_000,
        allow_negative_numbers = true
    )]
    pub slowlog_log_slower_than: i64,

    /// Most slow-log entries kept per shard; the oldest go first (slowlog-max-len).
    #[arg(long = "slowlog-max-len", default_value_t = 128)]
    pub slowlog_max_len: u32,

    /// Learning mode: the fraction (0 to 1) of write requests that fail on purpose, half
    /// refused before running (-TRYAGAIN, HTTP 503), half run and then their connection
    /// dropped without the reply. 0 (the default) turns it off. Never in production.
    #[arg(long = "chaos-rate", default_value_t = 0.0, value_parser = parse_rate)]
    pub chaos_rate: f64,

    /// Seed for chaos mode's random choices (each shard adds its number); default: from the OS.
    #[arg(long = "chaos-seed")]
    pub chaos_seed: Option<u64>,

    /// Check the settings, print them (the password hidden) and exit: 0 if they are valid.
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Access, TLS and per-client limits (docs/SECURITY.md).
    #[command(flatten)]
    pub security: Security,
}

impl Config {
    /// The number of shards to run: the flag, or the number of available cores.
    pub fn shard_count(&self) -> usize {
        match self.shards {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// The table policy these settings describe.
    pub fn policy(&self) -> crate::table::Policy {
        crate::table::Policy {
            default_lease_ms: (self.default_lease > 0).then_some(self.default_lease),
            retention_ms: self.completed_retention.saturating_mul(1000),
            max_waiters: self.max_waiters as usize,
        }
    }

    /// Parses the process arguments over the `TOKEN_SERVER_*` environment and the
    /// `--config FILE` beneath them ([`load::load`]).
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        load::load(args).map(|l| l.config)
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses a fraction from 0 to 1.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a fraction from 0 to 1, got '{text}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::from_args(["token-server"]).unwrap();
        assert_eq!(c.port, 6409);
        assert_eq!(c.http_port, 8409);
        assert_eq!(c.http_header_timeout, 10);
        assert_eq!(c.bind.to_string(), "127.0.0.1");
        assert_eq!(c.appendfsync, AppendFsync::Always);
        assert!(c.shard_count() >= 1);
    }

    #[test]
    fn bad_values_are_errors() {
        for args in [
            &["token-server", "--port", "x"][..],
            &["token-server", "--shards", "0"],
            &["token-server", "--appendfsync", "sometimes"],
            &["token-server", "--bind", "not-an-ip"],
            &["token-server", "--http-header-timeout", "0"],
        ] {
            assert!(Config::from_args(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn file_values_sit_beneath_flags() {
        let dir = std::env::temp_dir().join(format!("ts-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "port = 7000\nshards = 3\nappendfsync = \"no\"\n").unwrap();
        let f = file.to_str().unwrap();
        let c = Config::from_args(["token-server", "--config", f, "--port", "7001"]).unwrap();
        assert_eq!(c.port, 7001);
        assert_eq!(c.shards, Some(3));
        assert_eq!(c.appendfsync, AppendFsync::No);
        std::fs::write(&file, "colour = 1\n").unwrap();
        let err = Config::from_args(["token-server", "--config", f]).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
