//! Inline (telnet-style) commands over a raw socket.

use crate::common;

use common::{FOREIGN_KEY, Proto, Server, bulk, expect_err, raw_key, show};

#[test]
fn inline_ping() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "PING");
    raw.send(b"ping\r\n");
    raw.expect_bytes(b"+PONG\r\n", "lowercase ping");
    raw.send(b"PING hello\r\n");
    raw.expect_bytes(&bulk(b"hello"), "PING hello");
}

#[test]
fn inline_lock_unlock_complete() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(b"LOCK abc\r\n");
    let reply = raw.read_reply();
    let key = raw_key(&reply);

    raw.send(b"LOCK abc\r\n");
    let locked = raw.read_reply();
    assert!(locked.starts_with(b"-LOCKED "), "{}", show(&locked));
    assert!(!String::from_utf8_lossy(&locked).contains(&key));

    raw.send(format!("UNLOCK abc {FOREIGN_KEY}\r\n").as_bytes());
    let badkey = raw.read_reply();
    assert!(badkey.starts_with(b"-BADKEY "), "{}", show(&badkey));
    assert!(!String::from_utf8_lossy(&badkey).contains(&key));

    raw.send(format!("UNLOCK abc {key}\r\n").as_bytes());
    raw.expect_bytes(b"+OK\r\n", "inline UNLOCK");

    raw.send(b"lock abc\r\n");
    let key2 = raw_key(&raw.read_reply());
    assert_ne!(key, key2);
    raw.send(format!("complete abc {key2}\r\n").as_bytes());
    raw.expect_bytes(b"+OK\r\n", "inline COMPLETE");
    raw.send(format!("COMPLETE abc {key2}\r\n").as_bytes());
    raw.expect_bytes(b"+OK\r\n", "inline COMPLETE retry");

    // The inline lock is the same id as seen by a RESP client.
    let mut con = server.connection(Proto::Resp2);
    expect_err(
        common::Exec::run(&mut con, &["LOCK", "abc"]),
        "COMPLETED",
        &[&key, &key2],
        "LOCK abc from a RESP client",
    );
}

#[test]
fn inline_quoted_arguments() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(b"ECHO \"a b\"\r\n");
    raw.expect_bytes(&bulk(b"a b"), "ECHO \"a b\"");
    raw.send(b"ECHO 'single quoted'\r\n");
    raw.expect_bytes(&bulk(b"single quoted"), "single quotes");
    raw.send(b"LOCK \"id with spaces\"\r\n");
    let key = raw_key(&raw.read_reply());
    // The quoted id is one id containing spaces.
    let mut con = server.connection(Proto::Resp2);
    expect_err(
        common::Exec::run(&mut con, &["LOCK", "id with spaces"]),
        "LOCKED",
        &[&key],
        "LOCK of the quoted id via RESP",
    );
}

#[test]
fn inline_escapes_in_double_quotes() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(b"ECHO \"tab\\there\"\r\n");
    raw.expect_bytes(&bulk(b"tab\there"), "escape in double quotes");
    raw.send(b"ECHO \"\\x41\\x00B\"\r\n");
    raw.expect_bytes(&bulk(b"A\0B"), "hex escapes");
}

#[test]
fn inline_extra_whitespace_is_ignored() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(b"   ECHO    spaced   \r\n");
    raw.expect_bytes(&bulk(b"spaced"), "extra spaces");
    raw.send(b"ECHO\tx\r\n");
    raw.expect_bytes(&bulk(b"x"), "tab separator");
}

#[test]
fn inline_and_multibulk_mixed_in_one_write() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    let mut input = b"PING\r\n".to_vec();
    input.extend(common::encode_command(&[b"ECHO", b"one"]));
    input.extend(b"ECHO two\r\n");
    input.extend(common::encode_command(&[b"PING"]));
    input.extend(b"LOCK mixed\r\n");
    raw.send(&input);
    raw.expect_bytes(b"+PONG\r\n", "inline PING");
    raw.expect_bytes(&bulk(b"one"), "multibulk ECHO");
    raw.expect_bytes(&bulk(b"two"), "inline ECHO");
    raw.expect_bytes(b"+PONG\r\n", "multibulk PING");
    raw_key(&raw.read_reply());
}

#[test]
fn inline_arity_and_unknown_command_errors() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    raw.send(b"LOCK\r\n");
    raw.expect_bytes(
        b"-ERR wrong number of arguments for 'lock' command\r\n",
        "inline LOCK without id",
    );
    raw.send(b"UNLOCK id\r\n");
    raw.expect_bytes(
        b"-ERR wrong number of arguments for 'unlock' command\r\n",
        "inline UNLOCK without key",
    );
    raw.send(b"COMPLETE id\r\n");
    raw.expect_bytes(
        b"-ERR wrong number of arguments for 'complete' command\r\n",
        "inline COMPLETE without key",
    );
    raw.send(b"foo a b\r\n");
    raw.expect_bytes(
        b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
        "inline unknown command",
    );
}

#[test]
fn nul_bytes_in_an_inline_line_do_not_hang_the_shard() {
    // Regression: a line starting with NUL once looped forever in the inline splitter.
    let server = Server::start(&["--shards", "1"]);
    let mut raw = server.raw();
    raw.send(b"\x00\x03\n");
    raw.expect_bytes(
        b"-ERR unknown command '\x03', with args beginning with: \r\n",
        "NUL-led inline line",
    );
    raw.send(b"\x00PING\x00\r\n");
    raw.expect_bytes(b"+PONG\r\n", "NUL as a separator");
    let mut other = server.connection(Proto::Resp2);
    let pong: String = redis::cmd("PING")
        .query(&mut other)
        .expect("the shard still answers");
    assert_eq!(pong, "PONG");
}
