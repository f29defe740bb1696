//! Lock table operations per op: LOCK of a fresh id, COMPLETE, a refused LOCK, LOCK with a lease.

use std::hint::black_box;
use std::sync::atomic::AtomicU64;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use token_server::keys::KeyGenerator;
use token_server::table::{ApplyCtx, Complete, Lock, Op, Outcome};
use token_server::table::{Delivery, LockTable, Policy};
use token_server::types::{LogRecord, Origin};

struct Harness {
    table: LockTable,
    keys: KeyGenerator,
    fences: AtomicU64,
    records: Vec<LogRecord>,
    deliveries: Vec<Delivery>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            table: LockTable::new(Policy {
                max_waiters: 1024,
                ..Policy::default()
            }),
            keys: KeyGenerator::from_os().expect("OS entropy"),
            fences: AtomicU64::new(0),
            records: Vec::new(),
            deliveries: Vec::new(),
        }
    }

    fn run(&mut self, cmd: Op) -> Outcome {
        let mut ctx = ApplyCtx {
            now_ms: 1_000_000,
            keys: &mut self.keys,
            fences: &self.fences,
            origin: Origin::Nobody,
            records: &mut self.records,
            deliveries: &mut self.deliveries,
        };
        let reply = self.table.apply(cmd, &mut ctx);
        // The loop hands records to the log and commits once per iteration.
        self.records.clear();
        self.table.commit();
        reply
    }
}

fn id(i: u64) -> Box<[u8]> {
    format!("order-{i:06}").into_bytes().into()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("table");
    g.bench_function("lock_fresh_id", |b| {
        let mut h = Harness::new();
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(h.run(Op::Lock(Lock::new(id(i)))))
        })
    });
    g.bench_function("lock_refused", |b| {
        let mut h = Harness::new();
        h.run(Op::Lock(Lock::new(id(1))));
        b.iter(|| black_box(h.run(Op::Lock(Lock::new(id(1))))))
    });
    g.bench_function("lock_with_lease", |b| {
        let mut h = Harness::new();
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let cmd = Lock {
                lease_ms: Some(30_000),
                ..Lock::new(id(i))
            };
            black_box(h.run(Op::Lock(cmd)))
        })
    });
    g.bench_function("complete", |b| {
        b.iter_batched(
            || {
                let mut h = Harness::new();
                let mut keys = Vec::with_capacity(1000);
                for i in 0..1000 {
                    if let Outcome::Granted { key: k, .. } = h.run(Op::Lock(Lock::new(id(i)))) {
                        keys.push((i, k));
                    }
                }
                (h, keys)
            },
            |(mut h, keys)| {
                for (i, k) in keys {
                    let cmd = Complete {
                        id: id(i),
                        key: Some(k),
                        result: None,
                    };
                    black_box(h.run(Op::Complete(cmd)));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
