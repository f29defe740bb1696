//! TLS: RESP on `--tls-port` (the `redis` crate, sync and async, raw rustls, `redis-cli --tls`)
//! and HTTP on `--tls-http-port`, client certificates, and bad input on a TLS port.

use crate::common;
use crate::tls_support;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Server, encode_command, expect_key, expect_ok, raw_key, require_tool};
use redis::Value;
use tls_support::{Pki, logged_addr};

fn start(pki: &Pki, extra: &[&str]) -> Server {
    let mut args: Vec<String> = vec![
        "--shards".into(),
        "2".into(),
        "--tls-port".into(),
        "0".into(),
        "--tls-http-port".into(),
        "0".into(),
    ];
    args.extend(pki.server_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

#[test]
fn redis_client_locks_and_completes_over_tls() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let addr = logged_addr(&server, "listening tls=");
    for resp3 in [false, true] {
        let client = pki.redis_client(addr, resp3, false);
        let mut con = common::connect_sync(&client);
        let id = format!("tls-{resp3}");
        let key = expect_key(redis::cmd("LOCK").arg(&id).query(&mut con), "LOCK");
        expect_ok(
            redis::cmd("COMPLETE").arg(&id).arg(&key).query(&mut con),
            "COMPLETE",
        );
        let err = redis::cmd("LOCK").arg(&id).query::<Value>(&mut con);
        common::expect_err(err, "COMPLETED", &[&key], "LOCK after COMPLETE");
    }
    // The plain port still works, and sees the same locks.
    let mut plain = server.connection(common::Proto::Resp2);
    let err = redis::cmd("LOCK")
        .arg("tls-true")
        .query::<Value>(&mut plain);
    common::expect_err(
        err,
        "COMPLETED",
        &[],
        "plain LOCK of an id completed over TLS",
    );
}

#[test]
fn big_pipelines_over_tls_come_back_whole_and_in_order() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let addr = logged_addr(&server, "listening tls=");
    let mut con = common::connect_sync(&pki.redis_client(addr, false, false));
    let n = 5_000;
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("LOCK").arg(format!("p{i}"));
        pipe.cmd("ECHO").arg(format!("{i:0>1000}"));
    }
    let replies: Vec<Value> = pipe.query(&mut con).expect("pipeline over TLS");
    assert_eq!(replies.len(), 2 * n);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert!(
            matches!(&pair[0], Value::BulkString(k) if k.len() == 32),
            "{i}: {pair:?}"
        );
        assert_eq!(
            pair[1],
            Value::BulkString(format!("{i:0>1000}").into_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_redis_client_over_tls() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let addr = logged_addr(&server, "listening tls=");
    let client = pki.redis_client(addr, true, false);
    let mut con = common::connect_async(&client).await;
    let key: String = redis::cmd("LOCK")
        .arg("async-tls")
        .query_async(&mut con)
        .await
        .expect("LOCK");
    assert!(common::is_key(&key), "{key}");
    let ok: Value = redis::cmd("UNLOCK")
        .arg("async-tls")
        .arg(&key)
        .query_async(&mut con)
        .await
        .expect("UNLOCK");
    assert_eq!(ok, Value::Okay);
}

#[test]
fn client_certificates_are_required_with_a_ca() {
    let pki = Pki::new();
    let ca = pki.ca_file.display().to_string();
    let server = start(&pki, &["--tls-ca-cert-file", &ca]);
    let addr = logged_addr(&server, "listening tls=");
    let mut con = common::connect_sync(&pki.redis_client(addr, false, true));
    expect_key(
        redis::cmd("LOCK").arg("mtls").query(&mut con),
        "LOCK with a client cert",
    );

    // Without a certificate the handshake fails: no command ever runs.
    let mut raw = pki.connect(addr, false, &[]);
    let sent = raw.write_all(&encode_command(&[b"PING"]));
    let mut buf = [0u8; 64];
    let read = sent.and_then(|()| raw.read(&mut buf));
    assert!(
        !matches!(read, Ok(n) if n > 0),
        "a client without a certificate got an answer: {read:?}"
    );
    // The refusal is in the log at the default level, with rustls's reason.
    let logged = server.wait_for_output("TLS handshake failed", Duration::from_secs(5));
    assert!(
        logged,
        "no log line for a refused handshake\n{}",
        server.log_text()
    );
    let text = server.log_text();
    assert!(
        text.lines()
            .any(|l| l.contains("TLS handshake failed") && l.contains("certificate")),
        "the log does not say a certificate was missing\n{text}"
    );
    // HTTPS asks for one too.
    let https = logged_addr(&server, "listening https=");
    let mut tls = pki.connect(https, false, &[b"http/1.1"]);
    let sent = tls.write_all(b"GET /lock?id=h HTTP/1.1\r\nHost: x\r\n\r\n");
    let read = sent.and_then(|()| tls.read(&mut buf));
    assert!(
        !matches!(read, Ok(n) if n > 0),
        "https without a client cert: {read:?}"
    );

    let mut with_cert = pki.connect(addr, true, &[]);
    with_cert.write_all(&encode_command(&[b"PING"])).unwrap();
    let n = with_cert.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
}

#[test]
fn raw_tls_bytes_and_protocol_errors() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let addr = logged_addr(&server, "listening tls=");
    let mut tls = pki.connect(addr, false, &[]);
    tls.write_all(&encode_command(&[b"LOCK", b"raw"])).unwrap();
    let mut reply = vec![0u8; 39];
    tls.read_exact(&mut reply).unwrap();
    raw_key(&reply);
    // A protocol error is answered over TLS, then the connection closes.
    tls.write_all(b"*1\r\n$-5\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    assert_eq!(rest, b"-ERR Protocol error: invalid bulk length\r\n");
}

#[test]
fn plaintext_and_garbage_on_the_tls_port_do_not_disturb_others() {
    let pki = Pki::new();
    let mut server = start(&pki, &[]);
    let addr = logged_addr(&server, "listening tls=");
    let mut good = pki.connect(addr, false, &[]);
    good.write_all(&encode_command(&[b"PING"])).unwrap();
    let mut buf = [0u8; 7];
    good.read_exact(&mut buf).unwrap();
    for junk in [
        &encode_command(&[b"LOCK", b"x"])[..],
        b"\x16\x03\x01\x00\x05hello",
        &[0u8; 5000],
        b"\x16\x03\x01\xff\xff",
    ] {
        let mut raw = std::net::TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = raw.write_all(junk);
        let mut out = Vec::new();
        let _ = raw.read_to_end(&mut out);
        assert!(
            !out.windows(4).any(|w| w == b"+OK\r" || w == b"$32\r"),
            "a plaintext request was answered: {out:?}"
        );
    }
    // A client that connects and never starts its handshake holds nothing up, and is dropped
    // when its time for the handshake (10 s) has passed.
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    good.write_all(&encode_command(&[b"LOCK", b"still-fine"]))
        .unwrap();
    let mut reply = vec![0u8; 39];
    good.read_exact(&mut reply).unwrap();
    raw_key(&reply);
    let mut byte = [0u8; 1];
    let started = std::time::Instant::now();
    let read = silent.read(&mut byte);
    assert!(
        matches!(read, Ok(0)) || read.is_err() && started.elapsed() < Duration::from_secs(25),
        "a client that never shook hands was kept: {read:?} after {:?}",
        started.elapsed()
    );
    server.assert_running();
}

#[test]
fn https_serves_the_same_locks() {
    let pki = Pki::new();
    let server = start(&pki, &["--requirepass", "pw"]);
    let https = logged_addr(&server, "listening https=");
    let response = pki.https_get(https, "/lock?id=web", &["Authorization: Bearer pw"]);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let key = response.rsplit("\r\n\r\n").next().unwrap_or_default();
    assert!(common::is_key(key), "{response}");
    let response = pki.https_get(https, "/lock?id=web", &[]);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    // The RESP side sees the lock taken over HTTPS.
    let mut con = common::connect_sync(
        &redis::Client::open(server.url_with_password("pw", common::Proto::Resp2)).unwrap(),
    );
    let err = redis::cmd("LOCK").arg("web").query::<Value>(&mut con);
    common::expect_err(
        err,
        "LOCKED",
        &[key],
        "RESP LOCK of an id locked over HTTPS",
    );
}

#[test]
fn redis_cli_with_tls() {
    let Some(cli) = require_tool("redis-cli") else {
        return;
    };
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let addr = logged_addr(&server, "listening tls=");
    let port = addr.port().to_string();
    let ca = pki.ca_file.display().to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&cli)
            .args(["--tls", "--cacert", &ca, "-h", "localhost", "-p", &port])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(run(&["PING"]), "PONG");
    let key = run(&["LOCK", "cli-tls"]);
    assert!(common::is_key(&key), "{key}");
    assert_eq!(run(&["COMPLETE", "cli-tls", &key]), "OK");
}

#[test]
fn unusable_certificates_stop_the_start_with_a_reason() {
    let pki = Pki::new();
    let dir = common::DataDir::new();
    let missing = pki.dir.join("missing.pem");
    let cert = pki.cert_file.display().to_string();
    let key = pki.key_file.display().to_string();
    let missing = missing.display().to_string();
    for (args, needle) in [
        (
            vec![
                "--tls-port",
                "0",
                "--tls-cert-file",
                &missing,
                "--tls-key-file",
                &key,
            ],
            "missing.pem",
        ),
        (
            vec![
                "--tls-port",
                "0",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &cert,
            ],
            "server.pem",
        ),
        (vec!["--tls-port", "0"], "--tls-cert-file"),
    ] {
        let failure = match Server::try_start_in(&dir.path, &args) {
            Ok(_) => panic!("started with {args:?}"),
            Err(f) => f,
        };
        assert!(!failure.status.success());
        assert!(
            failure.output.contains(needle),
            "{args:?}: {}",
            failure.output
        );
    }
}

/// CPU time (user + system, in clock ticks) of each of `pid`'s threads, by thread name.
fn thread_cpu_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue;
        };
        // "tid (name) state ppid ...": utime and stime are the 14th and 15th fields.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        threads.push((name, ticks));
    }
    threads
}

/// The CPU ticks of the threads whose name starts with `prefix`.
fn ticks_of(threads: &[(String, u64)], prefix: &str) -> u64 {
    threads
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, t)| t)
        .sum()
}

#[test]
fn handshakes_run_off_the_shard_threads() {
    // A burst of TLS clients that each shake hands, send one PING and leave. The handshakes'
    // cryptography is the bulk of the server's work; it must be charged to the handshake
    // thread, not to the shards that serve everyone else.
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let addr = logged_addr(&server, "listening tls=");
    let before = thread_cpu_ticks(server.pid());
    let config = pki.client_config(false, &[]);
    let mut handshakes = 0;
    while handshakes < 3000 {
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(&encode_command(&[b"PING"])).unwrap();
        let mut pong = [0u8; 7];
        tls.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"+PONG\r\n");
        handshakes += 1;
        if handshakes % 500 == 0 {
            let after = thread_cpu_ticks(server.pid());
            let spent = |prefix| ticks_of(&after, prefix) - ticks_of(&before, prefix);
            if spent("tls-handshake") >= 50 {
                break;
            }
        }
    }
    let after = thread_cpu_ticks(server.pid());
    let spent = |prefix| ticks_of(&after, prefix) - ticks_of(&before, prefix);
    let (handshake, shards) = (spent("tls-handshake"), spent("shard-"));
    eprintln!("{handshakes} handshakes: handshake threads {handshake} ticks, shards {shards}");
    assert!(
        handshake >= 20,
        "the handshake threads did little work ({handshake} ticks) for {handshakes} handshakes"
    );
    assert!(
        shards * 2 < handshake,
        "the shards spent {shards} ticks against the handshake threads' {handshake}"
    );
}
