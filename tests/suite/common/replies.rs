//! Checking replies read with the `redis` crate, and running one command through different
//! client flavours.

use redis::{RedisError, RedisResult, Value};

use super::*;

// ---------------------------------------------------------------------------
// Reply checks
// ---------------------------------------------------------------------------

/// True when `s` looks like a key: exactly 32 lowercase hex characters.
pub fn is_key(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Asserts that a reply is a bulk string holding a well-formed key and
/// returns the key.
pub fn expect_key(reply: RedisResult<Value>, what: &str) -> String {
    match reply {
        Ok(Value::BulkString(bytes)) => {
            let key = String::from_utf8(bytes)
                .unwrap_or_else(|e| panic!("{what}: key is not UTF-8: {e}"));
            assert!(
                is_key(&key),
                "{what}: expected 32 lowercase hex characters, got {key:?}"
            );
            key
        }
        other => panic!("{what}: expected a bulk-string key, got {other:?}"),
    }
}

/// Asserts that a reply is the `+OK` status.
pub fn expect_ok(reply: RedisResult<Value>, what: &str) {
    match reply {
        Ok(Value::Okay) => {}
        other => panic!("{what}: expected +OK, got {other:?}"),
    }
}

/// Asserts that a reply is an error with the given code and a non-empty
/// message that mentions none of `secrets`. Returns the error.
pub fn expect_err(
    reply: RedisResult<Value>,
    code: &str,
    secrets: &[&str],
    what: &str,
) -> RedisError {
    match reply {
        Err(err) => {
            check_err(&err, code, secrets, what);
            err
        }
        Ok(v) => panic!("{what}: expected -{code} error, got {v:?}"),
    }
}

/// Checks an error's code, that it carries a sentence, and that the sentence
/// does not leak any of `secrets` (keys).
pub fn check_err(err: &RedisError, code: &str, secrets: &[&str], what: &str) {
    assert_eq!(
        err.code(),
        Some(code),
        "{what}: expected error code {code}, got {err:?}"
    );
    let detail = err.detail().unwrap_or("");
    assert!(
        !detail.trim().is_empty(),
        "{what}: -{code} error without a message: {err:?}"
    );
    let text = err.to_string();
    for secret in secrets {
        if secret.is_empty() {
            continue;
        }
        assert!(
            !text.contains(secret) && !detail.contains(secret),
            "{what}: error message leaks the key {secret:?}: {text:?}"
        );
    }
}

/// Same as [`check_err`] for an error found inside a pipeline reply.
pub fn check_value_err(value: &Value, code: &str, secrets: &[&str], what: &str) {
    match value {
        Value::ServerError(err) => {
            assert_eq!(err.code(), code, "{what}: expected -{code}, got {err:?}");
            let detail = err.details().unwrap_or("");
            assert!(
                !detail.trim().is_empty(),
                "{what}: -{code} error without a message: {err:?}"
            );
            for secret in secrets {
                assert!(
                    secret.is_empty() || !detail.contains(secret),
                    "{what}: error message leaks the key {secret:?}: {detail:?}"
                );
            }
        }
        other => panic!("{what}: expected -{code} error, got {other:?}"),
    }
}

/// Returns the key held in a pipeline reply value, asserting its format.
pub fn value_key(value: &Value, what: &str) -> String {
    expect_key(Ok(value.clone()), what)
}

/// Interprets a string-like value (bulk, simple or verbatim string).
pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// A syntactically valid key that no server will ever have issued for the
/// ids used in the tests (it is fixed, not random).
pub const FOREIGN_KEY: &str = "0123456789abcdef0123456789abcdef";

// ---------------------------------------------------------------------------
// Command execution over different client flavours
// ---------------------------------------------------------------------------

/// Runs one command and returns the decoded reply (server errors as `Err`).
pub trait Exec {
    fn exec(&mut self, args: &[&[u8]]) -> RedisResult<Value>;

    fn run(&mut self, args: &[&str]) -> RedisResult<Value> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.exec(&bytes)
    }
}

fn build_cmd(args: &[&[u8]]) -> redis::Cmd {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("command name is UTF-8"));
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd
}

impl Exec for redis::Connection {
    fn exec(&mut self, args: &[&[u8]]) -> RedisResult<Value> {
        build_cmd(args).query(self)
    }
}

/// The tokio multiplexed client driven from synchronous test code.
pub struct AsyncExec {
    rt: tokio::runtime::Runtime,
    con: redis::aio::MultiplexedConnection,
}

impl AsyncExec {
    pub fn connect(server: &Server, proto: Proto) -> AsyncExec {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let con = rt.block_on(server.async_connection(proto));
        AsyncExec { rt, con }
    }
}

impl Exec for AsyncExec {
    fn exec(&mut self, args: &[&[u8]]) -> RedisResult<Value> {
        let cmd = build_cmd(args);
        let con = &mut self.con;
        self.rt.block_on(async move { cmd.query_async(con).await })
    }
}
