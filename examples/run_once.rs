//! Run a job exactly once with token-server and the `redis` crate: the worker pattern of
//! docs/RUN_ONCE.md as a helper you can copy.
//!
//! `run_once(id, work)`:
//! 1. `LOCK id PX lease WAIT wait KEY k WITHFENCE`: take the id with a lease under this
//!    attempt's own random key `k`; if someone holds it, queue for it; if it is completed,
//!    return its stored result instead of working.
//! 2. Run `work(fence)` while a second connection `RENEW`s the lease every third of it.
//! 3. `COMPLETE id key RESULT r` on success; `UNLOCK id key` on failure, so a retry can run.
//!
//! Every command is retried when its reply is lost (the connection drops) or refused
//! (`-TRYAGAIN`, `-IOERR`), on a fresh connection: COMPLETE, RENEW and UNLOCK are idempotent
//! for their key, and a LOCK sent again with the same `KEY` while the id is held under it gets
//! the same key and fence. So a job runs once even when the network or the server misbehaves
//! (`token-server --chaos-rate 0.3` shows it).
//!
//! ```text
//! cargo run --example run_once -- redis://127.0.0.1:6409/ 5
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError, Value};

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This call ran the work and completed the id with this result.
    Done(String),
    /// The id was completed before (by this or another worker): its stored result.
    AlreadyDone(Option<String>),
}

/// Why a job did not end.
#[derive(Debug)]
pub enum Failure {
    /// The work failed; the id was unlocked so a later call can retry it.
    Work(String),
    /// The lease ran out while working (someone else may be doing the job now): the result
    /// was not stored. Downstream writes must check the fence.
    LeaseLost,
    /// The id was locked with a different fingerprint, or the server said something else
    /// this helper does not expect.
    Refused(String),
    /// No usable reply within the retry budget.
    Unavailable(String),
}

/// Settings of a worker.
#[derive(Clone, Debug)]
pub struct Worker {
    client: Client,
    /// The lease taken with each LOCK, in milliseconds.
    pub lease_ms: u64,
    /// How long one LOCK queues for a held id, in milliseconds.
    pub wait_ms: u64,
    /// How long a call keeps retrying in all.
    pub patience: Duration,
}

/// A server error's code (`LOCKED`, `TRYAGAIN`, ...), or `None` for a lost reply.
fn code(e: &RedisError) -> Option<String> {
    e.code().map(str::to_string)
}

impl Worker {
    /// A worker for the server at `url` (`redis://host:port/`).
    pub fn new(url: &str) -> redis::RedisResult<Worker> {
        Ok(Worker {
            client: Client::open(url)?,
            lease_ms: 30_000,
            wait_ms: 10_000,
            patience: Duration::from_secs(120),
        })
    }

    fn connect(&self) -> redis::RedisResult<Connection> {
        let con = self
            .client
            .get_connection_with_timeout(Duration::from_secs(5))?;
        con.set_read_timeout(Some(Duration::from_millis(self.wait_ms + 5_000)))?;
        Ok(con)
    }

    /// Sends `cmd`, retrying on a fresh connection while the reply is lost or the server
    /// asks for a retry (`TRYAGAIN`, `IOERR`). Other server errors are returned.
    fn call(&self, con: &mut Option<Connection>, cmd: &redis::Cmd) -> Result<Value, RedisError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let result = match con.as_mut() {
                Some(c) => cmd.query::<Value>(c),
                None => match self.connect() {
                    Ok(c) => cmd.query::<Value>(con.insert(c)),
                    Err(e) => Err(e),
                },
            };
            let retry = match &result {
                Ok(_) => false,
                Err(e) => match code(e).as_deref() {
                    None => {
                        *con = None; // The connection is gone: the reply was lost.
                        true
                    }
                    Some("TRYAGAIN" | "IOERR") => true,
                    Some(_) => false,
                },
            };
            if !retry || started.elapsed() > self.patience {
                return result;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Runs `work` once for `id`, however many workers and retries there are. `work` gets
    /// the fencing token of this grant (pass it to downstream writes).
    pub fn run_once(
        &self,
        id: &str,
        work: impl FnOnce(u64) -> Result<String, String>,
    ) -> Result<Outcome, Failure> {
        let mut con = None;
        let started = Instant::now();
        // 1. Take the id, under a key of this attempt's own: a LOCK whose reply was lost is
        // simply sent again (`call` does), and gets the same key and fence.
        let mine = format!("{:032x}", rand::random::<u128>());
        let (key, fence) = loop {
            let lock = redis::cmd("LOCK")
                .arg(id)
                .arg("PX")
                .arg(self.lease_ms)
                .arg("WAIT")
                .arg(self.wait_ms)
                .arg("KEY")
                .arg(&mine)
                .arg("WITHFENCE")
                .clone();
            match self.call(&mut con, &lock) {
                Ok(Value::Array(v)) => match v.as_slice() {
                    [Value::BulkString(k), Value::Int(f)] => {
                        break (String::from_utf8_lossy(k).into_owned(), *f as u64);
                    }
                    other => return Err(Failure::Refused(format!("LOCK replied {other:?}"))),
                },
                Ok(other) => return Err(Failure::Refused(format!("LOCK replied {other:?}"))),
                Err(e) => match code(&e).as_deref() {
                    Some("COMPLETED") => return Ok(Outcome::AlreadyDone(self.result(id))),
                    // Held by someone else (the wait ran out): queue again.
                    Some("LOCKED") if started.elapsed() < self.patience => continue,
                    Some(_) => return Err(Failure::Refused(e.to_string())),
                    None => return Err(Failure::Unavailable(e.to_string())),
                },
            }
        };
        // 2. Work, renewing the lease meanwhile.
        let lost = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        let outcome = thread::scope(|s| {
            s.spawn(|| self.renew_until(id, &key, &done, &lost));
            let outcome = work(fence);
            done.store(true, Ordering::Relaxed);
            outcome
        });
        // 3. Complete, or unlock so that a retry can run.
        match outcome {
            Err(reason) => {
                let unlock = redis::cmd("UNLOCK").arg(id).arg(&key).clone();
                // NOTLOCKED or BADKEY after a lost reply mean the unlock happened already.
                let _ = self.call(&mut con, &unlock);
                Err(Failure::Work(reason))
            }
            Ok(_) if lost.load(Ordering::Relaxed) => Err(Failure::LeaseLost),
            Ok(result) => {
                let complete = redis::cmd("COMPLETE")
                    .arg(id)
                    .arg(&key)
                    .arg("RESULT")
                    .arg(&result)
                    .clone();
                match self.call(&mut con, &complete) {
                    Ok(_) => Ok(Outcome::Done(result)),
                    Err(e) => match code(&e).as_deref() {
                        Some("COMPLETED") => Ok(Outcome::AlreadyDone(self.result(id))),
                        Some("NOTLOCKED" | "BADKEY") => Err(Failure::LeaseLost),
                        Some(_) => Err(Failure::Refused(e.to_string())),
                        None => Err(Failure::Unavailable(e.to_string())),
                    },
                }
            }
        }
    }

    /// Renews the lease every third of it until `done`; sets `lost` if it ran out.
    fn renew_until(&self, id: &str, key: &str, done: &AtomicBool, lost: &AtomicBool) {
        let mut con = None;
        let every = Duration::from_millis(self.lease_ms / 3);
        let mut last = Instant::now();
        while !done.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(5).min(every));
            if last.elapsed() < every {
                continue;
            }
            last = Instant::now();
            let renew = redis::cmd("RENEW")
                .arg(id)
                .arg(key)
                .arg("PX")
                .arg(self.lease_ms)
                .clone();
            if let Err(e) = self.call(&mut con, &renew)
                && code(&e).is_some()
            {
                lost.store(true, Ordering::Relaxed); // NOTLOCKED or BADKEY: stop working.
                return;
            }
        }
    }

    /// The result stored with a completed id (`STATUS id`).
    fn result(&self, id: &str) -> Option<String> {
        let mut con = None;
        // A map in RESP3; alternating names and values in RESP2.
        let pairs: Vec<(Value, Value)> = match self.call(&mut con, redis::cmd("STATUS").arg(id)) {
            Ok(Value::Map(fields)) => fields,
            Ok(Value::Array(flat)) => {
                let mut it = flat.into_iter();
                std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
            }
            _ => return None,
        };
        pairs.into_iter().find_map(|(k, v)| match (k, v) {
            (Value::BulkString(k), Value::BulkString(r)) if k == b"result" => {
                Some(String::from_utf8_lossy(&r).into_owned())
            }
            _ => None,
        })
    }
}

/// Runs `jobs` example jobs against the server at `url` twice over: the first pass does the
/// work, the second finds every job done. Prints one line per job.
pub fn run(url: &str, jobs: usize) -> Result<(), String> {
    let mut worker = Worker::new(url).map_err(|e| e.to_string())?;
    // These jobs take no time, so a short lease will do. Real jobs want a lease well above
    // their running time (the default, 30 s).
    worker.lease_ms = 2_000;
    worker.wait_ms = 5_000;
    for pass in 1..=2 {
        for n in 0..jobs {
            let id = format!("example-job-{n}");
            let outcome = worker
                .run_once(&id, |fence| Ok(format!("sent email {n} (fence {fence})")))
                .map_err(|f| format!("{id}: {f:?}"))?;
            println!("pass {pass} {id}: {outcome:?}");
        }
    }
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6409/".to_string());
    let jobs = args.next().and_then(|n| n.parse().ok()).unwrap_or(3);
    if let Err(e) = run(&url, jobs) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
