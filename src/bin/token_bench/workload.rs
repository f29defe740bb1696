//! What each workload sends and how each reply is judged, for both servers.
//!
//! The equivalences with Redis:
//!
//! | step | token-server | Redis |
//! |---|---|---|
//! | lock | `LOCK id [PX ms]` → key | `SET id token NX [PX ms]` → `OK` (token: 32 random hex characters chosen here) |
//! | complete | `COMPLETE id key` → `OK` | `SET id done XX` → `OK` |
//! | release | `UNLOCK id key` → `OK` | `EVAL` compare-and-delete → `1` |
//! | refusal | `-LOCKED`, `-COMPLETED` | null reply |
//!
//! `SET id done XX` does not check the token: it is the cheapest completion Redis offers, so
//! the comparison leans towards Redis. Release uses the usual compare-and-delete script because a
//! plain `DEL` would let a client free a lock it lost.

use clap::ValueEnum;

use crate::http::Response;
use token_server::protocol::reply_reader::Reply;

/// What the load does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Lock a fresh id per operation (LOCK / SET NX PX).
    Lock,
    /// Lock a fresh id, then complete it with the returned key: the run-once pattern. One
    /// operation is the pair.
    Cycle,
    /// Race for a few ids (--ids): lock, and release at once when granted. Refusals are expected.
    Contended,
    /// The cycle over HTTP/1.1 keep-alive: GET /lock?id=..., then GET /complete?id=...&key=...
    /// on --http-port (token-server only).
    Http,
    /// PING: the loopback and request-handling floor.
    Ping,
}

impl Workload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Lock => "lock",
            Workload::Cycle => "cycle",
            Workload::Contended => "contended",
            Workload::Http => "http",
            Workload::Ping => "ping",
        }
    }
}

/// Which server is on the other end, and so which commands express the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The LOCK, COMPLETE and UNLOCK commands of token-server.
    TokenServer,
    /// A stock redis-server: SET NX PX, SET XX, EVAL compare-and-delete.
    Redis,
}

impl Target {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::TokenServer => "token-server",
            Target::Redis => "redis",
        }
    }
}

/// The second request of an operation, sent only for granted locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Complete the id for good.
    Complete,
    /// Free the id again.
    Release,
}

/// Redis's compare-and-delete: free the id only if it still holds our token.
const RELEASE_SCRIPT: &[u8] =
    b"if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";

/// How one reply is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The request did what it asked. For a token-server lock, the key it returned.
    Ok(Option<&'a [u8]>),
    /// A refusal the workload expects (racing for shared ids), by kind.
    Expected(&'a str),
    /// Anything else, by kind.
    Unexpected(&'a str),
}

/// Appends the id numbered `n`: the prefix, then at least 8 lowercase hex digits, so that a
/// 4-character prefix gives 12-byte ids.
pub fn push_id(out: &mut Vec<u8>, prefix: &[u8], n: u64) {
    out.extend_from_slice(prefix);
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(8);
    for i in (0..digits).rev() {
        out.push(HEX[((n >> (i * 4)) & 0xf) as usize]);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends a request in RESP multibulk form.
pub fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the lock request for `id`. `token` is the value Redis stores (ignored by
/// token-server, which makes its own key); `ttl` is the decimal lease in ms, if any.
pub fn push_lock(out: &mut Vec<u8>, target: Target, id: &[u8], token: &[u8], ttl: Option<&[u8]>) {
    match (target, ttl) {
        (Target::TokenServer, Some(ms)) => push_command(out, &[b"LOCK", id, b"PX", ms]),
        (Target::TokenServer, None) => push_command(out, &[b"LOCK", id]),
        (Target::Redis, Some(ms)) => push_command(out, &[b"SET", id, token, b"NX", b"PX", ms]),
        (Target::Redis, None) => push_command(out, &[b"SET", id, token, b"NX"]),
    }
}

/// Appends the request that finishes a granted lock on `id` held under `key`.
pub fn push_finish(out: &mut Vec<u8>, target: Target, finish: Finish, id: &[u8], key: &[u8]) {
    match (target, finish) {
        (Target::TokenServer, Finish::Complete) => push_command(out, &[b"COMPLETE", id, key]),
        (Target::TokenServer, Finish::Release) => push_command(out, &[b"UNLOCK", id, key]),
        (Target::Redis, Finish::Complete) => push_command(out, &[b"SET", id, b"done", b"XX"]),
        (Target::Redis, Finish::Release) => {
            push_command(out, &[b"EVAL", RELEASE_SCRIPT, b"1", id, key]);
        }
    }
}

/// Appends `GET /lock?id=..[&ttl=..]` (ids and keys are URL-safe by construction).
pub fn push_http_lock(out: &mut Vec<u8>, id: &[u8], ttl: Option<&[u8]>) {
    out.extend_from_slice(b"GET /lock?id=");
    out.extend_from_slice(id);
    if let Some(ms) = ttl {
        out.extend_from_slice(b"&ttl=");
        out.extend_from_slice(ms);
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
}

/// Appends `GET /complete?id=..&key=..`.
pub fn push_http_complete(out: &mut Vec<u8>, id: &[u8], key: &[u8]) {
    out.extend_from_slice(b"GET /complete?id=");
    out.extend_from_slice(id);
    out.extend_from_slice(b"&key=");
    out.extend_from_slice(key);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
}

/// Judges the reply to a PING.
pub fn judge_ping(reply: Reply<'_>) -> Outcome<'_> {
    match reply {
        Reply::Simple(b"PONG") => Outcome::Ok(None),
        other => unexpected(other),
    }
}

/// Judges the reply to a lock request. `shared` says ids are raced for, so refusals are
/// expected.
pub fn judge_lock(target: Target, shared: bool, reply: Reply<'_>) -> Outcome<'_> {
    match (target, reply) {
        (Target::TokenServer, Reply::Bulk(Some(key))) => Outcome::Ok(Some(key)),
        (Target::Redis, Reply::Simple(b"OK")) => Outcome::Ok(None),
        (Target::Redis, Reply::Bulk(None)) if shared => Outcome::Expected("nil"),
        (Target::TokenServer, Reply::Error(text)) if shared => {
            let kind = error_kind(text);
            if kind == "LOCKED" || kind == "COMPLETED" {
                Outcome::Expected(kind)
            } else {
                Outcome::Unexpected(kind)
            }
        }
        (_, other) => unexpected(other),
    }
}

/// Judges the reply to a completion or release.
pub fn judge_finish(target: Target, finish: Finish, reply: Reply<'_>) -> Outcome<'_> {
    match (target, finish, reply) {
        (_, _, Reply::Simple(b"OK")) => Outcome::Ok(None),
        (Target::Redis, Finish::Release, Reply::Integer(1)) => Outcome::Ok(None),
        (Target::Redis, Finish::Release, Reply::Integer(_)) => Outcome::Unexpected("not-owner"),
        (_, _, other) => unexpected(other),
    }
}

/// Judges an HTTP response to a lock (`complete` false) or a completion.
pub fn judge_http(complete: bool, shared: bool, response: Response<'_>) -> Outcome<'_> {
    match (response.status, complete) {
        (200, false) => Outcome::Ok(Some(response.body)),
        (200, true) => Outcome::Ok(None),
        (409, false) if shared => Outcome::Expected(http_kind(response)),
        _ => Outcome::Unexpected(http_kind(response)),
    }
}

fn http_kind(response: Response<'_>) -> &'static str {
    match response.status {
        400 => "HTTP-400",
        403 => "HTTP-403",
        404 => "HTTP-404",
        409 if response.body.starts_with(b"locked") => "HTTP-409-locked",
        409 => "HTTP-409-complete",
        500..=599 => "HTTP-5xx",
        _ => "HTTP-other",
    }
}

fn unexpected(reply: Reply<'_>) -> Outcome<'_> {
    Outcome::Unexpected(match reply {
        Reply::Error(text) => error_kind(text),
        Reply::Bulk(None) | Reply::Aggregate(None) => "nil",
        Reply::Simple(_) => "unexpected-status",
        Reply::Integer(_) => "unexpected-integer",
        Reply::Bulk(Some(_)) => "unexpected-bulk",
        Reply::Aggregate(Some(_)) => "unexpected-array",
        Reply::Other => "unexpected-type",
    })
}

/// The code of an error reply: its first word, or a fixed label when that is not a short
/// printable word.
fn error_kind(text: &[u8]) -> &str {
    let word = text.split(|&b| b == b' ').next().unwrap_or_default();
    match std::str::from_utf8(word) {
        Ok(s) if !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_graphic()) => s,
        _ => "error",
    }
}

/// A small, fast generator for ids and tokens; not for secrets.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value; zero is mapped away).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next 64 random bits (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Overwrites `out` with 32 random lowercase hex characters.
    pub fn fill_token(&mut self, out: &mut Vec<u8>) {
        out.clear();
        for _ in 0..2 {
            let x = self.next_u64();
            for i in (0..16).rev() {
                out.push(HEX[((x >> (i * 4)) & 0xf) as usize]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twelve_bytes_with_a_four_byte_prefix() {
        let mut out = Vec::new();
        push_id(&mut out, b"abcd", 0x1f);
        assert_eq!(out, b"abcd0000001f");
        out.clear();
        push_id(&mut out, b"", 0x1_0000_0000);
        assert_eq!(out, b"100000000");
    }

    #[test]
    fn commands_are_multibulk() {
        let mut out = Vec::new();
        push_lock(&mut out, Target::Redis, b"i", b"t", Some(b"30000"));
        assert_eq!(
            out,
            b"*6\r\n$3\r\nSET\r\n$1\r\ni\r\n$1\r\nt\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n"
        );
        out.clear();
        push_decimal(&mut out, 0);
        push_decimal(&mut out, u64::MAX);
        assert_eq!(out, b"018446744073709551615");
    }

    #[test]
    fn refusals_are_expected_only_for_shared_ids() {
        let locked = Reply::Error(b"LOCKED the id is locked");
        assert_eq!(
            judge_lock(Target::TokenServer, true, locked),
            Outcome::Expected("LOCKED")
        );
        assert_eq!(
            judge_lock(Target::TokenServer, false, locked),
            Outcome::Unexpected("LOCKED")
        );
        assert_eq!(
            judge_lock(Target::Redis, true, Reply::Bulk(None)),
            Outcome::Expected("nil")
        );
        assert_eq!(
            judge_lock(Target::Redis, false, Reply::Bulk(None)),
            Outcome::Unexpected("nil")
        );
        assert_eq!(
            judge_lock(Target::TokenServer, true, Reply::Error(b"ERR bad")),
            Outcome::Unexpected("ERR")
        );
        assert_eq!(error_kind(b"\xff\xfe"), "error");
    }

    #[test]
    fn tokens_are_hex() {
        let mut rng = Rng::new(0);
        let mut token = Vec::new();
        rng.fill_token(&mut token);
        assert_eq!(token.len(), 32);
        assert!(token.iter().all(|b| HEX.contains(b)));
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
