//! Smoke test of the `token-bench` load generator against the real server: every workload runs
//! for about a second at a small size, exits 0, does some operations and sees no unexpected
//! error. The full benchmark (`scripts/bench.sh`) is never part of the test suite.

use crate::common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};

use common::Server;

/// Runs the workloads at once (they use distinct ids) and returns each one's output.
fn run_all(server: &Server, workloads: &[&str]) -> Vec<(String, Output)> {
    let port = server.port().to_string();
    let http_port = server.http_addr.port().to_string();
    let children: Vec<_> = workloads
        .iter()
        .map(|workload| {
            let child = Command::new(env!("CARGO_BIN_EXE_token-bench"))
                .args([
                    workload,
                    "--port",
                    &port,
                    "--http-port",
                    &http_port,
                    "--duration",
                    "1",
                    "--connections",
                    "4",
                    "--pipeline",
                    "4",
                    "--output",
                    "kv",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn token-bench");
            (workload.to_string(), child)
        })
        .collect();
    children
        .into_iter()
        .map(|(workload, child)| {
            let output = child.wait_with_output().expect("wait for token-bench");
            (workload, output)
        })
        .collect()
}

fn fields(line: &str) -> HashMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .collect()
}

#[test]
fn every_workload_runs_against_the_server() {
    let server = Server::start(&["--shards", "2"]);
    let workloads = ["lock", "cycle", "contended", "ping", "http"];
    for (workload, output) in run_all(&server, &workloads) {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "token-bench {workload} exited with {}\nstdout: {stdout}\nstderr: {stderr}",
            output.status
        );
        let f = fields(&stdout);
        let number = |key: &str| -> u64 {
            f.get(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{workload}: no numeric {key} in {stdout:?}"))
        };
        assert_eq!(f.get("workload"), Some(&workload.as_str()), "{stdout}");
        assert!(number("ops") > 0, "{workload}: no operations: {stdout}");
        assert_eq!(number("unexpected_errors"), 0, "{workload}: {stdout}");
        assert_eq!(number("failed_connections"), 0, "{workload}: {stdout}");
        if workload == "contended" {
            // Ten ids raced for by four connections four deep: some attempts must lose.
            assert!(number("expected_errors") > 0, "no LOCKED seen: {stdout}");
        }
    }
}

#[test]
fn help_documents_every_workload() {
    let output = Command::new(env!("CARGO_BIN_EXE_token-bench"))
        .arg("--help")
        .output()
        .expect("run token-bench --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for word in [
        "lock",
        "cycle",
        "contended",
        "http",
        "ping",
        "--target",
        "--pipeline",
        "--count",
        "--duration",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
}

#[test]
fn a_refused_connection_is_a_clear_failure() {
    // Port 1 on loopback: nothing listens there in a test environment.
    let output = Command::new(env!("CARGO_BIN_EXE_token-bench"))
        .args([
            "ping",
            "--port",
            "1",
            "--duration",
            "1",
            "--connections",
            "1",
        ])
        .output()
        .expect("run token-bench");
    assert_eq!(output.status.code(), Some(1), "a failed run exits 1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
