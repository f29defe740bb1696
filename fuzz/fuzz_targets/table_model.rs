//! Any sequence of LOCK (with or without a lease), UNLOCK, COMPLETE and RENEW, with a right or
//! a wrong key, interleaved with clock steps and sweeps, gives the same replies from the lock
//! table as from a plain `BTreeMap` model; and rolling back a batch restores the table.
#![no_main]

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use libfuzzer_sys::fuzz_target;
use token_server::command::errors;
use token_server::keys::KeySource;
use token_server::protocol::Reply;
use token_server::table::{
    ApplyCtx, Complete, Delivery, Lock, LockTable, Op, Policy, Renew, Unlock,
};
use token_server::types::{KeyBytes, LogRecord, Origin};

#[derive(Default)]
struct Counting(u128);

impl KeySource for Counting {
    fn next_key(&mut self) -> KeyBytes {
        self.0 += 1;
        self.0.to_be_bytes()
    }
}

/// Where the commands' side effects go; the table is checked, not these.
#[derive(Default)]
struct Effects {
    keys: Counting,
    fences: AtomicU64,
    records: Vec<LogRecord>,
    deliveries: Vec<Delivery>,
}

impl Effects {
    fn ctx(&mut self, now: u64) -> ApplyCtx<'_> {
        ApplyCtx {
            now_ms: now,
            keys: &mut self.keys,
            fences: &self.fences,
            origin: Origin::Nobody,
            records: &mut self.records,
            deliveries: &mut self.deliveries,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Model {
    Locked { key: KeyBytes, deadline: u64 },
    Completed { key: KeyBytes },
}

fuzz_target!(|data: &[u8]| {
    let mut table = LockTable::new(Policy {
        max_waiters: 4,
        ..Policy::default()
    });
    let mut effects = Effects::default();
    let mut model: BTreeMap<u8, Model> = BTreeMap::new();
    let mut now = 1_000_000u64;

    for op in data.chunks_exact(3) {
        let (kind, id, arg) = (op[0] % 6, op[1] % 8, op[2]);
        let idb: Box<[u8]> = Box::new([b'i', id]);
        let held = match model.get(&id) {
            Some(Model::Locked { key, .. }) | Some(Model::Completed { key }) => Some(*key),
            None => None,
        };
        let key = if arg & 1 == 0 { held } else { Some([0xee; 16]) };
        let lease = u64::from(arg >> 1) + 1;
        let cmd = match kind {
            0 => Op::Lock(Lock {
                lease_ms: (arg & 1 == 1).then_some(lease),
                ..Lock::new(idb)
            }),
            1 => Op::Unlock(Unlock { id: idb, key }),
            2 => Op::Complete(Complete {
                id: idb,
                key,
                result: None,
            }),
            3 => Op::Renew(Renew {
                id: idb,
                key,
                lease_ms: lease,
            }),
            _ => {
                now += u64::from(arg);
                let mut ctx = effects.ctx(now);
                if kind == 5 {
                    table.expire_due(&mut ctx, usize::from(arg) + 1);
                }
                model.retain(|_, m| !matches!(m, Model::Locked { deadline, .. } if *deadline != 0 && *deadline <= now));
                continue;
            }
        };
        // The model's answer, given the state with every due lease gone.
        model.retain(|_, m| !matches!(m, Model::Locked { deadline, .. } if *deadline != 0 && *deadline <= now));
        let state = model.get(&id).copied();
        let mut ctx = effects.ctx(now);
        let got = token_server::command::reply(table.apply(cmd, &mut ctx))
            .expect("no operation here waits");
        let matches = |k: &KeyBytes| key == Some(*k);
        let want = match (kind, state) {
            (0, None) => {
                let Reply::Key(k) = got else {
                    panic!("LOCK of a free id: {got:?}")
                };
                let deadline = if arg & 1 == 1 { now + lease } else { 0 };
                model.insert(id, Model::Locked { key: k, deadline });
                got.clone()
            }
            (0, Some(Model::Locked { .. })) => errors::LOCKED,
            (0, Some(Model::Completed { .. })) => errors::COMPLETED,
            (_, None) => errors::NOT_LOCKED,
            (1, Some(Model::Locked { key: k, .. })) if matches(&k) => {
                model.remove(&id);
                Reply::Ok
            }
            (2, Some(Model::Locked { key: k, .. })) if matches(&k) => {
                model.insert(id, Model::Completed { key: k });
                Reply::Ok
            }
            (3, Some(Model::Locked { key: k, .. })) if matches(&k) => {
                model.insert(
                    id,
                    Model::Locked {
                        key: k,
                        deadline: now + lease,
                    },
                );
                Reply::Ok
            }
            (_, Some(Model::Locked { .. })) => errors::BAD_KEY,
            (2, Some(Model::Completed { key: k })) if matches(&k) => Reply::Ok,
            (_, Some(Model::Completed { .. })) => errors::COMPLETED,
        };
        assert_eq!(got, want, "op {kind} id {id} arg {arg}");
        // The table frees due leases lazily, the model at once: it can only hold more.
        let locked = model
            .values()
            .filter(|m| matches!(m, Model::Locked { .. }))
            .count();
        assert!(table.locked() >= locked);
    }
    // Counts agree once every due lease is swept.
    let mut ctx = effects.ctx(now);
    table.expire_due(&mut ctx, usize::MAX);
    let locked = model
        .values()
        .filter(|m| matches!(m, Model::Locked { .. }))
        .count();
    assert_eq!(table.locked(), locked);
    assert_eq!(table.completed(), model.len() - locked);
    // Everything above was one uncommitted batch on an empty table: rolling it back empties it.
    table.roll_back();
    assert_eq!(table.entries().count(), 0);
    assert_eq!((table.locked(), table.completed()), (0, 0));
});
