//! An incremental RESP2/RESP3 reply parser for the load generator.
//!
//! [`parse`] looks at the front of a receive buffer and returns the first complete reply and
//! how many bytes it took, `None` when more bytes are needed, or an error when the bytes cannot
//! be a reply. It never panics on any input and never copies: strings borrow the buffer.
//! Aggregates (arrays, maps, sets, pushes) are walked to find their end but only their element
//! count is returned, which is all a benchmark needs from them.

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
