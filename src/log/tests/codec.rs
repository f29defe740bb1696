//! Record and header encoding: round trips, exact bytes, and rejection of malformed input.

use super::super::codec::{DecodeError, decode_body};
use super::super::format::{
    FILE_HEADER_LEN, FORMAT_VERSION, FRAME_HEADER_LEN, FileHeader, HeaderError, MAGIC,
};
use super::*;
use crate::types::RecordRef;

/// Decodes a whole frame, checking its length and checksum fields.
fn decode_frame(frame: &[u8]) -> LogRecord {
    let (head, body) = frame.split_at(FRAME_HEADER_LEN);
    let len = u32::from_le_bytes(head[..4].try_into().unwrap());
    assert_eq!(len as usize, body.len());
    let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
    assert_eq!(crc, crc32c::crc32c_append(crc32c::crc32c(&head[..4]), body));
    decode_body(body).expect("decodes").to_record()
}

fn edge_ids() -> Vec<Vec<u8>> {
    vec![
        vec![],
        vec![0],
        vec![0xff],
        vec![0; 17],
        vec![0xff; 300],
        b"{tag}".to_vec(),
        b"{}".to_vec(),
        "ünïcødé".as_bytes().to_vec(),
        (0..=255u8).collect(),
        vec![0xab; 1024 * 1024],
    ]
}

fn all_variants(id: &[u8]) -> Vec<LogRecord> {
    let big = vec![0x5a; 1024 * 1024];
    vec![
        lock(id, 1, 0),
        LogRecord::Lock {
            id: id.into(),
            key: [0xff; 16],
            fence: u64::MAX,
            deadline_ms: u64::MAX,
            fingerprint: Some(id.into()),
        },
        LogRecord::Lock {
            id: id.into(),
            key: [0; 16],
            fence: 0,
            deadline_ms: 0,
            fingerprint: Some(Box::from(&[][..])),
        },
        unlock(id),
        renew(id, 0),
        renew(id, u64::MAX),
        complete(id, 7, None),
        complete(id, 8, Some(b"")),
        complete(id, 9, Some(&big)),
        LogRecord::Complete {
            id: id.into(),
            key: key(3),
            fence: u64::MAX,
            at_ms: u64::MAX,
            fingerprint: None,
            result: Some(big.clone().into()),
        },
        LogRecord::Fence { value: 0 },
        LogRecord::Fence { value: u64::MAX },
        LogRecord::Epoch { epoch: 1 },
        LogRecord::Epoch { epoch: u64::MAX },
    ]
}

#[test]
fn every_variant_round_trips_with_edge_ids() {
    for id in edge_ids() {
        for rec in all_variants(&id) {
            let frame = rec.encode();
            assert_eq!(decode_frame(&frame), rec);
            // Encoding through the borrowed view gives the same bytes.
            let mut again = Vec::new();
            rec.borrowed().encode_into(&mut again);
            assert_eq!(again, frame);
        }
    }
}

#[test]
fn frames_concatenate() {
    let records = all_variants(b"x");
    let mut buf = Vec::new();
    records.iter().for_each(|r| r.encode_into(&mut buf));
    let mut rest = buf.as_slice();
    for rec in &records {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let (frame, tail) = rest.split_at(FRAME_HEADER_LEN + len);
        assert_eq!(&decode_frame(frame), rec);
        rest = tail;
    }
    assert!(rest.is_empty());
}

#[test]
fn exact_bytes_match_the_documented_layout() {
    // docs/LOG_FORMAT.md, "Example".
    let frame = LogRecord::Epoch { epoch: 1 }.encode();
    assert_eq!(
        frame,
        [
            0x09, 0, 0, 0, 0x2d, 0x4d, 0x96, 0x75, 0x06, 0x01, 0, 0, 0, 0, 0, 0, 0
        ]
    );
    let unlock = unlock(b"ab").encode();
    assert_eq!(unlock.len(), 8 + 1 + 4 + 2);
    assert_eq!(&unlock[8..], &[2, 2, 0, 0, 0, b'a', b'b']);
    let lock = lock(b"a", 5, 9).encode();
    let mut body = vec![1u8];
    body.extend_from_slice(&5u64.to_le_bytes());
    body.extend_from_slice(&9u64.to_le_bytes());
    body.extend_from_slice(&key(5));
    body.extend_from_slice(&[1, 0, 0, 0, b'a', 0]);
    assert_eq!(&lock[8..], body.as_slice());
}

#[test]
fn bodies_that_do_not_decode() {
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (vec![], DecodeError::Malformed("empty body")),
        (vec![0], DecodeError::UnknownType(0)),
        (vec![8, 0, 0], DecodeError::UnknownType(8)),
        (vec![7, 0, 0], DecodeError::Malformed("payload too short")),
        (
            vec![7, 1, 0, 0, 0, 0],
            DecodeError::Malformed("trailing bytes after the payload"),
        ),
        (vec![0xff], DecodeError::UnknownType(0xff)),
        (
            vec![6, 1, 0, 0],
            DecodeError::Malformed("payload too short"),
        ),
        (
            [vec![6], 1u64.to_le_bytes().to_vec(), vec![0]].concat(),
            DecodeError::Malformed("trailing bytes after the payload"),
        ),
        // An id length that runs past the body.
        (
            vec![2, 9, 0, 0, 0, b'a'],
            DecodeError::Malformed("payload too short"),
        ),
        (
            vec![2, 0xff, 0xff, 0xff, 0xff],
            DecodeError::Malformed("payload too short"),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(decode_body(&body), Err(want), "{body:?}");
    }
    // A presence flag other than 0 or 1.
    let mut bad_flag = lock(b"a", 1, 1).encode()[FRAME_HEADER_LEN..].to_vec();
    *bad_flag.last_mut().unwrap() = 2;
    assert_eq!(
        decode_body(&bad_flag),
        Err(DecodeError::Malformed("bad presence flag"))
    );
}

#[test]
fn every_truncation_of_every_body_is_rejected() {
    for rec in all_variants(b"some-id") {
        let frame = rec.encode();
        let body = &frame[FRAME_HEADER_LEN..];
        if body.len() > 4096 {
            continue;
        }
        for cut in 0..body.len() {
            assert!(decode_body(&body[..cut]).is_err(), "{rec:?} cut at {cut}");
        }
    }
}

#[test]
fn random_bodies_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(t) = body.first_mut() {
            *t %= 8;
        }
        if let Ok(rec) = decode_body(&body) {
            // Whatever decodes re-encodes to the same body.
            let frame = rec.to_record().encode();
            assert_eq!(&frame[FRAME_HEADER_LEN..], body.as_slice());
        }
    }
}

#[test]
fn borrowed_and_owned_agree() {
    let rec = complete(b"id", 4, Some(b"result"));
    let frame = rec.encode();
    let view = decode_body(&frame[FRAME_HEADER_LEN..]).unwrap();
    assert!(matches!(view, RecordRef::Complete { id: b"id", .. }));
    assert_eq!(view, rec.borrowed());
}

#[test]
fn header_round_trips_and_rejects_damage() {
    for header in [FileHeader::plain(3), FileHeader::rewritten(2, 5, 77)] {
        let bytes = header.encode();
        assert_eq!(bytes.len(), FILE_HEADER_LEN);
        assert_eq!(&bytes[..8], &MAGIC);
        assert_eq!(FileHeader::decode(&bytes), Ok(header));
        for cut in 0..FILE_HEADER_LEN {
            assert!(FileHeader::decode(&bytes[..cut]).is_err());
        }
        for i in 0..FILE_HEADER_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert!(
                matches!(FileHeader::decode(&bad), Err(HeaderError::Bad(_))),
                "flip in byte {i}"
            );
        }
    }
    let mut newer = FileHeader::plain(0);
    newer.version = FORMAT_VERSION + 1;
    assert_eq!(
        FileHeader::decode(&newer.encode()),
        Err(HeaderError::Unsupported(FORMAT_VERSION + 1))
    );
    // A rewritten header must name a shard inside its shard count.
    let bad = FileHeader {
        version: FORMAT_VERSION,
        shard: 4,
        shards: 4,
        covers_epoch: 1,
    };
    assert!(matches!(
        FileHeader::decode(&bad.encode()),
        Err(HeaderError::Bad(_))
    ));
}
