//! RESP decode, decode + dispatch, and reply encode: the per-command protocol work.
//!
//! The decoder is compared with `redis-protocol`'s zero-copy `decode_range` on the same input,
//! and the encoder with its `extend_encode`; docs/performance.md records the figures.

use std::hint::black_box;
use std::sync::atomic::AtomicU64;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis_protocol::resp2::{decode::decode_range, encode::extend_encode, types::BytesFrame};
use token_server::command::{CommandLimits, lookup};
use token_server::keys::KeyGenerator;
use token_server::protocol::{Decoded, Limits, Protocol, Reply, RequestDecoder};
use token_server::table::{ApplyCtx, LockTable, Policy};
use token_server::types::{Origin, hex_key};

const PIPELINE: usize = 16;

fn pipeline() -> Vec<u8> {
    let mut buf = Vec::new();
    for i in 0..PIPELINE {
        let id = format!("order-{i:06}");
        buf.extend_from_slice(format!("*2\r\n$4\r\nLOCK\r\n${}\r\n{id}\r\n", id.len()).as_bytes());
    }
    buf
}

fn decode(c: &mut Criterion) {
    let input = pipeline();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("ours/lock_x16", |b| {
        let mut d = RequestDecoder::new(Limits::default());
        b.iter(|| {
            let mut pos = 0;
            while let Decoded::Request { consumed } = d.decode(&input[pos..]) {
                black_box(d.view(&input[pos..]).get(1));
                pos += consumed;
            }
            pos
        })
    });
    g.bench_function("redis-protocol/lock_x16", |b| {
        b.iter(|| {
            let mut pos = 0;
            while let Ok(Some((frame, consumed))) = decode_range(&input[pos..]) {
                black_box(frame);
                pos += consumed;
            }
            pos
        })
    });
    g.finish();
}

fn dispatch(c: &mut Criterion) {
    let input = pipeline();
    let mut g = c.benchmark_group("decode_dispatch");
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("lock_x16", |b| {
        let mut d = RequestDecoder::new(Limits::default());
        let mut table = LockTable::new(Policy {
            max_waiters: 1024,
            ..Policy::default()
        });
        let mut keys = KeyGenerator::from_os().expect("OS entropy");
        let fences = AtomicU64::new(0);
        let mut records = Vec::new();
        let mut deliveries = Vec::new();
        let limits = CommandLimits::default();
        let mut out = Vec::new();
        b.iter(|| {
            let mut pos = 0;
            out.clear();
            while let Decoded::Request { consumed } = d.decode(&input[pos..]) {
                let args = d.view(&input[pos..]);
                let spec = lookup(args.get(0).unwrap_or_default()).expect("LOCK is known");
                assert!(spec.arity_ok(args.len()));
                if let Some(Ok(op)) = token_server::command::parse(spec, &args, &limits) {
                    let mut ctx = ApplyCtx {
                        now_ms: 1_000_000,
                        keys: &mut keys,
                        fences: &fences,
                        origin: Origin::Nobody,
                        records: &mut records,
                        deliveries: &mut deliveries,
                    };
                    if let Some(reply) = token_server::command::reply(table.apply(op, &mut ctx)) {
                        reply.encode(Protocol::Resp2, &mut out);
                    }
                }
                pos += consumed;
            }
            // Every id is locked after the first pass; later passes measure the refusal path
            // plus the full decode, lookup, parse and encode.
            records.clear();
            table.commit();
            black_box(out.len())
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let key = [0x5a; 16];
    let mut g = c.benchmark_group("encode");
    g.bench_function("ours/key", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            out.clear();
            Reply::Key(black_box(key)).encode(Protocol::Resp2, &mut out);
            out.len()
        })
    });
    g.bench_function("redis-protocol/key", |b| {
        let mut out = BytesMut::with_capacity(64);
        b.iter(|| {
            out.clear();
            let frame = BytesFrame::BulkString(Bytes::copy_from_slice(&hex_key(&black_box(key))));
            extend_encode(&mut out, &frame, false).map(|_| out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, decode, dispatch, encode);
criterion_main!(benches);
