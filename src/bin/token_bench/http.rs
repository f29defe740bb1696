//! An incremental HTTP/1.1 response parser for the load generator.
//!
//! [`parse`] looks at the front of a receive buffer and returns the first complete response
//! (status, body, whether the server will close the connection) and its length, `None` when
//! more bytes are needed, or an error. Only `Content-Length` bodies are understood: token-server
//! always sends one, and a chunked body is reported as an error rather than misread.

use std::fmt;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// One response, borrowing its body from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// The status code, e.g. 200 or 409.
    pub status: u16,
    /// The body bytes.
    pub body: &'a [u8],
    /// The server said `Connection: close`: no further response will come.
    pub closing: bool,
}

/// The server sent bytes this parser cannot read as a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed HTTP response from the server: {}", self.0)
    }
}

/// Parses the first response in `buf`: `Ok(Some((response, used_bytes)))`, `Ok(None)` when more
/// bytes are needed, or an error.
pub fn parse(buf: &[u8]) -> Result<Option<(Response<'_>, usize)>, ParseError> {
    let Some(head_len) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(ParseError(format!("head longer than {MAX_HEAD} bytes")));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| ParseError("head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(ParseError(format!("status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ParseError(format!("status line {status_line:?}")))?;
    let mut length = None;
    let mut closing = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError(format!("header line {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| ParseError(format!("Content-Length {value:?}")))?;
            if n > MAX_BODY {
                return Err(ParseError(format!("body of {n} bytes is too large")));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ParseError(format!(
                "Transfer-Encoding {value:?} is not supported (only Content-Length bodies)"
            )));
        } else if name.eq_ignore_ascii_case("connection") {
            closing = value.eq_ignore_ascii_case("close");
        }
    }
    let length = length.unwrap_or(0);
    let start = head_len + 4;
    let end = start + length;
    let Some(body) = buf.get(start..end) else {
        return Ok(None);
    };
    Ok(Some((
        Response {
            status,
            body,
            closing,
        },
        end,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\nabcdHTTP";

    #[test]
    fn a_response_and_its_length() {
        let (r, used) = parse(OK).unwrap().unwrap();
        assert_eq!(
            (r.status, r.body, r.closing, used),
            (200, &b"abcd"[..], false, OK.len() - 4)
        );
    }

    #[test]
    fn prefixes_are_incomplete() {
        for cut in 0..OK.len() - 4 {
            assert_eq!(parse(&OK[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn closing_and_errors() {
        let (r, _) =
            parse(b"HTTP/1.1 409 Conflict\r\nConnection: close\r\nContent-Length: 6\r\n\r\nlocked")
                .unwrap()
                .unwrap();
        assert_eq!((r.status, r.body, r.closing), (409, &b"locked"[..], true));
        assert!(parse(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }
}
