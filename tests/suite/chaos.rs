//! Learning mode (`--chaos-rate`): writes are refused before they run or lose their reply
//! after it, over RESP and HTTP alike, and a client with idempotent retries (the Rust
//! example's `run_once`) still runs every job exactly once.

use crate::common;
use crate::http_support;

use crate::run_once;

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use common::{Proto, Server};
use http_support::{HttpConn, get_request};
use redis::Value;
use run_once::{Failure, Outcome, Worker};

/// The figure `name` of `INFO stats`.
fn info_stat(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(con).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:"))?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

#[test]
fn every_write_fails_at_rate_one_and_reads_never_do() {
    let server = Server::start(&["--chaos-rate", "1", "--chaos-seed", "7", "--shards", "2"]);
    let (mut refused, mut dropped) = (0, 0);
    for n in 0..40 {
        let mut con = server.connection(Proto::Resp2);
        match redis::cmd("LOCK")
            .arg(format!("c-{n}"))
            .query::<Value>(&mut con)
        {
            Err(e) if e.code() == Some("TRYAGAIN") => refused += 1,
            Err(e) if e.code().is_none() => dropped += 1,
            other => panic!("LOCK under chaos rate 1: {other:?}"),
        }
    }
    assert!(
        refused > 5 && dropped > 5,
        "refused {refused}, dropped {dropped}"
    );
    let mut con = server.connection(Proto::Resp2);
    let status: Value = redis::cmd("STATUS")
        .arg("c-0")
        .query(&mut con)
        .expect("STATUS");
    assert!(matches!(status, Value::Array(_)), "{status:?}");
    assert_eq!(info_stat(&mut con, "chaos_refused"), refused);
    assert_eq!(info_stat(&mut con, "chaos_dropped"), dropped);
    // A dropped write did run: its id is held.
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    assert_eq!(size, dropped as i64);

    let (mut http_refused, mut http_dropped) = (0, 0);
    for n in 0..20 {
        let mut http = HttpConn::connect(server.http_addr);
        http.send(&get_request(&format!("/lock?id=h-{n}")));
        match http.read_response() {
            Some(r) if r.status == 503 && r.text() == "TRYAGAIN" => http_refused += 1,
            None => http_dropped += 1,
            Some(r) => panic!("/lock under chaos rate 1: {r:?}"),
        }
    }
    assert!(
        http_refused > 2 && http_dropped > 2,
        "{http_refused} {http_dropped}"
    );
}

#[test]
fn every_job_runs_exactly_once_at_chaos_rate_0_3() {
    const JOBS: usize = 200;
    const WORKERS: usize = 4;
    let server = Server::start(&["--chaos-rate", "0.3", "--shards", "2"]);
    let url = server.url(Proto::Resp2);
    // Each job's effect, with the fence it ran under: the shared record the work appends to.
    let record: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());
    // Some jobs fail on their first attempt, to exercise UNLOCK and a later retry.
    let attempts: Mutex<HashMap<usize, u32>> = Mutex::new(HashMap::new());
    thread::scope(|s| {
        for w in 0..WORKERS {
            let (url, record, attempts) = (&url, &record, &attempts);
            s.spawn(move || {
                let mut worker = Worker::new(url).expect("worker");
                worker.lease_ms = 1_000;
                worker.wait_ms = 3_000;
                worker.patience = Duration::from_secs(60);
                // Every worker goes through every job, each starting somewhere else.
                for i in 0..JOBS {
                    let job = (i + w * JOBS / WORKERS) % JOBS;
                    let id = format!("job-{job}");
                    loop {
                        let outcome = worker.run_once(&id, |fence| {
                            let n = {
                                let mut a = attempts.lock().expect("attempts");
                                let n = a.entry(job).or_insert(0);
                                *n += 1;
                                *n
                            };
                            if job.is_multiple_of(7) && n == 1 {
                                return Err("first attempt fails".into());
                            }
                            record.lock().expect("record").push((job, fence));
                            Ok(format!("effect of {job}"))
                        });
                        match outcome {
                            Ok(Outcome::Done(r)) => assert_eq!(r, format!("effect of {job}")),
                            Ok(Outcome::AlreadyDone(r)) => {
                                assert_eq!(r.as_deref(), Some(format!("effect of {job}").as_str()));
                            }
                            Err(Failure::Work(_)) => continue,
                            Err(other) => panic!("{id}: {other:?}"),
                        }
                        break;
                    }
                }
            });
        }
    });
    let record = record.into_inner().expect("record");
    let mut runs = vec![0usize; JOBS];
    for (job, _) in &record {
        runs[*job] += 1;
    }
    let wrong: Vec<_> = runs.iter().enumerate().filter(|(_, n)| **n != 1).collect();
    assert!(
        wrong.is_empty(),
        "jobs not run exactly once (job, runs): {wrong:?}"
    );

    let mut con = server.connection(Proto::Resp3);
    for job in 0..JOBS {
        let status: Value = redis::cmd("STATUS")
            .arg(format!("job-{job}"))
            .query(&mut con)
            .expect("STATUS");
        let Value::Map(fields) = status else {
            panic!("STATUS job-{job}: {status:?}")
        };
        let state = fields
            .iter()
            .find(|(k, _)| common::value_text(k).as_deref() == Some("state"))
            .and_then(|(_, v)| common::value_text(v));
        assert_eq!(state.as_deref(), Some("completed"), "job-{job}");
    }
    // The chaos did happen, both ways.
    let mut con = server.connection(Proto::Resp2);
    assert!(info_stat(&mut con, "chaos_refused") > 20);
    assert!(info_stat(&mut con, "chaos_dropped") > 20);
}

/// A LOCK whose reply was lost is sent again with the client's own key, as redis-rb and
/// Redis::Fast do on their own: every retry gets the same key and fence, never `-LOCKED`,
/// over RESP and HTTP, while half of all writes fail.
#[test]
fn a_lock_retried_with_its_own_key_is_never_refused() {
    let server = Server::start(&["--chaos-rate", "0.5", "--chaos-seed", "11", "--shards", "2"]);
    let mut dropped_then_granted = 0;
    for n in 0..40 {
        let id = format!("retried-{n}");
        let mine = format!("{:032x}", 0x5eed_0000_u128 + n);
        let mut answers = Vec::new();
        for attempt in 0.. {
            assert!(attempt < 40, "{id}: no answer in 40 attempts: {answers:?}");
            let mut con = server.connection(Proto::Resp2);
            match redis::cmd("LOCK")
                .arg(&id)
                .arg("PX")
                .arg(60_000)
                .arg("KEY")
                .arg(&mine)
                .arg("WITHFENCE")
                .query::<(String, u64)>(&mut con)
            {
                Ok((key, fence)) => {
                    assert_eq!(key, mine, "{id}: granted under another key");
                    answers.push(format!("granted {fence}"));
                    break;
                }
                Err(e) if e.code() == Some("TRYAGAIN") => answers.push("refused".into()),
                // The reply was dropped: the LOCK may have run. Send it again.
                Err(e) if e.code().is_none() => answers.push("dropped".into()),
                Err(e) => panic!("{id}: {e} after {answers:?}"),
            }
        }
        if answers.iter().any(|a| a == "dropped") {
            dropped_then_granted += 1;
        }
        // Asked again, with the reply read this time: the same grant.
        loop {
            let mut con = server.connection(Proto::Resp2);
            let again = redis::cmd("LOCK")
                .arg(&id)
                .arg("KEY")
                .arg(&mine)
                .arg("WITHFENCE")
                .query::<(String, u64)>(&mut con);
            match again {
                Ok((key, fence)) => {
                    assert_eq!(key, mine);
                    assert_eq!(answers.last(), Some(&format!("granted {fence}")), "{id}");
                    break;
                }
                Err(e) if e.code() == Some("TRYAGAIN") || e.code().is_none() => continue,
                Err(e) => panic!("{id}: {e}"),
            }
        }
    }
    assert!(
        dropped_then_granted > 5,
        "only {dropped_then_granted} LOCKs lost a reply before their retry"
    );

    // The same over HTTP: a dropped response is a closed connection; the retry gets the 200.
    let mut dropped = 0;
    for n in 0..20 {
        let mine = format!("{:032x}", 0xbeef_0000_u128 + n);
        let target = format!("/lock?id=h-retried-{n}&key={mine}&ttl=60000");
        let mut fences = Vec::new();
        for attempt in 0.. {
            assert!(attempt < 40, "{target}: no answer in 40 attempts");
            let mut http = HttpConn::connect(server.http_addr);
            http.send(&get_request(&target));
            match http.read_response() {
                Some(r) if r.status == 200 => {
                    assert_eq!(r.text(), mine);
                    fences.push(r.header("x-fencing-token").map(str::to_string));
                    if fences.len() == 2 {
                        break;
                    }
                }
                Some(r) if r.status == 503 && r.text() == "TRYAGAIN" => {}
                None => dropped += 1,
                Some(r) => panic!("{target}: {r:?}"),
            }
        }
        assert_eq!(fences[0], fences[1], "{target}: the retry's fence");
    }
    assert!(dropped > 2, "only {dropped} HTTP responses dropped");
}
