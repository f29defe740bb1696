//! Per-client limits over RESP: `--maxclients`, the output buffer (pause below it, disconnect
//! past it), the query buffer, argument size and count, and the idle `--timeout`.

use crate::common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::{RawConn, Server, bulk, encode_command, raw_key};
use token_server::types::shard_for;

#[test]
fn maxclients_refuses_the_excess_with_redis_error() {
    let server = Server::start(&["--shards", "2", "--maxclients", "3"]);
    let mut held: Vec<RawConn> = (0..3).map(|_| server.raw()).collect();
    for c in &mut held {
        c.send(&encode_command(&[b"PING"]));
        c.expect_bytes(b"+PONG\r\n", "a client under the limit");
    }
    let mut extra = server.raw();
    let got = extra.read_until_closed(Duration::from_secs(10));
    assert_eq!(got, b"-ERR max number of clients reached\r\n");
    // Pipelining on an accepted connection does not count as more clients.
    held[0].send(&encode_command(&[b"PING"]).repeat(100));
    held[0].expect_bytes(&b"+PONG\r\n".repeat(100), "pipelined PINGs");
    // A freed place is given to the next client.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = server.raw();
        c.send_lenient(&encode_command(&[b"PING"]));
        let reply = c.read_reply();
        if reply == b"+PONG\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place never came back");
        thread::sleep(Duration::from_millis(50));
    }
}

/// `n` ids that shard `shard` of `shards` owns.
fn ids_on(shard: usize, shards: usize, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("big-{i}"))
        .filter(|id| shard_for(id.as_bytes(), shards) == shard)
        .take(n)
        .collect()
}

/// Replies still on their way from another shard count before they arrive: a client that
/// pipelines 2,000 `STATUS` of ids with 60 KB results on the other shard (120 MB owed) and
/// reads nothing makes the server hold a few MiB, not 120 (RSS from /proc), and gets every
/// reply once it reads.
#[test]
fn replies_from_other_shards_count_before_they_arrive() {
    let server = Server::start(&["--shards", "2"]);
    // Connections are dealt round-robin from shard 0: this one lives on shard 0, and asks
    // about ids on shard 1, so its replies come back from there.
    let mut victim = server.raw();
    let mut setup = server.raw();
    let result = vec![b'r'; 60_000];
    let ids = ids_on(1, 2, 20);
    for id in &ids {
        setup.send(&encode_command(&[b"LOCK", id.as_bytes()]));
        let key = raw_key(&setup.read_reply());
        setup.send(&encode_command(&[
            b"COMPLETE",
            id.as_bytes(),
            key.as_bytes(),
            b"RESULT",
            &result,
        ]));
        setup.expect_bytes(b"+OK\r\n", "COMPLETE with a result");
    }
    let before = common::rss(server.pid());
    let mut burst = Vec::new();
    for _ in 0..100 {
        for id in &ids {
            burst.extend(encode_command(&[b"STATUS", id.as_bytes()]));
        }
    }
    let mut writer = victim.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let _ = writer.write_all(&burst);
    });
    thread::sleep(Duration::from_secs(1));
    setup.send(&encode_command(&[b"PING"]));
    setup.expect_bytes(b"+PONG\r\n", "other clients are served");
    let after = common::rss(server.pid());
    let grown = after.saturating_sub(before);
    eprintln!("2,000 unread STATUS replies of 60 KB from another shard: RSS {before} -> {after}");
    assert!(grown < 32 << 20, "RSS grew by {grown} bytes");
    victim.set_read_timeout(Duration::from_secs(30));
    for n in 0..2000 {
        let reply = victim.read_reply();
        assert!(reply.len() > 60_000, "reply {n}: {} bytes", reply.len());
    }
    sender.join().unwrap();
}

#[test]
fn a_client_that_reads_late_is_paused_not_dropped() {
    let server = Server::start(&["--shards", "2", "--client-output-buffer-limit", "4mb"]);
    let raw = server.raw();
    let mut writer = raw.stream.try_clone().unwrap();
    let payload = vec![b'e'; 100_000];
    let request = encode_command(&[b"ECHO", &payload]);
    let count = 200; // 20 MB of replies, five times the limit
    let sender = thread::spawn(move || {
        for _ in 0..count {
            writer.write_all(&request).unwrap();
        }
    });
    thread::sleep(Duration::from_secs(1));
    let mut raw = raw;
    let expected = bulk(&payload);
    for i in 0..count {
        let got = raw.read_exact_bytes(expected.len());
        assert!(got == expected, "reply {i} differs");
    }
    sender.join().unwrap();
    raw.send(&encode_command(&[b"PING"]));
    raw.expect_bytes(b"+PONG\r\n", "still connected");
    assert!(!server.output_contains("output buffer limit"));
}

#[test]
fn the_query_buffer_limit_closes_the_client() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--client-query-buffer-limit",
        "1mb",
        "--proto-max-bulk-len",
        "512kb",
    ]);
    let mut raw = server.raw();
    let arg = vec![b'q'; 500_000];
    let mut request = b"*4\r\n$4\r\nECHO\r\n".to_vec();
    for _ in 0..2 {
        request.extend(format!("${}\r\n", arg.len()).as_bytes());
        request.extend(&arg);
        request.extend(b"\r\n");
    }
    request.extend(format!("${}\r\n", arg.len()).as_bytes());
    request.extend(&arg[..200_000]);
    raw.send_lenient(&request);
    let got = raw.read_until_closed(Duration::from_secs(10));
    assert!(got.is_empty(), "{}", common::show(&got));
    assert!(
        server.wait_for_output("query buffer limit", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
    let mut other = server.raw();
    other.send(&encode_command(&[b"ECHO", &arg]));
    other.expect_bytes(&bulk(&arg), "an argument under the limit");
}

#[test]
fn argument_size_and_count_limits_are_configurable() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--proto-max-bulk-len",
        "1kb",
        "--max-args",
        "3",
    ]);
    let mut raw = server.raw();
    raw.send(&encode_command(&[b"CONFIG", b"GET", b"proto-max-bulk-len"]));
    raw.expect_bytes(
        b"*2\r\n$18\r\nproto-max-bulk-len\r\n$4\r\n1024\r\n",
        "CONFIG GET reports the setting",
    );
    raw.send(&encode_command(&[b"ECHO", &[b'a'; 1024]]));
    raw.expect_bytes(&bulk(&[b'a'; 1024]), "an argument at the limit");
    raw.send(b"*3\r\n$4\r\nECHO\r\n$1\r\na\r\n$1\r\nb\r\n");
    let reply = raw.read_reply();
    assert!(
        reply.starts_with(b"-ERR wrong number"),
        "{}",
        common::show(&reply)
    );
    raw.send_lenient(b"*2\r\n$4\r\nECHO\r\n$1025\r\n");
    let got = raw.read_until_closed(Duration::from_secs(10));
    assert_eq!(got, b"-ERR Protocol error: invalid bulk length\r\n");
    let mut raw = server.raw();
    raw.send_lenient(b"*4\r\n");
    let got = raw.read_until_closed(Duration::from_secs(10));
    assert_eq!(got, b"-ERR Protocol error: invalid multibulk length\r\n");
    // Pipelined behind valid requests, an oversized one still fails.
    let mut raw = server.raw();
    let mut burst = encode_command(&[b"PING"]).repeat(3);
    burst.extend(b"*2\r\n$4\r\nECHO\r\n$5000\r\n");
    raw.send_lenient(&burst);
    let got = raw.read_until_closed(Duration::from_secs(10));
    assert_eq!(
        got,
        b"+PONG\r\n+PONG\r\n+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    );
}

#[test]
fn idle_clients_are_closed_after_the_timeout() {
    let server = Server::start(&["--shards", "2", "--timeout", "1"]);
    let started = Instant::now();
    let mut idle = server.raw();
    let mut busy = server.raw();
    let mut holder = server.raw();
    let mut waiter = server.raw();
    holder.send(&encode_command(&[b"LOCK", b"held"]));
    raw_key(&holder.read_reply());
    waiter.send(&encode_command(&[b"LOCK", b"held", b"WAIT", b"3500"]));
    // The busy client talks every 300 ms; the holder keeps quiet and is closed, which does
    // not free its lock; the waiter is owed a reply and so is not idle.
    for _ in 0..10 {
        busy.send(&encode_command(&[b"PING"]));
        busy.expect_bytes(b"+PONG\r\n", "a client that keeps talking");
        thread::sleep(Duration::from_millis(300));
    }
    let got = idle.read_until_closed(Duration::from_secs(5));
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(1));
    let got = holder.read_until_closed(Duration::from_secs(5));
    assert!(got.is_empty());
    let reply = waiter.read_reply();
    assert!(reply.starts_with(b"-LOCKED"), "{}", common::show(&reply));
}

/// A declared bulk length is not memory: 300 connections that each announce a 1 MiB argument
/// and send 16 bytes hold a few MiB, not 300 (RSS from /proc, before and after).
#[test]
fn declared_lengths_cost_no_memory_until_their_bytes_arrive() {
    let server = Server::start(&["--shards", "2"]);
    let mut probe = server.raw();
    probe.send(&encode_command(&[b"PING"]));
    probe.expect_bytes(b"+PONG\r\n", "PING");
    let before = common::rss(server.pid());
    let mut conns: Vec<RawConn> = (0..300).map(|_| server.raw()).collect();
    for c in &mut conns {
        c.send(b"*2\r\n$1048576\r\n");
    }
    // The next bytes make the server read again, with the declared length known.
    thread::sleep(Duration::from_millis(200));
    for c in &mut conns {
        c.send(b"x");
    }
    // Every connection's bytes have been read once a PING after them is answered on each.
    thread::sleep(Duration::from_millis(300));
    probe.send(&encode_command(&[b"PING"]));
    probe.expect_bytes(b"+PONG\r\n", "PING while they wait");
    let after = common::rss(server.pid());
    let grown = after.saturating_sub(before);
    eprintln!("300 announced 1 MiB arguments: RSS {before} -> {after} bytes");
    assert!(
        grown < 48 << 20,
        "RSS grew by {grown} bytes for 300 x 16 bytes sent"
    );
}

/// With a password, a client that has not authenticated gets Redis's pre-authentication caps:
/// at most 10 arguments of at most 16 KiB; after AUTH the usual limits apply.
#[test]
fn before_auth_requests_are_small() {
    let server = Server::start(&["--shards", "2", "--requirepass", "pw"]);
    let mut c = server.raw();
    c.send(b"*2\r\n$4\r\nAUTH\r\n$16385\r\n");
    assert_eq!(
        c.read_until_closed(Duration::from_secs(10)),
        b"-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    let mut c = server.raw();
    c.send(b"*11\r\n");
    assert_eq!(
        c.read_until_closed(Duration::from_secs(10)),
        b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    let mut c = server.raw();
    c.send(&encode_command(&[b"AUTH", b"pw"]));
    c.expect_bytes(b"+OK\r\n", "AUTH");
    let big = vec![b'e'; 100_000];
    c.send(&encode_command(&[b"ECHO", &big]));
    c.expect_bytes(&bulk(&big), "a 100 KB argument after AUTH");
}

/// A client that queues `LOCK ... WAIT` behind a held id, pipelines enough `COMMAND DOCS` for
/// reading to pause, and leaves, does not keep its connection: with `--maxclients 4`, twelve
/// such clients in turn never lock the next one out, and the id stays lockable.
#[test]
fn paused_connections_are_reaped_when_their_client_leaves() {
    let server = Server::start(&["--shards", "2", "--maxclients", "4"]);
    let mut holder = server.raw();
    holder.send(&encode_command(&[b"LOCK", b"held"]));
    let key = raw_key(&holder.read_reply());
    let docs = encode_command(&[b"COMMAND", b"DOCS"]).repeat(1000);
    for round in 0..12 {
        let mut c = server.raw();
        c.send(&encode_command(&[b"LOCK", b"held", b"WAIT", b"600000"]));
        c.send_lenient(&docs);
        thread::sleep(Duration::from_millis(50));
        drop(c);
        // The next client gets in: the one that left was closed.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut probe = server.raw();
            probe.send(&encode_command(&[b"PING"]));
            if probe
                .try_read_replies(1)
                .is_some_and(|r| r[0] == b"+PONG\r\n")
            {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: locked out");
            thread::sleep(Duration::from_millis(20));
        }
    }
    // Every client that queued a wait has gone: none is left in the queue, none is granted.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        holder.send(&encode_command(&[b"STATUS", b"held"]));
        let status = String::from_utf8_lossy(&holder.read_reply()).into_owned();
        if status.contains("waiters\r\n:0\r\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "waits of gone clients remain: {status:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    holder.send(&encode_command(&[b"UNLOCK", b"held", key.as_bytes()]));
    holder.expect_bytes(b"+OK\r\n", "UNLOCK");
    holder.send(&encode_command(&[b"LOCK", b"held"]));
    raw_key(&holder.read_reply());
}

/// The pause counts what replies of many small parts really hold: 8 clients parked behind a
/// `LOCK ... WAIT` with 3,000 unread `COMMAND DOCS` each (about 300 KB of small strings per
/// reply) stay near the 4 MiB pause apiece. Counting encoded bytes instead let each hold about
/// 12 MiB (RSS from /proc).
#[test]
fn the_pause_bounds_the_memory_of_nested_replies() {
    let server = Server::start(&["--shards", "1"]);
    let mut holder = server.raw();
    holder.send(&encode_command(&[b"LOCK", b"parked"]));
    raw_key(&holder.read_reply());
    let before = common::rss(server.pid());
    let mut burst = encode_command(&[b"LOCK", b"parked", b"WAIT", b"600000"]);
    burst.extend(encode_command(&[b"COMMAND", b"DOCS"]).repeat(3000));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let c = server.raw();
        let mut writer = c.stream.try_clone().unwrap();
        let burst = burst.clone();
        thread::spawn(move || {
            let _ = writer.write_all(&burst);
        });
        clients.push(c);
    }
    // Wait until the server has read all it will and the resident size settles.
    let mut last = 0;
    for _ in 0..40 {
        thread::sleep(Duration::from_millis(500));
        let now = common::rss(server.pid());
        if now == last {
            break;
        }
        last = now;
    }
    let after = common::rss(server.pid());
    let grown = after.saturating_sub(before);
    eprintln!("8 paused clients with unread COMMAND DOCS: RSS {before} -> {after}");
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
    holder.send(&encode_command(&[b"PING"]));
    holder.expect_bytes(b"+PONG\r\n", "other clients are served");
}

/// Input buffers shrink after a burst: 100 clients that each sent a 1 MB `ECHO` and stay
/// connected keep a few MiB resident, not 100 (RSS from /proc, before and after).
#[test]
fn input_buffers_shrink_after_a_burst() {
    let server = Server::start(&["--shards", "2"]);
    let mut probe = server.raw();
    probe.send(&encode_command(&[b"PING"]));
    probe.expect_bytes(b"+PONG\r\n", "PING");
    let before = common::rss(server.pid());
    let big = vec![b'm'; 1_000_000];
    let request = encode_command(&[b"ECHO", &big]);
    let reply = bulk(&big);
    let conns: Vec<RawConn> = (0..100)
        .map(|_| {
            let mut c = server.raw();
            c.send(&request);
            c.expect_bytes(&reply, "ECHO 1 MB");
            c
        })
        .collect();
    let after = common::rss(server.pid());
    let grown = after.saturating_sub(before);
    eprintln!("100 idle clients after a 1 MB ECHO each: RSS {before} -> {after} bytes");
    assert!(grown < 40 << 20, "RSS grew by {grown} bytes");
    drop(conns);
}

/// With too few file descriptors for `--maxclients`, the server lowers it at start and says
/// so, as Redis does; clients past it are answered at once, never left hanging.
#[test]
fn maxclients_fits_the_open_files_limit() {
    let Some(prlimit) = common::require_tool("prlimit") else {
        return;
    };
    let prlimit = prlimit.to_string_lossy().into_owned();
    let server = Server::start_wrapped(
        &[&prlimit, "--nofile=120:120", "--"],
        &["--shards", "2", "--maxclients", "10000"],
    );
    let log = server.log_text();
    assert!(
        log.contains("the open files limit is too low for --maxclients"),
        "{log}"
    );
    // (120 - 64 - 2 x 8) / 2 = 20 clients per protocol.
    let mut held: Vec<RawConn> = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let mut c = server.raw();
        c.send(&encode_command(&[b"PING"]));
        match c.try_read_replies(1) {
            Some(r) if r[0] == b"+PONG\r\n" => held.push(c),
            Some(r) => {
                assert!(
                    r[0].starts_with(b"-ERR max number of clients reached"),
                    "{r:?}"
                );
                refused += 1;
            }
            None => refused += 1,
        }
    }
    assert_eq!(held.len(), 20, "{refused} refused");
    assert_eq!(refused, 10);
}
