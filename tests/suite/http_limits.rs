//! The HTTP adapter's connection handling against the real binary: keep-alive, pipelining,
//! malformed and oversized requests, the header timeout and `--maxclients`. After every abuse
//! a well-behaved client must still be served.

use crate::common;
use crate::http_support;

use std::time::{Duration, Instant};

use common::{Server, show};
use http_support::{HttpConn, agent, get_request, lock_key};

/// A client that did nothing wrong still gets its lock.
fn assert_healthy(server: &mut Server, id: &str) {
    server.assert_running();
    lock_key(&agent(), server, id);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut conn = HttpConn::connect(server.http_addr);
    let lock = conn.get("/lock?id=kept");
    assert_eq!(lock.status, 200, "{lock:?}");
    let key = lock.text();
    conn.get("/lock?id=kept")
        .expect(409, "locked", "second request");
    conn.get(&format!("/unlock?id=kept&key={key}"))
        .expect(200, "unlocked", "third request");
    let relock = conn.get("/lock?id=kept");
    assert_eq!(relock.status, 200, "{relock:?}");
    conn.get("/nowhere")
        .expect(404, "not found", "a 404 keeps the connection");
    assert_eq!(conn.get("/lock?id=").status, 400, "a 400 keeps it too");
    conn.get(&format!("/complete?id=kept&key={}", relock.text()))
        .expect(200, "complete", "last request");
    for response in [&lock, &relock] {
        assert_eq!(response.header("connection"), None, "{response:?}");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut conn = HttpConn::connect(server.http_addr);
    let mut both = get_request("/lock?id=piped");
    both.extend(get_request("/lock?id=piped"));
    conn.send(&both);
    let first = conn.read_response().expect("first response");
    assert_eq!(first.status, 200, "{first:?}");
    assert!(common::is_key(&first.text()), "{first:?}");
    conn.read_response().expect("second response").expect(
        409,
        "locked",
        "second pipelined request",
    );

    // Many at once, mixing ids on different shards and endpoints.
    let mut batch = Vec::new();
    for n in 0..50 {
        batch.extend(get_request(&format!("/lock?id=batch-{n}")));
        batch.extend(get_request(&format!(
            "/unlock?id=batch-{n}&key={}",
            "0".repeat(32)
        )));
    }
    conn.send(&batch);
    for n in 0..50 {
        let lock = conn.read_response().expect("lock response");
        assert_eq!(lock.status, 200, "batch-{n}: {lock:?}");
        conn.read_response().expect("unlock response").expect(
            403,
            "wrong key",
            &format!("batch-{n} unlock"),
        );
    }
}

#[test]
fn oversized_heads_get_431() {
    let mut server = Server::start(&[]);
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "9 KiB header",
            format!(
                "GET /lock?id=big HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\n\r\n",
                "a".repeat(9 * 1024)
            )
            .into_bytes(),
        ),
        (
            "9 KiB request line",
            format!(
                "GET /lock?id={} HTTP/1.1\r\nHost: t\r\n\r\n",
                "b".repeat(9 * 1024)
            )
            .into_bytes(),
        ),
        (
            "many small headers",
            format!(
                "GET /lock?id=big HTTP/1.1\r\n{}\r\n",
                "X-A: 0123456789\r\n".repeat(600)
            )
            .into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        let mut conn = HttpConn::connect(server.http_addr);
        conn.send_lenient(&bytes);
        let answer = conn.read_until_closed(Duration::from_secs(10));
        assert!(
            answer.starts_with(b"HTTP/1.1 431 "),
            "{what}: expected 431, got {:?}",
            show(&answer)
        );
    }
    // None of them locked anything.
    assert_healthy(&mut server, "big");
    // Just under the limit is served.
    let mut conn = HttpConn::connect(server.http_addr);
    conn.send(
        format!(
            "GET /lock?id=fits HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\n\r\n",
            "c".repeat(7 * 1024)
        )
        .as_bytes(),
    );
    assert_eq!(conn.read_response().expect("a response").status, 200);
}

#[test]
fn malformed_requests_do_not_disturb_others() {
    let mut server = Server::start(&[]);
    let agent = agent();
    // A healthy client holds a keep-alive connection through all of it.
    let mut bystander = HttpConn::connect(server.http_addr);
    let held = bystander.get("/lock?id=bystander");
    assert_eq!(held.status, 200);

    let garbage: [&[u8]; 9] = [
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"hello\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /lock?id=a HTTP/9.9\r\n\r\n",
        b"GET /lock?id=a HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /lock?id=\x01\x02 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"G\xc3\xa9T /lock?id=a HTTP/1.1\r\n\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"GET /lock?id=a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ];
    for bytes in garbage {
        let mut conn = HttpConn::connect(server.http_addr);
        conn.send_lenient(bytes);
        let answer = conn.read_until_closed(Duration::from_secs(10));
        assert!(
            answer.starts_with(b"HTTP/1.1 400 "),
            "{:?}: expected 400, got {:?}",
            show(bytes),
            show(&answer)
        );
    }
    // A body over the limit is refused and the connection closed.
    let mut conn = HttpConn::connect(server.http_addr);
    conn.send(b"POST /lock?id=fat HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    conn.send_lenient(&[b'x'; 100_000]);
    let answer = conn.read_until_closed(Duration::from_secs(10));
    assert!(
        answer.starts_with(b"HTTP/1.1 413 "),
        "expected 413, got {:?}",
        show(&answer)
    );
    // A client that disconnects mid-request.
    let mut conn = HttpConn::connect(server.http_addr);
    conn.send(b"GET /lock?id=half HTTP/1.1\r\nHo");
    drop(conn);

    // The refused requests locked nothing.
    lock_key(&agent, &server, "fat");
    bystander.get("/lock?id=bystander").expect(
        409,
        "locked",
        "the bystander's connection still works",
    );
    assert_healthy(&mut server, "after-garbage");
}

#[test]
fn slow_headers_are_dropped_after_the_timeout() {
    let mut server = Server::start(&["--http-header-timeout", "1"]);
    let mut slow = HttpConn::connect(server.http_addr);
    slow.send(b"GET /lock?id=slow HTTP/1.1\r\nHost: t\r\n");
    let started = Instant::now();
    let answer = slow.read_until_closed(Duration::from_secs(10));
    let waited = started.elapsed();
    // Closed without an answer: hyper sends nothing when the head never completes.
    assert!(answer.is_empty(), "got {:?}", show(&answer));
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );

    // A keep-alive connection that goes quiet is closed the same way.
    let mut idle = HttpConn::connect(server.http_addr);
    assert_eq!(idle.get("/lock?id=idle").status, 200);
    idle.read_until_closed(Duration::from_secs(10));

    // A connection that never sends a byte too.
    let mut silent = HttpConn::connect(server.http_addr);
    assert!(silent.read_until_closed(Duration::from_secs(10)).is_empty());

    assert_healthy(&mut server, "after-slow");
}

#[test]
fn connections_over_maxclients_are_refused_with_503() {
    let mut server = Server::start(&["--maxclients", "3"]);
    let mut held: Vec<HttpConn> = (0..3)
        .map(|n| {
            let mut conn = HttpConn::connect(server.http_addr);
            assert_eq!(conn.get(&format!("/lock?id=held-{n}")).status, 200);
            conn
        })
        .collect();

    let mut refused = HttpConn::connect(server.http_addr);
    let answer = refused.read_until_closed(Duration::from_secs(10));
    assert!(
        answer.starts_with(b"HTTP/1.1 503 ")
            && answer.ends_with(b"\r\n\r\nbusy")
            && answer
                .windows(25)
                .any(|w| w.eq_ignore_ascii_case(b"cache-control: no-store\r\n")),
        "got {:?}",
        show(&answer)
    );
    // The held connections are unaffected.
    for (n, conn) in held.iter_mut().enumerate() {
        conn.get(&format!("/lock?id=held-{n}"))
            .expect(409, "locked", "held connection");
    }
    // Closing one frees a place.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = HttpConn::connect(server.http_addr);
        conn.send(&get_request("/lock?id=freed"));
        match conn.read_response() {
            Some(response) if response.status == 200 => break,
            // Refused while the server has not yet seen the close; a refusal may also reach
            // us as a reset, since our request is never read.
            Some(response) if response.status == 503 => {}
            None => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(Instant::now() < deadline, "the place was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.assert_running();
}

/// Whether `/health` is answered 200 on a new connection (not `503 busy`).
fn health_ok(server: &Server) -> bool {
    let mut conn = HttpConn::connect(server.http_addr);
    conn.send_lenient(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    conn.read_response().is_some_and(|r| r.status == 200)
}

/// Waits up to `limit` for `/health` to be answered 200.
fn health_within(server: &Server, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if health_ok(server) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Clients that announce a body and never send it, or pipeline requests and never read the
/// responses, hold their connection for at most `--http-header-timeout`: then every place of
/// `--maxclients` is free again (`/health` answers 200, not 503).
#[test]
fn bodies_and_unread_responses_hold_a_connection_for_a_bounded_time() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--maxclients",
        "3",
        "--http-header-timeout",
        "1",
    ]);
    // A head with Content-Length: 100 and no body: 408 after the timeout, then closed.
    let mut held: Vec<HttpConn> = (0..3)
        .map(|i| {
            let mut c = HttpConn::connect(server.http_addr);
            c.send(
                format!("GET /lock?id=b{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
                    .as_bytes(),
            );
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!health_ok(&server), "three connections fill --maxclients 3");
    let started = Instant::now();
    let answer = held[0].read_response().expect("an answer");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        health_within(&server, Duration::from_secs(5)),
        "slots freed"
    );
    held.clear();

    // Pipelined requests whose responses are never read.
    let burst = b"GET /status?id=p HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20_000);
    let held: Vec<HttpConn> = (0..3)
        .map(|_| {
            let mut c = HttpConn::connect(server.http_addr);
            c.send_lenient(&burst);
            c
        })
        .collect();
    assert!(
        health_within(&server, Duration::from_secs(10)),
        "connections that never read are closed"
    );
    drop(held);
}
