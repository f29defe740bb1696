//! Deep pipelines: replies come back complete and in request order, across
//! shards, through the client library and over raw sockets.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::thread;
use std::time::Duration;

use common::{
    FOREIGN_KEY, Proto, Server, bulk, check_value_err, encode_command, raw_key, show, value_key,
};
use redis::Value;

const N: usize = 5_000;

fn id(i: usize) -> String {
    format!("pipe-id-{i}")
}

fn expect_echo(v: &Value, expected: &str, what: &str) {
    assert_eq!(
        v,
        &Value::BulkString(expected.as_bytes().to_vec()),
        "{what}: replies out of order or wrong"
    );
}

fn expect_okay(v: &Value, what: &str) {
    assert_eq!(v, &Value::Okay, "{what}");
}

/// 5,000 LOCKs in one pipeline, then 5,000 COMPLETEs with the returned keys
/// in a second one.
fn lock_then_complete(con: &mut redis::Connection) {
    let mut pipe = redis::pipe();
    for i in 0..N {
        pipe.cmd("LOCK").arg(id(i));
    }
    let replies: Vec<Value> = pipe.ignore_errors().query(con).expect("LOCK pipeline");
    assert_eq!(replies.len(), N);
    let keys: Vec<String> = replies
        .iter()
        .enumerate()
        .map(|(i, v)| value_key(v, &format!("LOCK #{i}")))
        .collect();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), N, "pipelined LOCKs returned duplicate keys");

    let mut pipe = redis::pipe();
    for (i, key) in keys.iter().enumerate() {
        pipe.cmd("COMPLETE").arg(id(i)).arg(key);
    }
    let replies: Vec<Value> = pipe.ignore_errors().query(con).expect("COMPLETE pipeline");
    assert_eq!(replies.len(), N);
    for (i, v) in replies.iter().enumerate() {
        expect_okay(v, &format!("COMPLETE #{i}"));
    }

    let dbsize: i64 = redis::cmd("DBSIZE").query(con).unwrap();
    assert_eq!(dbsize, N as i64);
}

#[test]
fn five_thousand_locks_then_completes_resp2() {
    let server = Server::start(&["--shards", "4"]);
    lock_then_complete(&mut server.connection(Proto::Resp2));
}

#[test]
fn five_thousand_locks_then_completes_resp3() {
    let server = Server::start(&["--shards", "4"]);
    lock_then_complete(&mut server.connection(Proto::Resp3));
}

const GROUPS: usize = 1_000;

/// Interleaves successes and every kind of error so that any reordering of
/// replies (for example across shards) shows up as a mismatch.
fn interleaved(con: &mut redis::Connection) {
    let mut pipe = redis::pipe();
    for i in 0..GROUPS {
        let a = id(i);
        let free = format!("free-{i}");
        pipe.cmd("LOCK").arg(&a); // key
        pipe.cmd("LOCK").arg(&a); // LOCKED
        pipe.cmd("UNLOCK").arg(&a).arg(FOREIGN_KEY); // BADKEY
        pipe.cmd("COMPLETE").arg(&free).arg(FOREIGN_KEY); // NOTLOCKED
        pipe.cmd("ECHO").arg(format!("marker-{i}")); // marker
    }
    let replies: Vec<Value> = pipe.ignore_errors().query(con).expect("pipeline 1");
    assert_eq!(replies.len(), GROUPS * 5);
    let mut keys = Vec::with_capacity(GROUPS);
    for (i, group) in replies.chunks(5).enumerate() {
        let key = value_key(&group[0], &format!("group {i}: LOCK"));
        check_value_err(
            &group[1],
            "LOCKED",
            &[&key],
            &format!("group {i}: LOCK again"),
        );
        check_value_err(&group[2], "BADKEY", &[&key], &format!("group {i}: UNLOCK"));
        check_value_err(
            &group[3],
            "NOTLOCKED",
            &[],
            &format!("group {i}: COMPLETE free"),
        );
        expect_echo(
            &group[4],
            &format!("marker-{i}"),
            &format!("group {i}: ECHO"),
        );
        keys.push(key);
    }

    let mut pipe = redis::pipe();
    for (i, key) in keys.iter().enumerate() {
        let a = id(i);
        if i % 2 == 0 {
            pipe.cmd("COMPLETE").arg(&a).arg(key); // OK
            pipe.cmd("COMPLETE").arg(&a).arg(key); // OK (idempotent)
            pipe.cmd("LOCK").arg(&a); // COMPLETED
            pipe.cmd("UNLOCK").arg(&a).arg(key); // COMPLETED
        } else {
            pipe.cmd("UNLOCK").arg(&a).arg(key); // OK
            pipe.cmd("UNLOCK").arg(&a).arg(key); // NOTLOCKED
            pipe.cmd("LOCK").arg(&a); // new key
            pipe.cmd("COMPLETE").arg(&a).arg(key); // BADKEY (old key)
        }
        pipe.cmd("PING").arg(format!("p{i}"));
    }
    let replies: Vec<Value> = pipe.ignore_errors().query(con).expect("pipeline 2");
    assert_eq!(replies.len(), GROUPS * 5);
    for (i, group) in replies.chunks(5).enumerate() {
        let key = &keys[i];
        let what = |step: &str| format!("group {i}: {step}");
        if i % 2 == 0 {
            expect_okay(&group[0], &what("COMPLETE"));
            expect_okay(&group[1], &what("COMPLETE retry"));
            check_value_err(&group[2], "COMPLETED", &[key], &what("LOCK"));
            check_value_err(&group[3], "COMPLETED", &[key], &what("UNLOCK"));
        } else {
            expect_okay(&group[0], &what("UNLOCK"));
            check_value_err(&group[1], "NOTLOCKED", &[key], &what("UNLOCK again"));
            let new_key = value_key(&group[2], &what("re-LOCK"));
            assert_ne!(&new_key, key, "{}", what("re-LOCK key must be new"));
            check_value_err(&group[3], "BADKEY", &[key, &new_key], &what("COMPLETE old"));
        }
        expect_echo(&group[4], &format!("p{i}"), &what("PING"));
    }
}

#[test]
fn interleaved_replies_stay_in_order_resp2() {
    let server = Server::start(&["--shards", "4"]);
    interleaved(&mut server.connection(Proto::Resp2));
}

#[test]
fn interleaved_replies_stay_in_order_resp3() {
    let server = Server::start(&["--shards", "4"]);
    interleaved(&mut server.connection(Proto::Resp3));
}

#[tokio::test]
async fn async_pipeline_in_order() {
    let server = Server::start(&["--shards", "4"]);
    for proto in Proto::ALL {
        let mut con = server.async_connection(proto).await;
        let prefix = format!("{proto:?}");
        let mut pipe = redis::pipe();
        for i in 0..2_000 {
            pipe.cmd("LOCK").arg(format!("{prefix}-{i}"));
            pipe.cmd("LOCK").arg(format!("{prefix}-{i}"));
            pipe.cmd("ECHO").arg(i);
        }
        let replies: Vec<Value> = pipe
            .ignore_errors()
            .query_async(&mut con)
            .await
            .expect("async pipeline");
        assert_eq!(replies.len(), 6_000);
        let mut keys = HashSet::new();
        for (i, group) in replies.chunks(3).enumerate() {
            let key = value_key(&group[0], &format!("{prefix} LOCK #{i}"));
            check_value_err(&group[1], "LOCKED", &[&key], &format!("{prefix} #{i}"));
            expect_echo(&group[2], &i.to_string(), &format!("{prefix} ECHO #{i}"));
            assert!(keys.insert(key));
        }
    }
}

#[tokio::test]
async fn async_concurrent_commands_on_one_multiplexed_connection() {
    let server = Server::start(&["--shards", "4"]);
    let con = server.async_connection(Proto::Resp3).await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let mut con = con.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                let id = format!("mux-{t}-{i}");
                let key: String = redis::cmd("LOCK")
                    .arg(&id)
                    .query_async(&mut con)
                    .await
                    .expect("LOCK");
                assert!(common::is_key(&key));
                let echoed: String = redis::cmd("ECHO")
                    .arg(&id)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                assert_eq!(echoed, id, "reply delivered to the wrong request");
                let ok: String = redis::cmd("COMPLETE")
                    .arg(&id)
                    .arg(&key)
                    .query_async(&mut con)
                    .await
                    .expect("COMPLETE");
                assert_eq!(ok, "OK");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task panicked");
    }
    let mut con = con.clone();
    let dbsize: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(dbsize, 1_600);
}

/// Writes `input` from a separate thread while this thread reads, so that
/// neither side can deadlock on full socket buffers.
fn write_in_background(
    raw: &common::RawConn,
    input: Vec<u8>,
    chunk: usize,
) -> thread::JoinHandle<()> {
    let mut stream = raw.stream.try_clone().unwrap();
    thread::spawn(move || {
        for piece in input.chunks(chunk) {
            stream.write_all(piece).expect("write pipeline");
        }
    })
}

#[test]
fn raw_pipeline_of_fifty_thousand_commands() {
    let server = Server::start(&["--shards", "4"]);
    let mut raw = server.raw();
    let count = 50_000;
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for i in 0..count {
        let msg = format!("m{i}");
        match i % 3 {
            0 => {
                input.extend(format!("PING {msg}\r\n").as_bytes());
                expected.extend(bulk(msg.as_bytes()));
            }
            1 => {
                input.extend(encode_command(&[b"ECHO", msg.as_bytes()]));
                expected.extend(bulk(msg.as_bytes()));
            }
            _ => {
                input.extend(b"PING\r\n");
                expected.extend(b"+PONG\r\n");
            }
        }
    }
    let writer = write_in_background(&raw, input, 1 << 20);
    let got = raw.read_exact_bytes(expected.len());
    writer.join().unwrap();
    if got != expected {
        let at = got.iter().zip(&expected).position(|(a, b)| a != b).unwrap();
        panic!(
            "pipeline replies differ at byte {at}: got {} expected {}",
            show(&got[at.saturating_sub(40)..(at + 80).min(got.len())]),
            show(&expected[at.saturating_sub(40)..(at + 80).min(expected.len())])
        );
    }
    raw.expect_silence(Duration::from_millis(200), "after the pipeline");
}

#[test]
fn raw_pipeline_of_locks_across_shards() {
    let server = Server::start(&["--shards", "4"]);
    let mut raw = server.raw();
    let count = 10_000;
    let mut input = Vec::new();
    for i in 0..count {
        input.extend(encode_command(&[b"LOCK", id(i).as_bytes()]));
        input.extend(encode_command(&[b"ECHO", i.to_string().as_bytes()]));
    }
    let writer = write_in_background(&raw, input, 64 * 1024);
    let mut keys = HashSet::new();
    for i in 0..count {
        let key = raw_key(&raw.read_reply());
        assert!(keys.insert(key), "duplicate key at #{i}");
        let echo = raw.read_reply();
        assert_eq!(
            show(&echo),
            show(&bulk(i.to_string().as_bytes())),
            "reply #{i} out of order"
        );
    }
    writer.join().unwrap();
}

#[test]
fn commands_split_at_every_byte_boundary() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    let mut input = encode_command(&[b"LOCK", b"split-id"]);
    input.extend(b"PING\r\n");
    input.extend(encode_command(&[b"ECHO", b"a\r\nb"]));
    input.extend(b"ECHO \"x y\"\r\n");
    input.extend(encode_command(&[b"LOCK", b"split-id"]));
    for byte in &input {
        raw.send(std::slice::from_ref(byte));
        thread::sleep(Duration::from_micros(200));
    }
    let key = raw_key(&raw.read_reply());
    raw.expect_bytes(b"+PONG\r\n", "PING");
    raw.expect_bytes(&bulk(b"a\r\nb"), "ECHO with CRLF payload");
    raw.expect_bytes(&bulk(b"x y"), "inline quoted ECHO");
    let locked = raw.read_reply();
    assert!(locked.starts_with(b"-LOCKED "), "{}", show(&locked));
    assert!(
        !String::from_utf8_lossy(&locked).contains(&key),
        "LOCKED leaks the key"
    );
}

#[test]
fn multiple_connections_pipelining_at_once() {
    let server = Server::start(&["--shards", "4"]);
    let addr = server.resp_addr;
    thread::scope(|scope| {
        for t in 0..8 {
            scope.spawn(move || {
                let mut raw = common::RawConn::connect(addr);
                let mut input = Vec::new();
                for i in 0..2_000 {
                    input.extend(encode_command(&[b"LOCK", format!("c{t}-{i}").as_bytes()]));
                    input.extend(encode_command(&[b"ECHO", format!("{t}/{i}").as_bytes()]));
                }
                let writer = write_in_background(&raw, input, 32 * 1024);
                for i in 0..2_000 {
                    raw_key(&raw.read_reply());
                    let echo = raw.read_reply();
                    assert_eq!(
                        show(&echo),
                        show(&bulk(format!("{t}/{i}").as_bytes())),
                        "connection {t}: reply #{i} out of order"
                    );
                }
                writer.join().unwrap();
            });
        }
    });
    let mut con = server.connection(Proto::Resp2);
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, 16_000);
}
