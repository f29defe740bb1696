//! The whole server in this process on an in-memory disk that fails on request
//! (`FaultyStorage`): a full disk, a failed fsync and a torn write get `-IOERR` and are
//! taken back, reads keep working, the shard heals by rewriting its log once the disk
//! works again, and after a power loss (only synced bytes survive) everything acknowledged
//! is there.

use crate::common;
use crate::durability_support;

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{DataDir, connect_sync, expect_err, expect_key, expect_ok};
use durability_support::{Cmd, Pipe, Resp, cmd};
use redis::Value;
use token_server::config::Config;
use token_server::log::FaultyStorage;
use token_server::log::storage::CrashTail;
use token_server::server::{Running, start_with_storage};

/// How long a failed shard may take to heal once the disk works (it retries about every
/// second; a loaded machine gets slack).
const HEAL_WITHIN: Duration = Duration::from_secs(15);

fn config(dir: &Path, shards: u16) -> Config {
    let shards = shards.to_string();
    let dir = dir.to_str().expect("UTF-8 temp dir");
    Config::from_args([
        "token-server",
        "--port",
        "0",
        "--http-port",
        "0",
        "--shards",
        &shards,
        "--dir",
        dir,
    ])
    .expect("valid flags")
}

/// A server on `storage`; the directory is real only for the lock file.
fn start(config: &Config, storage: &FaultyStorage) -> Running {
    start_with_storage(config.clone(), Arc::new(storage.clone())).expect("server starts")
}

fn stop(running: Running) {
    running.shutdown_handle().shutdown();
    running.wait().expect("shards stop cleanly");
}

/// The power goes now: the disk dies before the shards' next operation (so the final
/// sync of a clean stop cannot save anything), the shards are stopped, and the disk comes
/// back with only its synced bytes (and `tail` of the rest).
fn power_loss(running: Running, storage: &FaultyStorage, tail: CrashTail) {
    storage.crash_at(1);
    stop(running);
    storage.crash(tail);
}

fn redis_con(running: &Running) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/", running.resp_addr)).expect("url");
    connect_sync(&client)
}

fn run(con: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    redis::cmd(args[0]).arg(&args[1..]).query(con)
}

/// Waits until no shard's log is failed, or panics.
fn wait_healed(pipe: &mut Pipe, since: Instant) -> Duration {
    loop {
        if pipe.info_field("persistence", "log_failed_shards") == 0 {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < HEAL_WITHIN,
            "the log did not heal within {HEAL_WITHIN:?} of the disk working again"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_refuses_writes_takes_them_back_and_heals() {
    let dir = DataDir::new();
    let storage = FaultyStorage::new();
    let config = config(&dir.path, 2);
    let running = start(&config, &storage);
    let mut con = redis_con(&running);
    let mut pipe = Pipe::connect(running.resp_addr);

    // Acknowledged before the fault.
    let ka = expect_key(run(&mut con, &["LOCK", "a"]), "LOCK a");
    let kb = expect_key(run(&mut con, &["LOCK", "b"]), "LOCK b");
    let kc = expect_key(run(&mut con, &["LOCK", "c"]), "LOCK c");
    expect_ok(
        run(&mut con, &["COMPLETE", "c", &kc, "RESULT", "c-result"]),
        "COMPLETE c",
    );

    storage.set_disk_full(true);
    expect_err(
        run(&mut con, &["LOCK", "x"]),
        "IOERR",
        &[],
        "LOCK x on a full disk",
    );
    expect_err(
        run(&mut con, &["UNLOCK", "a", &ka]),
        "IOERR",
        &[&ka],
        "UNLOCK a",
    );
    expect_err(
        run(&mut con, &["COMPLETE", "b", &kb]),
        "IOERR",
        &[&kb],
        "COMPLETE b",
    );
    // A pipeline over both shards (some commands forwarded to the other shard).
    let ids: Vec<String> = (0..16).map(|i| format!("p{i}")).collect();
    let locks: Vec<Cmd> = ids.iter().map(|id| cmd(&["LOCK", id])).collect();
    for (id, reply) in ids.iter().zip(pipe.send(&locks)) {
        assert_eq!(reply.error_code(), Some("IOERR"), "LOCK {id}: {reply:?}");
    }
    assert_eq!(pipe.info_field("persistence", "log_failed_shards"), 2);
    assert!(pipe.info_field("persistence", "log_write_errors") >= 2);

    // Reads keep working and show no trace of the refused changes.
    assert_eq!(pipe.call(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(pipe.status("a").state, "locked");
    assert_eq!(pipe.status("b").state, "locked");
    assert_eq!(
        pipe.status("x").state,
        "free",
        "the refused LOCK was taken back"
    );
    let c = pipe.status("c");
    assert_eq!(c.state, "completed");
    assert_eq!(c.result, Some(Some(b"c-result".to_vec())));
    for id in &ids {
        assert_eq!(pipe.status(id).state, "free", "{id}");
    }
    assert_eq!(pipe.call(&["DBSIZE"]), Resp::Int(3));

    // While the disk stays full, healing cannot succeed and writes stay refused.
    thread::sleep(Duration::from_millis(1500));
    expect_err(
        run(&mut con, &["LOCK", "x"]),
        "IOERR",
        &[],
        "LOCK x, disk still full",
    );
    assert_eq!(pipe.info_field("persistence", "log_failed_shards"), 2);

    storage.set_disk_full(false);
    let healed = wait_healed(&mut pipe, Instant::now());
    eprintln!("healed {healed:?} after the disk had room again");
    assert!(pipe.info_field("persistence", "log_write_errors") > 0);
    assert!(
        pipe.info_field("persistence", "log_rewrites") >= 2,
        "one per healed shard"
    );

    // The refused changes were never made: x is free, a and b are held under their keys.
    let kx = expect_key(run(&mut con, &["LOCK", "x"]), "LOCK x after healing");
    expect_ok(
        run(&mut con, &["UNLOCK", "a", &ka]),
        "UNLOCK a after healing",
    );
    expect_ok(
        run(&mut con, &["COMPLETE", "b", &kb]),
        "COMPLETE b after healing",
    );
    let pkeys: Vec<String> = pipe
        .send(&locks)
        .iter()
        .map(|r| r.key_and_fence().expect("LOCK after healing").0)
        .collect();
    power_loss(running, &storage, CrashTail::Drop);
    // Only what was synced survived, and that must be everything acknowledged.
    let running = start(&config, &storage);
    let mut con = redis_con(&running);
    let mut pipe = Pipe::connect(running.resp_addr);
    assert_eq!(pipe.status("a").state, "free");
    expect_err(
        run(&mut con, &["LOCK", "b"]),
        "COMPLETED",
        &[],
        "b stays completed",
    );
    expect_ok(run(&mut con, &["COMPLETE", "b", &kb]), "COMPLETE b again");
    assert_eq!(
        pipe.status("c").result,
        Some(Some(b"c-result".to_vec())),
        "c keeps its result"
    );
    expect_ok(run(&mut con, &["UNLOCK", "x", &kx]), "x held under its key");
    for (id, key) in ids.iter().zip(&pkeys) {
        expect_ok(run(&mut con, &["UNLOCK", id, key]), id);
    }
    stop(running);
}

#[test]
fn a_failed_fsync_fails_its_batch_and_heals() {
    let dir = DataDir::new();
    let storage = FaultyStorage::new();
    let config = config(&dir.path, 2);
    let running = start(&config, &storage);
    let mut con = redis_con(&running);
    let mut pipe = Pipe::connect(running.resp_addr);
    let ka = expect_key(run(&mut con, &["LOCK", "a"]), "LOCK a");

    // The next fsync, whichever shard does it, fails once.
    storage.fail_sync(1);
    let ids: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    let locks: Vec<Cmd> = ids.iter().map(|id| cmd(&["LOCK", id])).collect();
    let replies = pipe.send(&locks);
    let mut granted = Vec::new();
    let mut refused = Vec::new();
    for (id, reply) in ids.iter().zip(&replies) {
        match reply.key_and_fence() {
            Some((key, _)) => granted.push((id.clone(), key)),
            None => {
                assert_eq!(reply.error_code(), Some("IOERR"), "LOCK {id}: {reply:?}");
                refused.push(id.clone());
            }
        }
    }
    assert!(
        !refused.is_empty(),
        "the failed fsync answered no command with IOERR"
    );
    let healed = wait_healed(&mut pipe, Instant::now());
    eprintln!(
        "fsync failure: {} granted, {} refused, healed after {healed:?}",
        granted.len(),
        refused.len()
    );
    assert!(pipe.info_field("persistence", "log_write_errors") >= 1);
    assert!(pipe.info_field("persistence", "log_rewrites") >= 1);

    // Refused ids were taken back; granted ones are held.
    for id in &refused {
        assert_eq!(pipe.status(id).state, "free", "{id} after IOERR");
    }
    for (id, _) in &granted {
        assert_eq!(pipe.status(id).state, "locked", "{id}");
    }
    let retried: Vec<(String, String)> = refused
        .iter()
        .map(|id| {
            let key = expect_key(run(&mut con, &["LOCK", id]), id);
            (id.clone(), key)
        })
        .collect();
    power_loss(running, &storage, CrashTail::Drop);
    let running = start(&config, &storage);
    let mut con = redis_con(&running);
    expect_ok(run(&mut con, &["UNLOCK", "a", &ka]), "a after power loss");
    for (id, key) in granted.iter().chain(&retried) {
        expect_ok(run(&mut con, &["UNLOCK", id, key]), id);
    }
    stop(running);
}

/// A write or sync fails and the power goes before the shard could heal.
fn fault_then_power_loss(fault: &str, arm: impl Fn(&FaultyStorage), tail: CrashTail) {
    let dir = DataDir::new();
    let storage = FaultyStorage::new();
    let config = config(&dir.path, 1);
    let running = start(&config, &storage);
    let mut con = redis_con(&running);
    let ka = expect_key(run(&mut con, &["LOCK", "a"]), "LOCK a");
    let kd = expect_key(run(&mut con, &["LOCK", "d"]), "LOCK d");
    expect_ok(
        run(&mut con, &["COMPLETE", "d", &kd, "RESULT", "d"]),
        "COMPLETE d",
    );

    arm(&storage);
    expect_err(run(&mut con, &["LOCK", "y"]), "IOERR", &[], fault);
    // The server must not act on the refused change in the meantime.
    let mut pipe = Pipe::connect(running.resp_addr);
    assert_eq!(
        pipe.status("y").state,
        "free",
        "{fault}: refused LOCK taken back"
    );
    power_loss(running, &storage, tail);
    let running = start(&config, &storage);
    let mut con = redis_con(&running);
    let mut pipe = Pipe::connect(running.resp_addr);
    expect_ok(run(&mut con, &["UNLOCK", "a", &ka]), "a after power loss");
    expect_err(
        run(&mut con, &["LOCK", "d"]),
        "COMPLETED",
        &[],
        "d after power loss",
    );
    assert_eq!(pipe.status("d").result, Some(Some(b"d".to_vec())));
    let y = pipe.status("y");
    eprintln!(
        "{fault}: after the power loss the refused LOCK y is {}",
        y.state
    );
    // Writes work after the restart.
    expect_key(run(&mut con, &["LOCK", "z"]), "LOCK z after restart");
    stop(running);
}

#[test]
fn a_torn_write_then_power_loss_keeps_everything_acknowledged() {
    // The record's first 5 bytes reach the file, then the write fails; the disk dies at the
    // next operation, so the shard cannot heal; the torn bytes survive the power loss.
    fault_then_power_loss(
        "torn write",
        |s| {
            s.fail_write(1, 5);
            s.crash_at(2);
        },
        CrashTail::Keep(usize::MAX),
    );
}

#[test]
fn a_failed_fsync_then_power_loss_keeps_everything_acknowledged() {
    // The write succeeds, its fsync fails, the disk dies at the next operation.
    fault_then_power_loss(
        "failed fsync",
        |s| {
            s.fail_sync(1);
            s.crash_at(3);
        },
        CrashTail::Drop,
    );
}

#[test]
fn unsynced_bytes_of_a_refused_change_surviving_the_power_loss_lose_nothing_acknowledged() {
    // The refused record reached the file (its fsync failed, or the write reported an error
    // after writing it all) and the power loss keeps those unsynced bytes. Acknowledged
    // changes must be there; the refused LOCK may be there or not (it was never
    // acknowledged), and the test prints which.
    fault_then_power_loss(
        "failed fsync, unsynced bytes kept",
        |s| {
            s.fail_sync(1);
            s.crash_at(3);
        },
        CrashTail::Keep(usize::MAX),
    );
    fault_then_power_loss(
        "failed write that wrote everything, bytes kept",
        |s| {
            s.fail_write(1, usize::MAX);
            s.crash_at(2);
        },
        CrashTail::Keep(usize::MAX),
    );
}

/// Replies computed in a loop iteration whose log write then fails must not describe the
/// changes that were taken back: a client told `-COMPLETED` would never run an activity
/// that was not completed, a client told `-LOCKED` backs off from an id nobody holds.
#[test]
fn replies_in_a_failed_batch_do_not_report_changes_that_were_taken_back() {
    let dir = DataDir::new();
    let storage = FaultyStorage::new();
    let config = config(&dir.path, 1);
    let running = start(&config, &storage);
    let mut pipe = Pipe::connect(running.resp_addr);
    let kb = pipe.call(&["LOCK", "b"]).key_and_fence().expect("key").0;

    // One pipeline, one loop iteration, one failed fsync.
    storage.fail_sync(1);
    let replies = pipe.send(&[
        cmd(&["COMPLETE", "b", &kb]),
        cmd(&["LOCK", "b"]),
        cmd(&["STATUS", "b"]),
        cmd(&["LOCK", "y"]),
        cmd(&["LOCK", "y"]),
        cmd(&["STATUS", "y"]),
    ]);
    let healed = wait_healed(&mut pipe, Instant::now());
    eprintln!("healed after {healed:?}; replies in the failed batch: {replies:?}");
    assert_eq!(
        replies[0].error_code(),
        Some("IOERR"),
        "COMPLETE b: {:?}",
        replies[0]
    );
    assert_eq!(
        replies[3].error_code(),
        Some("IOERR"),
        "LOCK y: {:?}",
        replies[3]
    );
    // The truth afterwards: b is locked (not completed), y is free.
    assert_eq!(pipe.status("b").state, "locked");
    assert_eq!(pipe.status("y").state, "free");

    let mut wrong = Vec::new();
    if replies[1].error_code() == Some("COMPLETED") {
        wrong.push(format!(
            "LOCK b after the refused COMPLETE b: {:?}, but b was never completed",
            replies[1]
        ));
    }
    if let Resp::Array(_) = &replies[2] {
        let s = durability_support::Status::parse(&replies[2]);
        if s.state == "completed" {
            wrong.push(format!("STATUS b: {s:?}, but b was never completed"));
        }
    }
    if replies[4].error_code() == Some("LOCKED") {
        wrong.push(format!(
            "second LOCK y after the refused LOCK y: {:?}, but nobody holds y",
            replies[4]
        ));
    }
    if let Resp::Array(_) = &replies[5] {
        let s = durability_support::Status::parse(&replies[5]);
        if s.state == "locked" {
            wrong.push(format!("STATUS y: {s:?}, but y was never locked"));
        }
    }
    assert!(
        wrong.is_empty(),
        "replies describe changes that were taken back after the log write failed:\n{}",
        wrong.join("\n")
    );
    stop(running);
}
