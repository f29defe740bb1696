//! Restarts with another shard count: ids move between files, and epochs (and rewritten
//! files' headers) decide which record wins.

use super::super::codec::decode_body;
use super::super::format::{FRAME_HEADER_LEN, FileHeader};
use super::super::replay::Replay;
use super::*;

fn ids_on(shard: usize, shards: usize, n: usize) -> Vec<Vec<u8>> {
    (0..)
        .map(|i| format!("task-{i}").into_bytes())
        .filter(|id| shard_for(id, shards) == shard)
        .take(n)
        .collect()
}

#[test]
fn one_to_two_to_one_shards() {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let ids: Vec<Vec<u8>> = (0..60).map(|i| format!("r{i}").into_bytes()).collect();
    let mut fence = 0;

    // Run 1: one shard.
    let mut run = Run::start(&shared, 1, &model);
    assert_eq!(run.epoch, 1);
    for id in &ids {
        fence += 1;
        run.commit(&mut model, lock(id, fence, 1_000));
    }
    for id in ids.iter().step_by(7) {
        run.commit(&mut model, renew(id, 2_000));
    }
    drop(run);

    // Run 2: two shards; every kind of change lands in the id's new owner's file.
    let mut run = Run::start(&shared, 2, &model);
    assert_eq!(run.epoch, 2);
    for (i, id) in ids.iter().enumerate() {
        match i % 5 {
            0 => run.commit(&mut model, unlock(id)),
            1 => run.commit(&mut model, renew(id, 3_000)),
            2 => {
                let done = complete(id, fence_of(&model, id), Some(b"done"));
                run.commit(&mut model, done);
            }
            3 => {
                run.commit(&mut model, unlock(id));
                fence += 1;
                run.commit(&mut model, lock(id, fence, 4_000));
            }
            _ => {}
        }
    }
    // Shard 1's rewrite drops its tombstones; the old locks in shard 0's file must stay dead.
    run.rewrite(1, &model);
    drop(run);

    // Run 3: back to one shard (shard 1's file is still read).
    let mut run = Run::start(&shared, 1, &model);
    assert_eq!(run.epoch, 3);
    for (i, id) in ids.iter().enumerate() {
        match i % 5 {
            1 => run.commit(&mut model, renew(id, 5_000)),
            4 if i % 2 == 0 => run.commit(&mut model, unlock(id)),
            _ => {}
        }
    }
    drop(run);

    // Run 4: two shards again, then one, then three after a full rewrite.
    let mut run = Run::start(&shared, 2, &model);
    for id in ids.iter().skip(3).step_by(5) {
        run.commit(&mut model, renew(id, 6_000));
    }
    drop(run);
    let mut run = Run::start(&shared, 1, &model);
    run.rewrite(0, &model);
    drop(run);
    let run = Run::start(&shared, 3, &model);
    assert_eq!(run.epoch, 6);
    drop(run);
    let r = recover_ok(&disk);
    assert_eq!(r.max_fence, fence);
    assert_eq!(r.report.files, 3);
}

fn fence_of(model: &Model, id: &[u8]) -> u64 {
    match model.ids.get(id) {
        Some(LogRecord::Lock { fence, .. }) => *fence,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rewritten_shard_supersedes_stale_records_in_other_files() {
    let (_, shared) = disk();
    let mut model = Model::default();
    let moved = ids_on(1, 2, 3);
    let mut run = Run::start(&shared, 1, &model);
    for (i, id) in moved.iter().enumerate() {
        run.commit(&mut model, lock(id, i as u64 + 1, 10));
    }
    drop(run);
    let mut run = Run::start(&shared, 2, &model);
    run.commit(&mut model, unlock(&moved[0]));
    run.rewrite(1, &model);
    drop(run);
    // Shard 0's file still holds the epoch-1 lock of moved[0]; the rewritten shard 1 file
    // (which has no record of it) must keep it dead, whatever the shard count.
    Run::start(&shared, 1, &model);
    Run::start(&shared, 2, &model);
    Run::start(&shared, 3, &model);
}

/// Applies one file's records (given as whole LogRecords) to a replay.
fn apply_file(replay: &mut Replay, records: &[LogRecord]) {
    let mut epoch = 0;
    for rec in records {
        let frame = rec.encode();
        let view = decode_body(&frame[FRAME_HEADER_LEN..]).unwrap();
        if let LogRecord::Epoch { epoch: e } = rec {
            epoch = *e;
        }
        replay.apply(&view, epoch);
    }
}

/// Replays `files` in the given order and in reverse; both must give `want`.
fn replay_both_ways(headers: &[FileHeader], files: &[Vec<LogRecord>], want: &[LogRecord]) {
    for reverse in [false, true] {
        let mut replay = Replay::default();
        headers.iter().for_each(|h| replay.add_header(h));
        let mut order: Vec<&Vec<LogRecord>> = files.iter().collect();
        if reverse {
            order.reverse();
        }
        order.into_iter().for_each(|f| apply_file(&mut replay, f));
        let got: Vec<LogRecord> = replay.into_live().map(|l| l.record).collect();
        let mut got = got;
        got.sort_by(|a, b| a.id().cmp(&b.id()));
        assert_eq!(got, want, "reverse={reverse}");
    }
}

fn epoch(e: u64) -> LogRecord {
    LogRecord::Epoch { epoch: e }
}

#[test]
fn epochs_order_records_across_files_in_any_reading_order() {
    let x: &[u8] = b"x";
    // A later renew in another file applies to an earlier lock.
    replay_both_ways(
        &[],
        &[vec![epoch(1), lock(x, 1, 10)], vec![epoch(2), renew(x, 20)]],
        &[lock(x, 1, 20)],
    );
    // A later unlock is a tombstone for an earlier lock elsewhere.
    replay_both_ways(
        &[],
        &[vec![epoch(1), lock(x, 1, 10)], vec![epoch(2), unlock(x)]],
        &[],
    );
    // A renew older than the lock it would apply to is ignored.
    replay_both_ways(
        &[],
        &[
            vec![epoch(1), lock(x, 1, 10), renew(x, 15)],
            vec![epoch(2), lock(x, 2, 30)],
        ],
        &[lock(x, 2, 30)],
    );
    // Within one file, order decides; a renew of a completed id does nothing.
    replay_both_ways(
        &[],
        &[vec![
            epoch(3),
            lock(x, 1, 10),
            renew(x, 11),
            complete(x, 1, None),
            renew(x, 12),
        ]],
        &[complete(x, 1, None)],
    );
    // Renews in three epochs over three files: the latest wins.
    replay_both_ways(
        &[],
        &[
            vec![epoch(1), lock(x, 1, 10), epoch(3), renew(x, 30)],
            vec![epoch(2), renew(x, 20)],
        ],
        &[lock(x, 1, 30)],
    );
    // An unlock followed by a relock in the same epoch, with an older renew elsewhere.
    replay_both_ways(
        &[],
        &[
            vec![epoch(1), lock(x, 1, 10), renew(x, 11)],
            vec![epoch(2), unlock(x), lock(x, 2, 20)],
        ],
        &[lock(x, 2, 20)],
    );
}

#[test]
fn rewritten_headers_supersede_only_their_own_shards_ids() {
    let mine = ids_on(0, 2, 1).remove(0);
    let other = ids_on(1, 2, 1).remove(0);
    // Shard 0 of 2 was rewritten in epoch 2 without `mine` (it was unlocked in run 2).
    replay_both_ways(
        &[FileHeader::plain(0), FileHeader::rewritten(0, 2, 2)],
        &[
            vec![epoch(1), lock(&mine, 1, 10), lock(&other, 2, 10)],
            vec![epoch(2), LogRecord::Fence { value: 2 }],
        ],
        &[lock(&other, 2, 10)],
    );
    // Records from the rewrite's own epoch or later still apply.
    replay_both_ways(
        &[FileHeader::rewritten(0, 2, 2)],
        &[vec![
            epoch(2),
            lock(&mine, 3, 10),
            epoch(3),
            renew(&mine, 40),
        ]],
        &[lock(&mine, 3, 40)],
    );
    let mut replay = Replay::default();
    replay.add_header(&FileHeader::rewritten(0, 2, 7));
    apply_file(&mut replay, &[epoch(1), lock(&mine, 99, 1)]);
    assert_eq!(replay.tracked(), 0);
    assert_eq!(
        replay.max_fence(),
        99,
        "fences count even from stale records"
    );
    assert_eq!(replay.max_epoch(), 7);
}
