//! Damaged files: which damage is a torn tail (dropped, file cut), which is corruption
//! (refused, or cut with `repair`), and that a cut file takes appends again.

use super::super::format::{FILE_HEADER_LEN, FORMAT_VERSION, FileHeader};
use super::super::recovery::RecoveryError;
use super::*;

/// A valid file: plain header, Epoch 1, then `records`; with each record's start offset.
fn file_with(records: &[LogRecord]) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = FileHeader::plain(0).encode().to_vec();
    LogRecord::Epoch { epoch: 1 }.encode_into(&mut bytes);
    let mut offsets = Vec::new();
    for rec in records {
        offsets.push(bytes.len() as u64);
        rec.encode_into(&mut bytes);
    }
    (bytes, offsets)
}

fn five() -> Vec<LogRecord> {
    vec![
        lock(b"a", 1, 100),
        lock(b"b", 2, 100),
        renew(b"a", 200),
        complete(b"b", 2, Some(b"ok")),
        lock(b"c", 3, 300),
    ]
}

fn recover_file(bytes: &[u8], repair: bool) -> (FaultyStorage, Result<Recovered, RecoveryError>) {
    let (disk, _) = disk();
    disk.put(&log_path(0), bytes);
    let result = recover(&disk, &dir(), repair);
    (disk, result)
}

fn expect_corrupt(bytes: &[u8], offset: u64, reason: &str) {
    let (disk, result) = recover_file(bytes, false);
    match result {
        Err(RecoveryError::Corrupt {
            path,
            offset: at,
            reason: why,
        }) => {
            assert_eq!(path, log_path(0));
            assert_eq!(at, offset, "{why}");
            assert!(why.contains(reason), "{why:?} should mention {reason:?}");
        }
        other => panic!("expected corruption at {offset}, got {other:?}"),
    }
    // Refusing leaves the file as it was.
    assert_eq!(disk.contents(&log_path(0)).unwrap(), bytes);
}

/// Recovers with the last record damaged as a torn tail; checks the cut and the state.
fn expect_torn(bytes: &[u8], keep: u64, records: &[LogRecord]) {
    let (disk, result) = recover_file(bytes, false);
    let recovered = result.expect("a torn tail is not an error");
    assert_eq!(
        recovered.report.torn_tails,
        vec![(log_path(0), bytes.len() as u64 - keep)]
    );
    assert_eq!(state_of(&recovered), Model::after(records).ids);
    assert_eq!(disk.contents(&log_path(0)).unwrap().len() as u64, keep);
    // The cut file takes appends and recovers cleanly.
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let mut model = Model::after(records);
    let mut run = Run::start(&storage, 1, &model);
    run.commit(&mut model, lock(b"after", 10, 10));
    let again = recover_ok(&disk);
    assert!(again.report.torn_tails.is_empty());
    assert_eq!(state_of(&again), model.ids);
}

#[test]
fn clean_file_recovers_everything() {
    let (bytes, _) = file_with(&five());
    let (_, result) = recover_file(&bytes, false);
    let r = result.unwrap();
    assert_eq!(state_of(&r), Model::after(&five()).ids);
    assert_eq!(r.report.files, 1);
    assert_eq!(r.report.records, 6);
    assert_eq!(r.report.bytes, bytes.len() as u64);
    assert_eq!(r.max_fence, 3);
    assert_eq!(r.epoch, 2);
}

#[test]
fn bad_crc_mid_file_is_corruption_and_repair_cuts_there() {
    let (mut bytes, offsets) = file_with(&five());
    let at = offsets[2];
    bytes[at as usize + 12] ^= 1;
    expect_corrupt(&bytes, at, "checksum mismatch");
    let (disk, result) = recover_file(&bytes, true);
    let r = result.expect("repair");
    assert_eq!(
        r.report.repaired,
        vec![(log_path(0), at, bytes.len() as u64 - at)]
    );
    assert_eq!(state_of(&r), Model::after(&five()[..2]).ids);
    assert_eq!(disk.contents(&log_path(0)).unwrap(), &bytes[..at as usize]);
}

#[test]
fn records_across_read_buffer_boundaries() {
    // Small records interleaved with ~300 KiB ones, over several MiB: frames start and end
    // at every kind of position relative to the 1 MiB read buffer.
    let big = vec![0x42u8; 300 * 1024 + 13];
    let records: Vec<LogRecord> = (0..30_000u64)
        .map(|i| match i % 1000 {
            999 => complete(format!("k{}", i - 1).as_bytes(), i, Some(&big)),
            _ => lock(format!("k{i}").as_bytes(), i + 1, i),
        })
        .collect();
    let (mut bytes, offsets) = file_with(&records);
    let (_, result) = recover_file(&bytes, false);
    let r = result.unwrap();
    assert_eq!(r.report.records, records.len() as u64 + 1);
    assert_eq!(r.report.bytes, bytes.len() as u64);
    assert_eq!(state_of(&r), Model::after(&records).ids);
    // Damage just past the first buffer, and in the first big record.
    let past = offsets.iter().position(|&o| o > 1 << 20).unwrap();
    for index in [past - 1, past, 999] {
        let mut damaged = bytes.clone();
        damaged[offsets[index] as usize + 9] ^= 0x04;
        expect_corrupt(&damaged, offsets[index], "checksum mismatch");
    }
    // A torn final record far into the file.
    let last = *offsets.last().unwrap() as usize;
    bytes.truncate(last + 5);
    expect_torn(&bytes, last as u64, &records[..records.len() - 1]);
}

#[test]
fn bad_length_is_corruption() {
    let (bytes, offsets) = file_with(&five());
    let at = offsets[1] as usize;
    for len in [0u32, super::super::format::MAX_BODY_LEN + 1, u32::MAX] {
        let mut damaged = bytes.clone();
        damaged[at..at + 4].copy_from_slice(&len.to_le_bytes());
        expect_corrupt(&damaged, at as u64, "bad record length");
    }
    // A length that still fits in the file is caught by the checksum.
    let mut damaged = bytes.clone();
    damaged[at] ^= 0x01;
    expect_corrupt(&damaged, at as u64, "checksum");
}

#[test]
fn unknown_type_or_bad_payload_with_a_valid_checksum_is_corruption() {
    let (mut bytes, offsets) = file_with(&five());
    // A frame with a valid checksum around a type this version does not know.
    let mut alien = vec![0u8; 8];
    alien.extend_from_slice(&[42, 1, 2, 3]);
    let len = 4u32.to_le_bytes();
    let crc = super::super::codec::frame_crc(len, &alien[8..]);
    alien[..4].copy_from_slice(&len);
    alien[4..8].copy_from_slice(&crc.to_le_bytes());
    let at = offsets[3] as usize;
    bytes.splice(at..at, alien.iter().copied());
    expect_corrupt(&bytes, at as u64, "unknown record type 42");
    // Even as the very last record: a valid checksum means it was written whole.
    let (mut tail, _) = file_with(&five());
    let end = tail.len() as u64;
    tail.extend_from_slice(&alien);
    expect_corrupt(&tail, end, "unknown record type 42");
}

#[test]
fn torn_tails_are_dropped_and_cut() {
    let records = five();
    let (bytes, offsets) = file_with(&records);
    let last = *offsets.last().unwrap();
    // Every cut inside the last record: truncated header or short body.
    for cut in last + 1..bytes.len() as u64 {
        expect_torn(&bytes[..cut as usize], last, &records[..4]);
    }
    // The last record's bytes replaced by zeros (size grew, data never landed).
    let mut zeroed = bytes.clone();
    zeroed[last as usize..].fill(0);
    expect_torn(&zeroed, last, &records[..4]);
    // A zero-filled region after the last whole record.
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0; 4096]);
    expect_torn(&padded, bytes.len() as u64, &records);
    // A bad checksum in the last record, with or without zeros after it.
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 0x80;
    expect_torn(&flipped, last, &records[..4]);
    flipped.extend_from_slice(&[0; 100]);
    expect_torn(&flipped, last, &records[..4]);
}

#[test]
fn zeros_followed_by_data_is_corruption() {
    let (bytes, offsets) = file_with(&five());
    let at = offsets[1] as usize;
    let mut damaged = bytes.clone();
    damaged[at..at + 8].fill(0);
    expect_corrupt(&damaged, at as u64, "bad record length 0");
    // A bad checksum followed by non-zero bytes.
    let mut flipped = bytes.clone();
    flipped[offsets[4] as usize - 1] ^= 0x80;
    expect_corrupt(&flipped, offsets[3], "checksum mismatch");
}

#[test]
fn bad_file_headers() {
    let (good, _) = file_with(&five());
    let mut magic = good.clone();
    magic[0] = b'X';
    expect_corrupt(&magic, 0, "bad magic");
    let mut crc = good.clone();
    crc[13] ^= 1;
    expect_corrupt(&crc, 0, "checksum");

    // With repair, a bad header empties the file.
    let (disk, result) = recover_file(&magic, true);
    let r = result.unwrap();
    assert_eq!(r.report.repaired, vec![(log_path(0), 0, good.len() as u64)]);
    assert!(state_of(&r).is_empty());
    assert_eq!(disk.contents(&log_path(0)).unwrap(), Vec::<u8>::new());

    // A newer version is refused even with repair, and left alone.
    let mut header = FileHeader::plain(0);
    header.version = FORMAT_VERSION + 1;
    let mut newer = good.clone();
    newer[..FILE_HEADER_LEN].copy_from_slice(&header.encode());
    for repair in [false, true] {
        let (disk, result) = recover_file(&newer, repair);
        let err = result.unwrap_err();
        assert!(matches!(err, RecoveryError::Unsupported { version: 2, .. }));
        assert!(err.to_string().contains("format version 2"), "{err}");
        assert_eq!(disk.contents(&log_path(0)).unwrap(), newer);
    }
}

#[test]
fn torn_or_zero_headers_are_a_crash_during_creation() {
    let (good, _) = file_with(&[]);
    for cut in 1..FILE_HEADER_LEN {
        let (disk, result) = recover_file(&good[..cut], false);
        let r = result.unwrap();
        assert_eq!(r.report.torn_tails, vec![(log_path(0), cut as u64)]);
        assert_eq!(disk.contents(&log_path(0)).unwrap().len(), 0);
    }
    let (disk, result) = recover_file(&[0; 100], false);
    assert_eq!(result.unwrap().report.torn_tails.len(), 1);
    // An emptied file is opened again with a fresh header.
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let mut model = Model::default();
    let mut run = Run::start(&storage, 1, &model);
    run.commit(&mut model, lock(b"x", 1, 1));
    assert_eq!(state_of(&recover_ok(&disk)), model.ids);
}

#[test]
fn error_message_names_file_offset_and_the_repair_flag() {
    let (mut bytes, offsets) = file_with(&five());
    bytes[offsets[1] as usize + 9] ^= 1;
    let (_, result) = recover_file(&bytes, false);
    let msg = result.unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "corrupt log /data/shard-0/appendonly.log at byte {}: checksum mismatch; \
             start with --repair-log to truncate it there",
            offsets[1]
        )
    );
}

#[test]
fn empty_and_missing_directories_and_leftover_rewrites() {
    let (disk, shared) = disk();
    let r = recover_ok(&disk);
    assert_eq!((r.epoch, r.max_fence, r.report.files), (1, 0, 0));
    assert_eq!(r.live.count(), 0);
    // A leftover rewrite file is never read, and is removed.
    let (bytes, _) = file_with(&five());
    let leftover = super::super::shard_dir(&dir(), 0).join(super::super::REWRITE_FILE);
    disk.put(&leftover, b"garbage that is not a log");
    disk.put(&log_path(0), &bytes);
    disk.put(&dir().join("shard-x").join("appendonly.log"), b"ignored");
    let r = recover_ok(&*shared);
    assert_eq!(state_of(&r), Model::after(&five()).ids);
    assert!(!exists(&*shared, &leftover));
}

#[test]
fn crash_with_a_torn_batch_keeps_a_prefix() {
    let records: Vec<LogRecord> = (0..20u64)
        .map(|i| match i % 4 {
            0 | 1 => lock(format!("id{i}").as_bytes(), i + 1, 1000 + i),
            2 => unlock(format!("id{}", i - 2).as_bytes()),
            _ => complete(format!("id{}", i - 2).as_bytes(), i - 1, Some(b"r")),
        })
        .collect();
    let synced = 8;
    let mut sizes = vec![];
    {
        let (disk, shared) = disk();
        let mut log = ShardLog::open(Arc::clone(&shared), &dir(), 0, 1).unwrap();
        records[..synced].iter().for_each(|r| log.append(r));
        log.flush(true).unwrap();
        let base = disk.contents(&log_path(0)).unwrap().len();
        records[synced..].iter().for_each(|r| log.append(r));
        log.flush(false).unwrap();
        sizes.push(base);
        sizes.push(disk.contents(&log_path(0)).unwrap().len());
    }
    let unsynced = sizes[1] - sizes[0];
    for keep in 0..=unsynced {
        for tail in [CrashTail::Keep(keep), CrashTail::Zeros(keep)] {
            let (disk, shared) = disk();
            let mut log = ShardLog::open(Arc::clone(&shared), &dir(), 0, 1).unwrap();
            records[..synced].iter().for_each(|r| log.append(r));
            log.flush(true).unwrap();
            records[synced..].iter().for_each(|r| log.append(r));
            log.flush(false).unwrap();
            drop(log);
            disk.crash(tail);
            let r = recover_ok(&disk);
            let state = state_of(&r);
            let ok = (synced..=records.len()).any(|p| Model::after(&records[..p]).ids == state);
            assert!(ok, "{tail:?}: not a prefix of at least {synced} records");
        }
    }
}

use super::super::storage::CrashTail;
