//! Transactions in the log: a `Group { count }` marker and its records are applied whole or
//! not at all, wherever the file ends, and a cut file takes appends again.

use super::super::format::FileHeader;
use super::*;

/// A plain header, Epoch 1, `before`, a group of `group`, then `after`; with the offsets of
/// the group's marker and of every record of the group.
fn file(before: &[LogRecord], group: &[LogRecord], after: &[LogRecord]) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = FileHeader::plain(0).encode().to_vec();
    LogRecord::Epoch { epoch: 1 }.encode_into(&mut bytes);
    before.iter().for_each(|r| r.encode_into(&mut bytes));
    let mut offsets = vec![bytes.len() as u64];
    let count = u32::try_from(group.len()).expect("small");
    LogRecord::Group { count }.encode_into(&mut bytes);
    for rec in group {
        offsets.push(bytes.len() as u64);
        rec.encode_into(&mut bytes);
    }
    after.iter().for_each(|r| r.encode_into(&mut bytes));
    (bytes, offsets)
}

fn before() -> Vec<LogRecord> {
    vec![lock(b"x", 1, 0), lock(b"a", 2, 0)]
}

fn group() -> Vec<LogRecord> {
    vec![
        complete(b"a", 2, Some(b"done")),
        lock(b"b", 3, 0),
        unlock(b"x"),
    ]
}

fn recover_bytes(bytes: &[u8]) -> (FaultyStorage, Recovered) {
    let (disk, _) = disk();
    disk.put(&log_path(0), bytes);
    let recovered = recover_ok(&disk);
    (disk, recovered)
}

#[test]
fn a_whole_group_is_applied_in_order() {
    let after = vec![lock(b"c", 4, 0)];
    let (bytes, _) = file(&before(), &group(), &after);
    let (_, recovered) = recover_bytes(&bytes);
    let all: Vec<LogRecord> = [before(), group(), after].concat();
    assert_eq!(state_of(&recovered), Model::after(&all).ids);
    assert!(recovered.report.torn_tails.is_empty());
}

#[test]
fn a_group_cut_anywhere_is_dropped_whole_and_the_file_cut_at_its_marker() {
    let (bytes, offsets) = file(&before(), &group(), &[]);
    let marker = offsets[0];
    // Every length from the marker's first byte to one byte short of the whole group: the
    // log ends inside the group, on a record boundary or inside a record.
    for len in marker + 1..bytes.len() as u64 {
        let cut = &bytes[..len as usize];
        let (disk, recovered) = recover_bytes(cut);
        assert_eq!(
            state_of(&recovered),
            Model::after(&before()).ids,
            "cut at {len}: nothing of the group"
        );
        assert_eq!(
            recovered.report.torn_tails,
            vec![(log_path(0), len - marker)],
            "cut at {len}"
        );
        assert_eq!(
            disk.contents(&log_path(0)).unwrap().len() as u64,
            marker,
            "cut at {len}: the file ends before the marker"
        );
        // The cut file takes appends, which are not mistaken for the dropped group's.
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let mut model = Model::after(&before());
        let mut run = Run::start(&storage, 1, &model);
        run.commit(&mut model, lock(b"later", 9, 0));
        let again = recover_ok(&disk);
        assert!(again.report.torn_tails.is_empty(), "cut at {len}");
        assert_eq!(state_of(&again), model.ids, "cut at {len}");
    }
    // Zeros after a partial group (a file extended by a crash) change nothing.
    let mut zeros = bytes[..offsets[2] as usize].to_vec();
    zeros.extend_from_slice(&[0; 100]);
    let (_, recovered) = recover_bytes(&zeros);
    assert_eq!(state_of(&recovered), Model::after(&before()).ids);
}

#[test]
fn an_empty_group_is_nothing_and_a_nested_one_is_corruption() {
    let (bytes, _) = file(&before(), &[], &[lock(b"c", 4, 0)]);
    let (_, recovered) = recover_bytes(&bytes);
    let all: Vec<LogRecord> = [before(), vec![lock(b"c", 4, 0)]].concat();
    assert_eq!(state_of(&recovered), Model::after(&all).ids);

    let nested = [
        group()[0].clone(),
        LogRecord::Group { count: 1 },
        lock(b"b", 3, 0),
    ];
    let (bytes, offsets) = file(&before(), &nested, &[]);
    let (disk, _) = disk();
    disk.put(&log_path(0), &bytes);
    match recover(&disk, &dir(), false) {
        Err(super::super::recovery::RecoveryError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, offsets[2], "{reason}");
            assert!(
                reason.contains("transaction inside a transaction"),
                "{reason}"
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Repair cuts at the outer group's marker: none of it survives.
    let repaired = recover(&disk, &dir(), true).expect("repair");
    assert_eq!(state_of(&repaired), Model::after(&before()).ids);
    assert_eq!(
        disk.contents(&log_path(0)).unwrap().len() as u64,
        offsets[0]
    );
}

#[test]
fn groups_round_trip_through_the_codec() {
    for count in [0, 1, 2, u32::MAX] {
        let rec = LogRecord::Group { count };
        let frame = rec.encode();
        let body = &frame[super::super::format::FRAME_HEADER_LEN..];
        assert_eq!(
            super::super::codec::decode_body(body).map(|r| r.to_record()),
            Ok(rec)
        );
    }
}
