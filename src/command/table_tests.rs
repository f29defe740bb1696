//! State-machine tests of the lock commands against one table: every cell of the contract,
//! and random operation sequences checked against a plain reference model.

use std::collections::BTreeMap;

use crate::command::test_support::{CountingKeys, Sink, parse_op, reply_of};
use crate::command::{CommandKind, CommandLimits, errors};
use crate::protocol::Reply;
use crate::table::{ApplyCtx, LockTable, Policy};
use crate::types::{KeyBytes, Origin, hex_key};

pub(crate) struct Fixture {
    pub table: LockTable,
    pub keys: CountingKeys,
    pub sink: Sink,
    /// The fake clock, in Unix ms.
    pub now: u64,
    /// Who the next command comes from.
    pub origin: Origin,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture::with_policy(Policy {
            max_waiters: 16,
            ..Policy::default()
        })
    }

    pub fn with_policy(policy: Policy) -> Self {
        Fixture {
            table: LockTable::new(policy),
            keys: CountingKeys::default(),
            sink: Sink::default(),
            now: 1_000_000,
            origin: Origin::Nobody,
        }
    }

    pub fn ctx(&mut self) -> ApplyCtx<'_> {
        ApplyCtx {
            now_ms: self.now,
            keys: &mut self.keys,
            fences: &self.sink.fences,
            origin: self.origin,
            records: &mut self.sink.records,
            deliveries: &mut self.sink.deliveries,
        }
    }

    pub fn run(&mut self, kind: CommandKind, parts: &[&[u8]]) -> Reply {
        let op = parse_op(kind, parts, &CommandLimits::default())
            .expect("a lock command")
            .expect("valid arguments");
        let mut table = std::mem::replace(&mut self.table, LockTable::new(Policy::default()));
        let outcome = table.apply(op, &mut self.ctx());
        self.table = table;
        reply_of(outcome)
    }

    /// Runs the active sweep at the current fake time.
    pub fn sweep(&mut self) -> usize {
        let mut table = std::mem::replace(&mut self.table, LockTable::new(Policy::default()));
        let n = table.expire_due(&mut self.ctx(), usize::MAX);
        self.table = table;
        n
    }

    pub fn lock(&mut self, id: &[u8]) -> Reply {
        self.run(CommandKind::Lock, &[b"LOCK", id])
    }

    pub fn unlock(&mut self, id: &[u8], key: &[u8]) -> Reply {
        self.run(CommandKind::Unlock, &[b"UNLOCK", id, key])
    }

    pub fn complete(&mut self, id: &[u8], key: &[u8]) -> Reply {
        self.run(CommandKind::Complete, &[b"COMPLETE", id, key])
    }

    /// Locks `id` and returns the key as hex text.
    pub fn locked(&mut self, id: &[u8]) -> [u8; 32] {
        match self.lock(id) {
            Reply::Key(k) => hex_key(&k),
            other => panic!("LOCK failed: {other:?}"),
        }
    }
}

const OTHER: &[u8] = b"ffffffffffffffffffffffffffffffff";

#[test]
fn free_id() {
    let mut f = Fixture::new();
    assert!(matches!(f.lock(b"a"), Reply::Key(_)));
    assert_eq!(f.unlock(b"b", OTHER), errors::NOT_LOCKED);
    assert_eq!(f.complete(b"b", OTHER), errors::NOT_LOCKED);
    // An unlocked id is free again.
    let k = f.locked(b"c");
    assert_eq!(f.unlock(b"c", &k), Reply::Ok);
    assert_eq!(f.unlock(b"c", &k), errors::NOT_LOCKED);
    assert_eq!(f.complete(b"c", &k), errors::NOT_LOCKED);
    assert!(matches!(f.lock(b"c"), Reply::Key(_)));
}

#[test]
fn locked_id() {
    let mut f = Fixture::new();
    let k = f.locked(b"a");
    assert_eq!(f.lock(b"a"), errors::LOCKED);
    assert_eq!(f.unlock(b"a", OTHER), errors::BAD_KEY);
    assert_eq!(f.complete(b"a", OTHER), errors::BAD_KEY);
    assert_eq!(f.unlock(b"a", b"not-hex"), errors::BAD_KEY);
    assert_eq!(f.table.locked(), 1, "failed attempts change nothing");
    assert_eq!(f.unlock(b"a", &k), Reply::Ok);
    assert_eq!(f.table.locked(), 0);

    let k = f.locked(b"b");
    assert_eq!(f.complete(b"b", &k.to_ascii_uppercase()), Reply::Ok);
    assert_eq!((f.table.locked(), f.table.completed()), (0, 1));
}

#[test]
fn completed_id() {
    let mut f = Fixture::new();
    let k = f.locked(b"a");
    assert_eq!(f.complete(b"a", &k), Reply::Ok);
    assert_eq!(f.lock(b"a"), errors::COMPLETED);
    assert_eq!(f.unlock(b"a", &k), errors::COMPLETED);
    assert_eq!(f.unlock(b"a", OTHER), errors::COMPLETED);
    assert_eq!(f.complete(b"a", &k), Reply::Ok, "idempotent retry");
    assert_eq!(f.complete(b"a", OTHER), errors::COMPLETED);
    assert_eq!(f.table.completed(), 1);
}

#[test]
fn old_key_is_void_after_unlock() {
    let mut f = Fixture::new();
    let old = f.locked(b"a");
    assert_eq!(f.unlock(b"a", &old), Reply::Ok);
    let new = f.locked(b"a");
    assert_ne!(old, new);
    assert_eq!(f.complete(b"a", &old), errors::BAD_KEY);
    assert_eq!(f.complete(b"a", &new), Reply::Ok);
}

#[test]
fn bad_ids_are_refused_at_parse() {
    for (id, want) in [
        (vec![], errors::EMPTY_ID),
        (vec![b'x'; 513], errors::ID_TOO_LONG),
    ] {
        let r = parse_op(
            CommandKind::Lock,
            &[b"LOCK", &id],
            &CommandLimits::default(),
        );
        assert_eq!(r, Some(Err(want)));
    }
    let r = parse_op(
        CommandKind::Lock,
        &[b"LOCK", &[b'x'; 512]],
        &CommandLimits::default(),
    );
    assert!(matches!(r, Some(Ok(_))));
}

/// The reference model: what each id is, in the plainest terms.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ModelState {
    Locked(KeyBytes),
    Completed(KeyBytes),
}

fn model_apply(
    model: &mut BTreeMap<u8, ModelState>,
    op: u8,
    id: u8,
    key: Option<KeyBytes>,
    fresh: KeyBytes,
) -> Reply {
    let state = model.get(&id).copied();
    match (op, state) {
        (0, None) => {
            model.insert(id, ModelState::Locked(fresh));
            Reply::Key(fresh)
        }
        (0, Some(ModelState::Locked(_))) => errors::LOCKED,
        (0, Some(ModelState::Completed(_))) => errors::COMPLETED,
        (_, None) => errors::NOT_LOCKED,
        (1, Some(ModelState::Locked(k))) if Some(k) == key => {
            model.remove(&id);
            Reply::Ok
        }
        (_, Some(ModelState::Locked(_))) if op != 2 => errors::BAD_KEY,
        (1, Some(ModelState::Completed(_))) => errors::COMPLETED,
        (_, Some(ModelState::Locked(k))) if Some(k) == key => {
            model.insert(id, ModelState::Completed(k));
            Reply::Ok
        }
        (_, Some(ModelState::Locked(_))) => errors::BAD_KEY,
        (_, Some(ModelState::Completed(k))) if Some(k) == key => Reply::Ok,
        (_, Some(ModelState::Completed(_))) => errors::COMPLETED,
    }
}

#[test]
fn random_sequences_match_the_model() {
    // A small xorshift generator: deterministic, so a failure names its seed.
    for seed in 1..=200u64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut f = Fixture::new();
        let mut model = BTreeMap::new();
        let mut issued: Vec<KeyBytes> = Vec::new();
        for step in 0..500 {
            let op = (next() % 3) as u8;
            let id = (next() % 8) as u8;
            // Use a key that was really issued most of the time, a foreign one otherwise.
            let key = match (next() % 5, issued.is_empty()) {
                (0, _) | (_, true) => [0xee; 16],
                _ => issued[(next() as usize) % issued.len()],
            };
            let fresh = (f.keys.0 + 1).to_be_bytes();
            let want = model_apply(&mut model, op, id, Some(key), fresh);
            let id_bytes = [b'i', id];
            let hex = hex_key(&key);
            let got = match op {
                0 => f.lock(&id_bytes),
                1 => f.unlock(&id_bytes, &hex),
                _ => f.complete(&id_bytes, &hex),
            };
            assert_eq!(got, want, "seed {seed} step {step} op {op} id {id}");
            if let Reply::Key(k) = got {
                issued.push(k);
            }
            let locked = model
                .values()
                .filter(|s| matches!(s, ModelState::Locked(_)))
                .count();
            assert_eq!(f.table.locked(), locked);
            assert_eq!(f.table.completed(), model.len() - locked);
        }
    }
}

#[test]
fn trylock_answers_where_a_taken_id_stands() {
    let mut f = Fixture::new();
    let granted = f.run(CommandKind::Trylock, &[b"TRYLOCK", b"t", b"PX", b"5000"]);
    let Reply::Array(parts) = &granted else {
        panic!("[key, fence]: {granted:?}")
    };
    assert!(
        matches!(parts[..], [Reply::Key(_), Reply::Integer(_)]),
        "{parts:?}"
    );
    assert_eq!(
        f.run(CommandKind::Trylock, &[b"TRYLOCK", b"t"]),
        Reply::Array(vec![
            Reply::Null,
            Reply::bulk(b"locked"),
            Reply::Integer(5000)
        ])
    );
    f.lock(b"forever");
    assert_eq!(
        f.run(CommandKind::Trylock, &[b"TRYLOCK", b"forever"]),
        Reply::Array(vec![
            Reply::Null,
            Reply::bulk(b"locked"),
            Reply::Integer(-1)
        ])
    );
    let k = f.locked(b"c");
    f.run(
        CommandKind::Complete,
        &[b"COMPLETE", b"c", &k, b"RESULT", b"r1"],
    );
    assert_eq!(
        f.run(CommandKind::Trylock, &[b"TRYLOCK", b"c"]),
        Reply::Array(vec![
            Reply::Null,
            Reply::bulk(b"completed"),
            Reply::bulk(b"r1")
        ])
    );
    let k = f.locked(b"d");
    f.complete(b"d", &k);
    assert_eq!(
        f.run(CommandKind::Trylock, &[b"TRYLOCK", b"d"]),
        Reply::Array(vec![Reply::Null, Reply::bulk(b"completed"), Reply::Null])
    );
    // Misuse is still an error: WAIT and WITHFENCE are not TRYLOCK's, a fingerprint mismatches.
    for bad in [
        &[&b"TRYLOCK"[..], b"x", b"WAIT", b"10"][..],
        &[b"TRYLOCK", b"x", b"WITHFENCE"],
    ] {
        assert_eq!(
            parse_op(CommandKind::Trylock, bad, &CommandLimits::default()),
            Some(Err(errors::SYNTAX))
        );
    }
    f.run(CommandKind::Lock, &[b"LOCK", b"fp", b"FINGERPRINT", b"a"]);
    assert_eq!(
        f.run(
            CommandKind::Trylock,
            &[b"TRYLOCK", b"fp", b"FINGERPRINT", b"b"]
        ),
        errors::MISMATCH
    );
}

#[test]
fn a_lock_repeated_with_its_own_key_gets_the_same_grant() {
    let mut f = Fixture::new();
    let mine: &[u8] = b"0123456789abcdef0123456789ABCDEF";
    let lock = |f: &mut Fixture, key: &[u8]| {
        f.run(
            CommandKind::Lock,
            &[b"LOCK", b"r", b"PX", b"5000", b"KEY", key, b"WITHFENCE"],
        )
    };
    let first = lock(&mut f, mine);
    let Reply::Array(parts) = &first else {
        panic!("[key, fence]: {first:?}")
    };
    let [Reply::Key(key), Reply::Integer(fence)] = parts[..] else {
        panic!("{parts:?}")
    };
    assert_eq!(&hex_key(&key), &mine.to_ascii_lowercase()[..]);
    let records = f.sink.records.len();
    // The retry, later and with the lease running: the same key and fence, nothing logged.
    f.now += 1000;
    assert_eq!(lock(&mut f, mine), first);
    assert_eq!(
        f.sink.records.len(),
        records,
        "a repeated grant logs nothing"
    );
    assert_eq!(
        f.run(CommandKind::Trylock, &[b"TRYLOCK", b"r", b"KEY", mine]),
        first
    );
    // Another key, or none, is refused as ever; the id's key unlocks it.
    assert_eq!(lock(&mut f, OTHER), errors::LOCKED);
    assert_eq!(f.lock(b"r"), errors::LOCKED);
    assert_eq!(f.unlock(b"r", mine), Reply::Ok);
    // Once freed, the same key takes a new grant with a new fence.
    let again = lock(&mut f, mine);
    let Reply::Array(parts) = &again else {
        panic!("[key, fence]: {again:?}")
    };
    assert!(
        matches!(parts[..], [Reply::Key(k), Reply::Integer(later)] if k == key && later > fence),
        "{parts:?}"
    );
    // Completed: the key does not take it again.
    assert_eq!(f.complete(b"r", mine), Reply::Ok);
    assert_eq!(lock(&mut f, mine), errors::COMPLETED);
    // The key must look like the server's own keys.
    for bad in [&b"abc"[..], b"0123456789abcdef0123456789abcdeg", b""] {
        assert_eq!(
            parse_op(
                CommandKind::Lock,
                &[b"LOCK", b"x", b"KEY", bad],
                &CommandLimits::default()
            ),
            Some(Err(Reply::from(crate::types::Error::KeyForm)))
        );
    }
    assert_eq!(
        parse_op(
            CommandKind::Lock,
            &[b"LOCK", b"x", b"KEY", mine, b"KEY", mine],
            &CommandLimits::default()
        ),
        Some(Err(errors::SYNTAX))
    );
    assert_eq!(
        parse_op(
            CommandKind::Lock,
            &[b"LOCK", b"x", b"KEY"],
            &CommandLimits::default()
        ),
        Some(Err(errors::SYNTAX))
    );
}

#[test]
fn a_waiter_with_its_own_key_is_granted_under_it() {
    let mut f = Fixture::new();
    let k = f.locked(b"w");
    let mine: &[u8] = b"00000000000000000000000000000042";
    f.origin = Origin::Conn {
        shard: 0,
        conn: crate::types::ConnRef {
            slot: 1,
            conn_id: 1,
        },
        seq: 1,
    };
    assert_eq!(
        f.run(
            CommandKind::Lock,
            &[b"LOCK", b"w", b"WAIT", b"1000", b"KEY", mine]
        ),
        crate::command::test_support::PARKED
    );
    f.origin = Origin::Nobody;
    assert_eq!(f.unlock(b"w", &k), Reply::Ok);
    let granted = f.sink.deliveries.pop().expect("the waiter is granted");
    assert!(
        matches!(granted.outcome, crate::table::Outcome::Granted { key, .. } if key[15] == 0x42),
        "{granted:?}"
    );
    assert_eq!(f.complete(b"w", mine), Reply::Ok);
}
