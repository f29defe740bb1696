//! The LOCK / UNLOCK / COMPLETE state table, cell by cell.
//!
//! Every scenario runs four times: with the synchronous client over RESP2 and
//! RESP3, and with the tokio multiplexed client over RESP2 and RESP3.

use crate::common;

use std::collections::HashSet;

use common::{Exec, FOREIGN_KEY, expect_err, expect_key, expect_ok};
use redis::{RedisResult, Value};

fn lock(ex: &mut dyn Exec, id: &str) -> RedisResult<Value> {
    ex.run(&["LOCK", id])
}

fn unlock(ex: &mut dyn Exec, id: &str, key: &str) -> RedisResult<Value> {
    ex.run(&["UNLOCK", id, key])
}

fn complete(ex: &mut dyn Exec, id: &str, key: &str) -> RedisResult<Value> {
    ex.run(&["COMPLETE", id, key])
}

/// Strings of the wrong shape to be a key; they can never match anything.
fn malformed_keys(real_key: &str) -> Vec<String> {
    vec![
        String::new(),
        "x".to_string(),
        "not-a-key".to_string(),
        real_key[..31].to_string(),
        format!("{real_key}0"),
        "g".repeat(32),
        format!("{real_key}{real_key}"),
        " ".repeat(32),
    ]
}

// ---- LOCK -----------------------------------------------------------------

fn lock_never_seen_id_returns_key_and_locks(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "job-1"), "LOCK on a never-seen id");
    let err = expect_err(lock(ex, "job-1"), "LOCKED", &[&key], "second LOCK");
    assert!(!err.to_string().contains(&key));
    // The returned key really is the lock's key.
    expect_ok(complete(ex, "job-1", &key), "COMPLETE with the issued key");
}

fn lock_unlocked_id_returns_new_key(ex: &mut dyn Exec) {
    let first = expect_key(lock(ex, "job"), "first LOCK");
    expect_ok(unlock(ex, "job", &first), "UNLOCK with own key");
    let second = expect_key(lock(ex, "job"), "LOCK after UNLOCK");
    assert_ne!(
        first, second,
        "LOCK after UNLOCK must issue a different key"
    );
    // The old key is void.
    expect_err(
        unlock(ex, "job", &first),
        "BADKEY",
        &[&first, &second],
        "UNLOCK with the voided key",
    );
    expect_err(
        complete(ex, "job", &first),
        "BADKEY",
        &[&first, &second],
        "COMPLETE with the voided key",
    );
    // The new key works.
    expect_ok(complete(ex, "job", &second), "COMPLETE with the new key");
}

fn lock_locked_id_is_locked(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "busy"), "LOCK");
    for attempt in 0..5 {
        expect_err(
            lock(ex, "busy"),
            "LOCKED",
            &[&key],
            &format!("LOCK of a locked id, attempt {attempt}"),
        );
    }
    // Failed LOCKs leave the original lock intact.
    expect_ok(unlock(ex, "busy", &key), "UNLOCK with the original key");
}

fn lock_completed_id_is_completed(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "done"), "LOCK");
    expect_ok(complete(ex, "done", &key), "COMPLETE");
    for attempt in 0..3 {
        expect_err(
            lock(ex, "done"),
            "COMPLETED",
            &[&key],
            &format!("LOCK of a completed id, attempt {attempt}"),
        );
    }
}

// ---- UNLOCK ---------------------------------------------------------------

fn unlock_never_seen_id_is_notlocked(ex: &mut dyn Exec) {
    expect_err(
        unlock(ex, "ghost", FOREIGN_KEY),
        "NOTLOCKED",
        &[FOREIGN_KEY],
        "UNLOCK of a never-seen id",
    );
    for bad in malformed_keys(FOREIGN_KEY) {
        expect_err(
            unlock(ex, "ghost", &bad),
            "NOTLOCKED",
            &[],
            &format!("UNLOCK of a never-seen id with malformed key {bad:?}"),
        );
    }
    // Still free: LOCK succeeds.
    expect_key(lock(ex, "ghost"), "LOCK after failed UNLOCK");
}

fn unlock_unlocked_id_is_notlocked(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "again"), "LOCK");
    expect_ok(unlock(ex, "again", &key), "UNLOCK");
    expect_err(
        unlock(ex, "again", &key),
        "NOTLOCKED",
        &[&key],
        "second UNLOCK with the same key",
    );
    expect_err(
        unlock(ex, "again", FOREIGN_KEY),
        "NOTLOCKED",
        &[&key],
        "UNLOCK of a free id with a foreign key",
    );
    expect_err(
        unlock(ex, "again", "zz"),
        "NOTLOCKED",
        &[&key],
        "UNLOCK of a free id with a malformed key",
    );
    let new_key = expect_key(lock(ex, "again"), "LOCK of the free id");
    assert_ne!(new_key, key);
}

fn unlock_with_own_key_frees_id(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "free-me"), "LOCK");
    expect_ok(unlock(ex, "free-me", &key), "UNLOCK with own key");
    // Free again: COMPLETE says NOTLOCKED, LOCK works.
    expect_err(
        complete(ex, "free-me", &key),
        "NOTLOCKED",
        &[&key],
        "COMPLETE after UNLOCK",
    );
    let key2 = expect_key(lock(ex, "free-me"), "LOCK after UNLOCK");
    assert_ne!(key, key2);
}

fn unlock_with_other_key_is_badkey(ex: &mut dyn Exec) {
    let ka = expect_key(lock(ex, "a"), "LOCK a");
    let kb = expect_key(lock(ex, "b"), "LOCK b");
    assert_ne!(ka, kb);
    expect_err(
        unlock(ex, "a", &kb),
        "BADKEY",
        &[&ka, &kb],
        "UNLOCK a with b's key",
    );
    expect_err(
        unlock(ex, "a", FOREIGN_KEY),
        "BADKEY",
        &[&ka, FOREIGN_KEY],
        "UNLOCK a with a foreign key",
    );
    for bad in malformed_keys(&ka) {
        expect_err(
            unlock(ex, "a", &bad),
            "BADKEY",
            &[&ka],
            &format!("UNLOCK a with malformed key {bad:?}"),
        );
    }
    // Nothing changed: a is still locked by ka, b by kb.
    expect_err(lock(ex, "a"), "LOCKED", &[&ka], "LOCK a after BADKEY");
    expect_ok(unlock(ex, "a", &ka), "UNLOCK a with its key");
    expect_ok(unlock(ex, "b", &kb), "UNLOCK b with its key");
}

fn unlock_completed_with_own_key_is_completed(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "fin"), "LOCK");
    expect_ok(complete(ex, "fin", &key), "COMPLETE");
    expect_err(
        unlock(ex, "fin", &key),
        "COMPLETED",
        &[&key],
        "UNLOCK of a completed id with its key",
    );
    // Still completed, and COMPLETE with the key is still accepted.
    expect_ok(complete(ex, "fin", &key), "COMPLETE retry");
    expect_err(
        lock(ex, "fin"),
        "COMPLETED",
        &[&key],
        "LOCK after UNLOCK attempt",
    );
}

fn unlock_completed_with_other_key_is_completed(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "fin"), "LOCK");
    let other = expect_key(lock(ex, "other"), "LOCK other");
    expect_ok(complete(ex, "fin", &key), "COMPLETE");
    expect_err(
        unlock(ex, "fin", &other),
        "COMPLETED",
        &[&key, &other],
        "UNLOCK completed id with another id's key",
    );
    expect_err(
        unlock(ex, "fin", FOREIGN_KEY),
        "COMPLETED",
        &[&key],
        "UNLOCK completed id with a foreign key",
    );
    expect_err(
        unlock(ex, "fin", "nope"),
        "COMPLETED",
        &[&key],
        "UNLOCK completed id with a malformed key",
    );
}

// ---- COMPLETE -------------------------------------------------------------

fn complete_never_seen_id_is_notlocked(ex: &mut dyn Exec) {
    expect_err(
        complete(ex, "ghost", FOREIGN_KEY),
        "NOTLOCKED",
        &[FOREIGN_KEY],
        "COMPLETE of a never-seen id",
    );
    expect_err(
        complete(ex, "ghost", "short"),
        "NOTLOCKED",
        &[],
        "COMPLETE of a never-seen id with a malformed key",
    );
    // The failed COMPLETE did not complete it.
    let key = expect_key(lock(ex, "ghost"), "LOCK after failed COMPLETE");
    expect_ok(complete(ex, "ghost", &key), "COMPLETE");
}

fn complete_unlocked_id_is_notlocked(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "u"), "LOCK");
    expect_ok(unlock(ex, "u", &key), "UNLOCK");
    expect_err(
        complete(ex, "u", &key),
        "NOTLOCKED",
        &[&key],
        "COMPLETE of an unlocked id with its old key",
    );
    expect_err(
        complete(ex, "u", FOREIGN_KEY),
        "NOTLOCKED",
        &[&key],
        "COMPLETE of an unlocked id with a foreign key",
    );
    expect_key(lock(ex, "u"), "LOCK after failed COMPLETE");
}

fn complete_with_own_key_completes_forever(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "task"), "LOCK");
    expect_ok(complete(ex, "task", &key), "COMPLETE with own key");
    expect_err(
        lock(ex, "task"),
        "COMPLETED",
        &[&key],
        "LOCK after COMPLETE",
    );
    expect_err(
        unlock(ex, "task", &key),
        "COMPLETED",
        &[&key],
        "UNLOCK after COMPLETE",
    );
    expect_err(lock(ex, "task"), "COMPLETED", &[&key], "LOCK again");
}

fn complete_with_other_key_is_badkey(ex: &mut dyn Exec) {
    let ka = expect_key(lock(ex, "a"), "LOCK a");
    let kb = expect_key(lock(ex, "b"), "LOCK b");
    expect_err(
        complete(ex, "a", &kb),
        "BADKEY",
        &[&ka, &kb],
        "COMPLETE a with b's key",
    );
    expect_err(
        complete(ex, "a", FOREIGN_KEY),
        "BADKEY",
        &[&ka],
        "COMPLETE a with a foreign key",
    );
    for bad in malformed_keys(&ka) {
        expect_err(
            complete(ex, "a", &bad),
            "BADKEY",
            &[&ka],
            &format!("COMPLETE a with malformed key {bad:?}"),
        );
    }
    // a is still locked (not completed) and b is untouched.
    expect_err(lock(ex, "a"), "LOCKED", &[&ka], "LOCK a after BADKEY");
    expect_ok(complete(ex, "a", &ka), "COMPLETE a with its key");
    expect_ok(complete(ex, "b", &kb), "COMPLETE b with its key");
}

fn complete_completed_with_own_key_is_idempotent(ex: &mut dyn Exec) {
    let key = expect_key(lock(ex, "retry"), "LOCK");
    for attempt in 0..4 {
        expect_ok(
            complete(ex, "retry", &key),
            &format!("COMPLETE attempt {attempt}"),
        );
    }
    expect_err(
        lock(ex, "retry"),
        "COMPLETED",
        &[&key],
        "LOCK after COMPLETEs",
    );
}

fn complete_completed_with_other_key_is_completed(ex: &mut dyn Exec) {
    let old = expect_key(lock(ex, "c"), "first LOCK");
    expect_ok(unlock(ex, "c", &old), "UNLOCK");
    let key = expect_key(lock(ex, "c"), "second LOCK");
    let other = expect_key(lock(ex, "d"), "LOCK d");
    expect_ok(complete(ex, "c", &key), "COMPLETE");
    for (what, k) in [
        ("another id's key", other.as_str()),
        ("the voided earlier key", old.as_str()),
        ("a foreign key", FOREIGN_KEY),
        ("a malformed key", "123"),
    ] {
        expect_err(
            complete(ex, "c", k),
            "COMPLETED",
            &[&key, &other, &old],
            &format!("COMPLETE of a completed id with {what}"),
        );
    }
    // The id with the other key is unaffected.
    expect_ok(unlock(ex, "d", &other), "UNLOCK d");
}

// ---- general properties ---------------------------------------------------

fn commands_are_case_insensitive(ex: &mut dyn Exec) {
    let k1 = expect_key(ex.run(&["lock", "ci-1"]), "lowercase lock");
    expect_err(
        ex.run(&["LoCk", "ci-1"]),
        "LOCKED",
        &[&k1],
        "mixed-case lock",
    );
    expect_ok(ex.run(&["unlock", "ci-1", &k1]), "lowercase unlock");
    let k2 = expect_key(ex.run(&["Lock", "ci-1"]), "capitalised lock");
    expect_err(
        ex.run(&["UnLoCk", "ci-1", FOREIGN_KEY]),
        "BADKEY",
        &[&k2],
        "mixed-case unlock",
    );
    expect_ok(ex.run(&["cOmPlEtE", "ci-1", &k2]), "mixed-case complete");
    expect_ok(ex.run(&["complete", "ci-1", &k2]), "lowercase complete");
    expect_err(ex.run(&["lock", "ci-1"]), "COMPLETED", &[&k2], "lock after");
}

fn ids_are_case_and_byte_exact(ex: &mut dyn Exec) {
    let ids = ["id", "ID", "Id", "id ", " id", "id\t"];
    let mut keys = HashSet::new();
    for id in ids {
        let key = expect_key(lock(ex, id), &format!("LOCK {id:?}"));
        assert!(keys.insert(key), "duplicate key for {id:?}");
    }
    for id in ids {
        expect_err(lock(ex, id), "LOCKED", &[], &format!("re-LOCK {id:?}"));
    }
}

fn keys_are_distinct(ex: &mut dyn Exec) {
    let mut keys = HashSet::new();
    for i in 0..300 {
        let key = expect_key(lock(ex, &format!("distinct-{i}")), "LOCK");
        assert!(keys.insert(key.clone()), "key {key} issued twice");
    }
    // Repeated LOCK/UNLOCK cycles on one id also yield fresh keys.
    for cycle in 0..50 {
        let key = expect_key(lock(ex, "cycled"), &format!("LOCK cycle {cycle}"));
        assert!(keys.insert(key.clone()), "key {key} issued twice");
        expect_ok(unlock(ex, "cycled", &key), "UNLOCK");
    }
    assert_eq!(keys.len(), 350);
}

fn full_lifecycle(ex: &mut dyn Exec) {
    // The typical worker flow: take, give back, take again, finish.
    let k1 = expect_key(lock(ex, "my_process"), "LOCK");
    expect_err(lock(ex, "my_process"), "LOCKED", &[&k1], "competing LOCK");
    expect_ok(unlock(ex, "my_process", &k1), "UNLOCK");
    let k2 = expect_key(lock(ex, "my_process"), "LOCK again");
    expect_err(
        complete(ex, "my_process", &k1),
        "BADKEY",
        &[&k1, &k2],
        "COMPLETE with stale key",
    );
    expect_ok(complete(ex, "my_process", &k2), "COMPLETE");
    expect_ok(complete(ex, "my_process", &k2), "COMPLETE retry");
    expect_err(
        lock(ex, "my_process"),
        "COMPLETED",
        &[&k2],
        "LOCK after COMPLETE",
    );
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        mod sync_resp2 {
            use crate::common::{Proto, Server};
            $(
                #[test]
                fn $name() {
                    let server = Server::start(&["--shards", "2"]);
                    let mut con = server.connection(Proto::Resp2);
                    super::$name(&mut con);
                }
            )*
        }
        mod sync_resp3 {
            use crate::common::{Proto, Server};
            $(
                #[test]
                fn $name() {
                    let server = Server::start(&["--shards", "2"]);
                    let mut con = server.connection(Proto::Resp3);
                    super::$name(&mut con);
                }
            )*
        }
        mod tokio_resp2 {
            use crate::common::{AsyncExec, Proto, Server};
            $(
                #[test]
                fn $name() {
                    let server = Server::start(&["--shards", "2"]);
                    let mut con = AsyncExec::connect(&server, Proto::Resp2);
                    super::$name(&mut con);
                }
            )*
        }
        mod tokio_resp3 {
            use crate::common::{AsyncExec, Proto, Server};
            $(
                #[test]
                fn $name() {
                    let server = Server::start(&["--shards", "2"]);
                    let mut con = AsyncExec::connect(&server, Proto::Resp3);
                    super::$name(&mut con);
                }
            )*
        }
    };
}

scenario_tests!(
    lock_never_seen_id_returns_key_and_locks,
    lock_unlocked_id_returns_new_key,
    lock_locked_id_is_locked,
    lock_completed_id_is_completed,
    unlock_never_seen_id_is_notlocked,
    unlock_unlocked_id_is_notlocked,
    unlock_with_own_key_frees_id,
    unlock_with_other_key_is_badkey,
    unlock_completed_with_own_key_is_completed,
    unlock_completed_with_other_key_is_completed,
    complete_never_seen_id_is_notlocked,
    complete_unlocked_id_is_notlocked,
    complete_with_own_key_completes_forever,
    complete_with_other_key_is_badkey,
    complete_completed_with_own_key_is_idempotent,
    complete_completed_with_other_key_is_completed,
    commands_are_case_insensitive,
    ids_are_case_and_byte_exact,
    keys_are_distinct,
    full_lifecycle,
);

/// Keys and errors survive across connections: a lock taken on one
/// connection is visible (and releasable) on another.
#[test]
fn state_is_shared_between_connections() {
    use common::{Proto, Server};
    let server = Server::start(&["--shards", "2"]);
    let mut a = server.connection(Proto::Resp2);
    let mut b = server.connection(Proto::Resp3);
    let key = expect_key(lock(&mut a, "shared"), "LOCK on connection A");
    expect_err(
        lock(&mut b, "shared"),
        "LOCKED",
        &[&key],
        "LOCK on connection B",
    );
    drop(a);
    // The lock outlives the connection that took it.
    expect_err(
        lock(&mut b, "shared"),
        "LOCKED",
        &[&key],
        "LOCK after A closed",
    );
    expect_ok(
        complete(&mut b, "shared", &key),
        "COMPLETE on B with A's key",
    );
}
