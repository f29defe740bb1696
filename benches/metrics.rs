//! What measuring a command costs the shard that runs it: the clock read that ends its lap,
//! the outcome and latency cells, and the slow log's copy of the id (see
//! `src/shard/event_loop/observe.rs`). Compare with `table/*` for the command itself.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use token_server::command::CommandKind;
use token_server::metrics::commands::{CommandStats, Outcome};
use token_server::metrics::slowlog::Capture;
use token_server::table::{self, Lock, Op};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics");
    g.bench_function("clock_read", |b| b.iter(|| black_box(Instant::now())));
    let stats = CommandStats::default();
    let row = CommandKind::Lock.index();
    g.bench_function("record_outcome_and_latency", |b| {
        b.iter(|| {
            let outcome = Outcome::of(black_box(&table::Outcome::Done));
            stats.record(
                black_box(row),
                outcome,
                black_box(Duration::from_nanos(900)),
            );
        })
    });
    let cmd = Op::Lock(Lock::new(b"order-1234567890"[..].into()));
    g.bench_function("slowlog_capture", |b| {
        b.iter(|| {
            let capture = Capture::of(black_box(&cmd));
            black_box(&capture);
        })
    });
    let mut mark = Instant::now();
    g.bench_function("whole_per_command_cost", |b| {
        b.iter(|| {
            let capture = Capture::of(black_box(&cmd));
            let now = Instant::now();
            let lap = now.saturating_duration_since(mark);
            mark = now;
            stats.record(row, Outcome::of(black_box(&table::Outcome::Done)), lap);
            black_box(&capture);
            black_box(lap.as_micros() >= 10_000)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
