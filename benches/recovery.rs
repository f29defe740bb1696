//! Start-up recovery time: replaying the logs of N records spread over 4 shards, from the real
//! filesystem (so the page cache is warm after the first pass).
//!
//! N defaults to 1,000,000; `RECOVERY_BENCH_RECORDS=10000000 cargo bench --bench recovery`
//! gives the ten-million-record figure. The mix is 70% locks of new ids, 10% each of
//! completes, unlocks and renews, so about 60% of the ids are live at the end.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use token_server::log::{FsStorage, ShardLog, Storage, recover};
use token_server::types::LogRecord;
use token_server::types::{shard_for, shard_of_slot};

const SHARDS: usize = 4;

fn records() -> usize {
    std::env::var("RECOVERY_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn id(i: usize) -> Box<[u8]> {
    format!("order-{i:012}:email").into_bytes().into()
}

fn record(i: usize) -> LogRecord {
    let fence = i as u64 + 1;
    let key = [(i % 251) as u8; 16];
    match i % 10 {
        7 => LogRecord::Complete {
            id: id(i - 7),
            key,
            fence,
            at_ms: 1_700_000_000_000,
            fingerprint: None,
            result: Some(b"{\"status\":\"sent\"}".as_slice().into()),
        },
        8 => LogRecord::Unlock { id: id(i - 7) },
        9 => LogRecord::Renew {
            id: id(i - 7),
            deadline_ms: 1_700_000_060_000,
        },
        _ => LogRecord::Lock {
            id: id(i),
            key,
            fence,
            deadline_ms: 1_700_000_030_000,
            fingerprint: None,
        },
    }
}

fn write_logs(dir: &Path, n: usize) {
    let storage: Arc<dyn Storage> = Arc::new(FsStorage);
    let mut logs: Vec<ShardLog> = (0..SHARDS)
        .map(|s| ShardLog::open(Arc::clone(&storage), dir, s, 1).expect("open log"))
        .collect();
    for i in 0..n {
        let rec = record(i);
        let shard = rec.id().map_or(0, |id| shard_for(id, SHARDS));
        logs[shard].append(&rec);
        if i % 65_536 == 0 {
            logs.iter_mut()
                .try_for_each(|l| l.flush(false))
                .expect("write");
        }
    }
    logs.iter_mut()
        .try_for_each(|l| l.flush(true))
        .expect("write");
}

fn bench_recovery(c: &mut Criterion) {
    let n = records();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ts-bench-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_logs(&dir, n);
    let mut group = c.benchmark_group("recovery");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function(format!("{n}_records_{SHARDS}_shards"), |b| {
        b.iter_with_large_drop(|| {
            // Replay, then route every live id to its shard, as the server's start does.
            let recovered = recover(&FsStorage, black_box(&dir), false).expect("recover");
            assert_eq!(recovered.report.records as usize, n + SHARDS);
            let mut shards: Vec<Vec<LogRecord>> = (0..SHARDS).map(|_| Vec::new()).collect();
            for live in recovered.live {
                shards[shard_of_slot(live.hash_slot, SHARDS)].push(live.record);
            }
            shards
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_recovery);
criterion_main!(benches);
