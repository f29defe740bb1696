//! Crashes and faults at every step of a run that rewrites its log: whatever happens, recovery
//! gives exactly the acknowledged state, or that state plus part of a batch whose flush failed
//! last (its outcome was reported as unknown).

use super::super::storage::CrashTail;
use super::*;

/// A deterministic mix of locks, renews, completes and unlocks over a few ids.
fn workload(n: usize) -> Vec<LogRecord> {
    let mut model = Model::default();
    let mut out = Vec::with_capacity(n);
    let mut fence = 0;
    let mut i = 0usize;
    while out.len() < n {
        let id = format!("job-{}", (i * 7) % 13).into_bytes();
        i += 1;
        let rec = match model.ids.get(&id) {
            None => {
                fence += 1;
                lock(&id, fence, 1_000 + i as u64)
            }
            Some(LogRecord::Lock { fence: f, .. }) => match i % 3 {
                0 => renew(&id, 5_000 + i as u64),
                1 => complete(&id, *f, Some(format!("r{i}").as_bytes())),
                _ => unlock(&id),
            },
            Some(_) => continue,
        };
        model.apply(&rec);
        out.push(rec);
    }
    out
}

/// What a scenario committed, and the batches whose flush failed.
#[derive(Default)]
struct Outcome {
    /// The state recovered at the start of the run.
    base: Model,
    /// Records of batches whose `flush(true)` succeeded, in order: all acknowledged.
    committed: Vec<LogRecord>,
    /// Failed batches, each with the number of committed records before it. The table took
    /// them back, but they may have reached the file.
    failed: Vec<(usize, Vec<LogRecord>)>,
}

/// The loop's behaviour, in miniature: batches of appends, each committed with
/// `flush(true)` or taken back from the table if that fails; a rewrite begun mid-way (with a
/// batch still buffered) with more batches while it runs; after a failed flush, a rewrite
/// from the table. Stops at the first error once the disk has crashed.
///
/// `catch_up` is the rewrite's catch-up size: 0 copies kept records in background rounds
/// whenever there are any, `usize::MAX` leaves them all to the switch.
fn scenario(
    storage: &Arc<dyn Storage>,
    disk: &FaultyStorage,
    records: &[LogRecord],
    catch_up: usize,
) -> Outcome {
    let mut out = Outcome::default();
    let Ok(recovered) = recover(&**storage, &dir(), false) else {
        return out;
    };
    let epoch = recovered.epoch;
    for live in recovered.live {
        out.base.apply(&live.record);
    }
    let Ok(mut log) = ShardLog::open(Arc::clone(storage), &dir(), 0, epoch) else {
        return out;
    };
    log.set_catch_up_bytes(catch_up);
    // The table: the recovered state, committed records, and the batch being built.
    let mut table = out.base.clone();
    let batches: Vec<&[LogRecord]> = records.chunks(4).collect();
    for (n, batch) in batches.iter().enumerate() {
        for rec in *batch {
            log.append(rec);
            table.apply(rec);
        }
        let rewrite_now = n == 3 || (log.is_failed() && !log.rewrite_in_progress());
        if rewrite_now {
            let snapshot = encode_snapshot(table.shard(0, 1), 0, 1, epoch, table.max_fence);
            if log.begin_rewrite(snapshot).is_err() && disk.is_crashed() {
                break;
            }
        }
        if log.flush(true).is_ok() {
            out.committed.extend_from_slice(batch);
        } else {
            out.failed.push((out.committed.len(), batch.to_vec()));
            table = out.after_committed();
            if disk.is_crashed() {
                break;
            }
        }
        if n == 5 || n == batches.len() - 1 {
            let _ = finish_rewrite_if_running(&mut log);
        } else if let Some(Err(_)) = log.poll_rewrite()
            && disk.is_crashed()
        {
            break;
        }
    }
    // Never leave the rewrite thread running past the crash.
    let _ = finish_rewrite_if_running(&mut log);
    out
}

impl Outcome {
    fn after_committed(&self) -> Model {
        let mut m = self.base.clone();
        self.committed.iter().for_each(|r| m.apply(r));
        m
    }
}

fn finish_rewrite_if_running(log: &mut ShardLog) -> Option<std::io::Result<()>> {
    log.rewrite_in_progress()
        .then(|| finish_rewrite(log).map(|_| ()))
}

/// Recovery must succeed and give exactly the committed state, or that state followed by a
/// prefix of a batch that failed after the last commit (it may have reached the file).
fn check(disk: &FaultyStorage, out: &Outcome, what: &str) {
    let recovered = match recover(disk, &dir(), false) {
        Ok(r) => r,
        Err(e) => panic!("{what}: recovery failed: {e}"),
    };
    let state = state_of(&recovered);
    let committed = out.after_committed();
    let limbo = out
        .failed
        .iter()
        .filter(|(before, _)| *before == out.committed.len())
        .any(|(_, batch)| {
            (0..=batch.len()).any(|k| {
                let mut m = committed.clone();
                batch[..k].iter().for_each(|r| m.apply(r));
                m.ids == state
            })
        });
    assert!(
        committed.ids == state || limbo,
        "{what}: recovered state is not the committed one ({} records, {} failed batches)",
        out.committed.len(),
        out.failed.len()
    );
    assert!(
        recovered.max_fence >= committed.max_fence,
        "{what}: fence went back"
    );
}

/// Ops of one clean run of the scenario, to bound the crash points.
fn clean_ops(records: &[LogRecord], catch_up: usize) -> u64 {
    let (disk, shared) = disk();
    let out = scenario(&shared, &disk, records, catch_up);
    assert_eq!(out.committed.len(), records.len());
    disk.crash(CrashTail::Drop);
    check(&disk, &out, "clean run");
    disk.ops()
}

#[test]
fn crash_at_every_operation_of_a_run_with_a_rewrite() {
    let records = workload(40);
    for catch_up in [usize::MAX, 0] {
        crash_at_every_operation(&records, catch_up);
    }
}

fn crash_at_every_operation(records: &[LogRecord], catch_up: usize) {
    // Background rounds start when polls find a write done, so the number of storage
    // operations varies a little from run to run: crash points past the end are clean runs.
    let total = clean_ops(records, catch_up) + 8;
    for point in 1..=total + 1 {
        for tail in [
            CrashTail::Drop,
            CrashTail::Keep(5),
            CrashTail::Keep(usize::MAX),
            CrashTail::Zeros(usize::MAX),
        ] {
            let (disk, shared) = disk();
            disk.crash_at(point);
            let out = scenario(&shared, &disk, records, catch_up);
            disk.crash(tail);
            check(
                &disk,
                &out,
                &format!("crash at op {point}, {tail:?}, catch-up {catch_up}"),
            );
            // And the next run starts from there without losing anything either.
            let again = scenario(&shared, &disk, records, catch_up);
            disk.crash(CrashTail::Drop);
            assert_eq!(again.committed.len(), records.len());
            check(&disk, &again, &format!("run after crash at op {point}"));
        }
    }
}

#[test]
fn failed_writes_and_syncs_at_every_step_then_a_crash() {
    let records = workload(40);
    for catch_up in [usize::MAX, 0] {
        faults_at_every_step(&records, catch_up);
    }
}

fn faults_at_every_step(records: &[LogRecord], catch_up: usize) {
    let total = clean_ops(records, catch_up) + 8;
    for nth in 1..=total {
        for fault in 0..3 {
            for tail in [CrashTail::Drop, CrashTail::Keep(usize::MAX)] {
                let (disk, shared) = disk();
                match fault {
                    0 => disk.fail_write(nth, 0),
                    1 => disk.fail_write(nth, 7),
                    _ => disk.fail_sync(nth),
                }
                let out = scenario(&shared, &disk, records, catch_up);
                disk.crash(tail);
                check(
                    &disk,
                    &out,
                    &format!("fault {fault} at {nth}, {tail:?}, catch-up {catch_up}"),
                );
            }
        }
    }
}
