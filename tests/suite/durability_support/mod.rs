//! Helpers for the durability tests: a raw pipelining client that keeps every reply that
//! arrived before the server died, RESP2 replies as values, STATUS and INFO readers, and a
//! seeded random generator (print the seed, replay it with `DURABILITY_SEED`).

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::{IO_TIMEOUT, encode_command, show};

/// One command: its arguments, name first.
pub type Cmd = Vec<Vec<u8>>;

/// Builds a command from its arguments.
pub fn cmd<A: AsRef<[u8]>>(args: &[A]) -> Cmd {
    args.iter().map(|a| a.as_ref().to_vec()).collect()
}

/// A decoded RESP2 reply (RESP3 nulls are accepted too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Resp>),
}

impl Resp {
    /// Whether this is `+OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Resp::Simple(s) if s == "OK")
    }

    /// The error code (first word) of an error reply.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Resp::Error(e) => e.split_whitespace().next(),
            _ => None,
        }
    }

    /// A LOCK reply: the key, and the fence with WITHFENCE.
    pub fn key_and_fence(&self) -> Option<(String, Option<u64>)> {
        let key_of = |r: &Resp| match r {
            Resp::Bulk(b) if is_key(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        match self {
            Resp::Bulk(_) => Some((key_of(self)?, None)),
            Resp::Array(items) => match items.as_slice() {
                [k, Resp::Int(f)] if *f > 0 => Some((key_of(k)?, Some(*f as u64))),
                _ => None,
            },
            _ => None,
        }
    }

    /// The text of a bulk or simple string.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Resp::Simple(s) => Some(s.clone()),
            _ => None,
        }
    }
}

fn is_key(b: &[u8]) -> bool {
    b.len() == 32
        && b.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Parses the first complete reply in `buf`: the reply and its length in bytes (read by the
/// one reply reader, `token_server::protocol::reply_reader`).
pub fn parse_reply(buf: &[u8]) -> Option<(Resp, usize)> {
    use token_server::protocol::reply_reader::{Value, parse_value};
    fn convert(value: Value, buf: &[u8]) -> Resp {
        match value {
            Value::Simple(s) => Resp::Simple(s),
            Value::Error(e) => Resp::Error(e),
            Value::Int(n) => Resp::Int(n),
            Value::Bulk(b) => Resp::Bulk(b),
            Value::Nil => Resp::Nil,
            Value::Array(items) => {
                Resp::Array(items.into_iter().map(|v| convert(v, buf)).collect())
            }
            Value::Other(raw) => {
                panic!("unexpected RESP3 reply {:?} in {:?}", show(&raw), show(buf))
            }
        }
    }
    match parse_value(buf) {
        Ok(reply) => reply.map(|(value, len)| (convert(value, buf), len)),
        Err(e) => panic!("{e} in {:?}", show(buf)),
    }
}

/// A raw RESP connection that pipelines batches and keeps the replies that arrived before
/// the connection ended: a reply received is an acknowledged operation; a command whose
/// reply never came has an unknown outcome.
pub struct Pipe {
    stream: TcpStream,
    buf: Vec<u8>,
    dead: bool,
}

impl Pipe {
    pub fn connect(addr: SocketAddr) -> Pipe {
        let stream = crate::common::tcp(addr);
        Pipe {
            stream,
            buf: Vec::new(),
            dead: false,
        }
    }

    /// Whether the connection has ended (the server closed it or died).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Sends `cmds` in one write and reads their replies in order. Returns every reply that
    /// arrived; fewer than `cmds.len()` only if the connection ended. Panics if the server
    /// stays silent for [`IO_TIMEOUT`].
    pub fn send(&mut self, cmds: &[Cmd]) -> Vec<Resp> {
        let mut out = Vec::new();
        for c in cmds {
            let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            out.extend(encode_command(&args));
        }
        if !self.dead && self.stream.write_all(&out).is_err() {
            // Replies sent before the server died may still be readable.
            self.dead = true;
        }
        let mut replies = Vec::with_capacity(cmds.len());
        let mut chunk = vec![0u8; 64 * 1024];
        while replies.len() < cmds.len() {
            if let Some((reply, len)) = parse_reply(&self.buf) {
                self.buf.drain(..len);
                replies.push(reply);
                continue;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "no reply within {IO_TIMEOUT:?} ({} of {} received)",
                        replies.len(),
                        cmds.len()
                    )
                }
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        replies
    }

    /// [`Pipe::send`] in chunks of at most `chunk` commands; panics if any reply is missing.
    pub fn send_all(&mut self, cmds: &[Cmd], chunk: usize) -> Vec<Resp> {
        let mut replies = Vec::with_capacity(cmds.len());
        for part in cmds.chunks(chunk) {
            let got = self.send(part);
            assert_eq!(
                got.len(),
                part.len(),
                "the connection ended after {} of {} replies",
                replies.len() + got.len(),
                cmds.len()
            );
            replies.extend(got);
        }
        replies
    }

    /// Sends one command and returns its reply; panics if the connection ends.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Resp {
        let mut got = self.send(&[cmd(args)]);
        got.pop().expect("the connection ended before the reply")
    }

    /// `STATUS id`, parsed.
    pub fn status(&mut self, id: &str) -> Status {
        Status::parse(&self.call(&["STATUS", id]))
    }

    /// A numeric field of `INFO section`.
    pub fn info_field(&mut self, section: &str, field: &str) -> i64 {
        let text = self
            .call(&["INFO", section])
            .text()
            .expect("INFO replies with text");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO {section} has no numeric {field}: {text}"))
    }
}

/// A parsed STATUS reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub state: String,
    pub ttl_ms: i64,
    pub fence: u64,
    pub waiters: i64,
    /// `None`: no `result` field (not completed); `Some(None)`: a null result.
    pub result: Option<Option<Vec<u8>>>,
}

impl Status {
    /// Parses a RESP2 STATUS reply (a flat array of field/value pairs).
    pub fn parse(reply: &Resp) -> Status {
        let Resp::Array(items) = reply else {
            panic!("STATUS reply is not an array: {reply:?}");
        };
        let mut status = Status {
            state: String::new(),
            ttl_ms: i64::MIN,
            fence: 0,
            waiters: -1,
            result: None,
        };
        for pair in items.chunks(2) {
            let [name, value] = pair else {
                panic!("odd STATUS reply {reply:?}");
            };
            let int = || match value {
                Resp::Int(i) => *i,
                other => panic!("STATUS field {name:?} is not an integer: {other:?}"),
            };
            match name.text().as_deref() {
                Some("state") => status.state = value.text().expect("state is text"),
                Some("ttl_ms") => status.ttl_ms = int(),
                Some("fence") => status.fence = u64::try_from(int()).expect("fence >= 0"),
                Some("waiters") => status.waiters = int(),
                Some("result") => {
                    status.result = Some(match value {
                        Resp::Nil => None,
                        Resp::Bulk(b) => Some(b.clone()),
                        other => panic!("STATUS result {other:?}"),
                    })
                }
                _ => panic!("unexpected STATUS field {name:?} in {reply:?}"),
            }
        }
        assert!(
            matches!(status.state.as_str(), "free" | "locked" | "completed"),
            "STATUS without a valid state: {reply:?}"
        );
        status
    }
}

/// SplitMix64: small, fast and reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed from `DURABILITY_SEED`, or from the clock; printed so a failure can be replayed.
    pub fn seed(test: &str) -> u64 {
        let seed = std::env::var("DURABILITY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{test}: DURABILITY_SEED={seed}");
        seed
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
