//! Malformed input over raw sockets: the offending connection gets a
//! protocol error and is closed; the server and its data are unaffected.

use crate::common;

use std::thread;
use std::time::Duration;

use common::{
    Exec, FOREIGN_KEY, Proto, Server, encode_command, expect_err, expect_key, expect_ok, raw_key,
    show,
};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

const INVALID_MULTIBULK: &[u8] = b"-ERR Protocol error: invalid multibulk length\r\n";
const INVALID_BULK: &[u8] = b"-ERR Protocol error: invalid bulk length\r\n";
const TOO_BIG_INLINE: &[u8] = b"-ERR Protocol error: too big inline request\r\n";

/// A server with one lock taken before any malformed input arrives.
struct Fixture {
    server: Server,
    id: &'static str,
    key: String,
}

impl Fixture {
    fn new() -> Fixture {
        let server = Server::start(&["--shards", "2"]);
        let mut con = server.connection(Proto::Resp2);
        let id = "taken-before";
        let key = expect_key(con.run(&["LOCK", id]), "LOCK before malformed input");
        Fixture { server, id, key }
    }

    /// Sends `input` on a fresh raw connection and expects exactly `reply`
    /// followed by the server closing the connection.
    fn expect_reply_and_close(&mut self, input: &[u8], reply: &[u8]) {
        let mut raw = self.server.raw();
        raw.send_lenient(input);
        let got = raw.read_until_closed(CLOSE_TIMEOUT);
        assert_eq!(
            show(&got),
            show(reply),
            "input {:?}: wrong reply before close",
            show(input)
        );
        self.assert_healthy();
    }

    /// The server is alive, serves new clients, and the earlier lock is
    /// intact.
    fn assert_healthy(&mut self) {
        self.server.assert_running();
        let mut con = self.server.connection(Proto::Resp2);
        assert_eq!(
            con.run(&["PING"]).unwrap(),
            redis::Value::SimpleString("PONG".into())
        );
        expect_err(
            con.run(&["LOCK", self.id]),
            "LOCKED",
            &[&self.key],
            "earlier lock after malformed input",
        );
        expect_err(
            con.run(&["UNLOCK", self.id, FOREIGN_KEY]),
            "BADKEY",
            &[&self.key],
            "earlier lock rejects a foreign key",
        );
        // A brand-new lock/unlock cycle works too.
        let key = expect_key(con.run(&["LOCK", "health-check"]), "LOCK health-check");
        expect_ok(con.run(&["UNLOCK", "health-check", &key]), "UNLOCK");
    }

    /// Final proof that the earlier key still works.
    fn finish(mut self) {
        self.assert_healthy();
        let mut con = self.server.connection(Proto::Resp3);
        expect_ok(
            con.run(&["COMPLETE", self.id, &self.key]),
            "COMPLETE with the key issued before the malformed input",
        );
    }
}

/// Splits a byte stream into complete RESP replies.
fn split_replies(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut replies = Vec::new();
    while !bytes.is_empty() {
        let len = common::resp_frame_len(bytes)
            .unwrap_or_else(|| panic!("truncated reply at the end: {}", show(bytes)));
        replies.push(&bytes[..len]);
        bytes = &bytes[len..];
    }
    replies
}

#[test]
fn non_numeric_multibulk_length() {
    let mut f = Fixture::new();
    f.expect_reply_and_close(b"*abc\r\n", INVALID_MULTIBULK);
    f.finish();
}

#[test]
fn multibulk_length_over_limit() {
    let mut f = Fixture::new();
    f.expect_reply_and_close(b"*2000\r\n", INVALID_MULTIBULK);
    f.expect_reply_and_close(b"*1025\r\n", INVALID_MULTIBULK);
    f.expect_reply_and_close(b"*99999999999999999999999\r\n", INVALID_MULTIBULK);
    f.finish();
}

#[test]
fn multibulk_of_1024_arguments_is_accepted() {
    let f = Fixture::new();
    let mut args: Vec<Vec<u8>> = vec![b"ECHO".to_vec()];
    args.extend((1..1024).map(|i| format!("a{i}").into_bytes()));
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
    assert_eq!(refs.len(), 1024);
    let mut raw = f.server.raw();
    raw.send(&encode_command(&refs));
    raw.expect_bytes(
        b"-ERR wrong number of arguments for 'echo' command\r\n",
        "ECHO with 1023 arguments",
    );
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "connection still open");
    f.finish();
}

#[test]
fn expected_dollar() {
    let mut f = Fixture::new();
    f.expect_reply_and_close(
        b"*1\r\nx\r\n",
        b"-ERR Protocol error: expected '$', got 'x'\r\n",
    );
    f.expect_reply_and_close(
        b"*2\r\n$4\r\nECHO\r\n:5\r\n",
        b"-ERR Protocol error: expected '$', got ':'\r\n",
    );
    f.finish();
}

#[test]
fn negative_bulk_length() {
    let mut f = Fixture::new();
    f.expect_reply_and_close(b"*1\r\n$-5\r\n", INVALID_BULK);
    f.finish();
}

#[test]
fn non_numeric_bulk_length() {
    let mut f = Fixture::new();
    f.expect_reply_and_close(b"*1\r\n$abc\r\n", INVALID_BULK);
    f.expect_reply_and_close(b"*2\r\n$4\r\nLOCK\r\n$1x\r\n", INVALID_BULK);
    f.finish();
}

#[test]
fn bulk_length_over_one_mib() {
    let mut f = Fixture::new();
    f.expect_reply_and_close(b"*1\r\n$2000000\r\n", INVALID_BULK);
    f.expect_reply_and_close(b"*2\r\n$4\r\nLOCK\r\n$1048577\r\n", INVALID_BULK);
    f.expect_reply_and_close(b"*1\r\n$99999999999999999999999\r\n", INVALID_BULK);
    f.finish();
}

#[test]
fn large_bulk_under_limit_is_not_a_protocol_error() {
    let f = Fixture::new();
    let id = vec![b'q'; 512 * 1024];
    let mut raw = f.server.raw();
    raw.send(&encode_command(&[b"LOCK", &id]));
    raw.expect_bytes(b"-ERR id too long\r\n", "LOCK with a 512 KiB id");
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "connection still open");
    f.finish();
}

#[test]
fn inline_request_over_64_kib() {
    let mut f = Fixture::new();
    let line = vec![b'a'; 65 * 1024];
    f.expect_reply_and_close(&line, TOO_BIG_INLINE);
    let mut line = b"LOCK ".to_vec();
    line.extend(std::iter::repeat_n(b'b', 70 * 1024));
    f.expect_reply_and_close(&line, TOO_BIG_INLINE);
    f.finish();
}

#[test]
fn long_inline_request_under_limit_is_processed() {
    let f = Fixture::new();
    let mut line = b"LOCK ".to_vec();
    line.extend(std::iter::repeat_n(b'c', 60 * 1024));
    line.extend_from_slice(b"\r\n");
    let mut raw = f.server.raw();
    raw.send(&line);
    raw.expect_bytes(b"-ERR id too long\r\n", "inline LOCK with a 60 KiB id");
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "connection still open");
    f.finish();
}

#[test]
fn empty_requests_are_ignored() {
    let f = Fixture::new();
    let mut raw = f.server.raw();
    raw.send(b"\r\n*0\r\n*-1\r\n\r\nPING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "only PING is answered");
    raw.send(b"*0\r\n*-1\r\n");
    raw.send(&encode_command(&[b"ECHO", b"end"]));
    raw.expect_bytes(b"$3\r\nend\r\n", "only ECHO is answered");
    raw.expect_silence(Duration::from_millis(300), "after the ignored requests");
    raw.send(b"PING\r\n");
    raw.expect_bytes(b"+PONG\r\n", "connection still open");
    f.finish();
}

#[test]
fn deeply_nested_arrays() {
    let mut f = Fixture::new();
    let nested = b"*1\r\n".repeat(4096);
    f.expect_reply_and_close(&nested, b"-ERR Protocol error: expected '$', got '*'\r\n");
    let nested = b"*2\r\n".repeat(1024);
    f.expect_reply_and_close(&nested, b"-ERR Protocol error: expected '$', got '*'\r\n");
    f.finish();
}

#[test]
fn pipelined_commands_before_malformed_input_are_answered() {
    let mut f = Fixture::new();
    let mut input = b"PING\r\n".to_vec();
    input.extend(encode_command(&[b"ECHO", b"hi"]));
    input.extend(encode_command(&[b"LOCK", b"pre"]));
    input.extend(b"LOCK pre\r\n");
    input.extend(b"*abc\r\n");
    input.extend(b"PING\r\n");
    input.extend(encode_command(&[b"LOCK", b"after"]));

    let mut raw = f.server.raw();
    raw.send(&input);
    let got = raw.read_until_closed(CLOSE_TIMEOUT);
    let replies = split_replies(&got);
    assert_eq!(
        replies.len(),
        5,
        "expected PONG, hi, key, LOCKED, protocol error; got {}",
        show(&got)
    );
    assert_eq!(show(replies[0]), show(b"+PONG\r\n"));
    assert_eq!(show(replies[1]), show(b"$2\r\nhi\r\n"));
    let key = raw_key(replies[2]);
    assert!(
        replies[3].starts_with(b"-LOCKED "),
        "second LOCK pre: {}",
        show(replies[3])
    );
    assert!(
        !String::from_utf8_lossy(replies[3]).contains(&key),
        "LOCKED message leaks the key"
    );
    assert_eq!(
        show(replies[4]),
        show(INVALID_MULTIBULK),
        "the protocol error comes last; nothing after it is answered"
    );

    f.assert_healthy();
    let mut con = f.server.connection(Proto::Resp2);
    // The pipelined LOCK took effect; the one after the error did not.
    expect_ok(con.run(&["UNLOCK", "pre", &key]), "UNLOCK pre with its key");
    expect_key(con.run(&["LOCK", "after"]), "LOCK after (never executed)");
    f.finish();
}

#[test]
fn malformed_connection_does_not_disturb_other_connections() {
    let mut f = Fixture::new();
    let mut healthy = f.server.raw();
    healthy.send(b"PING\r\n");
    healthy.expect_bytes(b"+PONG\r\n", "healthy PING");
    f.expect_reply_and_close(b"*abc\r\n", INVALID_MULTIBULK);
    // The long-lived connection opened before is still served.
    healthy.send(&encode_command(&[b"LOCK", b"still-here"]));
    raw_key(&healthy.read_reply());
    f.finish();
}

#[test]
fn many_malformed_connections_in_parallel() {
    let f = Fixture::new();
    let inputs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"*abc\r\n".to_vec(), INVALID_MULTIBULK.to_vec()),
        (b"*2000\r\n".to_vec(), INVALID_MULTIBULK.to_vec()),
        (
            b"*1\r\nx\r\n".to_vec(),
            b"-ERR Protocol error: expected '$', got 'x'\r\n".to_vec(),
        ),
        (b"*1\r\n$-5\r\n".to_vec(), INVALID_BULK.to_vec()),
        (b"*1\r\n$2000000\r\n".to_vec(), INVALID_BULK.to_vec()),
        (vec![b'z'; 65 * 1024], TOO_BIG_INLINE.to_vec()),
        (
            b"*1\r\n".repeat(1024),
            b"-ERR Protocol error: expected '$', got '*'\r\n".to_vec(),
        ),
    ];
    let addr = f.server.resp_addr;
    thread::scope(|scope| {
        for t in 0..8 {
            let inputs = &inputs;
            scope.spawn(move || {
                for round in 0..5 {
                    let (input, reply) = &inputs[(t + round) % inputs.len()];
                    let mut raw = common::RawConn::connect(addr);
                    raw.send_lenient(input);
                    let got = raw.read_until_closed(CLOSE_TIMEOUT);
                    assert_eq!(show(&got), show(reply), "input {}", show(input));
                }
            });
        }
    });
    f.finish();
}
