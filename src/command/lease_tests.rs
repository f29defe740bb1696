//! Tests of leases, renewals, waiting, fences, fingerprints, results, retention and STATUS,
//! all on a fake clock, plus a randomized model test that includes time.
//!
//! Tests only, over 500 lines: one file keeps the fake-clock fixtures and the model test
//! beside the cases they share.

use std::collections::{BTreeMap, VecDeque};

use crate::command::CommandKind;
use crate::command::errors;
use crate::command::table_tests::Fixture;
use crate::command::test_support::{PARKED, parse_op, reply_of};
use crate::protocol::{Protocol, Reply};
use crate::table::Policy;
use crate::types::LogRecord;
use crate::types::Origin;
use crate::types::{KeyBytes, hex_key};

fn key_of(r: &Reply) -> KeyBytes {
    match r {
        Reply::Key(k) => *k,
        Reply::Array(items) => match items.first() {
            Some(Reply::Key(k)) => *k,
            _ => panic!("not a grant: {r:?}"),
        },
        _ => panic!("not a grant: {r:?}"),
    }
}

fn status(f: &mut Fixture, id: &[u8]) -> BTreeMap<String, Reply> {
    let Reply::Map(pairs) = f.run(CommandKind::Status, &[b"STATUS", id]) else {
        panic!("STATUS is a map")
    };
    pairs
        .into_iter()
        .map(|(k, v)| match k {
            Reply::Bulk(b) => (String::from_utf8_lossy(&b).into_owned(), v),
            other => panic!("field name {other:?}"),
        })
        .collect()
}

#[test]
fn lease_ends_at_the_exact_instant() {
    let mut f = Fixture::new();
    let old = key_of(&f.run(CommandKind::Lock, &[b"LOCK", b"a", b"PX", b"100"]));
    f.now += 99;
    assert_eq!(f.lock(b"a"), errors::LOCKED);
    assert_eq!(status(&mut f, b"a")["ttl_ms"], Reply::Integer(1));
    f.now += 1;
    // Seen at once by the next command on the id, with no sweep.
    assert_eq!(f.unlock(b"a", &hex_key(&old)), errors::NOT_LOCKED);
    assert_eq!(f.table.counters.expired, 1);
    let new = key_of(&f.lock(b"a"));
    assert_ne!(old, new);
    assert_eq!(f.complete(b"a", &hex_key(&old)), errors::BAD_KEY);
}

#[test]
fn ex_is_seconds_and_bad_leases_are_refused() {
    let mut f = Fixture::new();
    f.run(CommandKind::Lock, &[b"LOCK", b"a", b"EX", b"2"]);
    assert_eq!(status(&mut f, b"a")["ttl_ms"], Reply::Integer(2000));
    for bad in [&b"0"[..], b"-1", b"x", b"99999999999999999999"] {
        let r = parse_op(
            CommandKind::Lock,
            &[b"LOCK", b"b", b"PX", bad],
            &Default::default(),
        );
        assert!(matches!(r, Some(Err(Reply::Error(_)))), "{bad:?}");
    }
    for bad in [
        &[&b"LOCK"[..], b"b", b"PX", b"1", b"EX", b"1"][..],
        &[b"LOCK", b"b", b"NOPE"],
    ] {
        let r = parse_op(CommandKind::Lock, bad, &Default::default());
        assert_eq!(r, Some(Err(errors::SYNTAX)));
    }
}

#[test]
fn renew_keeps_a_lock_alive() {
    let mut f = Fixture::new();
    let k = hex_key(&key_of(
        &f.run(CommandKind::Lock, &[b"LOCK", b"a", b"PX", b"100"]),
    ));
    for lease in [&b"100"[..], b"50", b"300"] {
        f.now += 40;
        let r = f.run(CommandKind::Renew, &[b"RENEW", b"a", &k, b"PX", lease]);
        assert_eq!(r, Reply::Ok);
        f.sweep();
        assert_eq!(f.lock(b"a"), errors::LOCKED);
    }
    let other = b"00000000000000000000000000000000";
    let r = f.run(CommandKind::Renew, &[b"RENEW", b"a", other, b"PX", b"10"]);
    assert_eq!(r, errors::BAD_KEY);
    f.now += 300;
    f.sweep();
    assert_eq!(f.table.locked(), 0, "the last lease ran out");
    let r = f.run(CommandKind::Renew, &[b"RENEW", b"a", &k, b"PX", b"10"]);
    assert_eq!(r, errors::NOT_LOCKED);
}

#[test]
fn sweep_reclaims_untouched_leases() {
    let mut f = Fixture::new();
    for i in 0..1000u32 {
        let id = i.to_be_bytes();
        f.run(CommandKind::Lock, &[b"LOCK", &id, b"PX", b"50"]);
    }
    f.now += 49;
    assert_eq!(f.sweep(), 0);
    f.now += 1;
    assert_eq!(f.sweep(), 1000);
    assert_eq!((f.table.locked(), f.table.counters.expired), (0, 1000));
    assert_eq!(f.table.next_deadline(), None);
}

#[test]
fn wait_is_granted_on_unlock_in_fifo_order() {
    let mut f = Fixture::new();
    let mut key = hex_key(&key_of(&f.lock(b"a")));
    for n in 0..10 {
        f.origin = Origin::External(n);
        let r = f.run(CommandKind::Lock, &[b"LOCK", b"a", b"WAIT", b"5000"]);
        assert_eq!(r, PARKED);
    }
    f.origin = Origin::Nobody;
    assert_eq!(status(&mut f, b"a")["waiters"], Reply::Integer(10));
    for n in 0..10 {
        assert_eq!(f.unlock(b"a", &key), Reply::Ok);
        let d = f.sink.deliveries.pop().expect("a grant");
        assert!(f.sink.deliveries.is_empty());
        assert_eq!(d.origin, Origin::External(n), "FIFO");
        let granted = key_of(&reply_of(d.outcome));
        assert_eq!(d.grant, Some((b"a"[..].into(), granted)));
        key = hex_key(&granted);
        assert_eq!(f.lock(b"a"), errors::LOCKED, "the waiter holds it now");
    }
    assert_eq!(f.table.waiting(), 0);
}

#[test]
fn waiters_hear_of_completion_and_time_out() {
    let mut f = Fixture::new();
    let k = hex_key(&key_of(&f.lock(b"a")));
    f.origin = Origin::External(1);
    f.run(CommandKind::Lock, &[b"LOCK", b"a", b"WAIT", b"100"]);
    f.origin = Origin::External(2);
    f.run(CommandKind::Lock, &[b"LOCK", b"a", b"WAIT", b"100"]);
    assert_eq!(f.complete(b"a", &k), Reply::Ok);
    let replies: Vec<_> = f
        .sink
        .deliveries
        .drain(..)
        .map(|d| (d.origin, reply_of(d.outcome)))
        .collect();
    assert_eq!(
        replies,
        vec![
            (Origin::External(1), errors::COMPLETED),
            (Origin::External(2), errors::COMPLETED)
        ]
    );

    f.lock(b"b");
    f.origin = Origin::External(3);
    f.run(CommandKind::Lock, &[b"LOCK", b"b", b"WAIT", b"100"]);
    f.now += 99;
    f.sweep();
    assert!(f.sink.deliveries.is_empty());
    f.now += 1;
    f.sweep();
    let d = f.sink.deliveries.pop().expect("a time-out");
    assert_eq!(
        (d.origin, reply_of(d.outcome)),
        (Origin::External(3), errors::LOCKED)
    );
    assert_eq!(f.table.waiting(), 0);
}

#[test]
fn an_expiring_lease_goes_to_the_first_waiter() {
    let mut f = Fixture::new();
    f.run(CommandKind::Lock, &[b"LOCK", b"a", b"PX", b"100"]);
    f.origin = Origin::External(7);
    f.run(
        CommandKind::Lock,
        &[b"LOCK", b"a", b"WAIT", b"1000", b"PX", b"30"],
    );
    f.now += 100;
    f.sweep();
    let d = f.sink.deliveries.pop().expect("a grant");
    assert_eq!(d.origin, Origin::External(7));
    assert!(matches!(reply_of(d.outcome), Reply::Key(_)));
    assert_eq!(status(&mut f, b"a")["ttl_ms"], Reply::Integer(30));
}

#[test]
fn wait_queue_is_bounded() {
    let mut f = Fixture::with_policy(Policy {
        max_waiters: 2,
        ..Policy::default()
    });
    f.lock(b"a");
    for _ in 0..2 {
        let r = f.run(CommandKind::Lock, &[b"LOCK", b"a", b"WAIT", b"10"]);
        assert_eq!(r, PARKED);
    }
    let r = f.run(CommandKind::Lock, &[b"LOCK", b"a", b"WAIT", b"10"]);
    assert_eq!(r, errors::QUEUE_FULL);
}

#[test]
fn fences_grow_with_every_grant() {
    let mut f = Fixture::new();
    let mut last = 0;
    for i in 0..100u32 {
        let id = i.to_be_bytes();
        let r = f.run(CommandKind::Lock, &[b"LOCK", &id, b"WITHFENCE"]);
        let Reply::Array(items) = r else {
            panic!("WITHFENCE replies [key, fence]")
        };
        let Reply::Integer(fence) = items[1] else {
            panic!("fence is an integer")
        };
        assert!(fence > last);
        last = fence;
        assert_eq!(status(&mut f, &id)["fence"], Reply::Integer(fence));
    }
    assert_eq!(status(&mut f, b"free")["fence"], Reply::Integer(0));
}

#[test]
fn fingerprints_mismatch_only_when_both_exist_and_differ() {
    let mut f = Fixture::new();
    let fp =
        |f: &mut Fixture, v: &[u8]| f.run(CommandKind::Lock, &[b"LOCK", b"a", b"FINGERPRINT", v]);
    let k = hex_key(&key_of(&fp(&mut f, b"x")));
    assert_eq!(fp(&mut f, b"y"), errors::MISMATCH);
    assert_eq!(fp(&mut f, b"x"), errors::LOCKED);
    assert_eq!(f.lock(b"a"), errors::LOCKED);
    assert_eq!(f.complete(b"a", &k), Reply::Ok);
    assert_eq!(fp(&mut f, b"y"), errors::MISMATCH);
    assert_eq!(fp(&mut f, b"x"), errors::COMPLETED);
    assert_eq!(f.table.counters.mismatches, 2);
    // An id locked without a fingerprint never mismatches.
    f.lock(b"b");
    let r = f.run(CommandKind::Lock, &[b"LOCK", b"b", b"FINGERPRINT", b"z"]);
    assert_eq!(r, errors::LOCKED);
}

#[test]
fn results_are_stored_and_status_never_shows_the_key() {
    let mut f = Fixture::new();
    let k = key_of(&f.run(CommandKind::Lock, &[b"LOCK", b"a", b"PX", b"1000"]));
    let hex = hex_key(&k);
    let s = status(&mut f, b"a");
    assert_eq!(s["state"], Reply::bulk("locked"));
    assert_eq!(s["waiters"], Reply::Integer(0));
    let r = f.run(
        CommandKind::Complete,
        &[b"COMPLETE", b"a", &hex, b"RESULT", b"order-42"],
    );
    assert_eq!(r, Reply::Ok);
    let r = f.run(
        CommandKind::Complete,
        &[b"COMPLETE", b"a", &hex, b"RESULT", b"other"],
    );
    assert_eq!(r, Reply::Ok, "a retry succeeds and keeps the first result");
    let s = status(&mut f, b"a");
    assert_eq!(s["state"], Reply::bulk("completed"));
    assert_eq!(s["ttl_ms"], Reply::Integer(-1));
    assert_eq!(s["result"], Reply::bulk("order-42"));
    for proto in [Protocol::Resp2, Protocol::Resp3] {
        let mut wire = Vec::new();
        f.run(CommandKind::Status, &[b"STATUS", b"a"])
            .encode(proto, &mut wire);
        let text = String::from_utf8_lossy(&wire);
        assert!(!text.contains(&*String::from_utf8_lossy(&hex)), "{text}");
    }
    let s = status(&mut f, b"free");
    assert_eq!(s["state"], Reply::bulk("free"));
    assert!(!s.contains_key("result"));
}

#[test]
fn retention_reaps_completed_ids() {
    let mut f = Fixture::with_policy(Policy {
        retention_ms: 1000,
        max_waiters: 4,
        ..Policy::default()
    });
    let k = hex_key(&key_of(&f.lock(b"a")));
    f.complete(b"a", &k);
    f.now += 999;
    assert_eq!(f.lock(b"a"), errors::COMPLETED);
    f.now += 1;
    assert!(matches!(f.lock(b"a"), Reply::Key(_)));
    assert_eq!(f.table.counters.reaped, 1);
    // The sweep reaps untouched ones.
    let k = hex_key(&key_of(&f.lock(b"b")));
    f.complete(b"b", &k);
    f.now += 1000;
    f.sweep();
    assert_eq!(f.table.completed(), 0);
}

#[test]
fn default_lease_applies_without_px() {
    let mut f = Fixture::with_policy(Policy {
        default_lease_ms: Some(500),
        max_waiters: 4,
        ..Policy::default()
    });
    f.lock(b"a");
    assert_eq!(status(&mut f, b"a")["ttl_ms"], Reply::Integer(500));
}

#[test]
fn every_change_is_recorded_and_nothing_else() {
    let mut f = Fixture::new();
    let k = hex_key(&key_of(
        &f.run(CommandKind::Lock, &[b"LOCK", b"a", b"PX", b"100"]),
    ));
    f.lock(b"a");
    status(&mut f, b"a");
    f.unlock(b"a", b"ffffffffffffffffffffffffffffffff");
    f.run(CommandKind::Renew, &[b"RENEW", b"a", &k, b"PX", b"200"]);
    f.run(
        CommandKind::Complete,
        &[b"COMPLETE", b"a", &k, b"RESULT", b"r"],
    );
    let kinds: Vec<&str> = f
        .sink
        .records
        .iter()
        .map(|r| match r {
            LogRecord::Lock { .. } => "lock",
            LogRecord::Renew { deadline_ms, .. } => {
                assert_eq!(*deadline_ms, f.now + 200);
                "renew"
            }
            LogRecord::Complete { result, .. } => {
                assert_eq!(result.as_deref(), Some(&b"r"[..]));
                "complete"
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["lock", "renew", "complete"]);
}

/// The reference model of one id, in the plainest terms.
#[derive(Clone, Debug)]
enum Model {
    Locked { key: KeyBytes, deadline: u64 },
    Completed { key: KeyBytes },
}

#[derive(Default)]
struct World {
    ids: BTreeMap<u8, Model>,
    waits: BTreeMap<u8, VecDeque<(u64, u64, Option<u64>)>>,
}

impl World {
    fn free_and_grant(&mut self, id: u8, now: u64, f: &mut Fixture) {
        self.ids.remove(&id);
        let Some(queue) = self.waits.get_mut(&id) else {
            return;
        };
        if let Some((waiter, _, lease)) = queue.pop_front() {
            let pos = f
                .sink
                .deliveries
                .iter()
                .position(|d| d.origin == Origin::External(waiter))
                .expect("the first waiter is granted");
            let d = f.sink.deliveries.remove(pos);
            let key = key_of(&reply_of(d.outcome));
            let deadline = lease.map_or(0, |l| now + l);
            self.ids.insert(id, Model::Locked { key, deadline });
        }
    }

    /// Moves the model's time to `now`, handling every deadline in order.
    fn advance(&mut self, now: u64, f: &mut Fixture) {
        loop {
            let lease = self
                .ids
                .iter()
                .filter_map(|(id, m)| match m {
                    Model::Locked { deadline, .. } if *deadline != 0 => Some((*deadline, *id)),
                    _ => None,
                })
                .min();
            let wait = self
                .waits
                .iter()
                .flat_map(|(id, q)| q.iter().map(move |(w, d, _)| (*d, *id, *w)))
                .min();
            match (lease, wait) {
                (Some((ld, id)), w) if ld <= now && w.is_none_or(|(wd, _, _)| ld <= wd) => {
                    self.free_and_grant(id, now, f);
                }
                (_, Some((wd, id, waiter))) if wd <= now => {
                    if let Some(q) = self.waits.get_mut(&id) {
                        q.retain(|(w, _, _)| *w != waiter);
                    }
                    let pos = f
                        .sink
                        .deliveries
                        .iter()
                        .position(|d| d.origin == Origin::External(waiter))
                        .expect("a timed-out waiter is told");
                    assert_eq!(
                        reply_of(f.sink.deliveries.remove(pos).outcome),
                        errors::LOCKED
                    );
                }
                _ => return,
            }
        }
    }
}

#[test]
fn random_sequences_with_time_match_the_model() {
    for seed in 1..=150u64 {
        let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut f = Fixture::new();
        let mut w = World::default();
        let mut waiter_no = 0u64;
        for step in 0..400 {
            let id = next(4) as u8;
            let idb = [b'i', id];
            let held = match w.ids.get(&id) {
                Some(Model::Locked { key, .. }) | Some(Model::Completed { key }) => Some(*key),
                None => None,
            };
            let key = match (next(4), held) {
                (0, _) | (_, None) => [0xee; 16],
                (_, Some(k)) => k,
            };
            let hex = hex_key(&key);
            let ctx = format!("seed {seed} step {step} id {id}");
            match next(7) {
                0 => {
                    let dt = next(60);
                    f.now += dt;
                    f.sweep();
                    let now = f.now;
                    w.advance(now, &mut f);
                }
                1 | 2 => {
                    let lease = (next(2) == 0).then(|| 1 + next(100));
                    let wait = (next(3) == 0).then(|| 1 + next(100));
                    let mut parts: Vec<Vec<u8>> = vec![b"LOCK".to_vec(), idb.to_vec()];
                    if let Some(l) = lease {
                        parts.extend([b"PX".to_vec(), l.to_string().into_bytes()]);
                    }
                    if let Some(t) = wait {
                        parts.extend([b"WAIT".to_vec(), t.to_string().into_bytes()]);
                    }
                    waiter_no += 1;
                    f.origin = Origin::External(waiter_no);
                    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                    let got = f.run(CommandKind::Lock, &refs);
                    f.origin = Origin::Nobody;
                    match (w.ids.get(&id), wait) {
                        (None, _) => {
                            let key = key_of(&got);
                            let deadline = lease.map_or(0, |l| f.now + l);
                            w.ids.insert(id, Model::Locked { key, deadline });
                        }
                        (Some(Model::Completed { .. }), _) => {
                            assert_eq!(got, errors::COMPLETED, "{ctx}")
                        }
                        (Some(Model::Locked { .. }), Some(t)) => {
                            assert_eq!(got, PARKED, "{ctx}");
                            w.waits
                                .entry(id)
                                .or_default()
                                .push_back((waiter_no, f.now + t, lease));
                        }
                        (Some(Model::Locked { .. }), None) => {
                            assert_eq!(got, errors::LOCKED, "{ctx}")
                        }
                    }
                }
                3 => {
                    let got = f.unlock(&idb, &hex);
                    let want = match w.ids.get(&id) {
                        None => errors::NOT_LOCKED,
                        Some(Model::Completed { .. }) => errors::COMPLETED,
                        Some(Model::Locked { key: k, .. }) if *k == key => Reply::Ok,
                        Some(Model::Locked { .. }) => errors::BAD_KEY,
                    };
                    assert_eq!(got, want, "{ctx}");
                    if got == Reply::Ok {
                        let now = f.now;
                        w.free_and_grant(id, now, &mut f);
                    }
                }
                4 => {
                    let lease = 1 + next(100);
                    let l = lease.to_string();
                    let got = f.run(
                        CommandKind::Renew,
                        &[b"RENEW", &idb, &hex, b"PX", l.as_bytes()],
                    );
                    let now = f.now;
                    let want = match w.ids.get_mut(&id) {
                        None => errors::NOT_LOCKED,
                        Some(Model::Completed { .. }) => errors::COMPLETED,
                        Some(Model::Locked { key: k, deadline }) if *k == key => {
                            *deadline = now + lease;
                            Reply::Ok
                        }
                        Some(Model::Locked { .. }) => errors::BAD_KEY,
                    };
                    assert_eq!(got, want, "{ctx}");
                }
                _ => {
                    let got = f.complete(&idb, &hex);
                    let want = match w.ids.get(&id) {
                        None => errors::NOT_LOCKED,
                        Some(Model::Completed { key: k }) if *k == key => Reply::Ok,
                        Some(Model::Completed { .. }) => errors::COMPLETED,
                        Some(Model::Locked { key: k, .. }) if *k == key => Reply::Ok,
                        Some(Model::Locked { .. }) => errors::BAD_KEY,
                    };
                    assert_eq!(got, want, "{ctx}");
                    if got == Reply::Ok && matches!(w.ids.get(&id), Some(Model::Locked { .. })) {
                        w.ids.insert(id, Model::Completed { key });
                        for (waiter, _, _) in w.waits.remove(&id).unwrap_or_default() {
                            let pos = f
                                .sink
                                .deliveries
                                .iter()
                                .position(|d| d.origin == Origin::External(waiter))
                                .expect("waiters hear of completion");
                            assert_eq!(
                                reply_of(f.sink.deliveries.remove(pos).outcome),
                                errors::COMPLETED
                            );
                        }
                    }
                }
            }
            assert!(
                f.sink.deliveries.is_empty(),
                "{ctx}: unexpected {:?}",
                f.sink.deliveries
            );
            let locked = w
                .ids
                .values()
                .filter(|m| matches!(m, Model::Locked { .. }))
                .count();
            assert_eq!(f.table.locked(), locked, "{ctx}");
            assert_eq!(f.table.completed(), w.ids.len() - locked, "{ctx}");
            let waiting: usize = w.waits.values().map(VecDeque::len).sum();
            assert_eq!(f.table.waiting(), waiting, "{ctx}");
        }
    }
}

fn state_of(f: &Fixture) -> (Vec<String>, usize, usize) {
    let mut entries: Vec<String> = f.table.entries().map(|e| format!("{e:?}")).collect();
    entries.sort();
    (entries, f.table.locked(), f.table.completed())
}

#[test]
fn roll_back_restores_the_last_committed_state() {
    let mut f = Fixture::new();
    let a = hex_key(&key_of(
        &f.run(CommandKind::Lock, &[b"LOCK", b"a", b"PX", b"500"]),
    ));
    let b = hex_key(&key_of(&f.lock(b"b")));
    let c = hex_key(&key_of(&f.lock(b"c")));
    f.complete(b"c", &c);
    f.table.commit();
    let before = state_of(&f);

    // A batch that touches everything, including a waiter grant and a new id.
    f.origin = Origin::External(1);
    f.run(CommandKind::Lock, &[b"LOCK", b"b", b"WAIT", b"100"]);
    f.origin = Origin::Nobody;
    f.run(CommandKind::Renew, &[b"RENEW", b"a", &a, b"PX", b"9000"]);
    f.run(
        CommandKind::Complete,
        &[b"COMPLETE", b"a", &a, b"RESULT", b"x"],
    );
    f.unlock(b"b", &b);
    let waiter_key = key_of(&reply_of(f.sink.deliveries.pop().expect("grant").outcome));
    f.complete(b"b", &hex_key(&waiter_key));
    f.lock(b"d");
    assert_ne!(state_of(&f), before);

    f.table.roll_back();
    assert_eq!(state_of(&f), before);
    assert_eq!(f.lock(b"a"), errors::LOCKED);
    assert_eq!(
        f.unlock(b"b", &b),
        Reply::Ok,
        "the first holder holds b again"
    );
    assert_eq!(status(&mut f, b"a")["ttl_ms"], Reply::Integer(500));
}

#[test]
fn bounded_sweeps_reclaim_every_lease() {
    let mut f = Fixture::new();
    for batch in 0..10u32 {
        for i in 0..10_000u32 {
            let id = format!("short-{batch}-{i}");
            f.run(CommandKind::Lock, &[b"LOCK", id.as_bytes(), b"PX", b"5000"]);
        }
        f.table.commit();
        f.now += 7;
    }
    f.now += 5000;
    let mut rounds = 0;
    loop {
        let mut table = std::mem::replace(
            &mut f.table,
            crate::table::LockTable::new(Policy::default()),
        );
        let done = table.expire_due(&mut f.ctx(), 4096);
        f.table = table;
        rounds += 1;
        if done < 4096 {
            break;
        }
    }
    assert_eq!(f.table.locked(), 0, "after {rounds} rounds");
    assert_eq!(f.table.counters.expired, 100_000);
}

#[test]
fn a_stale_deadline_never_frees_the_next_holder_of_a_reused_cell() {
    let mut f = Fixture::new();
    // `a` takes a cell with a 100 ms lease, gives it back, and `b` takes the same cell (freed
    // cells are reused first) with a longer lease and then with none at all.
    let a = key_of(&f.run(CommandKind::Lock, &[b"LOCK", b"a", b"PX", b"100"]));
    assert_eq!(f.unlock(b"a", &hex_key(&a)), Reply::Ok);
    let b = key_of(&f.run(CommandKind::Lock, &[b"LOCK", b"b", b"PX", b"500"]));
    f.now += 100;
    assert_eq!(f.sweep(), 1, "the stale pair of `a` is popped");
    assert_eq!(f.table.counters.expired, 0);
    assert_eq!(f.unlock(b"b", &hex_key(&b)), Reply::Ok, "b is still held");
    key_of(&f.lock(b"c"));
    f.now += 1000;
    f.sweep();
    assert_eq!((f.table.locked(), f.table.counters.expired), (1, 0));
    // A reused cell whose new lease ends at the same instant as the old pair says is due then:
    // both pairs point at it, the first frees it, the second finds nothing.
    let d = key_of(&f.run(CommandKind::Lock, &[b"LOCK", b"d", b"PX", b"50"]));
    assert_eq!(f.unlock(b"d", &hex_key(&d)), Reply::Ok);
    f.run(CommandKind::Lock, &[b"LOCK", b"e", b"PX", b"50"]);
    f.now += 50;
    assert_eq!(f.sweep(), 2);
    assert_eq!((f.table.locked(), f.table.counters.expired), (1, 1));
    assert_eq!(f.table.next_deadline(), None);
}

#[test]
fn roll_back_puts_entries_back_in_their_own_cells() {
    // Taking back a release puts the entry back in the cell it left, even when an expiry has
    // freed another cell since (the first one a new entry would take). Entries never move: a
    // running rewrite encodes the table a slab chunk at a time and relies on it.
    let mut f = Fixture::new();
    f.run(CommandKind::Lock, &[b"LOCK", b"a", b"PX", b"10"]);
    let b = hex_key(&key_of(&f.lock(b"b")));
    f.run(CommandKind::Renew, &[b"RENEW", b"b", &b, b"PX", b"9000"]);
    f.unlock(b"b", &b);
    f.now += 10;
    assert_eq!(
        f.sweep(),
        1,
        "a expires: its cell is the first free one now"
    );
    f.table.roll_back();
    assert_eq!(
        state_of(&f),
        (Vec::new(), 0, 0),
        "the whole batch is taken back"
    );

    // A committed holder, renewed and released in a batch that is taken back.
    let mut f = Fixture::new();
    f.lock(b"x");
    let b = hex_key(&key_of(
        &f.run(CommandKind::Lock, &[b"LOCK", b"b", b"PX", b"500"]),
    ));
    f.lock(b"y");
    f.table.commit();
    let order =
        |f: &Fixture| -> Vec<Vec<u8>> { f.table.entries().map(|e| e.id().to_vec()).collect() };
    let before = order(&f);
    f.run(CommandKind::Lock, &[b"LOCK", b"a", b"PX", b"10"]);
    f.run(CommandKind::Renew, &[b"RENEW", b"b", &b, b"PX", b"9000"]);
    f.unlock(b"b", &b);
    f.now += 10;
    assert_eq!(f.sweep(), 1);
    f.table.roll_back();
    assert_eq!(order(&f), before, "every entry is in its old cell");
    assert_eq!(f.table.locked(), 3);
    assert_eq!(
        status(&mut f, b"b")["ttl_ms"],
        Reply::Integer(490),
        "the renewal is undone"
    );
}
