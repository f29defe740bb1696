//! Deep pipelines: replies come back complete and in request order, across
//! shards, through the client library and over raw sockets.

use crate::common;

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

// ---------------------------------------------------------------------------
// Transactions: MULTI ... EXEC
// ---------------------------------------------------------------------------

/// Sends one command on a raw connection and returns its reply's bytes.
fn raw_call(con: &mut common::RawConn, args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    con.send(&encode_command(&args));
    con.read_reply()
}

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// Where an id stands, from STATUS's first field.
fn state(con: &mut common::RawConn, id: &str) -> String {
    let reply = text(&raw_call(con, &["STATUS", id]));
    for state in ["free", "locked", "completed"] {
        if reply.contains(&format!("\r\n{state}\r\n")) {
            return state.into();
        }
    }
    panic!("STATUS {id}: {reply:?}")
}

/// The `redis` crate's atomic pipeline (MULTI ... EXEC): every command runs and answers, on
/// connections served by every shard, whichever shard owns the ids.
#[test]
fn atomic_pipelines_of_the_redis_crate_lock_and_complete() {
    let server = Server::start(&["--shards", "4"]);
    for proto in Proto::ALL {
        for c in 0..8 {
            let mut con = server.connection(proto);
            let (a, b) = (
                format!("{{tx-{c}-{proto:?}}}.a"),
                format!("{{tx-{c}-{proto:?}}}.b"),
            );
            let keys: Vec<String> = redis::pipe()
                .atomic()
                .cmd("LOCK")
                .arg(&a)
                .arg("PX")
                .arg(60_000)
                .cmd("LOCK")
                .arg(&b)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("{a} {b}: {e}"));
            assert_eq!(keys.len(), 2);
            assert!(keys.iter().all(|k| common::is_key(k)), "{keys:?}");
            let done: Vec<Value> = redis::pipe()
                .atomic()
                .cmd("COMPLETE")
                .arg(&a)
                .arg(&keys[0])
                .cmd("COMPLETE")
                .arg(&b)
                .arg(&keys[1])
                .cmd("STATUS")
                .arg(&b)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("{a} {b}: {e}"));
            assert_eq!(&done[..2], &[Value::Okay, Value::Okay], "{done:?}");
            assert!(format!("{:?}", done[2]).contains("completed"), "{done:?}");
        }
    }
}

/// The replies on the wire, byte for byte where they are fixed, as Redis gives them.
#[test]
fn multi_exec_discard_on_the_wire() {
    let server = Server::start(&["--shards", "4"]);
    for c in 0..4 {
        // Four connections land on four shards: local and forwarded transactions alike.
        let mut con = server.raw();
        let t = |s: &str| format!("{{wire-{c}}}.{s}");
        assert_eq!(raw_call(&mut con, &["MULTI"]), b"+OK\r\n");
        assert_eq!(raw_call(&mut con, &["LOCK", &t("a")]), b"+QUEUED\r\n");
        assert_eq!(
            raw_call(&mut con, &["LOCK", &t("b"), "PX", "60000", "WITHFENCE"]),
            b"+QUEUED\r\n"
        );
        assert_eq!(raw_call(&mut con, &["STATUS", &t("a")]), b"+QUEUED\r\n");
        let exec = text(&raw_call(&mut con, &["EXEC"]));
        assert!(exec.starts_with("*3\r\n$32\r\n"), "{exec:?}");
        assert!(
            exec.contains("\r\n*2\r\n$32\r\n"),
            "WITHFENCE inside: {exec:?}"
        );
        assert!(
            exec.contains("locked"),
            "STATUS sees the LOCK before it: {exec:?}"
        );

        // A held id is refused inside the array; the other commands still run, as in Redis.
        // WAIT does not wait inside a transaction.
        raw_call(&mut con, &["MULTI"]);
        raw_call(&mut con, &["LOCK", &t("a"), "WAIT", "60000"]);
        raw_call(&mut con, &["LOCK", &t("c")]);
        let exec = text(&raw_call(&mut con, &["EXEC"]));
        assert!(exec.starts_with("*2\r\n-LOCKED "), "{exec:?}");
        assert!(
            exec.ends_with("\r\n") && exec.contains("\r\n$32\r\n"),
            "{exec:?}"
        );

        // An error while queuing aborts the whole transaction: nothing runs.
        raw_call(&mut con, &["MULTI"]);
        raw_call(&mut con, &["LOCK", &t("d")]);
        let arity = text(&raw_call(&mut con, &["UNLOCK", &t("d")]));
        assert!(
            arity.starts_with("-ERR wrong number of arguments"),
            "{arity:?}"
        );
        let bad = text(&raw_call(&mut con, &["LOCK", &t("d"), "PX", "-1"]));
        assert!(bad.starts_with("-ERR"), "{bad:?}");
        let unknown = text(&raw_call(&mut con, &["NOPE"]));
        assert!(unknown.starts_with("-ERR unknown command"), "{unknown:?}");
        assert_eq!(
            raw_call(&mut con, &["EXEC"]),
            b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        );
        assert_eq!(state(&mut con, &t("d")), "free");

        // Ids of different slots: -CROSSSLOT, with the way out, and EXEC aborts.
        raw_call(&mut con, &["MULTI"]);
        assert_eq!(raw_call(&mut con, &["LOCK", &t("e")]), b"+QUEUED\r\n");
        let cross = text(&raw_call(&mut con, &["LOCK", &format!("other-{c}")]));
        assert!(
            cross.starts_with("-CROSSSLOT Keys in request don't hash to the same slot")
                && cross.contains("hash tag")
                && cross.contains("pipeline without MULTI"),
            "{cross:?}"
        );
        assert!(text(&raw_call(&mut con, &["EXEC"])).starts_with("-EXECABORT"));
        assert_eq!(state(&mut con, &t("e")), "free");
        assert_eq!(state(&mut con, &format!("other-{c}")), "free");

        // Commands that cannot be queued abort it too; DISCARD drops what was queued.
        raw_call(&mut con, &["MULTI"]);
        let ping = text(&raw_call(&mut con, &["PING"]));
        assert!(
            ping.starts_with("-ERR 'ping' cannot run inside MULTI"),
            "{ping:?}"
        );
        assert!(text(&raw_call(&mut con, &["EXEC"])).starts_with("-EXECABORT"));
        raw_call(&mut con, &["MULTI"]);
        raw_call(&mut con, &["LOCK", &t("f")]);
        assert_eq!(raw_call(&mut con, &["DISCARD"]), b"+OK\r\n");
        assert_eq!(state(&mut con, &t("f")), "free");

        // Misuse outside and inside a transaction.
        assert_eq!(
            raw_call(&mut con, &["EXEC"]),
            b"-ERR EXEC without MULTI\r\n"
        );
        assert_eq!(
            raw_call(&mut con, &["DISCARD"]),
            b"-ERR DISCARD without MULTI\r\n"
        );
        let watch = text(&raw_call(&mut con, &["WATCH", &t("a")]));
        assert!(
            watch.starts_with("-ERR WATCH is not supported"),
            "{watch:?}"
        );
        assert_eq!(raw_call(&mut con, &["UNWATCH"]), b"+OK\r\n");
        raw_call(&mut con, &["MULTI"]);
        assert_eq!(
            raw_call(&mut con, &["MULTI"]),
            b"-ERR MULTI calls can not be nested\r\n"
        );
        assert_eq!(
            raw_call(&mut con, &["WATCH", &t("a")]),
            b"-ERR WATCH inside MULTI is not allowed\r\n"
        );
        assert_eq!(raw_call(&mut con, &["EXEC"]), b"*0\r\n");
        assert_eq!(raw_call(&mut con, &["PING"]), b"+PONG\r\n", "MULTI is over");
    }
}

/// Which elements of a RESP2 EXEC array of LOCK replies are keys (the rest are errors).
fn granted_in(exec: &str) -> Vec<bool> {
    let mut lines = exec.split("\r\n");
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with('*'), "{exec:?}");
    let mut granted = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('$') {
            lines.next();
            granted.push(true);
        } else if line.starts_with('-') {
            granted.push(false);
        }
    }
    granted
}

/// Many clients race the same two ids, each in a transaction: exactly one gets both, and no
/// client ever gets one of the two while another gets the other.
#[test]
fn transactions_are_isolated_from_each_other() {
    let server = Server::start(&["--shards", "4"]);
    for round in 0..20 {
        let (a, b) = (format!("{{race-{round}}}.a"), format!("{{race-{round}}}.b"));
        let results: Vec<(bool, bool)> = thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (a, b, server) = (&a, &b, &server);
                    s.spawn(move || {
                        let mut con = server.raw();
                        con.send(&encode_command(&[b"MULTI"]));
                        con.send(&encode_command(&[b"LOCK", a.as_bytes()]));
                        con.send(&encode_command(&[b"LOCK", b.as_bytes()]));
                        con.send(&encode_command(&[b"EXEC"]));
                        for _ in 0..3 {
                            con.read_reply();
                        }
                        let granted = granted_in(&text(&con.read_reply()));
                        assert_eq!(granted.len(), 2, "{granted:?}");
                        (granted[0], granted[1])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = results.iter().filter(|(x, y)| *x && *y).count();
        let split = results.iter().filter(|(x, y)| x != y).count();
        assert_eq!((winners, split), (1, 0), "round {round}: {results:?}");
    }
}
