//! End-to-end checks with the stock `redis-cli` (Debian's redis-tools).
//!
//! Each test skips (loudly) when `redis-cli` is not installed, unless
//! `TOKEN_SERVER_REQUIRE_TOOLS=1` is set, which turns a missing tool into a
//! failure.

use crate::common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{FOREIGN_KEY, Server, is_key, require_tool};

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

struct CliOutput {
    stdout: String,
    stderr: String,
    success: bool,
}

impl CliOutput {
    /// Non-empty lines printed on stdout and stderr.
    fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn cli() -> Option<PathBuf> {
    require_tool("redis-cli")
}

/// Runs `redis-cli -h 127.0.0.1 -p PORT <args>`, optionally feeding `stdin`,
/// and kills it if it does not finish in time.
fn run_cli(cli: &Path, server: &Server, args: &[&str], stdin: Option<&str>) -> CliOutput {
    let port = server.port().to_string();
    let mut child = Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");

    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_string();
        thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });

    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for redis-cli") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-cli {args:?} did not finish within {CLI_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    CliOutput {
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
        success: status.success(),
    }
}

#[test]
fn cli_lock_then_complete() {
    let Some(cli) = cli() else { return };
    let server = Server::start(&["--shards", "2"]);

    let out = run_cli(&cli, &server, &["LOCK", "my_process"], None);
    assert!(out.success, "redis-cli LOCK failed: {}", out.all());
    let key = out.stdout.trim().to_string();
    assert!(is_key(&key), "redis-cli LOCK printed {:?}", out.all());

    let out = run_cli(&cli, &server, &["LOCK", "my_process"], None);
    let text = out.all();
    assert!(text.contains("LOCKED"), "second LOCK: {text:?}");
    assert!(
        !text.contains(&key),
        "LOCKED output leaks the key: {text:?}"
    );

    let out = run_cli(&cli, &server, &["COMPLETE", "my_process", &key], None);
    assert!(out.success, "redis-cli COMPLETE failed: {}", out.all());
    assert_eq!(out.stdout.trim(), "OK", "{}", out.all());

    // Retrying the COMPLETE is fine; LOCK now reports COMPLETED.
    let out = run_cli(&cli, &server, &["COMPLETE", "my_process", &key], None);
    assert_eq!(out.stdout.trim(), "OK", "{}", out.all());
    let out = run_cli(&cli, &server, &["lock", "my_process"], None);
    assert!(out.all().contains("COMPLETED"), "{}", out.all());
}

#[test]
fn cli_unlock_and_errors() {
    let Some(cli) = cli() else { return };
    let server = Server::start(&["--shards", "2"]);
    let key = run_cli(&cli, &server, &["LOCK", "job"], None)
        .stdout
        .trim()
        .to_string();
    assert!(is_key(&key), "{key:?}");

    let out = run_cli(&cli, &server, &["UNLOCK", "job", FOREIGN_KEY], None);
    assert!(out.all().contains("BADKEY"), "{}", out.all());
    assert!(!out.all().contains(&key));

    let out = run_cli(&cli, &server, &["UNLOCK", "job", &key], None);
    assert_eq!(out.stdout.trim(), "OK", "{}", out.all());

    let out = run_cli(&cli, &server, &["COMPLETE", "job", &key], None);
    assert!(out.all().contains("NOTLOCKED"), "{}", out.all());

    let out = run_cli(&cli, &server, &["LOCK"], None);
    assert!(
        out.all()
            .contains("ERR wrong number of arguments for 'lock' command"),
        "{}",
        out.all()
    );
}

#[test]
fn cli_piped_session() {
    let Some(cli) = cli() else { return };
    let server = Server::start(&["--shards", "2"]);
    let script =
        format!("LOCK s1\nLOCK s1\nPING\nECHO hello\nUNLOCK s1 {FOREIGN_KEY}\nDBSIZE\nlock s2\n");
    let out = run_cli(&cli, &server, &[], Some(&script));
    assert!(out.success, "piped redis-cli failed: {}", out.all());
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 7, "one output line per command: {lines:?}");
    let key = lines[0];
    assert!(is_key(key), "LOCK s1 printed {key:?}");
    assert!(lines[1].starts_with("LOCKED"), "{lines:?}");
    assert!(!lines[1].contains(key), "{lines:?}");
    assert_eq!(lines[2], "PONG");
    assert_eq!(lines[3], "hello");
    assert!(lines[4].starts_with("BADKEY"), "{lines:?}");
    assert_eq!(lines[5], "1");
    assert!(is_key(lines[6]), "LOCK s2 printed {:?}", lines[6]);
    assert_ne!(lines[6], key);

    // A second session completes with the key from the first one.
    let script = format!("COMPLETE s1 {key}\nCOMPLETE s1 {key}\nLOCK s1\nINFO locks\n");
    let out = run_cli(&cli, &server, &[], Some(&script));
    let lines = out.lines();
    assert_eq!(lines[0], "OK", "{lines:?}");
    assert_eq!(lines[1], "OK", "{lines:?}");
    assert!(lines[2].starts_with("COMPLETED"), "{lines:?}");
    assert!(lines.contains(&"# Locks"), "{lines:?}");
    assert!(lines.contains(&"locked:1"), "{lines:?}");
    assert!(lines.contains(&"completed:1"), "{lines:?}");
}

#[test]
fn cli_resp3_hello() {
    let Some(cli) = cli() else { return };
    let server = Server::start(&["--shards", "2"]);
    let out = run_cli(&cli, &server, &["-3", "HELLO", "3"], None);
    assert!(out.success, "redis-cli -3 HELLO 3 failed: {}", out.all());
    let lines = out.lines();
    assert!(lines.contains(&"proto 3"), "HELLO 3 output: {lines:?}");
    for field in ["server", "version", "id", "mode", "role", "modules"] {
        assert!(
            lines.iter().any(|l| l.split(' ').next() == Some(field)),
            "HELLO 3 output lacks {field}: {lines:?}"
        );
    }

    // Commands work over RESP3 too.
    let out = run_cli(&cli, &server, &["-3", "LOCK", "resp3-id"], None);
    assert!(is_key(out.stdout.trim()), "{}", out.all());
}

#[test]
fn cli_formatted_output() {
    let Some(cli) = cli() else { return };
    let server = Server::start(&["--shards", "2"]);
    let out = run_cli(&cli, &server, &["--no-raw", "LOCK", "fmt"], None);
    let shown = out.stdout.trim();
    assert!(
        shown.len() == 34 && shown.starts_with('"') && shown.ends_with('"'),
        "expected a quoted key, got {shown:?}"
    );
    assert!(is_key(&shown[1..33]), "{shown:?}");
    let out = run_cli(&cli, &server, &["--no-raw", "LOCK", "fmt"], None);
    assert!(
        out.stdout.trim().starts_with("(error) LOCKED"),
        "{}",
        out.all()
    );
}

#[test]
fn cli_info_and_dbsize() {
    let Some(cli) = cli() else { return };
    let server = Server::start(&["--shards", "2"]);
    for id in ["a", "b", "c"] {
        let out = run_cli(&cli, &server, &["LOCK", id], None);
        assert!(is_key(out.stdout.trim()), "{}", out.all());
    }
    let out = run_cli(&cli, &server, &["INFO"], None);
    let lines = out.lines();
    for section in ["# Server", "# Clients", "# Stats", "# Locks"] {
        assert!(lines.contains(&section), "INFO lacks {section}: {lines:?}");
    }
    assert!(lines.contains(&"locked:3"), "{lines:?}");
    assert!(lines.contains(&"completed:0"), "{lines:?}");
    let out = run_cli(&cli, &server, &["DBSIZE"], None);
    assert_eq!(out.stdout.trim(), "3", "{}", out.all());
}

#[test]
fn cli_with_password() {
    let Some(cli) = cli() else { return };
    let server = Server::start(&["--shards", "2", "--requirepass", "pw"]);
    let out = run_cli(&cli, &server, &["LOCK", "x"], None);
    assert!(out.all().contains("NOAUTH"), "{}", out.all());
    let out = run_cli(
        &cli,
        &server,
        &["-a", "pw", "--no-auth-warning", "LOCK", "x"],
        None,
    );
    assert!(is_key(out.stdout.trim()), "{}", out.all());
    let out = run_cli(
        &cli,
        &server,
        &["-a", "wrong", "--no-auth-warning", "PING"],
        None,
    );
    assert!(out.all().contains("WRONGPASS"), "{}", out.all());
}

#[test]
fn cli_binary_safe_arguments() {
    let Some(cli) = cli() else { return };
    let server = Server::start(&["--shards", "2"]);
    let out = run_cli(&cli, &server, &["LOCK", "ключ-✓"], None);
    let key = out.stdout.trim().to_string();
    assert!(is_key(&key), "{}", out.all());
    let out = run_cli(&cli, &server, &["COMPLETE", "ключ-✓", &key], None);
    assert_eq!(out.stdout.trim(), "OK", "{}", out.all());
    let out = run_cli(&cli, &server, &["ECHO", "a b\tc"], None);
    assert_eq!(out.stdout.trim_end_matches('\n'), "a b\tc");
}

#[test]
fn cli_multi_exec() {
    let Some(cli) = cli() else { return };
    let server = Server::start(&["--shards", "2"]);
    let script = "MULTI\nLOCK {cli}.a PX 60000\nLOCK {cli}.b\nSTATUS {cli}.a\nEXEC\n";
    let out = run_cli(&cli, &server, &[], Some(script));
    assert!(out.success, "redis-cli failed: {}", out.all());
    let lines = out.lines();
    assert_eq!(
        &lines[..4],
        &["OK", "QUEUED", "QUEUED", "QUEUED"],
        "{lines:?}"
    );
    assert!(is_key(lines[4]) && is_key(lines[5]), "{lines:?}");
    assert_eq!(lines[6], "state", "{lines:?}");
    assert_eq!(lines[7], "locked", "{lines:?}");

    // An aborted transaction runs nothing.
    let script = "MULTI\nLOCK {cli}.c\nLOCK\nEXEC\nSTATUS {cli}.c\n";
    let out = run_cli(&cli, &server, &[], Some(script));
    let lines = out.lines();
    assert_eq!(&lines[..2], &["OK", "QUEUED"], "{lines:?}");
    assert!(
        lines[2].starts_with("ERR wrong number of arguments"),
        "{lines:?}"
    );
    assert!(lines[3].starts_with("EXECABORT"), "{lines:?}");
    assert_eq!(&lines[4..6], &["state", "free"], "{lines:?}");
}
