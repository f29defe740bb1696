//! Access, TLS and per-client limit settings: the knobs docs/SECURITY.md describes.
//!
//! They are flattened into [`Config`], so each is an ordinary long flag and config-file key.
//! `finish` runs once after parsing and keeps these invariants for the rest of the program:
//! - the password is never empty and comes from one source: `--requirepass-file` is read
//!   into [`Config::requirepass`] here, and giving it as well as `--requirepass` (or
//!   `TOKEN_SERVER_PASSWORD`) is an error;
//! - a TLS port comes with a certificate and a key;
//! - one argument of the largest allowed size fits in the query buffer.
//!
//! Byte sizes accept Redis's suffixes: `k`/`m`/`g` (powers of 1000) and `kb`/`mb`/`gb`
//! (powers of 1024), so `--client-output-buffer-limit 64mb` reads as in `redis.conf`.

use std::path::PathBuf;

use clap::{ArgAction, ValueEnum};

use super::Config;

/// Whether TLS clients must present a certificate signed by `--tls-ca-cert-file`
/// (Redis's `tls-auth-clients`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TlsAuthClients {
    /// A client certificate is required.
    Yes,
    /// A client certificate is optional, but checked when given.
    Optional,
    /// Client certificates are not asked for.
    No,
}

/// Access, TLS and per-client limit settings.
#[derive(Clone, Debug, clap::Args)]
pub struct Security {
    /// Read the password from the first line of this file, so it does not show in `ps`.
    #[arg(long = "requirepass-file")]
    pub requirepass_file: Option<PathBuf>,

    /// With no password set, refuse clients that do not connect over loopback (yes or no).
    #[arg(long = "protected-mode", default_value = "yes", value_parser = parse_yes_no, action = ArgAction::Set)]
    pub protected_mode: bool,

    /// RESP-over-TLS port; 0 picks a free one. Needs --tls-cert-file and --tls-key-file.
    #[arg(long = "tls-port")]
    pub tls_port: Option<u16>,

    /// HTTPS port (HTTP over TLS); 0 picks a free one. Needs --tls-cert-file and --tls-key-file.
    #[arg(long = "tls-http-port")]
    pub tls_http_port: Option<u16>,

    /// PEM file with the server certificate (and its chain).
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM file with the server's private key.
    #[arg(long = "tls-key-file")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM file with the CA certificates that sign client certificates.
    #[arg(long = "tls-ca-cert-file")]
    pub tls_ca_cert_file: Option<PathBuf>,

    /// With --tls-ca-cert-file: whether TLS clients must present a certificate.
    #[arg(long = "tls-auth-clients", value_enum, default_value_t = TlsAuthClients::Yes)]
    pub tls_auth_clients: TlsAuthClients,

    /// Close a RESP connection after this many seconds without traffic; 0 never does.
    #[arg(long, default_value_t = 0)]
    pub timeout: u32,

    /// Disconnect a client whose unsent replies exceed this many bytes; 0 means no limit.
    #[arg(long = "client-output-buffer-limit", default_value = "64mb", value_parser = parse_bytes)]
    pub client_output_buffer_limit: u64,

    /// Disconnect a client whose unparsed input exceeds this many bytes.
    #[arg(long = "client-query-buffer-limit", default_value = "64mb", value_parser = parse_bytes)]
    pub client_query_buffer_limit: u64,

    /// Largest accepted RESP argument, in bytes.
    #[arg(long = "proto-max-bulk-len", default_value = "1mb", value_parser = parse_bytes)]
    pub proto_max_bulk_len: u64,

    /// Most arguments accepted in one RESP command.
    #[arg(long = "max-args", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(2..=1_048_576))]
    pub max_args: u32,
}

impl Security {
    /// Whether a TLS listener (RESP or HTTP) is asked for.
    pub fn tls_enabled(&self) -> bool {
        self.tls_port.is_some() || self.tls_http_port.is_some()
    }
}

/// The smallest query buffer accepted: a command with a few short arguments must fit.
const MIN_QUERY_BUFFER: u64 = 64 * 1024;
/// The largest accepted argument length (Redis's own default for `proto-max-bulk-len`).
const MAX_BULK_LEN: u64 = 512 * 1024 * 1024;

/// Reads `--requirepass-file` and checks the settings that depend on one another.
pub(super) fn finish(mut config: Config) -> Result<Config, clap::Error> {
    let invalid = |msg: String| clap::Error::raw(clap::error::ErrorKind::InvalidValue, msg);
    if let Some(path) = &config.security.requirepass_file {
        if config.requirepass.is_some() {
            return Err(invalid(
                "give the password once: --requirepass (or TOKEN_SERVER_PASSWORD) and \
                 --requirepass-file are both set\n"
                    .into(),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}\n", path.display())))?;
        let first = text.lines().next().unwrap_or_default();
        config.requirepass = Some(first.to_owned());
    }
    if config.requirepass.as_deref() == Some("") {
        return Err(invalid(
            "the password is empty; leave --requirepass out to run without one\n".into(),
        ));
    }
    let s = &config.security;
    if s.tls_enabled() && (s.tls_cert_file.is_none() || s.tls_key_file.is_none()) {
        return Err(invalid(
            "--tls-port and --tls-http-port need --tls-cert-file and --tls-key-file\n".into(),
        ));
    }
    if !(1..=MAX_BULK_LEN).contains(&s.proto_max_bulk_len) {
        return Err(invalid(format!(
            "--proto-max-bulk-len must be between 1 and {MAX_BULK_LEN} bytes\n"
        )));
    }
    if s.client_query_buffer_limit < MIN_QUERY_BUFFER.max(s.proto_max_bulk_len) {
        return Err(invalid(format!(
            "--client-query-buffer-limit must be at least {MIN_QUERY_BUFFER} bytes and at \
             least --proto-max-bulk-len ({})\n",
            s.proto_max_bulk_len
        )));
    }
    Ok(config)
}

/// Parses `yes`/`no` (also `true`/`false`), as Redis's boolean settings.
fn parse_yes_no(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("expected yes or no, got '{text}'")),
    }
}

/// Parses a byte count with an optional Redis unit suffix (`k`, `kb`, `m`, `mb`, `g`, `gb`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match &lower[digits.len()..] {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown unit '{other}' (use k, kb, m, mb, g or gb)"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a byte count"))?;
    n.checked_mul(unit)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::from_args(std::iter::once("token-server").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        let s = &c.security;
        assert!(s.protected_mode);
        assert!(!s.tls_enabled());
        assert_eq!(s.timeout, 0);
        assert_eq!(s.client_output_buffer_limit, 64 << 20);
        assert_eq!(s.client_query_buffer_limit, 64 << 20);
        assert_eq!(s.proto_max_bulk_len, 1 << 20);
        assert_eq!(s.max_args, 1024);
        assert_eq!(s.tls_auth_clients, TlsAuthClients::Yes);
    }

    #[test]
    fn byte_sizes_take_redis_units() {
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("4k"), Ok(4000));
        assert_eq!(parse_bytes("4kb"), Ok(4096));
        assert_eq!(parse_bytes("2MB"), Ok(2 << 20));
        assert_eq!(parse_bytes("1gb"), Ok(1 << 30));
        for bad in ["", "mb", "1tb", "-1", "1.5mb", "99999999999999999999gb"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_file_gives_its_first_line() {
        let dir = std::env::temp_dir().join(format!("ts-security-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\nignored\n").unwrap();
        let f = file.to_str().unwrap();
        let c = parse(&["--requirepass-file", f]).unwrap();
        assert_eq!(c.requirepass.as_deref(), Some("s3cret"));
        let err = parse(&["--requirepass-file", f, "--requirepass", "x"]).unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
        std::fs::write(&file, "\n").unwrap();
        assert!(parse(&["--requirepass-file", f]).is_err(), "empty password");
        let missing = dir.join("missing");
        let err = parse(&["--requirepass-file", missing.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings_that_depend_on_each_other_are_checked() {
        for args in [
            &["--requirepass", ""][..],
            &["--tls-port", "0"],
            &["--tls-http-port", "0", "--tls-cert-file", "c.pem"],
            &["--proto-max-bulk-len", "0"],
            &[
                "--proto-max-bulk-len",
                "2mb",
                "--client-query-buffer-limit",
                "1mb",
            ],
            &["--client-query-buffer-limit", "1k"],
            &["--protected-mode", "maybe"],
            &["--max-args", "1"],
            &["--tls-auth-clients", "sometimes"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let c = parse(&["--protected-mode", "no", "--timeout", "30"]).unwrap();
        assert!(!c.security.protected_mode);
        assert_eq!(c.security.timeout, 30);
        let c = parse(&[
            "--tls-port",
            "0",
            "--tls-cert-file",
            "c",
            "--tls-key-file",
            "k",
        ])
        .unwrap();
        assert!(c.security.tls_enabled());
    }
}
