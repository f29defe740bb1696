//! Leases, RENEW, WAIT, fences, fingerprints, results, STATUS and retention against the real
//! binary, with the `redis` crate.

use crate::common;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{FOREIGN_KEY, Proto, Server, expect_err, expect_key, expect_ok};
use redis::{Connection, Value};

fn lock(con: &mut Connection, args: &[&str]) -> redis::RedisResult<Value> {
    redis::cmd("LOCK").arg(args).query(con)
}

fn cmd(con: &mut Connection, name: &str, args: &[&str]) -> redis::RedisResult<Value> {
    redis::cmd(name).arg(args).query(con)
}

fn info_field(con: &mut Connection, field: &str) -> i64 {
    let text: String = redis::cmd("INFO").arg("locks").query(con).expect("INFO");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO has no {field}: {text}"))
}

fn status(con: &mut Connection, id: &str) -> BTreeMap<String, Value> {
    let v: Value = redis::cmd("STATUS").arg(id).query(con).expect("STATUS");
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs,
        Value::Array(flat) => flat
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect(),
        other => panic!("STATUS reply {other:?}"),
    };
    pairs
        .into_iter()
        .map(|(k, v)| (common::value_text(&k).expect("field name"), v))
        .collect()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// Waits until `f` holds, polling, for at most `limit`.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Numbers follow one rule on both protocols (digits only, a lease from 1 ms to 2^40 ms);
/// tests/http.rs checks the same edges for `ttl=`.
#[test]
fn lease_numbers_are_digits_only_up_to_two_to_the_forty() {
    let server = Server::start(&[]);
    let mut con = server.connection(Proto::Resp2);
    for bad in ["0", "+5", "-5", " 5", "1.5", "1099511627777"] {
        let id = format!("n{bad}");
        let reply = lock(&mut con, &[&id, "PX", bad]);
        let err = expect_err(reply, "ERR", &[], &format!("PX {bad:?}"));
        assert!(
            err.to_string().contains("invalid expire time"),
            "PX {bad:?}: {err}"
        );
        let wait = lock(&mut con, &[&id, "WAIT", bad]);
        if bad != "0" {
            expect_err(wait, "ERR", &[], &format!("WAIT {bad:?}"));
        }
    }
    expect_key(lock(&mut con, &["n1", "PX", "1"]), "PX 1");
    let key = expect_key(lock(&mut con, &["nmax", "PX", "1099511627776"]), "PX 2^40");
    expect_ok(
        cmd(&mut con, "RENEW", &["nmax", &key, "PX", "1099511627776"]),
        "RENEW PX 2^40",
    );
    expect_err(
        cmd(&mut con, "RENEW", &["nmax", &key, "PX", "1099511627777"]),
        "ERR",
        &[&key],
        "RENEW PX 2^40 + 1",
    );
    expect_err(
        cmd(&mut con, "RENEW", &["nmax", &key, "PX", "+5"]),
        "ERR",
        &[&key],
        "RENEW PX +5",
    );
}

#[test]
fn an_expired_lease_frees_the_id_and_voids_the_key() {
    let server = Server::start(&["--shards", "2"]);
    for proto in Proto::ALL {
        let mut con = server.connection(proto);
        let id = format!("lease-{proto:?}");
        let old = expect_key(lock(&mut con, &[&id, "PX", "150"]), "LOCK PX");
        expect_err(lock(&mut con, &[&id]), "LOCKED", &[&old], "held");
        thread::sleep(Duration::from_millis(300));
        expect_err(
            cmd(&mut con, "UNLOCK", &[&id, &old]),
            "NOTLOCKED",
            &[&old],
            "expired",
        );
        let new = expect_key(lock(&mut con, &[&id, "EX", "10"]), "relock");
        assert_ne!(old, new);
        expect_err(
            cmd(&mut con, "COMPLETE", &[&id, &old]),
            "BADKEY",
            &[&old],
            "old key",
        );
        expect_ok(cmd(&mut con, "COMPLETE", &[&id, &new]), "new key");
    }
}

#[test]
fn renew_keeps_a_lock_alive_across_lease_lengths() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    let key = expect_key(lock(&mut con, &["job", "PX", "300"]), "LOCK");
    for lease in ["300", "250", "400", "300", "500"] {
        thread::sleep(Duration::from_millis(150));
        expect_ok(cmd(&mut con, "RENEW", &["job", &key, "PX", lease]), "RENEW");
        expect_err(lock(&mut con, &["job"]), "LOCKED", &[&key], "still held");
    }
    expect_err(
        cmd(&mut con, "RENEW", &["job", FOREIGN_KEY, "PX", "100"]),
        "BADKEY",
        &[&key],
        "foreign key",
    );
    expect_err(
        cmd(&mut con, "RENEW", &["job", &key, "PX", "0"]),
        "ERR",
        &[&key],
        "zero lease",
    );
    assert!(eventually(Duration::from_secs(5), || {
        matches!(lock(&mut con, &["job"]), Ok(Value::BulkString(_)))
    }));
    expect_err(
        cmd(&mut con, "RENEW", &["job", &key, "EX", "1"]),
        "BADKEY",
        &[&key],
        "renew after the lease ran out and someone else took it",
    );
}

#[test]
fn wait_is_granted_on_unlock_and_told_of_completion() {
    let server = Server::start(&["--shards", "4"]);
    let mut holder = server.connection(Proto::Resp2);
    for (id, finish) in [("w-unlock", "UNLOCK"), ("w-complete", "COMPLETE")] {
        let key = expect_key(lock(&mut holder, &[id]), "holder");
        let client = server.client(Proto::Resp3);
        let id_owned = id.to_string();
        let waiter = thread::spawn(move || {
            let mut con = common::connect_sync(&client);
            let started = Instant::now();
            let reply = lock(&mut con, &[&id_owned, "WAIT", "10000"]);
            (reply, started.elapsed())
        });
        assert!(eventually(Duration::from_secs(5), || {
            int(&status(&mut holder, id)["waiters"]) == 1
        }));
        thread::sleep(Duration::from_millis(100));
        expect_ok(cmd(&mut holder, finish, &[id, &key]), finish);
        let (reply, waited) = waiter.join().expect("waiter thread");
        assert!(waited >= Duration::from_millis(100), "waited {waited:?}");
        if finish == "UNLOCK" {
            let granted = expect_key(reply, "granted on unlock");
            assert_ne!(granted, key);
            expect_ok(
                cmd(&mut holder, "COMPLETE", &[id, &granted]),
                "waiter's key works",
            );
        } else {
            expect_err(reply, "COMPLETED", &[&key], "waiter on completion");
        }
    }
}

#[test]
fn wait_times_out_with_locked_and_holds_back_only_its_connection() {
    let server = Server::start(&["--shards", "2"]);
    let mut holder = server.connection(Proto::Resp2);
    let key = expect_key(lock(&mut holder, &["busy"]), "holder");
    let mut con = server.connection(Proto::Resp2);
    let started = Instant::now();
    // The waiting LOCK and a PING behind it in one pipeline: the PING waits its turn.
    let replies: Vec<Value> = redis::pipe()
        .cmd("LOCK")
        .arg("busy")
        .arg("WAIT")
        .arg("400")
        .cmd("PING")
        .ignore_errors()
        .query(&mut con)
        .expect("pipeline");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(390),
        "timed out early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "timed out late: {waited:?}"
    );
    common::check_value_err(&replies[0], "LOCKED", &[&key], "wait time-out");
    assert_eq!(replies[1], Value::SimpleString("PONG".into()));
    // Meanwhile the holder was never held back.
    expect_ok(cmd(&mut holder, "UNLOCK", &["busy", &key]), "holder");
}

#[test]
fn waiters_are_served_first_in_first_out() {
    let server = Server::start(&["--shards", "2"]);
    let mut holder = server.connection(Proto::Resp2);
    let mut key = expect_key(lock(&mut holder, &["fifo"]), "holder");
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..10 {
        let client = server.client(Proto::Resp2);
        let tx = tx.clone();
        threads.push(thread::spawn(move || {
            let mut con = common::connect_sync(&client);
            let reply = lock(&mut con, &["fifo", "WAIT", "30000"]);
            tx.send((i, expect_key(reply, "waiter"))).expect("report");
        }));
        // Queue them one at a time so their order is known.
        assert!(eventually(Duration::from_secs(5), || {
            int(&status(&mut holder, "fifo")["waiters"]) == i + 1
        }));
    }
    for expected in 0..10 {
        expect_ok(cmd(&mut holder, "UNLOCK", &["fifo", &key]), "pass it on");
        let (who, granted) = rx.recv_timeout(Duration::from_secs(10)).expect("a grant");
        assert_eq!(who, expected, "FIFO order");
        key = granted;
    }
    for t in threads {
        t.join().expect("waiter thread");
    }
}

#[test]
fn fences_grow_across_100_000_grants_on_all_shards() {
    let server = Server::start(&["--shards", "4"]);
    let mut con = server.connection(Proto::Resp2);
    let mut last_batch_max = 0i64;
    let mut seen = std::collections::HashSet::new();
    for batch in 0..50 {
        let mut pipe = redis::pipe();
        for i in 0..2000 {
            pipe.cmd("LOCK")
                .arg(format!("fence-{batch}-{i}"))
                .arg("WITHFENCE");
        }
        let replies: Vec<(String, i64)> = pipe.query(&mut con).expect("pipeline");
        let fences: Vec<i64> = replies.iter().map(|(_, f)| *f).collect();
        let min = *fences.iter().min().expect("non-empty");
        assert!(
            min > last_batch_max,
            "batch {batch}: fence {min} is not above the previous batch's {last_batch_max}"
        );
        last_batch_max = *fences.iter().max().expect("non-empty");
        for f in fences {
            assert!(seen.insert(f), "fence {f} handed out twice");
        }
    }
    assert_eq!(seen.len(), 100_000);
    let s = status(&mut con, "fence-49-1999");
    assert!(int(&s["fence"]) > 0);
}

#[test]
fn status_never_contains_the_key() {
    let server = Server::start(&["--shards", "2"]);
    for proto in Proto::ALL {
        let mut con = server.connection(proto);
        let id = format!("st-{proto:?}");
        assert_eq!(
            status(&mut con, &id)["state"],
            Value::BulkString(b"free".to_vec())
        );
        let key = expect_key(lock(&mut con, &[&id, "PX", "60000"]), "LOCK");
        let s = status(&mut con, &id);
        assert_eq!(s["state"], Value::BulkString(b"locked".to_vec()));
        assert!((1..=60_000).contains(&int(&s["ttl_ms"])));
        assert!(int(&s["fence"]) > 0);
        expect_ok(
            cmd(&mut con, "COMPLETE", &[&id, &key, "RESULT", "receipt-7"]),
            "COMPLETE RESULT",
        );
        let s = status(&mut con, &id);
        assert_eq!(s["state"], Value::BulkString(b"completed".to_vec()));
        assert_eq!(s["result"], Value::BulkString(b"receipt-7".to_vec()));
        // And on the wire, byte for byte.
        let mut raw = server.raw();
        raw.send(format!("STATUS {id}\r\n").as_bytes());
        let bytes = raw.read_reply();
        assert!(!String::from_utf8_lossy(&bytes).contains(&key));
    }
}

#[test]
fn a_different_fingerprint_mismatches() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    let key = expect_key(lock(&mut con, &["pay-1", "FINGERPRINT", "sha-a"]), "LOCK");
    expect_err(
        lock(&mut con, &["pay-1", "FINGERPRINT", "sha-b"]),
        "MISMATCH",
        &[&key],
        "b",
    );
    expect_err(
        lock(&mut con, &["pay-1", "FINGERPRINT", "sha-a"]),
        "LOCKED",
        &[&key],
        "a",
    );
    expect_err(lock(&mut con, &["pay-1"]), "LOCKED", &[&key], "none");
    expect_ok(cmd(&mut con, "COMPLETE", &["pay-1", &key]), "COMPLETE");
    expect_err(
        lock(&mut con, &["pay-1", "FINGERPRINT", "sha-b"]),
        "MISMATCH",
        &[&key],
        "b",
    );
    expect_err(
        lock(&mut con, &["pay-1", "FINGERPRINT", "sha-a"]),
        "COMPLETED",
        &[&key],
        "a",
    );
    assert_eq!(info_field(&mut con, "mismatch_total"), 2);
}

#[test]
fn completed_ids_are_reaped_after_retention() {
    let server = Server::start(&["--shards", "2", "--completed-retention", "1"]);
    let mut con = server.connection(Proto::Resp2);
    let key = expect_key(lock(&mut con, &["short"]), "LOCK");
    expect_ok(cmd(&mut con, "COMPLETE", &["short", &key]), "COMPLETE");
    expect_err(lock(&mut con, &["short"]), "COMPLETED", &[&key], "kept");
    assert!(eventually(Duration::from_secs(5), || {
        info_field(&mut con, "reaped_total") == 1
    }));
    assert_eq!(info_field(&mut con, "completed"), 0);
    expect_key(lock(&mut con, &["short"]), "free again");
}

#[test]
fn a_hundred_thousand_short_leases_expire_and_are_reclaimed() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    for batch in 0..10 {
        let mut pipe = redis::pipe();
        for i in 0..10_000 {
            pipe.cmd("LOCK")
                .arg(format!("short-{batch}-{i}"))
                .arg("PX")
                .arg(5000)
                .ignore();
        }
        let _: () = pipe.query(&mut con).expect("pipeline");
    }
    assert_eq!(info_field(&mut con, "locked"), 100_000);
    // Nobody touches them: the sweep alone must reclaim them.
    assert!(
        eventually(Duration::from_secs(30), || info_field(&mut con, "locked")
            == 0),
        "leases were not reclaimed"
    );
    assert_eq!(info_field(&mut con, "expired_total"), 100_000);
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    assert_eq!(dbsize, 0);
}

#[test]
fn default_lease_applies_to_plain_locks() {
    let server = Server::start(&["--shards", "1", "--default-lease", "200"]);
    let mut con = server.connection(Proto::Resp2);
    let key = expect_key(lock(&mut con, &["d"]), "LOCK");
    let ttl = int(&status(&mut con, "d")["ttl_ms"]);
    assert!((1..=200).contains(&ttl), "ttl {ttl}");
    assert!(eventually(Duration::from_secs(5), || {
        matches!(lock(&mut con, &["d"]), Ok(Value::BulkString(_)))
    }));
    expect_err(
        cmd(&mut con, "UNLOCK", &["d", &key]),
        "BADKEY",
        &[&key],
        "old key",
    );
}

/// Sends `LOCK id WAIT 60000` on a fresh raw connection, waits until it is queued (STATUS
/// counts `waiting` waiters), and closes the connection, as a client that gave up would.
fn wait_and_leave(server: &Server, holder: &mut Connection, id: &str, waiting: i64) {
    let mut raw = server.raw();
    raw.send(&common::encode_command(&[
        b"LOCK",
        id.as_bytes(),
        b"WAIT",
        b"60000",
    ]));
    assert!(
        eventually(Duration::from_secs(5), || {
            int(&status(holder, id)["waiters"]) == waiting
        }),
        "{id}: the wait was never queued"
    );
}

/// A client that sends `LOCK id WAIT` and closes is never granted the id: its wait is dropped
/// when its connection goes (STATUS stops counting it), and the holder's UNLOCK frees the id.
/// Run on ids of both shards, from connections of both shards.
#[test]
fn a_waiter_that_has_gone_is_never_granted() {
    let server = Server::start(&["--shards", "2"]);
    let mut holder = server.connection(Proto::Resp2);
    for n in 0..12 {
        let id = format!("job-{n}");
        let key = expect_key(lock(&mut holder, &[&id]), "LOCK");
        wait_and_leave(&server, &mut holder, &id, 1);
        assert!(
            eventually(Duration::from_secs(5), || {
                int(&status(&mut holder, &id)["waiters"]) == 0
            }),
            "{id}: the closed waiter still counts"
        );
        expect_ok(cmd(&mut holder, "UNLOCK", &[&id, &key]), "UNLOCK");
        thread::sleep(Duration::from_millis(50));
        let s = status(&mut holder, &id);
        assert_eq!(
            common::value_text(&s["state"]).as_deref(),
            Some("free"),
            "{id}: {s:?}"
        );
        expect_key(lock(&mut holder, &[&id]), "the id can be locked again");
    }
}

/// The close and the UNLOCK race: whichever comes first, the id never stays locked by a
/// client that has gone.
#[test]
fn a_waiter_closing_while_the_lock_is_released_never_keeps_it() {
    let server = Server::start(&["--shards", "2"]);
    let mut holder = server.connection(Proto::Resp2);
    for n in 0..100 {
        let id = format!("race-{n}");
        let key = expect_key(lock(&mut holder, &[&id]), "LOCK");
        wait_and_leave(&server, &mut holder, &id, 1);
        expect_ok(cmd(&mut holder, "UNLOCK", &[&id, &key]), "UNLOCK");
        assert!(
            eventually(Duration::from_secs(5), || {
                common::value_text(&status(&mut holder, &id)["state"]).as_deref() == Some("free")
            }),
            "{id}: held by a client that has gone: {:?}",
            status(&mut holder, &id)
        );
    }
}

/// Abandoned waiters do not fill the queue: with `--max-waiters 4`, ten clients that queued
/// and left do not stop a live `LOCK ... WAIT`, which gets the id when it is freed.
#[test]
fn abandoned_waiters_do_not_fill_the_queue() {
    let server = Server::start(&["--shards", "2", "--max-waiters", "4"]);
    let mut holder = server.connection(Proto::Resp2);
    let key = expect_key(lock(&mut holder, &["full"]), "LOCK");
    for _ in 0..10 {
        wait_and_leave(&server, &mut holder, "full", 1);
        assert!(eventually(Duration::from_secs(5), || {
            int(&status(&mut holder, "full")["waiters"]) == 0
        }));
    }
    assert!(eventually(Duration::from_secs(5), || {
        int(&status(&mut holder, "full")["waiters"]) == 0
    }));
    let addr = server.url(Proto::Resp2);
    let live = thread::spawn(move || {
        let mut con = redis::Client::open(addr).unwrap().get_connection().unwrap();
        lock(&mut con, &["full", "WAIT", "10000"])
    });
    assert!(eventually(Duration::from_secs(5), || {
        int(&status(&mut holder, "full")["waiters"]) == 1
    }));
    expect_ok(cmd(&mut holder, "UNLOCK", &["full", &key]), "UNLOCK");
    let got = live.join().unwrap();
    expect_key(got, "the live waiter gets the id");
}
