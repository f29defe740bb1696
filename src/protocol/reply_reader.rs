//! Reading replies: the client side of the protocol, for the load generator (`token-bench`) and
//! the tests, which share this one reader. The server itself never reads a reply.
//!
//! [`parse`] looks at the front of a receive buffer and returns the first complete reply and
//! how many bytes it took, `None` when more bytes are needed, or an error when the bytes cannot
//! be a reply. It never panics on any input and never copies: strings borrow the buffer.
//! Aggregates (arrays, maps, sets, pushes) are walked to find their end but only their element
//! count is returned, which is all a benchmark needs from them. [`parse_value`] reads the same
//! bytes into an owned tree, for tests that look inside aggregates.

use std::fmt;

/// Deepest aggregate nesting accepted; deeper input is refused rather than recursed into.
const MAX_DEPTH: usize = 16;
/// Longest header line (type byte to CRLF) accepted before the input is declared malformed.
const MAX_LINE: usize = 64 * 1024;

/// One reply, borrowing its bytes from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+text`: a simple string such as `OK` or `PONG`.
    Simple(&'a [u8]),
    /// `-CODE message` (or RESP3 `!` blob error): the whole text after the type byte.
    Error(&'a [u8]),
    /// `:n`: an integer.
    Integer(i64),
    /// `$n` bulk string; `None` for the null bulk (`$-1`) and RESP3 null (`_`).
    Bulk(Option<&'a [u8]>),
    /// An aggregate with this many elements (`None` for the null array `*-1`).
    Aggregate(Option<usize>),
    /// Any other RESP3 scalar (double, boolean, big number, verbatim string).
    Other,
}

/// The server sent bytes that are not a RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed reply from the server: {}", self.0)
    }
}

/// Parses the first reply in `buf`: `Ok(Some((reply, used_bytes)))`, `Ok(None)` when `buf`
/// holds only part of a reply, or an error for bytes that cannot be a reply.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ParseError> {
    parse_at(buf, 0, 0)
}

fn parse_at(
    buf: &[u8],
    start: usize,
    depth: usize,
) -> Result<Option<(Reply<'_>, usize)>, ParseError> {
    let Some(&kind) = buf.get(start) else {
        return Ok(None);
    };
    let Some(eol) = find_crlf(buf, start + 1)? else {
        return Ok(None);
    };
    let line = &buf[start + 1..eol];
    let next = eol + 2;
    let reply = match kind {
        b'+' => (Reply::Simple(line), next),
        b'-' => (Reply::Error(line), next),
        b':' => (Reply::Integer(number(line)?), next),
        b'_' => (Reply::Bulk(None), next),
        b',' | b'#' | b'(' => (Reply::Other, next),
        b'$' | b'!' | b'=' => {
            let len = number(line)?;
            if len < 0 {
                if kind == b'$' {
                    (Reply::Bulk(None), next)
                } else {
                    return Err(ParseError(format!("negative length {len}")));
                }
            } else {
                let len = usize::try_from(len)
                    .map_err(|_| ParseError(format!("length {len} too large")))?;
                let end = next.saturating_add(len);
                let Some(after) = buf.get(end..end.saturating_add(2)) else {
                    return Ok(None);
                };
                if after.len() < 2 {
                    return Ok(None);
                }
                if after != b"\r\n" {
                    return Err(ParseError("bulk string not followed by CRLF".into()));
                }
                let body = &buf[next..end];
                let reply = match kind {
                    b'$' => Reply::Bulk(Some(body)),
                    b'!' => Reply::Error(body),
                    _ => Reply::Other,
                };
                (reply, end + 2)
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            if depth >= MAX_DEPTH {
                return Err(ParseError(format!(
                    "aggregates nested over {MAX_DEPTH} deep"
                )));
            }
            let count = number(line)?;
            if count < 0 {
                (Reply::Aggregate(None), next)
            } else {
                let count = usize::try_from(count)
                    .map_err(|_| ParseError(format!("count {count} too large")))?;
                let items = if matches!(kind, b'%' | b'|') {
                    count.saturating_mul(2)
                } else {
                    count
                };
                let mut pos = next;
                for _ in 0..items {
                    match parse_at(buf, pos, depth + 1)? {
                        Some((_, end)) => pos = end,
                        None => return Ok(None),
                    }
                }
                if kind == b'|' {
                    // An attribute map comes before the reply it describes.
                    return parse_at(buf, pos, depth + 1);
                }
                (Reply::Aggregate(Some(count)), pos)
            }
        }
        other => {
            return Err(ParseError(format!(
                "unexpected type byte 0x{other:02x} ({:?})",
                char::from(other)
            )));
        }
    };
    Ok(Some(reply))
}

/// A reply as an owned tree. Maps, sets and pushes read as arrays (a map's keys and values
/// alternate, as RESP2 sends them); attributes are skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+text`.
    Simple(String),
    /// `-CODE message` (or a blob error).
    Error(String),
    /// `:n`.
    Int(i64),
    /// A bulk string.
    Bulk(Vec<u8>),
    /// A null of any kind.
    Nil,
    /// An aggregate's elements.
    Array(Vec<Value>),
    /// Any other RESP3 scalar (double, boolean, big number, verbatim string), as its text.
    Other(Vec<u8>),
}

/// Parses the first reply in `buf` into a [`Value`]: `Ok(Some((value, used_bytes)))`,
/// `Ok(None)` when `buf` holds only part of a reply, or an error for bytes that cannot be one.
pub fn parse_value(buf: &[u8]) -> Result<Option<(Value, usize)>, ParseError> {
    value_at(buf, 0, 0)
}

fn value_at(buf: &[u8], start: usize, depth: usize) -> Result<Option<(Value, usize)>, ParseError> {
    let Some(&kind) = buf.get(start) else {
        return Ok(None);
    };
    if !matches!(kind, b'*' | b'~' | b'>' | b'%' | b'|') {
        let Some((reply, end)) = parse_at(buf, start, depth)? else {
            return Ok(None);
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let value = match reply {
            Reply::Simple(s) => Value::Simple(text(s)),
            Reply::Error(e) => Value::Error(text(e)),
            Reply::Integer(n) => Value::Int(n),
            Reply::Bulk(Some(b)) => Value::Bulk(b.to_vec()),
            Reply::Bulk(None) | Reply::Aggregate(None) => Value::Nil,
            Reply::Aggregate(Some(_)) | Reply::Other => Value::Other(
                buf.get(start + 1..end.saturating_sub(2))
                    .unwrap_or_default()
                    .to_vec(),
            ),
        };
        return Ok(Some((value, end)));
    }
    if depth >= MAX_DEPTH {
        return Err(ParseError(format!(
            "aggregates nested over {MAX_DEPTH} deep"
        )));
    }
    if kind == b'|' {
        // An attribute map comes before the reply it describes: skip it.
        let Some((_, end)) = parse_at(buf, start, depth)? else {
            return Ok(None);
        };
        return value_at(buf, end, depth);
    }
    let Some(eol) = find_crlf(buf, start + 1)? else {
        return Ok(None);
    };
    let count = number(&buf[start + 1..eol])?;
    let mut pos = eol + 2;
    let Ok(count) = usize::try_from(count) else {
        return Ok(Some((Value::Nil, pos)));
    };
    let items = if kind == b'%' {
        count.saturating_mul(2)
    } else {
        count
    };
    let mut values = Vec::with_capacity(items.min(1024));
    for _ in 0..items {
        match value_at(buf, pos, depth + 1)? {
            Some((value, end)) => {
                values.push(value);
                pos = end;
            }
            None => return Ok(None),
        }
    }
    Ok(Some((Value::Array(values), pos)))
}

/// Position of the CRLF that ends the line starting at `from`, if it has arrived.
fn find_crlf(buf: &[u8], from: usize) -> Result<Option<usize>, ParseError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(p) => Ok(Some(from + p)),
        None if rest.len() > MAX_LINE => Err(ParseError(format!(
            "header line longer than {MAX_LINE} bytes"
        ))),
        None => Ok(None),
    }
}

fn number(line: &[u8]) -> Result<i64, ParseError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ParseError(format!(
                "{:?} is not a number",
                String::from_utf8_lossy(line)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Some((Reply::Simple(b"OK"), 5))));
        assert_eq!(
            parse(b"-LOCKED held\r\n+x"),
            Ok(Some((Reply::Error(b"LOCKED held"), 14)))
        );
        assert_eq!(parse(b":-7\r\n"), Ok(Some((Reply::Integer(-7), 5))));
        assert_eq!(
            parse(b"$3\r\nabc\r\n"),
            Ok(Some((Reply::Bulk(Some(b"abc")), 9)))
        );
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        assert_eq!(parse(b"_\r\n"), Ok(Some((Reply::Bulk(None), 3))));
    }

    #[test]
    fn values_are_owned_trees() {
        let input = b"*3\r\n$2\r\nab\r\n*2\r\n:5\r\n_\r\n%1\r\n+k\r\n-ERR v\r\n+next\r\n";
        let (value, used) = parse_value(input).unwrap().unwrap();
        assert_eq!(
            value,
            Value::Array(vec![
                Value::Bulk(b"ab".to_vec()),
                Value::Array(vec![Value::Int(5), Value::Nil]),
                Value::Array(vec![
                    Value::Simple("k".into()),
                    Value::Error("ERR v".into())
                ]),
            ])
        );
        assert_eq!(&input[used..], b"+next\r\n");
        for cut in 0..used {
            assert_eq!(parse_value(&input[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse_value(b"*-1\r\n"), Ok(Some((Value::Nil, 5))));
        assert!(parse_value(b"?\r\n").is_err());
    }

    #[test]
    fn aggregates_are_skipped_whole() {
        let input = b"*2\r\n$2\r\nab\r\n:5\r\n+next\r\n";
        assert_eq!(parse(input), Ok(Some((Reply::Aggregate(Some(2)), 16))));
        assert_eq!(
            parse(b"%1\r\n+a\r\n+b\r\n"),
            Ok(Some((Reply::Aggregate(Some(1)), 12)))
        );
        assert_eq!(parse(b"*-1\r\n"), Ok(Some((Reply::Aggregate(None), 5))));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let whole: &[u8] = b"*3\r\n$32\r\n0123456789abcdef0123456789abcdef\r\n:12\r\n-ERR x\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(
            matches!(parse(whole), Ok(Some((Reply::Aggregate(Some(3)), n))) if n == whole.len())
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"?\r\n"[..],
            b"$x\r\n",
            b"$3\r\nabcde\r\n",
            b":1.5\r\n",
            b"!-2\r\n",
            b"$99999999999999999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).is_err());
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(parse(&long).is_err());
    }
}
