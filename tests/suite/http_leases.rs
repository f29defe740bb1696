//! The lease features over HTTP: ttl with Retry-After, wait, fingerprint (422), renew, result
//! and `/status` as JSON, sharing state with RESP.

use crate::common;
use crate::http_support;

use std::thread;
use std::time::{Duration, Instant};

use common::{Proto, Server, expect_key};
use http_support::{agent, get};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn a_locked_id_with_a_lease_says_when_to_retry() {
    let server = Server::start(&["--shards", "2"]);
    let agent = agent();
    let r = get(&agent, &server, "/lock?id=lease&ttl=5000");
    assert_eq!(r.status, 200, "{r:?}");
    let fence: u64 = r
        .header("x-fencing-token")
        .and_then(|f| f.parse().ok())
        .expect("a fencing token");
    assert!(fence > 0);
    let r = get(&agent, &server, "/lock?id=lease");
    r.expect(409, "locked", "held");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After on a leased lock");
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
}

#[test]
fn renew_result_and_status_over_http() {
    let server = Server::start(&["--shards", "2"]);
    let agent = agent();
    let s = json(&get(&agent, &server, "/status?id=job").text());
    assert_eq!(s["state"], "free");
    assert_eq!(s["fence"], 0);
    let key = get(&agent, &server, "/lock?id=job&ttl=300").text();
    let r = get(&agent, &server, "/status?id=job");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let s = json(&r.text());
    assert_eq!(s["state"], "locked");
    assert!(s["ttl_ms"].as_i64().is_some_and(|t| (1..=300).contains(&t)));
    assert!(!r.text().contains(&key), "STATUS never shows the key");
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(150));
        get(&agent, &server, &format!("/renew?id=job&key={key}&ttl=300"))
            .expect(200, "renewed", "renew");
    }
    get(
        &agent,
        &server,
        "/renew?id=job&key=00000000000000000000000000000000&ttl=300",
    )
    .expect(403, "wrong key", "renew, wrong key");
    get(&agent, &server, &format!("/renew?id=job&key={key}")).expect(
        400,
        "bad request: missing ttl parameter",
        "renew without ttl",
    );
    get(
        &agent,
        &server,
        &format!("/complete?id=job&key={key}&result=receipt%20%E2%9C%93"),
    )
    .expect(200, "complete", "complete with result");
    let s = json(&get(&agent, &server, "/status?id=job").text());
    assert_eq!(s["state"], "completed");
    assert_eq!(s["result"], "receipt ✓");
    // The same state over RESP.
    let mut con = server.connection(Proto::Resp2);
    let result: Vec<redis::Value> = redis::cmd("STATUS").arg("job").query(&mut con).unwrap();
    assert!(result.contains(&redis::Value::BulkString("receipt ✓".as_bytes().to_vec())));
}

#[test]
fn a_different_fingerprint_is_422() {
    let server = Server::start(&["--shards", "2"]);
    let agent = agent();
    let r = get(&agent, &server, "/lock?id=pay&fingerprint=abc");
    assert_eq!(r.status, 200);
    get(&agent, &server, "/lock?id=pay&fingerprint=xyz").expect(422, "mismatch", "other fp");
    get(&agent, &server, "/lock?id=pay&fingerprint=abc").expect(409, "locked", "same fp");
}

#[test]
fn wait_is_granted_when_the_holder_unlocks() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    let key = expect_key(redis::cmd("LOCK").arg("w").query(&mut con), "RESP holder");
    let url = format!("http://{}/lock?id=w&wait=10000", server.http_addr);
    let waiter = thread::spawn(move || {
        let started = Instant::now();
        let r = http_support::agent().get(&url).call();
        (
            r.map(|mut r| r.body_mut().read_to_string().unwrap_or_default()),
            started.elapsed(),
        )
    });
    thread::sleep(Duration::from_millis(300));
    let _: () = redis::cmd("UNLOCK")
        .arg("w")
        .arg(&key)
        .query(&mut con)
        .unwrap();
    let (body, waited) = waiter.join().expect("waiter");
    let body = body.expect("a 200 answer");
    assert!(common::is_key(&body), "granted key: {body:?}");
    assert!(waited >= Duration::from_millis(250), "waited {waited:?}");
    // A wait that times out is 409 locked.
    let started = Instant::now();
    get(&agent(), &server, "/lock?id=w&wait=200").expect(409, "locked", "timed out");
    assert!(started.elapsed() >= Duration::from_millis(190));
    get(&agent(), &server, "/lock?id=w&wait=x").expect(
        400,
        "bad request: bad wait: expected whole milliseconds from 0 to 1099511627776",
        "bad wait",
    );
}

/// An HTTP `wait=` caller that disconnects is dropped from the queue (STATUS stops counting
/// it) and is never granted: the holder's unlock leaves the id free.
#[test]
fn an_http_waiter_that_disconnects_is_dropped() {
    let server = Server::start(&["--shards", "2"]);
    let mut resp = server.connection(Proto::Resp2);
    for n in 0..4 {
        let id = format!("hw-{n}");
        let key = expect_key(redis::cmd("LOCK").arg(&id).query(&mut resp), "LOCK");
        let waiters = |resp: &mut redis::Connection| -> i64 {
            let s: Vec<redis::Value> = redis::cmd("STATUS").arg(&id).query(resp).unwrap();
            match &s[7] {
                redis::Value::Int(n) => *n,
                other => panic!("waiters: {other:?}"),
            }
        };
        let mut conn = http_support::HttpConn::connect(server.http_addr);
        conn.send(format!("GET /lock?id={id}&wait=60000 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let deadline = Instant::now() + Duration::from_secs(5);
        while waiters(&mut resp) != 1 {
            assert!(Instant::now() < deadline, "{id}: never queued");
            thread::sleep(Duration::from_millis(10));
        }
        drop(conn);
        let deadline = Instant::now() + Duration::from_secs(5);
        while waiters(&mut resp) != 0 {
            assert!(
                Instant::now() < deadline,
                "{id}: the gone caller still waits"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let _: () = redis::cmd("UNLOCK")
            .arg(&id)
            .arg(&key)
            .query(&mut resp)
            .unwrap();
        let s: Vec<redis::Value> = redis::cmd("STATUS").arg(&id).query(&mut resp).unwrap();
        assert_eq!(
            common::value_text(&s[1]).as_deref(),
            Some("free"),
            "{id}: {s:?}"
        );
    }
}
