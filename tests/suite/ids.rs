//! Ids are binary-safe byte strings of 1..=512 bytes.

use crate::common;

use std::collections::HashSet;

use common::{Exec, Proto, Server, expect_err, expect_key, expect_ok};

fn lifecycle(ex: &mut dyn Exec, id: &[u8]) {
    let what = format!("id {:?}", String::from_utf8_lossy(id));
    let k1 = expect_key(ex.exec(&[b"LOCK", id]), &format!("LOCK {what}"));
    expect_err(
        ex.exec(&[b"LOCK", id]),
        "LOCKED",
        &[&k1],
        &format!("second LOCK {what}"),
    );
    expect_ok(
        ex.exec(&[b"UNLOCK", id, k1.as_bytes()]),
        &format!("UNLOCK {what}"),
    );
    let k2 = expect_key(ex.exec(&[b"LOCK", id]), &format!("re-LOCK {what}"));
    assert_ne!(k1, k2);
    expect_err(
        ex.exec(&[b"COMPLETE", id, k1.as_bytes()]),
        "BADKEY",
        &[&k1, &k2],
        &format!("COMPLETE {what} with old key"),
    );
    expect_ok(
        ex.exec(&[b"COMPLETE", id, k2.as_bytes()]),
        &format!("COMPLETE {what}"),
    );
    expect_err(
        ex.exec(&[b"LOCK", id]),
        "COMPLETED",
        &[&k2],
        &format!("LOCK completed {what}"),
    );
}

fn binary_ids() -> Vec<Vec<u8>> {
    vec![
        b"nul\0inside".to_vec(),
        b"\0".to_vec(),
        b"\0\0\0".to_vec(),
        b"crlf\r\nin the middle".to_vec(),
        b"\r\n".to_vec(),
        b"*1\r\n$4\r\nPING\r\n".to_vec(),
        "ключ-✓".as_bytes().to_vec(),
        "日本語のID".as_bytes().to_vec(),
        vec![0xff, 0xfe, 0x80, 0x00, 0x7f],
        (0u8..=255).collect(),
        b" ".to_vec(),
        b"\"quoted\" 'single'".to_vec(),
    ]
}

fn check_binary_ids(proto: Proto) {
    let server = Server::start(&["--shards", "4"]);
    let mut con = server.connection(proto);
    for id in binary_ids() {
        lifecycle(&mut con, &id);
    }
}

#[test]
fn binary_ids_resp2() {
    check_binary_ids(Proto::Resp2);
}

#[test]
fn binary_ids_resp3() {
    check_binary_ids(Proto::Resp3);
}

#[test]
fn binary_ids_differing_in_one_byte_are_distinct() {
    let server = Server::start(&["--shards", "4"]);
    let mut con = server.connection(Proto::Resp2);
    let ids: Vec<&[u8]> = vec![
        b"a\0b", b"a\0c", b"a\0", b"a", b"a\0b\0", b"\0a\0b", b"a\r\nb", b"a\nb", b"a\rb",
    ];
    let mut keys = HashSet::new();
    for id in &ids {
        let key = expect_key(con.exec(&[b"LOCK", id]), &format!("LOCK {id:?}"));
        assert!(keys.insert(key), "duplicate key for {id:?}");
    }
    for id in &ids {
        expect_err(
            con.exec(&[b"LOCK", id]),
            "LOCKED",
            &[],
            &format!("re-LOCK {id:?}"),
        );
    }
}

#[test]
fn utf8_id_cycle_async() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = common::AsyncExec::connect(&server, Proto::Resp3);
    lifecycle(&mut con, "ключ-✓".as_bytes());
    lifecycle(&mut con, b"nul\0and\r\ncrlf");
}

#[test]
fn id_of_512_bytes_is_accepted() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.connection(Proto::Resp2);
    lifecycle(&mut con, &[b'x'; 512]);
    // Binary content at the maximum length.
    let id: Vec<u8> = (0..512).map(|i| (i % 256) as u8).collect();
    lifecycle(&mut con, &id);
    // Multi-byte UTF-8 that is exactly 512 bytes (256 two-byte letters).
    let id = "я".repeat(256);
    assert_eq!(id.len(), 512);
    lifecycle(&mut con, id.as_bytes());
}

#[test]
fn id_of_513_bytes_is_too_long() {
    for proto in Proto::ALL {
        let server = Server::start(&["--shards", "2"]);
        let mut con = server.connection(proto);
        let long = vec![b'y'; 513];
        let err = expect_err(
            con.exec(&[b"LOCK", &long]),
            "ERR",
            &[],
            "LOCK with a 513-byte id",
        );
        assert_eq!(err.detail(), Some("id too long"), "{proto:?}: {err:?}");

        // The same limit applies to UNLOCK and COMPLETE.
        for command in [&b"UNLOCK"[..], b"COMPLETE"] {
            let err = expect_err(
                con.exec(&[command, &long, common::FOREIGN_KEY.as_bytes()]),
                "ERR",
                &[],
                "UNLOCK/COMPLETE with a 513-byte id",
            );
            assert_eq!(err.detail(), Some("id too long"), "{proto:?}: {err:?}");
        }

        // Much longer ids are rejected the same way.
        let huge = vec![b'z'; 100_000];
        let err = expect_err(
            con.exec(&[b"LOCK", &huge]),
            "ERR",
            &[],
            "LOCK with a 100,000-byte id",
        );
        assert_eq!(err.detail(), Some("id too long"));

        // A rejected id was not stored under a truncated name.
        expect_key(con.exec(&[b"LOCK", &long[..512]]), "LOCK 512-byte prefix");
        // The connection is still usable.
        expect_key(con.exec(&[b"LOCK", b"after"]), "LOCK after the errors");
    }
}

#[test]
fn empty_id_is_an_error() {
    for proto in Proto::ALL {
        let server = Server::start(&["--shards", "2"]);
        let mut con = server.connection(proto);
        expect_err(con.run(&["LOCK", ""]), "ERR", &[], "LOCK with an empty id");
        expect_err(
            con.run(&["UNLOCK", "", common::FOREIGN_KEY]),
            "ERR",
            &[],
            "UNLOCK with an empty id",
        );
        expect_err(
            con.run(&["COMPLETE", "", common::FOREIGN_KEY]),
            "ERR",
            &[],
            "COMPLETE with an empty id",
        );
        // Still an error after other work (the empty id was never stored).
        expect_key(con.run(&["LOCK", "x"]), "LOCK x");
        expect_err(con.run(&["LOCK", ""]), "ERR", &[], "LOCK empty id again");
        let dbsize: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        assert_eq!(dbsize, 1, "{proto:?}: only `x` is stored");
    }
}
