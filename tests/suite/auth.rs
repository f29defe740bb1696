//! `--requirepass`: AUTH, HELLO ... AUTH and password URLs.

use crate::common;

use common::{
    Exec, Proto, Server, connect_async, connect_sync, encode_command, expect_err, expect_key,
    expect_ok, raw_key, show,
};
use redis::Value;

const PASSWORD: &str = "s3cret-pw";

fn server() -> Server {
    Server::start(&["--shards", "2", "--requirepass", PASSWORD])
}

#[test]
fn commands_before_auth_are_rejected() {
    let server = server();
    let mut raw = server.raw();
    raw.send(&encode_command(&[b"LOCK", b"x"]));
    raw.expect_bytes(b"-NOAUTH Authentication required.\r\n", "LOCK before AUTH");
    raw.send(b"LOCK x\r\n");
    raw.expect_bytes(
        b"-NOAUTH Authentication required.\r\n",
        "inline LOCK before AUTH",
    );
    for args in [
        &[&b"UNLOCK"[..], b"x", common::FOREIGN_KEY.as_bytes()][..],
        &[b"COMPLETE", b"x", common::FOREIGN_KEY.as_bytes()],
    ] {
        raw.send(&encode_command(args));
        raw.expect_bytes(b"-NOAUTH Authentication required.\r\n", "before AUTH");
    }
    // The rejected LOCK did not take the id.
    raw.send(&encode_command(&[b"AUTH", PASSWORD.as_bytes()]));
    raw.expect_bytes(b"+OK\r\n", "AUTH");
    raw.send(&encode_command(&[b"LOCK", b"x"]));
    raw_key(&raw.read_reply());
}

#[test]
fn wrong_password_is_wrongpass() {
    let server = server();
    let mut raw = server.raw();
    raw.send(&encode_command(&[b"AUTH", b"wrong"]));
    raw.expect_bytes(
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        "AUTH wrong",
    );
    // Still not authenticated.
    raw.send(&encode_command(&[b"LOCK", b"x"]));
    raw.expect_bytes(
        b"-NOAUTH Authentication required.\r\n",
        "LOCK after bad AUTH",
    );
    // A correct AUTH afterwards works.
    raw.send(&encode_command(&[b"AUTH", PASSWORD.as_bytes()]));
    raw.expect_bytes(b"+OK\r\n", "AUTH with the right password");
    raw.send(&encode_command(&[b"LOCK", b"x"]));
    raw_key(&raw.read_reply());
}

#[test]
fn auth_then_lock_with_client() {
    let server = server();
    let mut con = server.connection(Proto::Resp2);
    let err = expect_err(con.run(&["LOCK", "x"]), "NOAUTH", &[], "LOCK before AUTH");
    assert_eq!(err.detail(), Some("Authentication required."));
    let err = con
        .run(&["AUTH", "wrong"])
        .expect_err("AUTH wrong must fail");
    assert_eq!(err.code(), Some("WRONGPASS"), "{err:?}");
    assert_eq!(
        err.detail(),
        Some("invalid username-password pair or user is disabled.")
    );
    expect_ok(con.run(&["AUTH", PASSWORD]), "AUTH");
    let key = expect_key(con.run(&["LOCK", "x"]), "LOCK after AUTH");
    expect_ok(con.run(&["COMPLETE", "x", &key]), "COMPLETE after AUTH");
}

#[test]
fn auth_is_per_connection() {
    let server = server();
    let mut a = server.raw();
    a.send(&encode_command(&[b"AUTH", PASSWORD.as_bytes()]));
    a.expect_bytes(b"+OK\r\n", "AUTH on A");
    let mut b = server.raw();
    b.send(&encode_command(&[b"LOCK", b"y"]));
    b.expect_bytes(b"-NOAUTH Authentication required.\r\n", "LOCK on B");
    a.send(&encode_command(&[b"LOCK", b"y"]));
    raw_key(&a.read_reply());
}

#[test]
fn hello_3_with_auth() {
    let server = server();
    let mut raw = server.raw();
    raw.send(&encode_command(&[
        b"HELLO",
        b"3",
        b"AUTH",
        b"default",
        PASSWORD.as_bytes(),
    ]));
    let reply = raw.read_reply();
    assert!(
        reply.starts_with(b"%"),
        "HELLO 3 AUTH must reply with a map: {}",
        show(&reply)
    );
    raw.send(&encode_command(&[b"LOCK", b"h"]));
    raw_key(&raw.read_reply());

    // Through the client library.
    let mut con = server.connection(Proto::Resp2);
    let reply = con
        .run(&["HELLO", "3", "AUTH", "default", PASSWORD])
        .expect("HELLO 3 AUTH default <pw>");
    assert!(matches!(reply, Value::Map(_)), "{reply:?}");
    expect_key(con.run(&["LOCK", "h2"]), "LOCK after HELLO AUTH");
}

#[test]
fn hello_with_wrong_password_is_rejected() {
    let server = server();
    let mut raw = server.raw();
    raw.send(&encode_command(&[
        b"HELLO", b"3", b"AUTH", b"default", b"nope",
    ]));
    let reply = raw.read_reply();
    assert!(
        reply.starts_with(b"-"),
        "expected an error: {}",
        show(&reply)
    );
    raw.send(&encode_command(&[b"LOCK", b"x"]));
    let reply = raw.read_reply();
    assert!(
        reply.starts_with(b"-NOAUTH"),
        "LOCK after failed HELLO AUTH: {}",
        show(&reply)
    );
}

#[test]
fn password_in_url() {
    let server = server();
    for proto in Proto::ALL {
        let client = redis::Client::open(server.url_with_password(PASSWORD, proto)).unwrap();
        let mut con = connect_sync(&client);
        let id = format!("url-{proto:?}");
        let key = expect_key(con.run(&["LOCK", &id]), "LOCK via password URL");
        expect_ok(con.run(&["UNLOCK", &id, &key]), "UNLOCK via password URL");
    }
}

#[test]
fn password_in_url_async() {
    let server = server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for proto in Proto::ALL {
            let client = redis::Client::open(server.url_with_password(PASSWORD, proto)).unwrap();
            let mut con = connect_async(&client).await;
            let key: String = redis::cmd("LOCK")
                .arg(format!("async-{proto:?}"))
                .query_async(&mut con)
                .await
                .expect("LOCK via async password URL");
            assert!(common::is_key(&key), "{key:?}");
        }
    });
}

#[test]
fn wrong_password_in_url_fails_to_connect() {
    let server = server();
    for proto in Proto::ALL {
        let client = redis::Client::open(server.url_with_password("bad", proto)).unwrap();
        assert!(
            client.get_connection().is_err(),
            "{proto:?}: connecting with a wrong password must fail"
        );
    }
}

#[test]
fn url_without_password_gets_noauth() {
    let server = server();
    let mut con = server.connection(Proto::Resp2);
    expect_err(
        con.run(&["LOCK", "x"]),
        "NOAUTH",
        &[],
        "LOCK without credentials",
    );
}

#[test]
fn no_password_configured_accepts_commands_directly() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = connect_sync(&server.client(Proto::Resp2));
    expect_key(con.run(&["LOCK", "open"]), "LOCK without requirepass");
}

/// Wrong passwords are counted (INFO `acl_access_denied_auth`, `/metrics`), logged at most once
/// a second, and slow their connection down: after three free failures, the next request
/// waits 100 ms, then 200, then 400 (doubling up to 2 s).
#[test]
fn failed_auth_is_counted_logged_sparingly_and_slowed() {
    let server = server();
    let mut raw = server.raw();
    let started = std::time::Instant::now();
    let mut pipeline = Vec::new();
    for _ in 0..6 {
        pipeline.extend(encode_command(&[b"AUTH", b"wrong"]));
    }
    pipeline.extend(encode_command(&[b"AUTH", PASSWORD.as_bytes()]));
    raw.send(&pipeline);
    for _ in 0..6 {
        assert!(raw.read_reply().starts_with(b"-WRONGPASS"));
    }
    assert_eq!(raw.read_reply(), b"+OK\r\n");
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(700),
        "six failures answered in {took:?}: not slowed"
    );
    // The slowing is the connection's own (a session's count): another one authenticates.
    let mut other = server.raw();
    other.send(&encode_command(&[b"AUTH", PASSWORD.as_bytes()]));
    assert_eq!(other.read_reply(), b"+OK\r\n");

    let client = redis::Client::open(server.url_with_password(PASSWORD, Proto::Resp2)).unwrap();
    let mut con = connect_sync(&client);
    let info: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    assert!(info.contains("acl_access_denied_auth:6\r\n"), "{info}");
    // A wrong HTTP password counts too, and /metrics shows the total.
    let url = format!("http://{}/metrics", server.http_addr);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let denied = agent
        .get(&url)
        .header("Authorization", "Bearer nope")
        .call()
        .unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    let mut metrics = agent
        .get(&url)
        .header("Authorization", format!("Bearer {PASSWORD}"))
        .call()
        .unwrap();
    let text = metrics.body_mut().read_to_string().unwrap();
    assert!(
        text.contains("token_server_auth_failures_total 7"),
        "{text}"
    );
    let lines = server
        .log_text()
        .matches("failed authentication attempts")
        .count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines for 6 failures in about a second"
    );
}
