//! Who gets in: the password from the environment or a file, AUTH that pipelining cannot skip,
//! `Authorization: Bearer` over HTTP (probes open), and protected mode.

use crate::common;
use crate::http_support;

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use common::{Server, encode_command, raw_key};
use http_support::HttpConn;

const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// The process's command line as `ps` shows it.
fn cmdline(server: &Server) -> String {
    let raw = std::fs::read(format!("/proc/{}/cmdline", server.pid())).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

#[test]
fn password_from_the_environment_stays_out_of_ps() {
    let server =
        Server::start_with_env(&["--shards", "1"], &[("TOKEN_SERVER_PASSWORD", "env-pw-1")]);
    assert!(
        !cmdline(&server).contains("env-pw-1"),
        "{}",
        cmdline(&server)
    );
    let mut raw = server.raw();
    raw.send(&encode_command(&[b"LOCK", b"x"]));
    raw.expect_bytes(NOAUTH, "LOCK before AUTH");
    raw.send(&encode_command(&[b"AUTH", b"default", b"env-pw-1"]));
    raw.expect_bytes(b"+OK\r\n", "AUTH default <env password>");
    raw.send(&encode_command(&[b"LOCK", b"x"]));
    raw_key(&raw.read_reply());
}

#[test]
fn password_from_a_file_stays_out_of_ps() {
    let dir = common::DataDir::new();
    let file = dir.path.join("password");
    std::fs::write(&file, "file-pw-2\n").unwrap();
    let path = file.display().to_string();
    let server = Server::start(&["--shards", "1", "--requirepass-file", &path]);
    assert!(!cmdline(&server).contains("file-pw-2"));
    let mut raw = server.raw();
    raw.send(&encode_command(&[b"AUTH", b"file-pw-2\n"]));
    raw.expect_bytes(WRONGPASS, "the newline is not part of the password");
    raw.send(&encode_command(&[
        b"HELLO",
        b"3",
        b"AUTH",
        b"default",
        b"file-pw-2",
    ]));
    let hello = raw.read_reply();
    assert!(
        hello.starts_with(b"%"),
        "HELLO 3 AUTH: {}",
        common::show(&hello)
    );
    raw.send(&encode_command(&[b"LOCK", b"y"]));
    raw_key(&raw.read_reply());
}

#[test]
fn an_empty_or_doubly_given_password_stops_the_start() {
    let dir = common::DataDir::new();
    let file = dir.path.join("password");
    std::fs::write(&file, "\n").unwrap();
    let path = file.display().to_string();
    for args in [
        vec!["--requirepass-file", path.as_str()],
        vec!["--requirepass-file", path.as_str(), "--requirepass", "x"],
        vec!["--requirepass", ""],
    ] {
        let data = common::DataDir::new();
        match Server::try_start_in(&data.path, &args) {
            Ok(_) => panic!("started with {args:?}"),
            Err(f) => assert!(f.output.contains("password"), "{args:?}: {}", f.output),
        }
    }
}

#[test]
fn pipelining_cannot_skip_authentication() {
    let server = Server::start(&["--shards", "2", "--requirepass", "pw"]);
    let mut raw = server.raw();
    let mut burst = Vec::new();
    for args in [
        &[&b"AUTH"[..], b"wrong"][..],
        &[b"LOCK", b"a"],
        &[b"HELLO", b"3"],
        &[b"HELLO", b"3", b"AUTH", b"default", b"wrong"],
        &[b"LOCK", b"a"],
        &[b"AUTH", b"pw"],
        &[b"LOCK", b"a"],
        &[b"RESET"],
        &[b"LOCK", b"b"],
    ] {
        burst.extend(encode_command(args));
    }
    burst.extend(b"LOCK c\r\n");
    raw.send(&burst);
    raw.expect_bytes(WRONGPASS, "AUTH wrong");
    raw.expect_bytes(NOAUTH, "LOCK after a wrong AUTH");
    let hello = raw.read_reply();
    assert!(
        hello.starts_with(b"-NOAUTH HELLO must be called"),
        "{}",
        common::show(&hello)
    );
    raw.expect_bytes(WRONGPASS, "HELLO with a wrong password");
    raw.expect_bytes(NOAUTH, "LOCK after HELLO failed");
    raw.expect_bytes(b"+OK\r\n", "AUTH pw");
    raw_key(&raw.read_reply());
    raw.expect_bytes(b"+RESET\r\n", "RESET");
    raw.expect_bytes(NOAUTH, "LOCK after RESET");
    raw.expect_bytes(NOAUTH, "inline LOCK after RESET");
}

/// Sends a raw HTTP request with `headers` and reads the response.
fn http(server: &Server, target: &str, headers: &[&str]) -> http_support::HttpResponse {
    let mut conn = HttpConn::connect(server.http_addr);
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    conn.send(request.as_bytes());
    conn.read_response().expect("a response")
}

#[test]
fn http_needs_the_bearer_password_except_for_probes() {
    let server = Server::start(&["--shards", "2", "--requirepass", "pw"]);
    let r = http(&server, "/lock?id=h", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{r:?}"
    );
    for header in [
        "Authorization: Bearer nope",
        "Authorization: Basic cHc=",
        "Authorization: pw",
    ] {
        let r = http(&server, "/lock?id=h", &[header]);
        assert_eq!(r.status, 401, "{header}: {r:?}");
        assert!(!r.text().contains("pw"), "{r:?}");
    }
    assert_eq!(http(&server, "/", &[]).status, 401);
    assert_eq!(http(&server, "/status?id=h", &[]).status, 401);
    let r = http(&server, "/lock?id=h", &["Authorization: Bearer pw"]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(common::is_key(&r.text()), "{r:?}");
    let r = http(&server, "/lock?id=h", &["authorization: bearer pw"]);
    assert_eq!(r.status, 409, "the scheme is case-insensitive: {r:?}");
    for probe in ["/health", "/ready"] {
        let r = http(&server, probe, &[]);
        assert_ne!(r.status, 401, "{probe} must stay open: {r:?}");
    }
    // Pipelined on one connection, each request is checked on its own.
    let mut conn = HttpConn::connect(server.http_addr);
    conn.send(
        b"GET /lock?id=p1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pw\r\n\r\n\
          GET /lock?id=p2 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /lock?id=p3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pw\r\n\r\n",
    );
    let statuses: Vec<u16> = (0..3)
        .map(|_| conn.read_response().expect("a response").status)
        .collect();
    assert_eq!(statuses, [200, 401, 200]);
}

/// A local address that is not loopback, if the machine has one.
fn non_loopback_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks the route and source address.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn protected_mode_refuses_remote_clients_without_a_password() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("SKIPPING protected mode test: this machine has no non-loopback address");
        return;
    };
    let bind = ip.to_string();
    let server = Server::start(&["--shards", "1", "--bind", &bind]);
    assert!(
        server.wait_for_output("protected mode", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
    let mut raw = server.raw();
    raw.send_lenient(&encode_command(&[b"PING"]));
    let got = raw.read_until_closed(Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("-DENIED ") && text.ends_with("\r\n"),
        "{text}"
    );
    assert!(
        text.contains("--protected-mode no") && text.contains("password"),
        "{text}"
    );
    let r = http(&server, "/lock?id=remote", &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.text().contains("protected mode"), "{r:?}");
    assert_ne!(
        http(&server, "/health", &[]).status,
        403,
        "probes stay open"
    );

    // A password, or --protected-mode no, lets remote clients in.
    let server = Server::start(&["--shards", "1", "--bind", &bind, "--requirepass", "pw"]);
    let mut raw = server.raw();
    raw.send(&encode_command(&[b"PING"]));
    raw.expect_bytes(NOAUTH, "PING from a remote client with a password set");
    let server = Server::start(&["--shards", "1", "--bind", &bind, "--protected-mode", "no"]);
    let mut raw = server.raw();
    raw.send(&encode_command(&[b"PING"]));
    raw.expect_bytes(b"+PONG\r\n", "PING with protected mode off");
    assert_eq!(http(&server, "/lock?id=remote", &[]).status, 200);
}

/// HTTP Basic with the user `default` and the password is accepted, as `curl -u` and requests'
/// `auth=` send it; a right password is never called wrong.
#[test]
fn http_basic_auth_with_the_default_user() {
    let server = Server::start(&["--shards", "2", "--requirepass", "s3cret"]);
    // base64("default:s3cret"), base64(":s3cret"), base64("default:nope"), base64("alice:s3cret")
    let r = http(
        &server,
        "/lock?id=b1",
        &["Authorization: Basic ZGVmYXVsdDpzM2NyZXQ="],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = http(
        &server,
        "/lock?id=b2",
        &["Authorization: Basic OnMzY3JldA=="],
    );
    assert_eq!(r.status, 200, "no user is the default user: {r:?}");
    let r = http(
        &server,
        "/lock?id=b3",
        &["Authorization: Basic ZGVmYXVsdDpub3Bl"],
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "unauthorized: wrong password")
    );
    let r = http(
        &server,
        "/lock?id=b3",
        &["Authorization: Basic YWxpY2U6czNjcmV0"],
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "unauthorized: the only user is default")
    );

    if let Some(curl) = common::require_tool("curl") {
        let url = format!("http://{}/lock?id=curl-basic", server.http_addr);
        let out = std::process::Command::new(curl)
            .args(["-s", "-w", " %{http_code}", "-u", "default:s3cret", &url])
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.ends_with(" 200"), "curl -u default:PASS: {text:?}");
    }
    if let Some(python) = common::require_python_module("requests") {
        let script = "import sys, requests\n\
                      r = requests.get(sys.argv[1], params={'id': 'py basic'}, auth=('default', 's3cret'))\n\
                      print(r.status_code)";
        let url = format!("http://{}/lock", server.http_addr);
        let out = std::process::Command::new(python)
            .args(["-c", script, &url])
            .output()
            .expect("run python3");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "200",
            "requests auth=: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
