//! Many connections racing for the same ids: the server must hand out each
//! lock exactly once and keep every state transition atomic.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::{Proto, Server, check_value_err, value_key};
use redis::Value;

const IDS: usize = 10_000;
const CONNECTIONS: usize = 32;
const CHUNK: usize = 500;

fn race_id(i: usize) -> String {
    format!("race-{i}")
}

/// The order in which connection `t` visits the ids: every connection starts
/// somewhere else and half of them walk backwards, so they collide often.
fn visit_order(t: usize, n: usize) -> Vec<usize> {
    let start = (t * 7919) % n;
    let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
    if t % 2 == 1 {
        order.reverse();
    }
    order
}

#[test]
fn thirty_two_connections_race_for_ten_thousand_ids() {
    let server = Server::start(&["--shards", "4"]);
    let client = server.client(Proto::Resp2);

    let results: Vec<Vec<(usize, Option<String>)>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..CONNECTIONS)
            .map(|t| {
                let client = client.clone();
                scope.spawn(move || {
                    let mut con = common::connect_sync(&client);
                    let order = visit_order(t, IDS);
                    let mut outcome = Vec::with_capacity(IDS);
                    for chunk in order.chunks(CHUNK) {
                        let mut pipe = redis::pipe();
                        for &i in chunk {
                            pipe.cmd("LOCK").arg(race_id(i));
                        }
                        let replies: Vec<Value> =
                            pipe.ignore_errors().query(&mut con).expect("LOCK pipeline");
                        assert_eq!(replies.len(), chunk.len());
                        for (&i, reply) in chunk.iter().zip(&replies) {
                            match reply {
                                Value::ServerError(_) => {
                                    check_value_err(reply, "LOCKED", &[], &race_id(i));
                                    outcome.push((i, None));
                                }
                                _ => outcome.push((i, Some(value_key(reply, &race_id(i))))),
                            }
                        }
                    }
                    outcome
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racing connection panicked"))
            .collect()
    });

    let mut winners: HashMap<usize, Vec<(usize, String)>> = HashMap::new();
    let mut losers = 0usize;
    for (t, outcome) in results.iter().enumerate() {
        assert_eq!(outcome.len(), IDS, "connection {t} did not try every id");
        for (i, key) in outcome {
            match key {
                Some(key) => winners.entry(*i).or_default().push((t, key.clone())),
                None => losers += 1,
            }
        }
    }
    for (i, w) in &winners {
        assert_eq!(
            w.len(),
            1,
            "id {i} was locked by several connections: {w:?}"
        );
    }
    assert_eq!(winners.len(), IDS, "some ids were never locked");
    assert_eq!(losers, IDS * (CONNECTIONS - 1));
    let keys: HashSet<&String> = winners.values().map(|w| &w[0].1).collect();
    assert_eq!(keys.len(), IDS, "winning keys are not distinct");

    // Each winner's key is the one the server holds: completing with it works.
    let mut con = server.connection(Proto::Resp3);
    let mut pipe = redis::pipe();
    let ids: Vec<usize> = (0..IDS).collect();
    for &i in &ids {
        pipe.cmd("COMPLETE").arg(race_id(i)).arg(&winners[&i][0].1);
    }
    let replies: Vec<Value> = pipe.ignore_errors().query(&mut con).unwrap();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(
            reply,
            &Value::Okay,
            "COMPLETE {} with the winner's key",
            race_id(i)
        );
    }
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, IDS as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_tasks_race_for_the_same_ids() {
    let server = Server::start(&["--shards", "4"]);
    let ids = 2_000;
    let mut tasks = Vec::new();
    for t in 0..CONNECTIONS {
        let mut con = server.async_connection(Proto::Resp3).await;
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for chunk in visit_order(t, ids).chunks(250) {
                let mut pipe = redis::pipe();
                for &i in chunk {
                    pipe.cmd("LOCK").arg(race_id(i));
                }
                let replies: Vec<Value> = pipe
                    .ignore_errors()
                    .query_async(&mut con)
                    .await
                    .expect("LOCK pipeline");
                for (&i, reply) in chunk.iter().zip(&replies) {
                    match reply {
                        Value::ServerError(_) => check_value_err(reply, "LOCKED", &[], &race_id(i)),
                        _ => won.push((i, value_key(reply, &race_id(i)))),
                    }
                }
            }
            won
        }));
    }
    let mut owner: HashMap<usize, String> = HashMap::new();
    for task in tasks {
        for (i, key) in task.await.expect("task panicked") {
            assert!(
                owner.insert(i, key).is_none(),
                "id {i} was locked more than once"
            );
        }
    }
    assert_eq!(owner.len(), ids);
}

/// Connections repeatedly LOCK and UNLOCK a small set of ids. A local flag
/// per id records who believes it holds the lock; two holders at once would
/// mean the server granted a lock twice.
#[test]
fn lock_unlock_cycles_are_mutually_exclusive() {
    let server = Server::start(&["--shards", "4"]);
    let ids = 8;
    let held: Arc<Vec<AtomicBool>> = Arc::new((0..ids).map(|_| AtomicBool::new(false)).collect());
    let client = server.client(Proto::Resp2);
    let wins: usize = thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let held = Arc::clone(&held);
                let client = client.clone();
                scope.spawn(move || {
                    let mut con = common::connect_sync(&client);
                    let mut wins = 0;
                    for round in 0..150 {
                        let i = (t + round) % ids;
                        let id = format!("cycle-{i}");
                        let reply: redis::RedisResult<String> =
                            redis::cmd("LOCK").arg(&id).query(&mut con);
                        match reply {
                            Ok(key) => {
                                assert!(
                                    !held[i].swap(true, Ordering::SeqCst),
                                    "{id} granted while another connection held it"
                                );
                                wins += 1;
                                thread::yield_now();
                                held[i].store(false, Ordering::SeqCst);
                                let ok: String = redis::cmd("UNLOCK")
                                    .arg(&id)
                                    .arg(&key)
                                    .query(&mut con)
                                    .expect("UNLOCK by the holder");
                                assert_eq!(ok, "OK");
                            }
                            Err(e) => assert_eq!(e.code(), Some("LOCKED"), "{e:?}"),
                        }
                    }
                    wins
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(wins > 0, "nobody ever got a lock");
    let mut con = server.connection(Proto::Resp2);
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, 0, "every lock was released");
}

/// Many connections send the same UNLOCK at once: exactly one succeeds.
#[test]
fn concurrent_unlock_with_the_same_key_succeeds_once() {
    let server = Server::start(&["--shards", "4"]);
    let ids = 500;
    let mut con = server.connection(Proto::Resp2);
    let mut pipe = redis::pipe();
    for i in 0..ids {
        pipe.cmd("LOCK").arg(format!("u-{i}"));
    }
    let keys: Vec<String> = pipe.query(&mut con).expect("LOCKs");
    let keys = Arc::new(keys);
    let client = server.client(Proto::Resp2);
    let results: Vec<Vec<Value>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                let keys = Arc::clone(&keys);
                scope.spawn(move || {
                    let mut con = common::connect_sync(&client);
                    let mut pipe = redis::pipe();
                    for (i, key) in keys.iter().enumerate() {
                        pipe.cmd("UNLOCK").arg(format!("u-{i}")).arg(key);
                    }
                    pipe.ignore_errors().query::<Vec<Value>>(&mut con).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for i in 0..ids {
        let oks = results.iter().filter(|r| r[i] == Value::Okay).count();
        assert_eq!(oks, 1, "UNLOCK u-{i} succeeded {oks} times");
        for r in &results {
            if r[i] != Value::Okay {
                check_value_err(&r[i], "NOTLOCKED", &[&keys[i]], &format!("UNLOCK u-{i}"));
            }
        }
    }
}

/// UNLOCK and COMPLETE with the same key race; exactly one of them wins and
/// the final state matches the winner.
#[test]
fn unlock_and_complete_race_has_one_winner() {
    let server = Server::start(&["--shards", "4"]);
    let ids = 1_000;
    let mut con = server.connection(Proto::Resp2);
    let mut pipe = redis::pipe();
    for i in 0..ids {
        pipe.cmd("LOCK").arg(format!("uc-{i}"));
    }
    let keys: Vec<String> = pipe.query(&mut con).expect("LOCKs");
    let client = server.client(Proto::Resp2);
    let (unlocks, completes): (Vec<Value>, Vec<Value>) = thread::scope(|scope| {
        let run = |command: &'static str| {
            let client = client.clone();
            let keys = &keys;
            scope.spawn(move || {
                let mut con = common::connect_sync(&client);
                let mut pipe = redis::pipe();
                for (i, key) in keys.iter().enumerate() {
                    pipe.cmd(command).arg(format!("uc-{i}")).arg(key);
                }
                pipe.ignore_errors().query::<Vec<Value>>(&mut con).unwrap()
            })
        };
        let u = run("UNLOCK");
        let c = run("COMPLETE");
        (u.join().unwrap(), c.join().unwrap())
    });

    let mut pipe = redis::pipe();
    for i in 0..ids {
        pipe.cmd("LOCK").arg(format!("uc-{i}"));
    }
    let after: Vec<Value> = pipe.ignore_errors().query(&mut con).unwrap();
    let mut completed = 0;
    for i in 0..ids {
        let what = format!("uc-{i}");
        match (&unlocks[i], &completes[i]) {
            (Value::Okay, c) => {
                check_value_err(c, "NOTLOCKED", &[&keys[i]], &format!("{what} COMPLETE"));
                value_key(&after[i], &format!("{what} LOCK after UNLOCK won"));
            }
            (u, Value::Okay) => {
                check_value_err(u, "COMPLETED", &[&keys[i]], &format!("{what} UNLOCK"));
                check_value_err(&after[i], "COMPLETED", &[], &format!("{what} LOCK"));
                completed += 1;
            }
            (u, c) => panic!("{what}: neither won: UNLOCK {u:?}, COMPLETE {c:?}"),
        }
    }
    let info: String = redis::cmd("INFO").arg("locks").query(&mut con).unwrap();
    assert!(
        info.lines()
            .any(|l| l.trim_end() == format!("completed:{completed}")),
        "INFO locks should report completed:{completed}:\n{info}"
    );
}
