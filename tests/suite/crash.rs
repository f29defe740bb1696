//! Black-box crash test: client threads pipeline LOCK / COMPLETE / UNLOCK against the real
//! binary and record every acknowledged reply; the server is killed with SIGKILL at a random
//! moment and restarted on the same directory with another shard count (1 → 2 → 1 → 2 → 1).
//! After every restart each acknowledged effect must be there: completed ids stay completed
//! with their result, locked ids stay locked under the same key, fence, lease and
//! fingerprint, unlocked ids are free, and new fences are above every fence seen before.
//! A command whose reply never arrived (the kill cut it off) may have happened or not, but
//! nothing else.

use crate::common;
use crate::durability_support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{DataDir, FOREIGN_KEY, Server};
use durability_support::{Cmd, Pipe, Resp, Rng, Status, cmd};

const THREADS: usize = 4;
const IDS_PER_THREAD: usize = 1500;
const BATCH: usize = 40;
/// Long enough never to run out during the test.
const LEASE_MS: u64 = 3_600_000;
/// The shard count of each run: every run but the last is killed.
const SHARDS: [&str; 5] = ["1", "2", "1", "2", "1"];
/// Commands per pipelined write while verifying.
const VERIFY_CHUNK: usize = 500;

/// What the client knows about an id.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Known {
    Free,
    Locked {
        key: String,
        /// Known from WITHFENCE or from a STATUS after a restart.
        fence: Option<u64>,
        lease: bool,
        fp: Option<String>,
    },
    Completed {
        key: String,
        fence: Option<u64>,
        result: Option<Vec<u8>>,
        fp: Option<String>,
    },
    /// Locked by a LOCK whose reply was cut off by the kill: nobody knows the key.
    LockedUnknown {
        lease: bool,
        fp: Option<String>,
    },
}

impl Known {
    fn fp(&self) -> Option<&String> {
        match self {
            Known::Free => None,
            Known::Locked { fp, .. }
            | Known::Completed { fp, .. }
            | Known::LockedUnknown { fp, .. } => fp.as_ref(),
        }
    }

    /// Whether a STATUS reply shows this state.
    fn shown_by(&self, s: &Status) -> bool {
        let ttl_ok = |lease: bool| {
            if lease {
                s.ttl_ms > 0 && s.ttl_ms as u64 <= LEASE_MS
            } else {
                s.ttl_ms == -1
            }
        };
        let fence_ok = |fence: &Option<u64>| s.fence > 0 && fence.is_none_or(|f| f == s.fence);
        match self {
            Known::Free => s.state == "free",
            Known::Locked { fence, lease, .. } => {
                s.state == "locked" && fence_ok(fence) && ttl_ok(*lease) && s.result.is_none()
            }
            Known::Completed { fence, result, .. } => {
                s.state == "completed" && fence_ok(fence) && s.result.as_ref() == Some(result)
            }
            Known::LockedUnknown { lease, .. } => {
                s.state == "locked" && s.fence > 0 && ttl_ok(*lease)
            }
        }
    }

    /// This state, with the fence learnt from STATUS filled in.
    fn with_fence(mut self, s: &Status) -> Known {
        match &mut self {
            Known::Locked { fence, .. } | Known::Completed { fence, .. } => *fence = Some(s.fence),
            _ => {}
        }
        self
    }
}

#[derive(Clone, Debug)]
struct IdModel {
    id: String,
    state: Known,
    /// The state after a command whose reply never came: either may be on disk.
    pending: Option<Known>,
}

/// A workload command and what its reply must be.
#[derive(Clone, Debug)]
enum Op {
    /// On a free id: must grant.
    Lock {
        lease: bool,
        fp: Option<String>,
        with_fence: bool,
    },
    /// On a held or completed id: must be refused with `code`.
    Refused {
        fp: Option<String>,
        code: &'static str,
    },
    /// With the holder's key: `+OK`, the id becomes free.
    Unlock { key: String },
    /// With a key that is not the holder's: `-BADKEY`.
    BadKey,
    /// With the holder's key (or, on a completed id, the completing key): `+OK`.
    Complete {
        key: String,
        result: Option<Vec<u8>>,
    },
}

impl Op {
    /// A command suited to `state`.
    fn choose(state: &Known, rng: &mut Rng, serial: u64) -> Op {
        let refused = |rng: &mut Rng, base: &'static str| {
            let fp = match rng.range(0, 3) {
                0 => None,
                1 => state.fp().cloned(),
                _ => Some(format!("other-{serial}")),
            };
            let code = match (&fp, state.fp()) {
                (Some(a), Some(b)) if a != b => "MISMATCH",
                _ => base,
            };
            Op::Refused { fp, code }
        };
        match state {
            Known::Free => Op::Lock {
                lease: rng.chance(1, 3),
                fp: rng.chance(1, 4).then(|| format!("fp-{serial}")),
                with_fence: rng.chance(3, 4),
            },
            Known::Locked { key, .. } => match rng.range(0, 10) {
                0..3 => Op::Complete {
                    key: key.clone(),
                    result: rng.chance(1, 2).then(|| {
                        let mut r = format!("result-{serial}-").into_bytes();
                        r.extend(rng.bytes(8));
                        r
                    }),
                },
                3..7 => Op::Unlock { key: key.clone() },
                7 | 8 => refused(rng, "LOCKED"),
                _ => Op::BadKey,
            },
            Known::Completed { key, .. } => {
                if rng.chance(1, 2) {
                    // A retry with the same key: `+OK`, and the first result stays.
                    Op::Complete {
                        key: key.clone(),
                        result: rng.chance(1, 2).then(|| b"a-later-result".to_vec()),
                    }
                } else {
                    refused(rng, "COMPLETED")
                }
            }
            Known::LockedUnknown { .. } => refused(rng, "LOCKED"),
        }
    }

    fn command(&self, id: &str) -> Cmd {
        let mut c = match self {
            Op::Lock {
                lease,
                fp,
                with_fence,
            } => {
                let mut c = cmd(&["LOCK", id]);
                if *lease {
                    c.extend(cmd(&["PX", &LEASE_MS.to_string()]));
                }
                if let Some(fp) = fp {
                    c.extend(cmd(&["FINGERPRINT", fp]));
                }
                if *with_fence {
                    c.push(b"WITHFENCE".to_vec());
                }
                c
            }
            Op::Refused { fp, .. } => {
                let mut c = cmd(&["LOCK", id]);
                if let Some(fp) = fp {
                    c.extend(cmd(&["FINGERPRINT", fp]));
                }
                c
            }
            Op::Unlock { key } => cmd(&["UNLOCK", id, key]),
            Op::BadKey => cmd(&["UNLOCK", id, FOREIGN_KEY]),
            Op::Complete { key, .. } => cmd(&["COMPLETE", id, key]),
        };
        if let Op::Complete {
            result: Some(r), ..
        } = self
        {
            c.push(b"RESULT".to_vec());
            c.push(r.clone());
        }
        c
    }

    /// The state after the command took effect, as far as it can be known without its reply.
    fn effect(&self, before: &Known) -> Known {
        match (self, before) {
            (Op::Lock { lease, fp, .. }, _) => Known::LockedUnknown {
                lease: *lease,
                fp: fp.clone(),
            },
            (Op::Unlock { .. }, _) => Known::Free,
            (
                Op::Complete { key, result },
                Known::Locked {
                    fence, fp, key: k, ..
                },
            ) => {
                assert_eq!(key, k);
                Known::Completed {
                    key: key.clone(),
                    fence: *fence,
                    result: result.clone(),
                    fp: fp.clone(),
                }
            }
            _ => before.clone(),
        }
    }

    /// Checks the reply and returns the new state (and the fence it revealed).
    fn acknowledged(&self, before: &Known, reply: &Resp) -> Result<(Known, Option<u64>), String> {
        let bad = || Err(format!("{self:?} on {before:?} got {reply:?}"));
        match self {
            Op::Lock {
                lease,
                fp,
                with_fence,
            } => match reply.key_and_fence() {
                Some((key, fence)) if fence.is_some() == *with_fence => Ok((
                    Known::Locked {
                        key,
                        fence,
                        lease: *lease,
                        fp: fp.clone(),
                    },
                    fence,
                )),
                _ => bad(),
            },
            Op::Refused { code, .. } if reply.error_code() == Some(*code) => {
                Ok((before.clone(), None))
            }
            Op::BadKey if reply.error_code() == Some("BADKEY") => Ok((before.clone(), None)),
            Op::Unlock { .. } | Op::Complete { .. } if reply.is_ok() => {
                Ok((self.effect(before), None))
            }
            _ => bad(),
        }
    }
}

/// What one client thread did in one run.
struct Outcome {
    models: Vec<IdModel>,
    acked: usize,
    cut_off: usize,
    max_fence: u64,
}

/// Pipelines batches on `models` until the connection dies; panics on a wrong reply.
fn client(addr: SocketAddr, mut models: Vec<IdModel>, seed: u64, batches: &AtomicUsize) -> Outcome {
    let mut rng = Rng::new(seed);
    let mut pipe = Pipe::connect(addr);
    let mut out = Outcome {
        models: Vec::new(),
        acked: 0,
        cut_off: 0,
        max_fence: 0,
    };
    let mut serial = 0u64;
    loop {
        let mut picked = HashSet::new();
        while picked.len() < BATCH.min(models.len()) {
            picked.insert(rng.range(0, models.len() as u64) as usize);
        }
        let picked: Vec<usize> = picked.into_iter().collect();
        let ops: Vec<Op> = picked
            .iter()
            .map(|&i| {
                serial += 1;
                Op::choose(&models[i].state, &mut rng, seed.wrapping_add(serial))
            })
            .collect();
        let cmds: Vec<Cmd> = picked
            .iter()
            .zip(&ops)
            .map(|(&i, op)| op.command(&models[i].id))
            .collect();
        let replies = pipe.send(&cmds);
        for (k, (&i, op)) in picked.iter().zip(&ops).enumerate() {
            let m = &mut models[i];
            match replies.get(k) {
                Some(reply) => {
                    let (state, fence) = op
                        .acknowledged(&m.state, reply)
                        .unwrap_or_else(|e| panic!("id {}: {e}", m.id));
                    m.state = state;
                    out.max_fence = out.max_fence.max(fence.unwrap_or(0));
                    out.acked += 1;
                }
                None => {
                    let after = op.effect(&m.state);
                    if after != m.state {
                        m.pending = Some(after);
                    }
                    out.cut_off += 1;
                }
            }
        }
        if replies.len() < cmds.len() {
            out.models = models;
            return out;
        }
        batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// The expectation of one verification command.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Ok,
    Code(&'static str),
    /// A grant with WITHFENCE.
    Grant,
}

/// Checks every id against the restarted server, resolves the cut-off commands, proves
/// keys and freedom with real commands, and returns the highest fence seen.
fn verify(server: &Server, models: &mut [Vec<IdModel>], max_fence_before: u64, run: usize) -> u64 {
    let mut pipe = Pipe::connect(server.resp_addr);
    let all: Vec<&mut IdModel> = models.iter_mut().flatten().collect();

    // STATUS: every id is in its acknowledged state, or in the state its cut-off command
    // would have given it.
    let statuses: Vec<Cmd> = all.iter().map(|m| cmd(&["STATUS", &m.id])).collect();
    let replies = pipe.send_all(&statuses, VERIFY_CHUNK);
    let mut failures = Vec::new();
    let mut max_seen = max_fence_before;
    let mut all = all;
    // Cut-off commands found done and not done.
    let (mut done, mut not_done, mut live) = (0, 0, 0);
    for (m, reply) in all.iter_mut().zip(&replies) {
        let s = Status::parse(reply);
        max_seen = max_seen.max(s.fence);
        let found = std::iter::once(&m.state)
            .chain(m.pending.as_ref())
            .find(|k| k.shown_by(&s))
            .cloned();
        match found {
            Some(k) => {
                if let Some(p) = &m.pending {
                    if *p == k {
                        done += 1;
                    } else {
                        not_done += 1;
                    }
                }
                m.state = k.with_fence(&s);
                m.pending = None;
            }
            None => failures.push(format!(
                "{}: acknowledged {:?}, cut off {:?}, but after the restart {:?}",
                m.id, m.state, m.pending, s
            )),
        }
        live += usize::from(m.state != Known::Free);
    }
    assert!(
        failures.is_empty(),
        "run {run}: {} ids lost their acknowledged state after kill -9:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Nothing else came back: the server holds exactly the ids the clients hold.
    let dbsize = pipe.call(&["DBSIZE"]);
    assert_eq!(
        dbsize,
        Resp::Int(live as i64),
        "run {run}: DBSIZE after the restart"
    );

    // Prove it with commands: keys still work, free ids can be locked, completed ids stay
    // completed, fingerprints are still there.
    let mut plan: Vec<(usize, Cmd, Expect)> = Vec::new();
    for (i, m) in all.iter().enumerate() {
        let id = m.id.as_str();
        let probe = |plan: &mut Vec<(usize, Cmd, Expect)>, base: &'static str| match m.state.fp() {
            Some(_) => plan.push((
                i,
                cmd(&["LOCK", id, "FINGERPRINT", "not-the-fingerprint"]),
                Expect::Code("MISMATCH"),
            )),
            None => plan.push((i, cmd(&["LOCK", id]), Expect::Code(base))),
        };
        match &m.state {
            Known::Free => plan.push((i, cmd(&["LOCK", id, "WITHFENCE"]), Expect::Grant)),
            Known::Locked { key, lease, fp, .. } => {
                probe(&mut plan, "LOCKED");
                plan.push((i, cmd(&["UNLOCK", id, key]), Expect::Ok));
                let mut relock = cmd(&["LOCK", id, "WITHFENCE"]);
                if *lease {
                    relock.extend(cmd(&["PX", &LEASE_MS.to_string()]));
                }
                if let Some(fp) = fp {
                    relock.extend(cmd(&["FINGERPRINT", fp]));
                }
                plan.push((i, relock, Expect::Grant));
            }
            Known::Completed { key, .. } => {
                probe(&mut plan, "COMPLETED");
                plan.push((i, cmd(&["COMPLETE", id, key]), Expect::Ok));
            }
            Known::LockedUnknown { .. } => {
                probe(&mut plan, "LOCKED");
                plan.push((i, cmd(&["UNLOCK", id, FOREIGN_KEY]), Expect::Code("BADKEY")));
            }
        }
    }
    let cmds: Vec<Cmd> = plan.iter().map(|(_, c, _)| c.clone()).collect();
    let replies = pipe.send_all(&cmds, VERIFY_CHUNK);
    let mut new_fences = HashSet::new();
    let mut unlock_again = Vec::new();
    for ((i, c, expect), reply) in plan.iter().zip(&replies) {
        let m = &mut all[*i];
        let what = || {
            format!(
                "run {run}: {} in state {:?}: {:?} got {reply:?}",
                m.id,
                m.state,
                c.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
            )
        };
        match expect {
            Expect::Ok => assert!(reply.is_ok(), "{}", what()),
            Expect::Code(code) => assert_eq!(reply.error_code(), Some(*code), "{}", what()),
            Expect::Grant => {
                let Some((key, Some(fence))) = reply.key_and_fence() else {
                    panic!("{}", what());
                };
                assert!(
                    fence > max_seen,
                    "{}: fence {fence} after the restart is not above {max_seen}, the highest seen before",
                    what()
                );
                assert!(
                    new_fences.insert(fence),
                    "{}: fence {fence} issued twice",
                    what()
                );
                match &mut m.state {
                    Known::Free => unlock_again.push(cmd(&["UNLOCK", &m.id, &key])),
                    Known::Locked {
                        key: k, fence: f, ..
                    } => {
                        *k = key;
                        *f = Some(fence);
                    }
                    other => panic!("granted in state {other:?}"),
                }
            }
        }
    }
    // Ids that were free stay free.
    for reply in pipe.send_all(&unlock_again, VERIFY_CHUNK) {
        assert!(
            reply.is_ok(),
            "run {run}: UNLOCK after the test LOCK: {reply:?}"
        );
    }
    eprintln!(
        "run {run}: {} ids checked, {live} held, cut-off commands: {done} done, {not_done} not done; {} new fences above {max_seen}",
        all.len(),
        new_fences.len()
    );
    new_fences.into_iter().max().unwrap_or(0).max(max_seen)
}

#[test]
fn acknowledged_operations_survive_kill_9_across_shard_counts() {
    let seed = Rng::seed("crash");
    let mut rng = Rng::new(seed);
    let dir = DataDir::new();
    let mut models: Vec<Vec<IdModel>> = (0..THREADS)
        .map(|t| {
            (0..IDS_PER_THREAD)
                .map(|i| IdModel {
                    id: format!("crash:{t}:{i}"),
                    state: Known::Free,
                    pending: None,
                })
                .collect()
        })
        .collect();
    let mut max_fence = 0u64;
    let mut server = Server::start_in(&dir.path, &["--shards", SHARDS[0]]);
    for run in 0..SHARDS.len() - 1 {
        let batches = Arc::new(AtomicUsize::new(0));
        let addr = server.resp_addr;
        let handles: Vec<_> = std::mem::take(&mut models)
            .into_iter()
            .enumerate()
            .map(|(t, chunk)| {
                let batches = Arc::clone(&batches);
                let seed = seed ^ ((run * THREADS + t) as u64).wrapping_mul(0x9e37_79b9);
                thread::spawn(move || client(addr, chunk, seed, &batches))
            })
            .collect();
        // Kill at a random moment once every client is under way.
        let started = Instant::now();
        while batches.load(Ordering::Relaxed) < THREADS * 2 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the clients made no progress"
            );
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(rng.range(100, 700)));
        server.assert_running();
        server.kill_hard();
        let (mut acked, mut cut_off) = (0, 0);
        for h in handles {
            let out = h.join().expect("client thread panicked");
            acked += out.acked;
            cut_off += out.cut_off;
            max_fence = max_fence.max(out.max_fence);
            models.push(out.models);
        }
        eprintln!(
            "run {run} (--shards {}): killed after {acked} acknowledged commands, {cut_off} cut off",
            SHARDS[run]
        );
        assert!(acked >= THREADS * BATCH, "too little work before the kill");

        server = Server::start_in(&dir.path, &["--shards", SHARDS[run + 1]]);
        max_fence = verify(&server, &mut models, max_fence, run);
    }
    let status = server.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit status {status}");
}
