//! Replies and their RESP2/RESP3 encoding.
//!
//! A [`Reply`] is a value, not bytes: commands build one, the connection encodes it for the
//! protocol version the client chose (`HELLO 2|3`) when it writes. Keeping replies as values
//! until the write also lets a shard hold back or replace them (for example until the log
//! record behind them is durable) without re-parsing bytes.

use std::borrow::Cow;
use std::io::Write;

use bytes::Bytes;

use crate::types::{Error, KeyBytes, hex_key};

/// The RESP version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default of every new connection.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// One reply to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// A simple string such as `PONG`.
    Simple(&'static str),
    /// An error: the full text, starting with the code in capitals (`LOCKED id is locked`).
    Error(Cow<'static, str>),
    /// A lock key, sent as a 32-character lowercase hex bulk string.
    Key(KeyBytes),
    /// A bulk string.
    Bulk(Bytes),
    /// A null (`$-1` in RESP2, `_` in RESP3).
    Null,
    /// An integer.
    Integer(i64),
    /// An array.
    Array(Vec<Reply>),
    /// A map in RESP3; a flat array of alternating keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A set in RESP3; an array in RESP2.
    Set(Vec<Reply>),
    /// A verbatim text string in RESP3 (`=`, format `txt`); a bulk string in RESP2.
    Verbatim(String),
}

impl From<Error> for Reply {
    fn from(error: Error) -> Reply {
        Reply::error(error.text())
    }
}

impl Reply {
    /// An error reply from static text.
    pub const fn error(text: &'static str) -> Reply {
        Reply::Error(Cow::Borrowed(text))
    }

    /// A bulk string copied from `s`.
    pub fn bulk(s: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_ref()))
    }

    /// Whether this reply is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of this reply to `out`.
    pub fn encode(&self, proto: Protocol, out: &mut Vec<u8>) {
        match self {
            Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(s) => line(out, b'-', &sanitize(s)),
            Reply::Key(k) => {
                out.extend_from_slice(b"$32\r\n");
                out.extend_from_slice(&hex_key(k));
                out.extend_from_slice(b"\r\n");
            }
            Reply::Bulk(b) => bulk(out, b'$', b),
            Reply::Null => match proto {
                Protocol::Resp2 => out.extend_from_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::Integer(i) => {
                // Writing to a Vec cannot fail.
                let _ = write!(out, ":{i}\r\n");
            }
            Reply::Array(items) => {
                header(out, b'*', items.len());
                for item in items {
                    item.encode(proto, out);
                }
            }
            Reply::Set(items) => {
                let kind = if proto == Protocol::Resp3 { b'~' } else { b'*' };
                header(out, kind, items.len());
                for item in items {
                    item.encode(proto, out);
                }
            }
            Reply::Map(pairs) => {
                match proto {
                    Protocol::Resp2 => header(out, b'*', pairs.len() * 2),
                    Protocol::Resp3 => header(out, b'%', pairs.len()),
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Verbatim(text) => match proto {
                Protocol::Resp2 => bulk(out, b'$', text.as_bytes()),
                Protocol::Resp3 => {
                    header(out, b'=', text.len() + 4);
                    out.extend_from_slice(b"txt:");
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            },
        }
    }
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    let _ = write!(out, "{}{n}\r\n", char::from(kind));
}

fn bulk(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    header(out, kind, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Error and simple-string lines cannot carry CR or LF; Redis replaces them with spaces.
fn sanitize(s: &str) -> Cow<'_, [u8]> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n') {
        Cow::Owned(
            s.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> Vec<u8> {
        let mut v = Vec::new();
        r.encode(p, &mut v);
        v
    }

    #[test]
    fn scalars() {
        assert_eq!(enc(&Reply::Ok, Protocol::Resp2), b"+OK\r\n");
        assert_eq!(enc(&Reply::Integer(-7), Protocol::Resp2), b":-7\r\n");
        assert_eq!(enc(&Reply::Null, Protocol::Resp2), b"$-1\r\n");
        assert_eq!(enc(&Reply::Null, Protocol::Resp3), b"_\r\n");
        assert_eq!(
            enc(&Reply::bulk("a\r\nb"), Protocol::Resp2),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(
            enc(&Reply::Error("ERR a\r\nb".into()), Protocol::Resp2),
            b"-ERR a  b\r\n"
        );
    }

    #[test]
    fn maps_flatten_in_resp2() {
        let m = Reply::Map(vec![(Reply::bulk("proto"), Reply::Integer(3))]);
        assert_eq!(enc(&m, Protocol::Resp2), b"*2\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(enc(&m, Protocol::Resp3), b"%1\r\n$5\r\nproto\r\n:3\r\n");
    }

    #[test]
    fn verbatim() {
        let v = Reply::Verbatim("a:1".into());
        assert_eq!(enc(&v, Protocol::Resp2), b"$3\r\na:1\r\n");
        assert_eq!(enc(&v, Protocol::Resp3), b"=7\r\ntxt:a:1\r\n");
    }
}
