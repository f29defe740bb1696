//! What the server tells about itself: `/health` and `/ready`, `/metrics` in the OpenMetrics
//! text format, `INFO` (also as redis-py parses it) and `SLOWLOG`.

use crate::common;
use crate::http_support;

use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{DataDir, Proto, Server, connect_sync, expect_err, expect_key, expect_ok};
use http_support::{agent, get, request};
use redis::Value;
use token_server::config::Config;
use token_server::log::FaultyStorage;
use token_server::server::start_with_storage;

/// The value of the sample `series` (name and labels exactly as printed) on a metrics page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every sample of metric `name` whose labels contain `filter`.
fn sum(page: &str, name: &str, filter: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn health_and_ready_answer_probes() {
    let server = Server::start(&[]);
    let agent = agent();
    get(&agent, &server, "/health").expect(200, "ok", "GET /health");
    get(&agent, &server, "/ready").expect(200, "ready", "GET /ready");
    let head = request(&agent, &server, "HEAD", "/ready");
    assert_eq!(head.status, 200);
    let post = request(&agent, &server, "POST", "/health");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn metrics_count_commands_connections_log_and_mesh() {
    let server = Server::start(&["--shards", "2"]);
    let agent = agent();
    let mut con = server.connection(Proto::Resp2);
    // Ids on both shards, so that some commands cross the mesh.
    for n in 0..10 {
        let id = format!("m-{n}");
        let key = expect_key(redis::cmd("LOCK").arg(&id).query(&mut con), "LOCK");
        expect_err(
            redis::cmd("LOCK").arg(&id).query(&mut con),
            "LOCKED",
            &[&key],
            "LOCK",
        );
        expect_ok(
            redis::cmd("UNLOCK").arg(&id).arg(&key).query(&mut con),
            "UNLOCK",
        );
    }
    expect_err(redis::cmd("NOSUCH").query(&mut con), "ERR", &[], "unknown");
    get(&agent, &server, "/lock?id=over-http")
        .status
        .eq(&200)
        .then_some(())
        .expect("200");
    get(&agent, &server, "/lock?id=over-http").expect(409, "locked", "second /lock");

    let response = get(&agent, &server, "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let page = response.text();
    assert!(page.ends_with("# EOF\n"), "{page}");
    let lock_ok = sum(
        &page,
        "token_server_commands_total",
        "command=\"lock\",outcome=\"ok\"",
    );
    assert_eq!(lock_ok, 11.0, "{page}");
    assert_eq!(
        sum(
            &page,
            "token_server_commands_total",
            "command=\"lock\",outcome=\"locked\""
        ),
        11.0
    );
    assert_eq!(
        sample(
            &page,
            "token_server_commands_total{command=\"unlock\",outcome=\"ok\"}"
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &page,
            "token_server_commands_total{command=\"unknown\",outcome=\"rejected\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &page,
            "token_server_command_duration_seconds_count{command=\"lock\"}"
        ),
        Some(22.0)
    );
    assert_eq!(
        sample(
            &page,
            "token_server_command_duration_seconds_bucket{le=\"+Inf\",command=\"lock\"}"
        ),
        Some(22.0)
    );
    assert_eq!(
        sample(&page, "token_server_connected_clients{protocol=\"resp\"}"),
        Some(1.0)
    );
    assert!(sum(&page, "token_server_connections_received_total", "http") >= 1.0);
    assert_eq!(
        sample(
            &page,
            "token_server_http_requests_total{endpoint=\"lock\",status=\"409\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sum(&page, "token_server_locked_ids", ""), 1.0);
    assert!(sum(&page, "token_server_fsync_duration_seconds_count", "") >= 21.0);
    assert!(sum(&page, "token_server_log_bytes", "") > 0.0);
    assert!(sum(&page, "token_server_cross_shard_messages_sent_total", "") > 0.0);
    assert_eq!(
        sum(&page, "token_server_cross_shard_messages_sent_total", ""),
        sum(
            &page,
            "token_server_cross_shard_messages_received_total",
            ""
        )
    );
    // Buckets are cumulative.
    let buckets: Vec<f64> = page
        .lines()
        .filter(|l| l.starts_with("token_server_command_duration_seconds_bucket{"))
        .filter(|l| l.contains("command=\"lock\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
}

#[test]
fn info_mirrors_the_metrics() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp3);
    for n in 0..4 {
        expect_key(
            redis::cmd("LOCK").arg(format!("i-{n}")).query(&mut con),
            "LOCK",
        );
    }
    let info: String = redis::cmd("INFO")
        .arg("everything")
        .query(&mut con)
        .expect("INFO");
    for needle in [
        "# Server\r\n",
        "# Clients\r\nconnected_clients:1\r\nhttp_connected_clients:0\r\n",
        "# Memory\r\nused_memory_rss:",
        "table_memory_human:",
        "# Persistence\r\n",
        "log_fsyncs:",
        "# Stats\r\n",
        "cross_shard_messages_sent:",
        "# Locks\r\nlocked:4\r\n",
        "# Shards\r\nshard0:locked=",
        "# Commandstats\r\ncmdstat_lock:calls=4,usec=",
        "rejected_calls=0,failed_calls=0\r\n",
        "# Latencystats\r\nlatency_percentiles_usec_lock:p50=",
    ] {
        assert!(info.contains(needle), "INFO lacks {needle:?}:\n{info}");
    }
    let default: String = redis::cmd("INFO").query(&mut con).expect("INFO");
    assert!(default.contains("# Shards") && !default.contains("# Commandstats"));
    assert!(
        default.contains("# Memory"),
        "Redis gives the memory section by default"
    );
}

#[test]
fn info_and_slowlog_parse_with_redis_py() {
    let Some(python) = common::require_python_module("redis") else {
        return;
    };
    let server = Server::start(&["--shards", "2", "--slowlog-log-slower-than", "0"]);
    let script = r#"
import json, sys, redis
r = redis.Redis(port=int(sys.argv[1]))
r.execute_command("LOCK", "py-a")
try:
    r.execute_command("LOCK", "py-a")
except redis.ResponseError:
    pass
everything = r.info("everything")
default = r.info()
slow = r.slowlog_get(100)
print(json.dumps({
    "locked": everything["locked"],
    "cmdstat_lock": everything["cmdstat_lock"],
    "shard0": everything["shard0"],
    "latency": everything["latency_percentiles_usec_lock"],
    "version": default["redis_version"],
    "commands": [e["command"].decode() for e in slow],
    "len": r.slowlog_len(),
}))
"#;
    let out = Command::new(python)
        .args(["-c", script, &server.port().to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "redis-py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from python");
    assert_eq!(v["locked"], 1, "{v}");
    assert_eq!(v["cmdstat_lock"]["calls"], 2, "{v}");
    assert_eq!(v["cmdstat_lock"]["failed_calls"], 1, "{v}");
    assert!(v["shard0"]["locked"].is_number(), "{v}");
    assert!(v["latency"]["p99"].is_number(), "{v}");
    assert_eq!(v["version"], "7.2.0");
    let commands: Vec<&str> = v["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(commands.contains(&"LOCK py-a"), "{commands:?}");
    assert!(v["len"].as_u64().is_some_and(|n| n >= 3), "{v}");
}

#[test]
fn slowlog_keeps_slow_commands_without_keys() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "4",
    ]);
    let mut con = server.connection(Proto::Resp2);
    expect_ok(redis::cmd("SLOWLOG").arg("RESET").query(&mut con), "RESET");
    let key = expect_key(redis::cmd("LOCK").arg("slow-1").query(&mut con), "LOCK");
    expect_ok(
        redis::cmd("COMPLETE")
            .arg("slow-1")
            .arg(&key)
            .arg("RESULT")
            .arg("r")
            .query(&mut con),
        "COMPLETE",
    );
    let Value::Array(entries) = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query::<Value>(&mut con)
        .expect("SLOWLOG GET")
    else {
        panic!("SLOWLOG GET is an array");
    };
    let shown: Vec<Vec<String>> = entries
        .iter()
        .map(|e| match e {
            Value::Array(fields) => {
                assert_eq!(fields.len(), 6, "{fields:?}");
                assert!(matches!(fields[0], Value::Int(_)));
                assert!(matches!(fields[1], Value::Int(t) if t > 1_700_000_000));
                assert!(matches!(fields[2], Value::Int(d) if d >= 0));
                match &fields[3] {
                    Value::Array(args) => args.iter().filter_map(common::value_text).collect(),
                    other => panic!("arguments: {other:?}"),
                }
            }
            other => panic!("entry: {other:?}"),
        })
        .collect();
    // Newest first.
    assert_eq!(
        shown[0],
        ["COMPLETE", "slow-1", "(redacted)", "RESULT", "(1 bytes)"]
    );
    assert_eq!(shown[1], ["LOCK", "slow-1"]);
    let all = format!("{shown:?}");
    assert!(!all.contains(&key), "SLOWLOG shows a key: {all}");
    // At most --slowlog-max-len per shard.
    for n in 0..20 {
        let _: Value = redis::cmd("PING").arg(n).query(&mut con).expect("PING");
    }
    let len: i64 = redis::cmd("SLOWLOG")
        .arg("LEN")
        .query(&mut con)
        .expect("LEN");
    assert!((4..=8).contains(&len), "{len}");
    expect_ok(redis::cmd("SLOWLOG").arg("RESET").query(&mut con), "RESET");
    let len: i64 = redis::cmd("SLOWLOG")
        .arg("LEN")
        .query(&mut con)
        .expect("LEN");
    assert!(len <= 1, "only SLOWLOG RESET itself may be there: {len}");
    expect_err(
        redis::cmd("SLOWLOG").arg("GET").arg(-2).query(&mut con),
        "ERR",
        &[],
        "GET -2",
    );
    expect_err(
        redis::cmd("SLOWLOG").arg("NOPE").query(&mut con),
        "ERR",
        &[],
        "NOPE",
    );
}

#[test]
fn slowlog_off_with_a_negative_threshold() {
    let server = Server::start(&["--slowlog-log-slower-than", "-1"]);
    let mut con = server.connection(Proto::Resp2);
    expect_key(redis::cmd("LOCK").arg("quick").query(&mut con), "LOCK");
    let len: i64 = redis::cmd("SLOWLOG")
        .arg("LEN")
        .query(&mut con)
        .expect("LEN");
    assert_eq!(len, 0);
}

#[test]
fn ready_turns_503_while_a_log_cannot_be_written() {
    let dir = DataDir::new();
    let dir_arg = dir.path.to_str().expect("UTF-8 path");
    let config = Config::from_args([
        "token-server",
        "--port",
        "0",
        "--http-port",
        "0",
        "--shards",
        "2",
        "--dir",
        dir_arg,
    ])
    .expect("valid flags");
    let storage = FaultyStorage::new();
    let running = start_with_storage(config, Arc::new(storage.clone())).expect("starts");
    let agent = agent();
    let ready = |agent: &ureq::Agent| {
        let url = format!("http://{}/ready", running.http_addr);
        let mut r = agent.get(&url).call().expect("GET /ready");
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    assert_eq!(ready(&agent), (200, "ready".to_string()));
    let client = redis::Client::open(format!("redis://{}/", running.resp_addr)).expect("url");
    let mut con = connect_sync(&client);
    storage.set_disk_full(true);
    for n in 0..4 {
        let _ = redis::cmd("LOCK")
            .arg(format!("f-{n}"))
            .query::<Value>(&mut con);
    }
    let (status, body) = ready(&agent);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: the log of shard"), "{body}");
    storage.set_disk_full(false);
    let since = Instant::now();
    while ready(&agent).0 != 200 {
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "never ready again"
        );
        thread::sleep(Duration::from_millis(50));
    }
    running.shutdown_handle().shutdown();
    running.wait().expect("shards stop");
}

/// A numeric field of an `INFO` reply.
fn info_number(con: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(con).expect("INFO");
    info.lines()
        .find_map(|l| {
            l.trim_end()
                .strip_prefix(field)?
                .strip_prefix(':')?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("INFO {section} lacks {field}:\n{info}"))
}

#[test]
fn memory_figures_rise_with_a_burst_and_fall_when_it_expires() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    let rss = info_number(&mut con, "memory", "used_memory_rss");
    assert!(rss > 0);
    assert!(info_number(&mut con, "memory", "used_memory_peak_rss") >= rss);
    let empty = info_number(&mut con, "memory", "table_memory");

    let mut pipe = redis::pipe();
    for n in 0..20_000 {
        pipe.cmd("LOCK")
            .arg(format!("burst-{n}"))
            .arg("PX")
            .arg(500);
    }
    let keys: Vec<String> = pipe.query(&mut con).expect("20,000 LOCKs");
    assert_eq!(keys.len(), 20_000);
    let full = info_number(&mut con, "memory", "table_memory");
    assert!(
        full >= empty + 20_000 * 48,
        "table_memory {empty} empty, {full} with 20,000 locks"
    );

    // Once every lease has run out, the emptied chunks and index are given back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let drained = loop {
        let size: u64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
        let now = info_number(&mut con, "memory", "table_memory");
        if size == 0 && now < full / 2 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "{size} ids left, table_memory {now} (full: {full})"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let page = get(&agent(), &server, "/metrics");
    let page = String::from_utf8_lossy(&page.body);
    let table = sum(&page, "token_server_table_memory_bytes", "shard=");
    assert!(
        table > 0.0 && table < full as f64 / 2.0,
        "{table} (drained: {drained})"
    );
    assert!(sample(&page, "token_server_resident_memory_bytes").is_some_and(|v| v > 0.0));
}

/// `total_commands_processed` and each shard's `commands=` count commands where they run: a
/// lock command on the shard owning its id, whichever connection or HTTP request sent it.
#[test]
fn commands_are_counted_where_they_run_http_included() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    let info = |con: &mut redis::Connection| -> String {
        redis::cmd("INFO").arg("everything").query(con).unwrap()
    };
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let shard_commands = |text: &str, shard: usize| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("shard{shard}:")))
            .unwrap_or_else(|| panic!("no shard{shard} in {text}"));
        line.split(',')
            .find_map(|kv| kv.strip_prefix("commands="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no commands= in {line}"))
    };
    let before = info(&mut con);
    let agent = agent();
    // Ids owned by shard 1, sent over HTTP.
    let ids: Vec<String> = (0..)
        .map(|i| format!("counted-{i}"))
        .filter(|id| token_server::types::shard_for(id.as_bytes(), 2) == 1)
        .take(10)
        .collect();
    for id in &ids {
        assert_eq!(get(&agent, &server, &format!("/lock?id={id}")).status, 200);
    }
    let after = info(&mut con);
    let total =
        field(&after, "total_commands_processed") - field(&before, "total_commands_processed");
    // The 10 HTTP LOCKs and the INFO that read `before` (the one reading `after` counts later).
    assert!((11..=12).contains(&total), "{total}: {after}");
    assert!(
        shard_commands(&after, 1) - shard_commands(&before, 1) >= 10,
        "shard 1 ran the HTTP LOCKs: {after}"
    );
}
