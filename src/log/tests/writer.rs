//! The writer: file creation, group commit, the failed state, and rewrites.

use std::io;

use super::super::format::{FILE_HEADER_LEN, FileHeader};
use super::super::storage::{CrashTail, FsStorage};
use super::*;

#[test]
fn open_creates_a_durable_header_and_buffers_the_epoch() {
    let (disk, shared) = disk();
    let log = ShardLog::open(Arc::clone(&shared), &dir(), 3, 9).unwrap();
    assert!(log.has_pending());
    assert_eq!(log.file_len(), FILE_HEADER_LEN as u64);
    assert_eq!(log.epoch(), 9);
    drop(log);
    disk.crash(CrashTail::Drop);
    let bytes = disk.contents(&log_path(3)).expect("file survives a crash");
    assert_eq!(FileHeader::decode(&bytes), Ok(FileHeader::plain(3)));
}

#[test]
fn flush_writes_one_batch_and_syncs_only_when_asked() {
    let (disk, shared) = disk();
    let mut log = ShardLog::open(Arc::clone(&shared), &dir(), 0, 1).unwrap();
    log.append(&lock(b"a", 1, 5));
    log.append(&lock(b"b", 2, 5));
    log.flush(false).unwrap();
    assert!(!log.has_pending());
    let len = log.file_len();
    assert_eq!(disk.contents(&log_path(0)).unwrap().len() as u64, len);
    // Not synced: a crash loses the batch.
    disk.crash(CrashTail::Drop);
    assert!(state_of(&recover_ok(&disk)).is_empty());

    let mut log = ShardLog::open(Arc::clone(&shared), &dir(), 0, 2).unwrap();
    log.append(&lock(b"a", 1, 5));
    log.flush(false).unwrap();
    log.sync().unwrap();
    log.append(&lock(b"b", 2, 5));
    log.flush(true).unwrap();
    // Nothing pending and nothing unsynced: no I/O at all.
    let ops = disk.ops();
    log.flush(true).unwrap();
    log.sync().unwrap();
    assert_eq!(disk.ops(), ops);
    disk.crash(CrashTail::Drop);
    let r = recover_ok(&disk);
    assert_eq!(state_of(&r).len(), 2);
    assert_eq!(r.epoch, 3);
}

/// Fails a log by `fault`, checks it stays failed, then clears it with a rewrite.
fn fail_then_rewrite(fault: impl FnOnce(&FaultyStorage)) {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let mut run = Run::start(&shared, 1, &model);
    run.commit(&mut model, lock(b"kept", 1, 10));
    fault(&disk);
    // The table takes a failed batch back, so the model never sees it.
    run.logs[0].append(&lock(b"lost?", 2, 10));
    assert!(run.logs[0].flush(true).is_err());
    assert!(run.logs[0].is_failed());
    disk.set_disk_full(false);
    // Failed: nothing is written, buffered records are dropped.
    let len = disk.contents(&log_path(0)).unwrap().len();
    run.logs[0].append(&lock(b"refused", 3, 10));
    assert!(run.logs[0].flush(true).is_err());
    assert!(run.logs[0].sync().is_err());
    assert!(!run.logs[0].has_pending());
    assert_eq!(disk.contents(&log_path(0)).unwrap().len(), len);
    // A rewrite from the table (the model) clears the failure.
    run.rewrite(0, &model);
    assert!(!run.logs[0].is_failed());
    run.commit(&mut model, lock(b"after", 4, 10));
    disk.crash(CrashTail::Drop);
    assert_eq!(state_of(&recover_ok(&disk)), model.ids);
}

#[test]
fn a_failed_write_fails_the_log_until_a_rewrite() {
    fail_then_rewrite(|d| d.fail_write(1, 0));
    fail_then_rewrite(|d| d.fail_write(1, 13));
}

#[test]
fn a_failed_sync_fails_the_log_until_a_rewrite() {
    fail_then_rewrite(|d| d.fail_sync(1));
}

#[test]
fn disk_full_fails_the_log_until_a_rewrite() {
    fail_then_rewrite(|d| d.set_disk_full(true));
}

#[test]
fn a_rewrite_keeps_records_appended_while_it_runs() {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let mut run = Run::start(&shared, 1, &model);
    for i in 0..50u64 {
        run.commit(&mut model, lock(format!("id{i}").as_bytes(), i + 1, 100));
        if i % 2 == 0 {
            run.commit(&mut model, unlock(format!("id{i}").as_bytes()));
        }
    }
    let before = run.logs[0].file_len();
    // Appended but not flushed: must be in the snapshot, and not written twice.
    let pending = lock(b"pending", 100, 1);
    run.logs[0].append(&pending);
    model.apply(&pending);
    let snapshot = encode_snapshot(model.shard(0, 1), 0, 1, run.epoch, model.max_fence);
    let snapshot_len = snapshot.len() as u64;
    let log = &mut run.logs[0];
    log.begin_rewrite(snapshot).unwrap();
    assert!(log.rewrite_in_progress());
    assert!(
        log.begin_rewrite(Vec::new()).is_err(),
        "one rewrite at a time"
    );
    // Records during the rewrite: some flushed to the old file, some still buffered.
    let during = [renew(b"id1", 999), lock(b"new", 101, 5), unlock(b"id3")];
    for rec in &during[..2] {
        log.append(rec);
        model.apply(rec);
    }
    log.flush(true).unwrap();
    log.append(&during[2]);
    model.apply(&during[2]);
    let report = finish_rewrite(log).unwrap();
    assert!(!log.rewrite_in_progress());
    assert!(log.poll_rewrite().is_none());
    // The old file took the pending record and the two flushed during the rewrite; the new
    // one took those two after the snapshot (the pending one is in the snapshot).
    let size = |r: &LogRecord| r.encode().len() as u64;
    let flushed_during = size(&during[0]) + size(&during[1]);
    assert_eq!(report.old_len, before + size(&pending) + flushed_during);
    assert_eq!(report.tail_len, flushed_during);
    assert_eq!(report.snapshot_len, snapshot_len);
    assert_eq!(report.new_len, log.file_len());
    assert!(report.new_len < before, "{report:?}");
    assert!(
        log.has_pending(),
        "the last record waits for the next flush"
    );
    log.flush(true).unwrap();
    disk.crash(CrashTail::Drop);
    let r = recover_ok(&disk);
    assert_eq!(state_of(&r), model.ids);
    assert_eq!(r.max_fence, 101);
}

#[test]
fn a_rewrite_with_no_flush_in_between_drops_the_stale_buffer() {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let mut run = Run::start(&shared, 1, &model);
    run.commit(&mut model, lock(b"a", 1, 1));
    let log = &mut run.logs[0];
    for rec in [lock(b"b", 2, 2), lock(b"c", 3, 3)] {
        log.append(&rec);
        model.apply(&rec);
    }
    let snapshot = encode_snapshot(model.shard(0, 1), 0, 1, run.epoch, model.max_fence);
    log.begin_rewrite(snapshot).unwrap();
    let rec = unlock(b"b");
    log.append(&rec);
    model.apply(&rec);
    let report = finish_rewrite(log).unwrap();
    assert_eq!(report.tail_len, 0);
    log.flush(true).unwrap();
    assert_eq!(log.file_len(), report.new_len + rec.encode().len() as u64);
    disk.crash(CrashTail::Drop);
    assert_eq!(state_of(&recover_ok(&disk)), model.ids);
}

#[test]
fn a_snapshot_for_another_shard_or_epoch_is_refused() {
    let (_, shared) = disk();
    let mut log = ShardLog::open(Arc::clone(&shared), &dir(), 1, 4).unwrap();
    for (shard, epoch) in [(0, 4), (1, 3)] {
        let snapshot = encode_snapshot(std::iter::empty(), shard, 2, epoch, 0);
        let err = log.begin_rewrite(snapshot).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
    assert!(log.begin_rewrite(b"junk".to_vec()).is_err());
    assert!(!log.rewrite_in_progress());
}

#[test]
fn a_failed_rewrite_leaves_the_old_log_in_use() {
    for fault in 0..3 {
        let (disk, shared) = disk();
        let mut model = Model::default();
        let mut run = Run::start(&shared, 1, &model);
        run.commit(&mut model, lock(b"a", 1, 1));
        let snapshot = encode_snapshot(model.shard(0, 1), 0, 1, run.epoch, model.max_fence);
        match fault {
            0 => disk.fail_write(1, 5),
            1 => disk.fail_sync(1),
            _ => disk.set_disk_full(true),
        }
        run.logs[0].begin_rewrite(snapshot).unwrap();
        assert!(finish_rewrite(&mut run.logs[0]).is_err());
        disk.set_disk_full(false);
        assert!(!run.logs[0].is_failed());
        let rewrite = super::super::shard_dir(&dir(), 0).join(super::super::REWRITE_FILE);
        assert!(!exists(&*shared, &rewrite));
        run.commit(&mut model, lock(b"b", 2, 2));
        disk.crash(CrashTail::Drop);
        assert_eq!(state_of(&recover_ok(&disk)), model.ids);
    }
}

#[test]
fn a_failed_directory_sync_switches_but_fails_the_log() {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let mut run = Run::start(&shared, 1, &model);
    run.commit(&mut model, lock(b"a", 1, 1));
    let snapshot = encode_snapshot(model.shard(0, 1), 0, 1, run.epoch, model.max_fence);
    // Syncs: the snapshot's, the tail's, then the directory's.
    disk.fail_sync(3);
    run.logs[0].begin_rewrite(snapshot).unwrap();
    assert!(finish_rewrite(&mut run.logs[0]).is_err());
    assert!(run.logs[0].is_failed());
    run.rewrite(0, &model);
    run.commit(&mut model, lock(b"b", 2, 2));
    disk.crash(CrashTail::Drop);
    assert_eq!(state_of(&recover_ok(&disk)), model.ids);
}

#[test]
fn real_filesystem_round_trip() {
    let root = std::env::temp_dir().join(format!("ts-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let storage: Arc<dyn Storage> = Arc::new(FsStorage);
    let r = recover(&FsStorage, &root, false).unwrap();
    assert_eq!(r.epoch, 1);
    let _lock = super::super::lock_dir(&root).unwrap();
    let mut model = Model::default();
    let mut logs: Vec<ShardLog> = (0..2)
        .map(|s| ShardLog::open(Arc::clone(&storage), &root, s, r.epoch).unwrap())
        .collect();
    for i in 0..100u64 {
        let rec = lock(format!("fs{i}").as_bytes(), i + 1, 7);
        let shard = shard_for(rec.id().unwrap(), 2);
        logs[shard].append(&rec);
        model.apply(&rec);
    }
    for log in &mut logs {
        log.flush(true).unwrap();
    }
    let snapshot = encode_snapshot(model.shard(1, 2), 1, 2, r.epoch, model.max_fence);
    logs[1].begin_rewrite(snapshot).unwrap();
    finish_rewrite(&mut logs[1]).unwrap();
    drop(logs);
    let again = recover(&FsStorage, &root, false).unwrap();
    assert_eq!(state_of(&again), model.ids);
    assert_eq!(again.epoch, 2);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn dropping_a_log_mid_rewrite_abandons_the_rewrite_cleanly() {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let mut run = Run::start(&shared, 1, &model);
    run.commit(&mut model, lock(b"a", 1, 1));
    let snapshot = encode_snapshot(model.shard(0, 1), 0, 1, run.epoch, model.max_fence);
    run.logs[0].begin_rewrite(snapshot).unwrap();
    run.commit(&mut model, lock(b"b", 2, 2));
    drop(run);
    let rewrite = super::super::shard_dir(&dir(), 0).join(super::super::REWRITE_FILE);
    assert!(!exists(&*shared, &rewrite));
    disk.crash(CrashTail::Drop);
    assert_eq!(state_of(&recover_ok(&disk)), model.ids);
}

#[test]
fn a_log_can_move_to_its_shard_thread() {
    fn is_send<T: Send>() {}
    is_send::<ShardLog>();
    is_send::<super::super::Recovered>();
}

#[test]
fn a_failed_flush_during_a_rewrite_is_left_out_of_the_new_file() {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let mut run = Run::start(&shared, 1, &model);
    run.commit(&mut model, lock(b"a", 1, 1));
    let snapshot = encode_snapshot(model.shard(0, 1), 0, 1, run.epoch, model.max_fence);
    let ops = disk.ops();
    let log = &mut run.logs[0];
    log.begin_rewrite(snapshot).unwrap();
    // Let the rewrite thread create, write and sync its file first.
    while disk.ops() < ops + 3 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // A batch whose sync fails (it reached the old file), then one refused outright.
    log.append(&lock(b"b", 2, 2));
    disk.fail_sync(1);
    assert!(log.flush(true).is_err());
    log.append(&lock(b"c", 3, 3));
    assert!(log.flush(true).is_err());
    let report = finish_rewrite(log).unwrap();
    assert_eq!(report.tail_len, 0);
    assert!(!log.is_failed());
    let d = lock(b"d", 4, 4);
    log.append(&d);
    log.flush(true).unwrap();
    model.apply(&d);
    disk.crash(CrashTail::Keep(usize::MAX));
    assert_eq!(state_of(&recover_ok(&disk)), model.ids);
}

#[test]
fn a_failed_flush_of_records_in_the_snapshot_abandons_the_rewrite() {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let mut run = Run::start(&shared, 1, &model);
    run.commit(&mut model, lock(b"a", 1, 1));
    let pending = lock(b"p", 2, 2);
    run.logs[0].append(&pending);
    let mut with_pending = model.clone();
    with_pending.apply(&pending);
    let snapshot = encode_snapshot(with_pending.shard(0, 1), 0, 1, run.epoch, 2);
    run.logs[0].begin_rewrite(snapshot).unwrap();
    disk.set_disk_full(true);
    assert!(run.logs[0].flush(true).is_err());
    disk.set_disk_full(false);
    let err = finish_rewrite(&mut run.logs[0]).unwrap_err();
    assert!(err.to_string().contains("abandoned"), "{err}");
    assert!(run.logs[0].is_failed());
    run.rewrite(0, &model);
    run.commit(&mut model, lock(b"q", 3, 3));
    disk.crash(CrashTail::Drop);
    assert_eq!(state_of(&recover_ok(&disk)), model.ids);
}

#[test]
fn kept_records_are_copied_in_background_rounds_before_the_switch() {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let mut run = Run::start(&shared, 1, &model);
    for i in 0..20u64 {
        run.commit(&mut model, lock(format!("id{i}").as_bytes(), i + 1, 100));
    }
    let snapshot = encode_snapshot(model.shard(0, 1), 0, 1, run.epoch, model.max_fence);
    let log = &mut run.logs[0];
    log.set_catch_up_bytes(0);
    log.begin_rewrite(snapshot).unwrap();
    let during = [
        unlock(b"id1"),
        lock(b"id1", 21, 7),
        complete(b"id2", 2, None),
    ];
    for rec in &during {
        log.append(rec);
        model.apply(rec);
    }
    log.flush(true).unwrap();
    let report = finish_rewrite(log).unwrap();
    let kept: u64 = during.iter().map(|r| r.encode().len() as u64).sum();
    assert_eq!(report.rounds, 1, "{report:?}");
    assert_eq!(report.tail_len, kept);
    assert_eq!(report.new_len, report.snapshot_len + kept);
    assert_eq!(report.new_len, log.file_len());
    disk.crash(CrashTail::Drop);
    assert_eq!(state_of(&recover_ok(&disk)), model.ids);
}

#[test]
fn a_shard_outpacing_the_rounds_still_switches_after_the_last_one() {
    let (disk, shared) = disk();
    let mut model = Model::default();
    let mut run = Run::start(&shared, 1, &model);
    run.commit(&mut model, lock(b"first", 1, 100));
    let snapshot = encode_snapshot(model.shard(0, 1), 0, 1, run.epoch, model.max_fence);
    let log = &mut run.logs[0];
    log.set_catch_up_bytes(0);
    log.begin_rewrite(snapshot).unwrap();
    // A record flushed before every poll: each round finds more to copy.
    let mut fence = 1;
    let report = loop {
        fence += 1;
        let rec = lock(format!("id{fence}").as_bytes(), fence, 100);
        log.append(&rec);
        model.apply(&rec);
        log.flush(true).unwrap();
        if let Some(result) = log.poll_rewrite() {
            break result.unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert_eq!(report.rounds, 8, "{report:?}");
    assert_eq!(report.new_len, log.file_len());
    let rec = lock(b"after", fence + 1, 100);
    log.append(&rec);
    model.apply(&rec);
    log.flush(true).unwrap();
    disk.crash(CrashTail::Drop);
    let r = recover_ok(&disk);
    assert_eq!(state_of(&r), model.ids);
    assert_eq!(r.max_fence, fence + 1);
}
