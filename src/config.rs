//! Command-line and config-file settings.
//!
//! Every setting is a long flag. A TOML file given with `--config FILE` uses the same names as
//! keys (`port = 6409`, `appendfsync = "always"`); its values are applied first and flags on the
//! command line override them. Unknown keys and bad values are errors that name the key.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

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

    /// Password clients must give with AUTH (or HELLO ... AUTH).
    #[arg(long)]
    pub requirepass: Option<String>,

    /// TOML file with settings; keys are these flags' long names. Flags override it.
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
    pub fn policy(&self) -> crate::shard::table::Policy {
        crate::shard::table::Policy {
            default_lease_ms: (self.default_lease > 0).then_some(self.default_lease),
            retention_ms: self.completed_retention.saturating_mul(1000),
            max_waiters: self.max_waiters as usize,
        }
    }

    /// Parses the process arguments, applying `--config FILE` beneath them.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let first = Config::try_parse_from(&args)?;
        let Some(path) = first.config.clone() else {
            return Ok(first);
        };
        let file_args = file_arguments(&path)
            .map_err(|msg| clap::Error::raw(clap::error::ErrorKind::InvalidValue, msg))?;
        let mut merged = Vec::with_capacity(args.len() + file_args.len());
        merged.extend(args.first().cloned());
        merged.extend(file_args.into_iter().map(Into::into));
        merged.extend(args.into_iter().skip(1));
        Config::try_parse_from(merged)
    }
}

/// Reads a TOML settings file into `--key=value` arguments.
fn file_arguments(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}\n", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {}: {e}\n", path.display()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        if key == "config" {
            return Err(format!(
                "config file {}: key 'config' cannot be set from a file\n",
                path.display()
            ));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => if b { "yes" } else { "no" }.to_string(),
            other => {
                return Err(format!(
                    "config file {}: key '{key}' has an unsupported value {other}\n",
                    path.display()
                ));
            }
        };
        out.push(format!("--{key}={value}"));
    }
    Ok(out)
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
