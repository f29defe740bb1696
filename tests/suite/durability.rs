//! Durability of the real binary across restarts on one data directory: `--appendfsync
//! everysec` under kill -9, `--appendfsync no` under SIGTERM, the directory lock, torn tails
//! and corruption before the end of a log.

use crate::common;
use crate::durability_support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{DataDir, Server};
use durability_support::{Cmd, Pipe, Resp, Status, cmd};

/// Ids a writer creates per batch.
const GROUP: usize = 8;

/// A state an id went through.
#[derive(Clone, Debug, PartialEq, Eq)]
enum St {
    Free,
    Locked {
        key: String,
        fence: u64,
    },
    /// A LOCK whose reply never came.
    LockedUnknown,
    Completed {
        key: String,
        fence: u64,
        result: Vec<u8>,
    },
}

impl St {
    fn shown_by(&self, s: &Status) -> bool {
        match self {
            St::Free => s.state == "free",
            St::Locked { fence, .. } => s.state == "locked" && s.fence == *fence,
            St::LockedUnknown => s.state == "locked",
            St::Completed { fence, result, .. } => {
                s.state == "completed"
                    && s.fence == *fence
                    && s.result.as_ref() == Some(&Some(result.clone()))
            }
        }
    }
}

/// The history of one id: each state with the moment its reply arrived (`None`: it never
/// did). It starts free.
struct History {
    id: String,
    states: Vec<(Option<Instant>, St)>,
}

/// Writes steadily until the connection dies: each batch locks `GROUP` new ids and settles
/// the previous group (complete with a result, unlock, or leave locked). Returns every id's
/// history.
fn writer(addr: SocketAddr, prefix: &str, batches: &AtomicUsize) -> Vec<History> {
    let mut pipe = Pipe::connect(addr);
    let start = Instant::now();
    let mut hist: Vec<History> = Vec::new();
    let mut group = 0usize;
    loop {
        let first_new = hist.len();
        let prev = first_new.saturating_sub(GROUP)..first_new;
        for j in 0..GROUP {
            hist.push(History {
                id: format!("{prefix}:{group}:{j}"),
                states: vec![(Some(start), St::Free)],
            });
        }
        group += 1;
        // (index into hist, command, state if it takes effect)
        let mut plan: Vec<(usize, Cmd, St)> = Vec::new();
        for i in prev {
            let h = &hist[i];
            let St::Locked { key, fence } = h.states.last().expect("history").1.clone() else {
                continue;
            };
            match i % 4 {
                0 => {}
                1 => plan.push((i, cmd(&["UNLOCK", &h.id, &key]), St::Free)),
                _ => {
                    let result = format!("done:{}", h.id).into_bytes();
                    let c = cmd(&[
                        b"COMPLETE".as_slice(),
                        h.id.as_bytes(),
                        key.as_bytes(),
                        b"RESULT",
                        &result,
                    ]);
                    plan.push((i, c, St::Completed { key, fence, result }));
                }
            }
        }
        for (i, h) in hist.iter().enumerate().skip(first_new) {
            plan.push((i, cmd(&["LOCK", &h.id, "WITHFENCE"]), St::LockedUnknown));
        }
        let cmds: Vec<Cmd> = plan.iter().map(|(_, c, _)| c.clone()).collect();
        let replies = pipe.send(&cmds);
        let at = Instant::now();
        for (k, (i, _, effect)) in plan.into_iter().enumerate() {
            let h = &mut hist[i];
            match replies.get(k) {
                None => h.states.push((None, effect)),
                Some(reply) => {
                    let st = match effect {
                        St::LockedUnknown => match reply.key_and_fence() {
                            Some((key, Some(fence))) => St::Locked { key, fence },
                            _ => panic!("LOCK {}: {reply:?}", h.id),
                        },
                        other => {
                            assert!(reply.is_ok(), "{} -> {other:?}: {reply:?}", h.id);
                            other
                        }
                    };
                    h.states.push((Some(at), st));
                }
            }
        }
        if replies.len() < cmds.len() {
            return hist;
        }
        batches.fetch_add(1, Ordering::Relaxed);
        // Steady, not flat out: keeps the number of ids to check modest.
        thread::sleep(Duration::from_millis(1));
    }
}

/// Counts from [`check_histories`].
#[derive(Debug, Default)]
struct Checked {
    /// Ids with at least one change acknowledged at or before the cut-off.
    required: usize,
    /// Ids found in their last acknowledged state.
    latest: usize,
    /// Ids found in an older acknowledged state (allowed after the cut-off only).
    older: usize,
}

/// Every id must show the state of its last change acknowledged at or before `cutoff`, or a
/// later state from its history; and the keys must still work.
fn check_histories(server: &Server, hist: &[History], cutoff: Instant) -> Checked {
    let mut pipe = Pipe::connect(server.resp_addr);
    let statuses: Vec<Cmd> = hist.iter().map(|h| cmd(&["STATUS", &h.id])).collect();
    let replies = pipe.send_all(&statuses, 500);
    let mut checked = Checked::default();
    let mut proofs: Vec<(Cmd, &'static str)> = Vec::new();
    let mut failures = Vec::new();
    for (h, reply) in hist.iter().zip(&replies) {
        let s = Status::parse(reply);
        let required = h
            .states
            .iter()
            .rposition(|(at, _)| at.is_some_and(|t| t <= cutoff))
            .expect("the initial state is always acknowledged");
        if required > 0 {
            checked.required += 1;
        }
        let last_acked = h
            .states
            .iter()
            .rposition(|(at, _)| at.is_some())
            .expect("initial state");
        // The latest matching state: an id can be free twice (before its LOCK, after its
        // UNLOCK).
        let found = (required..h.states.len())
            .rev()
            .find(|&i| h.states[i].1.shown_by(&s));
        let Some(found) = found else {
            failures.push(format!(
                "{}: history {:?}, required from #{required}, found {s:?}",
                h.id,
                h.states.iter().map(|(_, st)| st).collect::<Vec<_>>()
            ));
            continue;
        };
        if found >= last_acked {
            checked.latest += 1;
        } else {
            checked.older += 1;
        }
        match &h.states[found].1 {
            St::Free => proofs.push((cmd(&["LOCK", &h.id]), "key")),
            St::Locked { key, .. } => {
                proofs.push((cmd(&["RENEW", &h.id, key, "PX", "60000"]), "OK"))
            }
            St::LockedUnknown => proofs.push((cmd(&["LOCK", &h.id]), "LOCKED")),
            St::Completed { key, .. } => {
                proofs.push((cmd(&["COMPLETE", &h.id, key]), "OK"));
                proofs.push((cmd(&["LOCK", &h.id]), "COMPLETED"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} ids are not in an allowed state after the restart:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    let cmds: Vec<Cmd> = proofs.iter().map(|(c, _)| c.clone()).collect();
    for ((c, want), reply) in proofs.iter().zip(pipe.send_all(&cmds, 500)) {
        let ok = match *want {
            "key" => reply.key_and_fence().is_some(),
            "OK" => reply.is_ok(),
            code => reply.error_code() == Some(code),
        };
        assert!(
            ok,
            "{:?}: expected {want}, got {reply:?}",
            c.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        );
    }
    checked
}

/// Starts a writer thread and waits until it has acknowledged `min_batches` batches.
fn start_writer(
    server: &Server,
    prefix: &'static str,
    min_batches: usize,
) -> (thread::JoinHandle<Vec<History>>, Arc<AtomicUsize>) {
    let batches = Arc::new(AtomicUsize::new(0));
    let addr = server.resp_addr;
    let counter = Arc::clone(&batches);
    let handle = thread::spawn(move || writer(addr, prefix, &counter));
    let started = Instant::now();
    while batches.load(Ordering::Relaxed) < min_batches {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the writer made no progress"
        );
        thread::sleep(Duration::from_millis(5));
    }
    (handle, batches)
}

#[test]
fn everysec_kill_9_loses_at_most_about_a_second() {
    let dir = DataDir::new();
    let args = ["--shards", "2", "--appendfsync", "everysec"];
    let mut server = Server::start_in(&dir.path, &args);
    let (writer, _) = start_writer(&server, "everysec", 1);
    // Write steadily for ~3.5 s: what was acknowledged in the first ~1.5 s is required.
    thread::sleep(Duration::from_millis(3500));
    server.assert_running();
    let killed_at = Instant::now();
    server.kill_hard();
    let hist = writer.join().expect("writer panicked");
    drop(server);

    let server = Server::start_in(&dir.path, &args);
    // The contract is about a second; 2 s leaves room for a loaded machine.
    let checked = check_histories(&server, &hist, killed_at - Duration::from_secs(2));
    eprintln!(
        "everysec: {} ids, {checked:?} (ids found in an older state lost their last acknowledged change)",
        hist.len()
    );
    assert!(
        checked.required >= 2 * GROUP,
        "too little was acknowledged more than 2 s before the kill to test anything: {checked:?}"
    );
}

#[test]
fn appendfsync_no_sigterm_keeps_every_acknowledged_change() {
    let dir = DataDir::new();
    let args = ["--shards", "2", "--appendfsync", "no"];
    let mut server = Server::start_in(&dir.path, &args);
    let (writer, _) = start_writer(&server, "sigterm", 20);
    // SIGTERM while the writer is still pipelining.
    let status = server.terminate(Duration::from_secs(30));
    let hist = writer.join().expect("writer panicked");
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        server.log_text()
    );
    drop(server);

    let server = Server::start_in(&dir.path, &args);
    // Every acknowledged change is required, however late.
    let checked = check_histories(&server, &hist, Instant::now());
    assert_eq!(checked.older, 0, "{checked:?}");
    assert!(checked.required >= 20 * GROUP, "{checked:?}");
}

#[test]
fn a_second_server_on_the_same_directory_is_refused() {
    let dir = DataDir::new();
    let mut first = Server::start_in(&dir.path, &["--shards", "2"]);
    let mut pipe = Pipe::connect(first.resp_addr);
    let key = pipe.call(&["LOCK", "held"]).key_and_fence().expect("key").0;

    let failure = match Server::try_start_in(&dir.path, &["--shards", "1"]) {
        Ok(second) => panic!(
            "a second server started on {} while the first runs\n{}",
            dir.path.display(),
            second.log_text()
        ),
        Err(f) => f,
    };
    assert!(!failure.status.success(), "{failure:?}");
    let shown = dir.path.display().to_string();
    assert!(
        failure.output.contains(&shown) && failure.output.contains("LOCK"),
        "the refusal should name the directory {shown} and its lock file:\n{}",
        failure.output
    );

    // The first server is untouched and keeps serving, its data intact.
    first.assert_running();
    assert_eq!(pipe.call(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(pipe.status("held").state, "locked");
    assert!(
        pipe.call(&["LOCK", "after-refusal"])
            .key_and_fence()
            .is_some()
    );

    // A crash leaves no stale lock: the next server starts and finds the data.
    first.kill_hard();
    let next = Server::start_in(&dir.path, &["--shards", "1"]);
    let mut pipe = Pipe::connect(next.resp_addr);
    assert!(pipe.call(&["UNLOCK", "held", &key]).is_ok());
    assert_eq!(pipe.status("after-refusal").state, "locked");
}

/// The log file of shard 0.
fn shard0_log(dir: &Path) -> PathBuf {
    dir.join("shard-0").join("appendonly.log")
}

/// An id written by [`write_some`]: its key, and its result if it was completed.
type Written = (String, String, Option<String>);

/// Locks a few ids and completes half of them, one command at a time.
fn write_some(server: &Server, prefix: &str) -> Vec<Written> {
    let mut pipe = Pipe::connect(server.resp_addr);
    let mut held = Vec::new();
    for i in 0..6 {
        let id = format!("{prefix}:{i}");
        let key = pipe.call(&["LOCK", &id]).key_and_fence().expect("key").0;
        let mut result = None;
        if i % 2 == 0 {
            let r = format!("result of {id}");
            let c = pipe.call(&["COMPLETE", &id, &key, "RESULT", &r]);
            assert!(c.is_ok(), "{c:?}");
            result = Some(r);
        }
        held.push((id, key, result));
    }
    held
}

/// The ids written by [`write_some`] are all there, with their keys and results.
fn check_some(pipe: &mut Pipe, held: &[Written]) {
    for (id, key, result) in held {
        let s = pipe.status(id);
        if let Some(result) = result {
            assert_eq!(s.state, "completed", "{id}: {s:?}");
            assert_eq!(s.result, Some(Some(result.clone().into_bytes())), "{id}");
            assert!(pipe.call(&["COMPLETE", id, key]).is_ok(), "{id}");
        } else {
            assert_eq!(s.state, "locked", "{id}: {s:?}");
            assert!(
                pipe.call(&["RENEW", id, key, "PX", "3600000"]).is_ok(),
                "{id}"
            );
        }
    }
}

#[test]
fn a_torn_tail_is_dropped_with_a_warning_and_nothing_acknowledged_is_lost() {
    let dir = DataDir::new();
    let log = shard0_log(&dir.path);
    let mut everything = Vec::new();
    // (name, damage to the end of the file, whether the last record survives it)
    type Damage = fn(&Path);
    let variants: [(&str, Damage, bool); 3] = [
        (
            "last 3 bytes cut off",
            |p| {
                let len = fs::metadata(p).unwrap().len();
                OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(len - 3)
                    .unwrap();
            },
            false,
        ),
        (
            "5 stray bytes appended",
            |p| append(p, &[0x13, 0x37, 0xbe, 0xef, 0x42]),
            true,
        ),
        (
            "a record header promising more bytes than follow",
            |p| {
                let mut partial = 200u32.to_le_bytes().to_vec();
                partial.extend([0xde, 0xad, 0xbe, 0xef, 0x01, b'x', b'y', b'z']);
                append(p, &partial);
            },
            true,
        ),
    ];
    for (n, (name, damage, last_survives)) in variants.into_iter().enumerate() {
        let mut server = Server::start_in(&dir.path, &["--shards", "1"]);
        everything.extend(write_some(&server, &format!("torn{n}")));
        // The last record in the file: one LOCK, alone in its batch.
        let last = format!("last{n}");
        let mut pipe = Pipe::connect(server.resp_addr);
        let last_key = pipe.call(&["LOCK", &last]).key_and_fence().expect("key").0;
        server.kill_hard();
        drop(server);

        let before = fs::read(&log).unwrap();
        damage(&log);
        let after_damage = fs::metadata(&log).unwrap().len();
        assert_ne!(
            before.len() as u64,
            after_damage,
            "{name}: damage changed nothing"
        );

        let server = Server::start_in(&dir.path, &["--shards", "1"]);
        assert!(
            server.output_contains("torn"),
            "{name}: no warning about a torn tail\n{}",
            server.log_text()
        );
        let mut pipe = Pipe::connect(server.resp_addr);
        check_some(&mut pipe, &everything);
        let s = pipe.status(&last);
        if last_survives {
            assert_eq!(s.state, "locked", "{name}: {last} {s:?}");
            assert!(pipe.call(&["UNLOCK", &last, &last_key]).is_ok(), "{name}");
        } else {
            // Its record was cut: the id must be free, not half-read.
            assert_eq!(s.state, "free", "{name}: {last} {s:?}");
        }
    }
    // The cut tails are gone for good: a clean restart warns of nothing.
    let mut server = Server::start_in(&dir.path, &["--shards", "1"]);
    assert!(server.terminate(Duration::from_secs(30)).success());
    drop(server);
    let server = Server::start_in(&dir.path, &["--shards", "1"]);
    assert!(
        !server.output_contains("torn"),
        "a torn tail again after it was cut\n{}",
        server.log_text()
    );
    check_some(&mut Pipe::connect(server.resp_addr), &everything);
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Walks the frames of a log (see docs/LOG_FORMAT.md): `(offset, type, id of a Lock record)`.
fn frames(bytes: &[u8]) -> Vec<(usize, u8, Option<String>)> {
    const HEADER: usize = 32;
    assert_eq!(&bytes[..8], b"TOKENLOG", "log magic");
    let mut out = Vec::new();
    let mut at = HEADER;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..at + 8 + len];
        // Lock: type 1, fence u64, deadline u64, key [16], id (u32 length + bytes), ...
        let id = (body[0] == 1).then(|| {
            let id_len = u32::from_le_bytes(body[33..37].try_into().unwrap()) as usize;
            String::from_utf8_lossy(&body[37..37 + id_len]).into_owned()
        });
        out.push((at, body[0], id));
        at += 8 + len;
    }
    assert_eq!(at, bytes.len(), "the log ends inside a frame");
    out
}

#[test]
fn corruption_before_the_end_refuses_to_start_until_repaired() {
    let dir = DataDir::new();
    let log = shard0_log(&dir.path);
    let mut server = Server::start_in(&dir.path, &["--shards", "1"]);
    let mut pipe = Pipe::connect(server.resp_addr);
    let ids: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    let keys: Vec<String> = ids
        .iter()
        .map(|id| pipe.call(&["LOCK", id]).key_and_fence().expect("key").0)
        .collect();
    server.kill_hard();
    drop(server);

    // Flip one byte inside the Lock record of c6, in the middle of the file.
    let mut bytes = fs::read(&log).unwrap();
    let all = frames(&bytes);
    let locks: Vec<&(usize, u8, Option<String>)> = all.iter().filter(|f| f.2.is_some()).collect();
    let order: Vec<&str> = locks.iter().map(|f| f.2.as_deref().unwrap()).collect();
    assert_eq!(order, ids, "one Lock record per LOCK, in order");
    let offset = locks[6].0;
    assert!(offset > 32 && offset + 40 < bytes.len());
    bytes[offset + 8 + 10] ^= 0x5a;
    fs::write(&log, &bytes).unwrap();

    let failure = match Server::try_start_in(&dir.path, &["--shards", "1"]) {
        Ok(s) => panic!("started on a corrupt log\n{}", s.log_text()),
        Err(f) => f,
    };
    assert!(!failure.status.success(), "{failure:?}");
    let path = log.display().to_string();
    assert!(
        failure.output.contains(&path) && failure.output.contains(&format!("byte {offset}")),
        "the refusal should name {path} and byte {offset}:\n{}",
        failure.output
    );
    assert_eq!(
        fs::read(&log).unwrap(),
        bytes,
        "a refused start must leave the log as it was"
    );

    let mut server = Server::start_in(&dir.path, &["--shards", "1", "--repair-log"]);
    let mut pipe = Pipe::connect(server.resp_addr);
    for (i, (id, key)) in ids.iter().zip(&keys).enumerate() {
        let s = pipe.status(id);
        if i < 6 {
            // Before the damage: kept, under the same key.
            assert_eq!(s.state, "locked", "{id}: {s:?}");
            assert!(
                pipe.call(&["RENEW", id, key, "PX", "600000"]).is_ok(),
                "{id}"
            );
        } else {
            // At and after the cut: lost, as --repair-log says.
            assert_eq!(s.state, "free", "{id}: {s:?}");
        }
    }
    assert!(server.terminate(Duration::from_secs(30)).success());
    drop(server);

    // The repair is durable: a plain start works and finds the same state.
    let server = Server::start_in(&dir.path, &["--shards", "1"]);
    let mut pipe = Pipe::connect(server.resp_addr);
    for (i, (id, key)) in ids.iter().zip(&keys).enumerate() {
        if i < 6 {
            assert!(pipe.call(&["UNLOCK", id, key]).is_ok(), "{id}");
        } else {
            assert_eq!(pipe.status(id).state, "free", "{id}");
        }
    }
}

/// Transactions of three LOCKs each, from several clients, with the server killed with
/// SIGKILL in the middle: after recovery every transaction is there whole or not at all, and
/// every acknowledged one is there whole, under the keys its EXEC answered.
#[test]
fn kill_9_never_leaves_part_of_a_transaction() {
    let dir = DataDir::new();
    let args = ["--shards", "4"];
    let mut server = Server::start_in(&dir.path, &args);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let addr = server.resp_addr;
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut acked: Vec<(usize, Vec<String>)> = Vec::new();
                let mut sent = 0;
                let Some(mut con) = common::RawConn::try_connect(addr) else {
                    return (acked, sent);
                };
                while !stop.load(Ordering::Relaxed) {
                    let group = w * 1_000_000 + sent;
                    let mut batch = common::encode_command(&[b"MULTI"]);
                    for part in ["a", "b", "c"] {
                        let id = format!("{{g-{group}}}.{part}");
                        batch.extend(common::encode_command(&[b"LOCK", id.as_bytes()]));
                    }
                    batch.extend(common::encode_command(&[b"EXEC"]));
                    sent += 1;
                    if !con.try_send(&batch) {
                        break;
                    }
                    let Some(replies) = con.try_read_replies(5) else {
                        break;
                    };
                    let exec = String::from_utf8_lossy(&replies[4]).into_owned();
                    let keys: Vec<String> = exec
                        .split("\r\n")
                        .filter(|l| l.len() == 32)
                        .map(str::to_string)
                        .collect();
                    assert_eq!(keys.len(), 3, "EXEC answered {exec:?}");
                    acked.push((group, keys));
                }
                (acked, sent)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    server.assert_running();
    server.kill_hard();
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    drop(server);

    let server = Server::start_in(&dir.path, &args);
    let mut con = server.raw();
    let mut whole = 0;
    for (w, (acked, sent)) in results.iter().enumerate() {
        let acked: std::collections::HashMap<usize, &Vec<String>> =
            acked.iter().map(|(g, k)| (*g, k)).collect();
        for n in 0..*sent {
            let group = w * 1_000_000 + n;
            let states: Vec<bool> = ["a", "b", "c"]
                .iter()
                .map(|part| {
                    let id = format!("{{g-{group}}}.{part}");
                    con.send(&common::encode_command(&[b"STATUS", id.as_bytes()]));
                    String::from_utf8_lossy(&con.read_reply()).contains("locked")
                })
                .collect();
            assert!(
                states.iter().all(|s| *s) || states.iter().all(|s| !*s),
                "transaction {group} recovered in part: {states:?}"
            );
            if let Some(keys) = acked.get(&group) {
                assert!(states[0], "acknowledged transaction {group} was lost");
                for (part, key) in ["a", "b", "c"].iter().zip(keys.iter()) {
                    let id = format!("{{g-{group}}}.{part}");
                    con.send(&common::encode_command(&[
                        b"UNLOCK",
                        id.as_bytes(),
                        key.as_bytes(),
                    ]));
                    assert_eq!(con.read_reply(), b"+OK\r\n", "{id} under its key");
                }
                whole += 1;
            }
        }
    }
    assert!(whole > 0, "no transaction was acknowledged before the kill");
}

/// Fences never go back, whatever `--repair-log` cuts: with the only log emptied for a bad
/// header, the next grant's fence is still above every fence handed out before. A damaged
/// floor file is refused, not guessed.
#[test]
fn repair_never_makes_fences_go_back() {
    let dir = DataDir::new();
    let args = ["--shards", "1"];
    let mut server = Server::start_in(&dir.path, &args);
    let mut con = common::RawConn::connect(server.resp_addr);
    let mut last = 0u64;
    for i in 0..5 {
        let id = format!("f-{i}");
        con.send(&common::encode_command(&[
            b"LOCK",
            id.as_bytes(),
            b"WITHFENCE",
        ]));
        let reply = String::from_utf8_lossy(&con.read_reply()).into_owned();
        last = reply
            .rsplit(':')
            .next()
            .and_then(|f| f.trim().parse().ok())
            .unwrap_or_else(|| panic!("no fence in {reply:?}"));
    }
    assert!(last >= 5, "{last}");
    drop(con);
    assert!(server.terminate(Duration::from_secs(30)).success());
    drop(server);

    let log = dir.path.join("shard-0").join("appendonly.log");
    let mut bytes = fs::read(&log).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&log, &bytes).unwrap();
    let server = Server::start_in(&dir.path, &["--shards", "1", "--repair-log"]);
    let mut con = common::RawConn::connect(server.resp_addr);
    con.send(&common::encode_command(&[b"STATUS", b"f-0"]));
    assert!(
        String::from_utf8_lossy(&con.read_reply()).contains("free"),
        "the repair emptied the log"
    );
    con.send(&common::encode_command(&[b"LOCK", b"after", b"WITHFENCE"]));
    let reply = String::from_utf8_lossy(&con.read_reply()).into_owned();
    let fence: u64 = reply
        .rsplit(':')
        .next()
        .and_then(|f| f.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fence in {reply:?}"));
    assert!(fence > last, "fence {fence} after {last}: fences went back");
    drop(con);
    drop(server);

    let floor = dir.path.join("FLOOR");
    let mut bytes = fs::read(&floor).expect("the floor file");
    bytes[20] ^= 1;
    fs::write(&floor, &bytes).unwrap();
    let failure = match Server::try_start_in(&dir.path, &["--shards", "1", "--repair-log"]) {
        Ok(s) => panic!("started on a damaged floor\n{}", s.log_text()),
        Err(f) => f,
    };
    assert!(
        failure.output.contains("damaged fence floor"),
        "{}",
        failure.output
    );
}
