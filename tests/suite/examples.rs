//! The examples users copy, run against a real server: the Rust helper (`redis` crate), the
//! Python one (redis-py) and the shell one (curl). The Python and shell ones run against a
//! server in chaos mode (`--chaos-rate 0.3`) and must still run each job once. Tests that
//! need python3 with redis-py, bash or curl skip loudly when they are missing (or fail with
//! `TOKEN_SERVER_REQUIRE_TOOLS=1`).

use crate::common;

use crate::run_once;

use std::process::Command;

use common::{DataDir, Proto, Server, require_python_module, require_tool};

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn rust_example_runs_each_job_once() {
    let server = Server::start(&["--chaos-rate", "0.3"]);
    run_once::run(&server.url(Proto::Resp2), 5).expect("the example runs");
    let mut con = server.connection(Proto::Resp2);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    // Five completed jobs; a LOCK whose reply chaos mode dropped may still hold its id.
    assert!(size >= 5, "{size}");
}

#[test]
fn python_example_runs_each_job_once_under_chaos() {
    let Some(python) = require_python_module("redis") else {
        return;
    };
    let server = Server::start(&["--chaos-rate", "0.3", "--shards", "2"]);
    let out = Command::new(python)
        .arg(example("run_once.py"))
        .arg(server.url(Proto::Resp2))
        .arg("8")
        .output()
        .expect("run the python example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in 0..8 {
        let done = format!("pass 1 python-job-{n}: done: sent email {n} (fence ");
        let again = format!("pass 2 python-job-{n}: already done: sent email {n} (fence ");
        assert!(stdout.contains(&done), "{done} missing:\n{stdout}");
        assert!(stdout.contains(&again), "{again} missing:\n{stdout}");
    }
}

#[test]
fn shell_example_runs_each_job_once_under_chaos() {
    let (Some(bash), Some(_curl)) = (require_tool("bash"), require_tool("curl")) else {
        return;
    };
    let server = Server::start(&["--chaos-rate", "0.3", "--shards", "2"]);
    let dir = DataDir::new();
    let record = dir.path.join("record");
    let base = format!("http://{}", server.http_addr);
    for round in 0..2 {
        for job in 0..6 {
            let out = Command::new(&bash)
                .arg(example("run_once.sh"))
                .args([&base, &format!("shell job/{job}")])
                .args(["sh", "-c", &format!("echo {job} >> '{}'", record.display())])
                .env("LEASE_MS", "1000")
                .env("WAIT_MS", "3000")
                .output()
                .expect("run the shell example");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "round {round} job {job}: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let expected = if round == 0 { "done" } else { "already done" };
            assert_eq!(stdout.trim(), format!("shell job/{job}: {expected}"));
        }
    }
    let text = std::fs::read_to_string(&record).expect("the record");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["0", "1", "2", "3", "4", "5"],
        "each job exactly once"
    );
}

/// The shell example sends a job id's UTF-8 bytes (under a UTF-8 locale too), so `job é €` is
/// the same job over RESP and never the same as `job AC`; and it gives up, with exit status 2,
/// on an id someone else holds without a lease.
#[test]
fn shell_example_sends_utf8_bytes_and_gives_up_on_a_held_id() {
    let (Some(bash), Some(_curl)) = (require_tool("bash"), require_tool("curl")) else {
        return;
    };
    let server = Server::start(&["--shards", "2"]);
    let base = format!("http://{}", server.http_addr);
    let run = |job: &str, env: &[(&str, &str)]| {
        Command::new(&bash)
            .arg(example("run_once.sh"))
            .args([&base, job, "true"])
            .env("LC_ALL", "C.UTF-8")
            .env("LANG", "C.UTF-8")
            .envs(env.iter().copied())
            .output()
            .expect("run the shell example")
    };
    let out = run("job \u{e9} \u{20ac}", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut con = server.connection(Proto::Resp2);
    let status: Vec<redis::Value> = redis::cmd("STATUS")
        .arg("job \u{e9} \u{20ac}".as_bytes())
        .query(&mut con)
        .unwrap();
    assert_eq!(
        common::value_text(&status[1]).as_deref(),
        Some("completed"),
        "{status:?}"
    );
    let other: Vec<redis::Value> = redis::cmd("STATUS")
        .arg("job \u{e9} AC")
        .query(&mut con)
        .unwrap();
    assert_eq!(common::value_text(&other[1]).as_deref(), Some("free"));

    let _key = common::expect_key(redis::cmd("LOCK").arg("held").query(&mut con), "LOCK");
    let started = std::time::Instant::now();
    let out = run("held", &[("WAIT_MS", "500"), ("HOLD_PATIENCE_S", "1")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("still held"));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// Runs a client check script of examples/ against a fresh server; it must say `: ok`.
fn run_client_script(tool: &std::path::Path, script: &str) {
    let server = Server::start(&["--shards", "2"]);
    let out = Command::new(tool)
        .arg(example(script))
        .arg(server.port().to_string())
        .output()
        .expect("run the client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(": ok"),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ruby_client_calls_batches_and_retries() {
    let Some(ruby) = common::require_tool_that(
        "ruby",
        &["-e", "require 'redis'"],
        "ruby's Redis client (redis-rb) is not installed",
        "apt-get install ruby-redis",
    ) else {
        return;
    };
    run_client_script(&ruby, "ruby_client.rb");
}

#[test]
fn php_client_calls_batches_and_retries() {
    let Some(php) = common::require_tool_that(
        "php",
        &["-r", "exit(class_exists('Redis') ? 0 : 1);"],
        "php's Redis client (phpredis) is not installed",
        "apt-get install php-cli php-redis",
    ) else {
        return;
    };
    run_client_script(&php, "php_client.php");
}
