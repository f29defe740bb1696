//! Running the server as an operator does: settings from flags, `TOKEN_SERVER_*` variables and
//! a TOML file (`--check-config`), the start-up and shutdown log lines (text and JSON), and the
//! ways it stops: `SHUTDOWN`, SIGTERM with requests still waiting, always exiting 0 with its
//! logs synced.

use crate::common;
use crate::http_support;

use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use common::{DataDir, Proto, Server, expect_err, expect_key, expect_ok};
use http_support::{HttpConn, get_request};

const STOP_WITHIN: Duration = Duration::from_secs(15);

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_token-server"));
    // Settings in the test runner's environment must not leak into these checks.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TOKEN_SERVER_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `key = value  # source` line of `key` in `--check-config` output.
fn setting<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no `{key}` line in\n{stdout}"))
}

fn write_file(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write config file");
    path.to_str().expect("UTF-8 path").to_string()
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let dir = DataDir::new();
    let file = write_file(
        &dir.path,
        "c.toml",
        "port = 7000\nhttp-port = 7001\nshards = 3\nappendfsync = \"everysec\"\n",
    );
    let out = binary()
        .args(["--check-config", "--config", &file, "--shards", "4"])
        .env("TOKEN_SERVER_PORT", "7100")
        .env("TOKEN_SERVER_SHARDS", "5")
        .env("TOKEN_SERVER_PASSWORD", "hunter2-secret")
        .output()
        .expect("run --check-config");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(setting(&stdout, "shards"), "shards = 4  # flag");
    assert_eq!(
        setting(&stdout, "port"),
        "port = 7100  # environment TOKEN_SERVER_PORT"
    );
    assert_eq!(
        setting(&stdout, "http-port"),
        "http-port = 7001  # config file"
    );
    assert_eq!(
        setting(&stdout, "appendfsync"),
        "appendfsync = \"everysec\"  # config file"
    );
    assert_eq!(setting(&stdout, "bind"), "bind = \"127.0.0.1\"  # default");
    assert!(
        !stdout.contains("hunter2"),
        "the password leaked:\n{stdout}"
    );
    assert!(
        stdout.contains("# requirepass = (set, not shown)"),
        "{stdout}"
    );
    // The output is itself a config file.
    let again = write_file(&dir.path, "again.toml", &stdout);
    let out = binary()
        .args(["--check-config", "--config", &again])
        .output()
        .expect("run --check-config on its own output");
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn bad_settings_are_errors_that_name_their_source() {
    let dir = DataDir::new();
    // (flags, an environment variable, what the one-line error must name)
    type Case<'a> = (Vec<String>, Option<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![],
            Some(("TOKEN_SERVER_PORT", "seventy")),
            "TOKEN_SERVER_PORT",
        ),
        (
            vec![],
            Some(("TOKEN_SERVER_CHAOS_RATE", "2")),
            "TOKEN_SERVER_CHAOS_RATE",
        ),
        (
            vec![
                "--config".into(),
                write_file(&dir.path, "a.toml", "colour = 1\n"),
            ],
            None,
            "unknown key 'colour'",
        ),
        (
            vec![
                "--config".into(),
                write_file(&dir.path, "b.toml", "port = \"x\"\n"),
            ],
            None,
            "key 'port'",
        ),
        (
            vec![
                "--config".into(),
                write_file(&dir.path, "c.toml", "appendfsync = \"sometimes\"\n"),
            ],
            None,
            "key 'appendfsync'",
        ),
        (vec!["--chaos-rate=-0.1".into()], None, "--chaos-rate"),
        (
            vec!["--log-format".into(), "xml".into()],
            None,
            "--log-format",
        ),
    ];
    for (args, env, needle) in cases {
        let mut cmd = binary();
        cmd.arg("--check-config").args(&args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run token-server");
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} {env:?}: {stdout}{stderr}"
        );
        assert!(stderr.contains(needle), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn the_sample_config_file_is_valid() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/token-server.toml");
    let out = binary()
        .args(["--check-config", "--config", sample])
        .output()
        .expect("run --check-config");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("# config file"), "{stdout}");
}

#[test]
fn start_up_names_version_shards_ports_dir_fsync_and_recovery() {
    let server = Server::start(&["--shards", "2", "--appendfsync", "everysec"]);
    let lines = server.output_lines();
    let started = lines
        .iter()
        .find(|l| l.contains("token-server started"))
        .unwrap_or_else(|| panic!("no start-up line\n{}", server.log_text()));
    for needle in [
        format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        "shards=2".into(),
        format!("resp={}", server.resp_addr),
        format!("http={}", server.http_addr),
        format!("dir={}", server.dir.display()),
        "appendfsync=\"everysec\"".into(),
        "recovered_ids=0".into(),
        "recovery_ms=".into(),
    ] {
        assert!(started.contains(&needle), "{needle} missing in {started}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut server = Server::start(&["--log-format", "json", "--chaos-rate", "0.3"]);
    let mut con = server.connection(Proto::Resp2);
    let _ = redis::cmd("SHUTDOWN").query::<redis::Value>(&mut con);
    assert!(server.wait_exit(STOP_WITHIN).success());
    let lines = server.output_lines();
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let message = |m: &str| {
        objects
            .iter()
            .find(|o| o["message"].as_str().is_some_and(|s| s.contains(m)))
            .unwrap_or_else(|| panic!("no `{m}` line in {lines:#?}"))
    };
    assert!(message("token-server started")["shards"].is_number());
    assert_eq!(message("recovered")["records"], 0);
    let chaos = message("CHAOS MODE");
    assert_eq!(chaos["level"], "WARN");
    assert_eq!(chaos["chaos_rate"], 0.3);
    assert!(
        message("shutting down")["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("SHUTDOWN from client"))
    );
    message("stopped");
}

#[test]
fn shutdown_replies_nothing_syncs_and_exits_zero() {
    let dir = DataDir::new();
    let args = ["--shards", "2", "--appendfsync", "no"];
    let mut server = Server::start_in(&dir.path, &args);
    let mut con = server.connection(Proto::Resp2);
    let mut ids = Vec::new();
    for n in 0..20 {
        let id = format!("order-{n}");
        let key = expect_key(redis::cmd("LOCK").arg(&id).query(&mut con), "LOCK");
        expect_ok(
            redis::cmd("COMPLETE").arg(&id).arg(&key).query(&mut con),
            "COMPLETE",
        );
        ids.push(id);
    }
    // Redis's behaviour: no reply, the connection closes.
    let reply = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query::<redis::Value>(&mut con);
    assert!(
        reply.as_ref().is_err_and(|e| e.code().is_none()),
        "SHUTDOWN must close the connection without a reply, got {reply:?}"
    );
    let status = server.wait_exit(STOP_WITHIN);
    assert!(
        status.success(),
        "exit status {status}\n{}",
        server.log_text()
    );
    assert!(server.wait_for_output("shutting down", Duration::from_secs(10)));
    assert!(server.wait_for_output("stopped: logs synced", Duration::from_secs(10)));
    drop(server);

    let server = Server::start_in(&dir.path, &args);
    let mut con = server.connection(Proto::Resp2);
    for id in &ids {
        expect_err(
            redis::cmd("LOCK").arg(id).query(&mut con),
            "COMPLETED",
            &[],
            "after the restart",
        );
    }
}

#[test]
fn shutdown_abort_and_bad_options_are_errors() {
    let server = Server::start(&[]);
    let mut con = server.connection(Proto::Resp2);
    expect_err(
        redis::cmd("SHUTDOWN").arg("ABORT").query(&mut con),
        "ERR",
        &[],
        "SHUTDOWN ABORT",
    );
    expect_err(
        redis::cmd("SHUTDOWN").arg("LATER").query(&mut con),
        "ERR",
        &[],
        "SHUTDOWN LATER",
    );
    let pong: String = redis::cmd("PING").query(&mut con).expect("still serving");
    assert_eq!(pong, "PONG");
}

#[test]
fn sigterm_answers_waiting_requests_and_exits_promptly() {
    let mut server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    // Held ids on both shards, and a RESP and an HTTP client queued for up to a minute.
    for id in ["held-a", "held-b", "held-c", "held-d"] {
        expect_key(redis::cmd("LOCK").arg(id).query(&mut con), "LOCK");
    }
    let mut waiter = server.connection(Proto::Resp2);
    let resp_wait = thread::spawn(move || {
        let mut replies = Vec::new();
        for id in ["held-a", "held-b"] {
            replies.push(
                redis::cmd("LOCK")
                    .arg(id)
                    .arg("WAIT")
                    .arg(60_000)
                    .query::<redis::Value>(&mut waiter),
            );
        }
        replies
    });
    let mut http = HttpConn::connect(server.http_addr);
    http.send(&get_request("/lock?id=held-c&wait=60000"));
    thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let status = server.terminate(STOP_WITHIN);
    assert!(
        status.success(),
        "exit status {status}\n{}",
        server.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the shutdown waited for the waits: {:?}",
        started.elapsed()
    );
    let first = resp_wait
        .join()
        .expect("waiter thread")
        .into_iter()
        .next()
        .expect("a reply");
    // The first wait is answered -LOCKED; the second was never read (the shard stopped
    // reading), so its connection just closes.
    expect_err(first, "LOCKED", &[], "queued LOCK at shutdown");
    let response = http
        .read_response()
        .unwrap_or_else(|| panic!("no HTTP response\n{}", server.log_text()));
    response.expect(409, "locked", "queued /lock at shutdown");
}

#[test]
fn logs_never_show_keys_or_passwords() {
    let password = "correct-horse-battery-staple";
    let mut server = Server::start(&["--requirepass", password, "--log-level", "trace"]);
    let client =
        redis::Client::open(server.url_with_password(password, Proto::Resp3)).expect("valid URL");
    let mut con = common::connect_sync(&client);
    let key = expect_key(redis::cmd("LOCK").arg("job").query(&mut con), "LOCK");
    expect_ok(
        redis::cmd("UNLOCK").arg("job").arg(&key).query(&mut con),
        "UNLOCK",
    );
    let _ = redis::cmd("AUTH")
        .arg("wrong-password")
        .query::<redis::Value>(&mut con);
    let _ = redis::cmd("SHUTDOWN").query::<redis::Value>(&mut con);
    assert!(server.wait_exit(STOP_WITHIN).success());
    let log = server.log_text();
    assert!(
        !log.contains(password),
        "the password is in the log:\n{log}"
    );
    assert!(
        !log.contains("wrong-password"),
        "a password is in the log:\n{log}"
    );
    assert!(!log.contains(&key), "a key is in the log:\n{log}");
}

#[test]
fn a_copy_of_the_logs_taken_while_running_restores() {
    let dir = DataDir::new();
    let server = Server::start_in(&dir.path, &["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    for n in 0..30 {
        let id = format!("paid-{n}");
        let key = expect_key(redis::cmd("LOCK").arg(&id).query(&mut con), "LOCK");
        expect_ok(
            redis::cmd("COMPLETE").arg(&id).arg(&key).query(&mut con),
            "COMPLETE",
        );
    }
    // The procedure of docs/OPERATIONS.md: copy each shard's appendonly.log, server running.
    let backup = DataDir::new();
    for entry in std::fs::read_dir(&dir.path).expect("data dir") {
        let shard = entry.expect("entry").path();
        let log = shard.join("appendonly.log");
        if log.is_file() {
            let target = backup.path.join(shard.file_name().expect("name"));
            std::fs::create_dir_all(&target).expect("backup shard dir");
            std::fs::copy(&log, target.join("appendonly.log")).expect("copy");
        }
    }
    let restored = Server::start_in(&backup.path, &["--shards", "3"]);
    let mut con = restored.connection(Proto::Resp2);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    assert_eq!(size, 30, "{}", restored.log_text());
    expect_err(
        redis::cmd("LOCK").arg("paid-17").query(&mut con),
        "COMPLETED",
        &[],
        "restored",
    );
}

/// A `TOKEN_SERVER_*` variable that names no setting (a typo) is not ignored in silence: the
/// server warns at start, and `--check-config` says so.
#[test]
fn unknown_environment_variables_are_warned_about() {
    let out = binary()
        .args(["--check-config"])
        .env("TOKEN_SERVER_MAXCLIENT", "5")
        .output()
        .expect("run --check-config");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("TOKEN_SERVER_MAXCLIENT names no setting"),
        "{stderr}"
    );
    let server = Server::start_with_env(&["--shards", "1"], &[("TOKEN_SERVER_MAXCLIENT", "5")]);
    assert!(
        server
            .log_text()
            .contains("ignored an environment variable that names no setting"),
        "{}",
        server.log_text()
    );
}
