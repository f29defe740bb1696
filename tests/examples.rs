//! The examples users copy, run against a real server: the Rust helper (`redis` crate), the
//! Python one (redis-py) and the shell one (curl). The Python and shell ones run against a
//! server in chaos mode (`--chaos-rate 0.3`) and must still run each job once. Tests that
//! need python3 with redis-py, bash or curl skip loudly when they are missing (or fail with
//! `TOKEN_SERVER_REQUIRE_TOOLS=1`).

mod common;

#[path = "../examples/run_once.rs"]
#[allow(dead_code)]
mod run_once;

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
