//! TLS: RESP on `--tls-port` (the `redis` crate, sync and async, raw rustls, `redis-cli --tls`)
//! and HTTP on `--tls-http-port`, client certificates, and bad input on a TLS port.

mod common;
mod tls_support;

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
    // A client that connects and never starts its handshake holds nothing up.
    let _silent = std::net::TcpStream::connect(addr).unwrap();
    good.write_all(&encode_command(&[b"LOCK", b"still-fine"]))
        .unwrap();
    let mut reply = vec![0u8; 39];
    good.read_exact(&mut reply).unwrap();
    raw_key(&reply);
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
