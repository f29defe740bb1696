//! Request decoding: bytes from a client socket to one flat list of arguments.
//!
//! A Redis command is always a flat array of bulk strings (`*2\r\n$4\r\nLOCK\r\n$1\r\nx\r\n`) or
//! an inline line (`LOCK x\r\n`). This decoder accepts exactly those two shapes and nothing
//! nested, so hostile input such as `*1\r\n*1\r\n*1…` is a plain protocol error rather than a
//! recursion. It is zero-copy for multibulk requests: arguments are ranges into the caller's
//! buffer. Inline arguments may contain escapes, so they are unescaped into a scratch buffer.
//!
//! Every limit is checked on the header, before a byte of the body is buffered or allocated.
//! Error texts are Redis's own, so clients and Redis's protocol tests see what they expect.
//!
//! Over 500 lines with its unit tests (every limit and malformed input); the decoder is
//! about 450.

use std::ops::Range;

/// Limits applied while decoding one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted bulk argument in bytes.
    pub max_arg_len: usize,
    /// Largest accepted number of arguments in one command.
    pub max_args: usize,
    /// Longest inline line (and longest `*`/`$` header line) accepted without a newline.
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_arg_len: 1024 * 1024,
            max_args: 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// A protocol violation. The connection is answered with [`ProtocolError::message`] and closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The `*N` count is not a number or is over the limit.
    InvalidMultibulkLength,
    /// The `$N` length is negative, not a number, or over the limit.
    InvalidBulkLength,
    /// An array element did not start with `$`.
    ExpectedBulk(u8),
    /// An inline line grew past the limit with no newline.
    TooBigInline,
    /// A `*N` header line grew past the limit with no newline.
    TooBigMultibulkCount,
    /// A `$N` header line grew past the limit with no newline.
    TooBigBulkCount,
    /// An inline line had an unterminated quote.
    UnbalancedQuotes,
    /// Before authentication, a `*N` count over [`PRE_AUTH_MAX_ARGS`].
    UnauthenticatedMultibulkLength,
    /// Before authentication, a `$N` length over [`PRE_AUTH_MAX_ARG_LEN`].
    UnauthenticatedBulkLength,
}

/// Before a client authenticates (with `--requirepass`), at most this many arguments per
/// request, as Redis.
pub const PRE_AUTH_MAX_ARGS: usize = 10;
/// Before a client authenticates, at most this many bytes per argument, as Redis.
pub const PRE_AUTH_MAX_ARG_LEN: usize = 16 * 1024;

impl ProtocolError {
    /// The full error reply text (without the leading `-` and trailing CRLF).
    pub fn message(&self) -> String {
        match self {
            ProtocolError::InvalidMultibulkLength => {
                "ERR Protocol error: invalid multibulk length".into()
            }
            ProtocolError::InvalidBulkLength => "ERR Protocol error: invalid bulk length".into(),
            ProtocolError::ExpectedBulk(b) => {
                format!("ERR Protocol error: expected '$', got '{}'", char::from(*b))
            }
            ProtocolError::TooBigInline => "ERR Protocol error: too big inline request".into(),
            ProtocolError::TooBigMultibulkCount => {
                "ERR Protocol error: too big mbulk count string".into()
            }
            ProtocolError::TooBigBulkCount => {
                "ERR Protocol error: too big bulk count string".into()
            }
            ProtocolError::UnbalancedQuotes => {
                "ERR Protocol error: unbalanced quotes in request".into()
            }
            ProtocolError::UnauthenticatedMultibulkLength => {
                "ERR Protocol error: unauthenticated multibulk length".into()
            }
            ProtocolError::UnauthenticatedBulkLength => {
                "ERR Protocol error: unauthenticated bulk length".into()
            }
        }
    }
}

/// Where the ranges of a decoded request point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgSource {
    /// Into the input buffer that was decoded.
    Input,
    /// Into the decoder's scratch buffer (inline requests).
    Scratch,
}

/// The outcome of one decode attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole request of `consumed` bytes. Its arguments are in the decoder; zero arguments
    /// (an empty line, `*0`, `*-1`) means there is nothing to run.
    Request {
        /// Bytes of input this request occupied.
        consumed: usize,
    },
    /// More input is needed; the request cannot be complete before `at_least` bytes are buffered.
    Incomplete {
        /// A lower bound on the buffered length the request needs.
        at_least: usize,
    },
    /// The input is malformed.
    Error(ProtocolError),
}

/// A reusable request decoder: owns the argument ranges and the inline scratch buffer so that
/// decoding a request allocates nothing in the steady state.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    limits: Limits,
    /// The client has not authenticated yet: Redis's tighter pre-authentication caps apply.
    pub before_auth: bool,
    args: Vec<Range<usize>>,
    scratch: Vec<u8>,
    source: Option<ArgSource>,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            ..Default::default()
        }
    }

    /// Decodes the first request in `buf`.
    pub fn decode(&mut self, buf: &[u8]) -> Decoded {
        self.args.clear();
        self.source = None;
        match buf.first() {
            None => Decoded::Incomplete { at_least: 1 },
            Some(b'*') => {
                self.source = Some(ArgSource::Input);
                self.decode_multibulk(buf)
            }
            Some(_) => {
                self.source = Some(ArgSource::Scratch);
                self.decode_inline(buf)
            }
        }
    }

    /// The arguments of the last decoded request, resolved against the buffer it was decoded from.
    pub fn args<'a>(&'a self, input: &'a [u8]) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let base: &'a [u8] = match self.source {
            Some(ArgSource::Scratch) => &self.scratch,
            _ => input,
        };
        self.args
            .iter()
            .map(move |r| base.get(r.clone()).unwrap_or_default())
    }

    /// Number of arguments of the last decoded request.
    pub fn arg_count(&self) -> usize {
        self.args.len()
    }

    /// The arguments of the last decoded request as an indexable view over `input`.
    pub fn view<'a>(&'a self, input: &'a [u8]) -> Args<'a> {
        let base: &'a [u8] = match self.source {
            Some(ArgSource::Scratch) => &self.scratch,
            _ => input,
        };
        Args {
            base,
            ranges: &self.args,
        }
    }

    fn decode_multibulk(&mut self, buf: &[u8]) -> Decoded {
        let Some(line_end) = find_crlf(buf, 1) else {
            if buf.len() > self.limits.max_inline_len {
                return Decoded::Error(ProtocolError::TooBigMultibulkCount);
            }
            return Decoded::Incomplete {
                at_least: buf.len() + 1,
            };
        };
        let Some(count) = parse_int(&buf[1..line_end]) else {
            return Decoded::Error(ProtocolError::InvalidMultibulkLength);
        };
        let mut pos = line_end + 2;
        if count <= 0 {
            return Decoded::Request { consumed: pos };
        }
        if count as u64 > self.limits.max_args as u64 {
            return Decoded::Error(ProtocolError::InvalidMultibulkLength);
        }
        if self.before_auth && count as u64 > PRE_AUTH_MAX_ARGS as u64 {
            return Decoded::Error(ProtocolError::UnauthenticatedMultibulkLength);
        }
        for _ in 0..count {
            let Some(&first) = buf.get(pos) else {
                return Decoded::Incomplete { at_least: pos + 1 };
            };
            if first != b'$' {
                return Decoded::Error(ProtocolError::ExpectedBulk(first));
            }
            let Some(len_end) = find_crlf(buf, pos + 1) else {
                if buf.len() - pos > self.limits.max_inline_len {
                    return Decoded::Error(ProtocolError::TooBigBulkCount);
                }
                return Decoded::Incomplete {
                    at_least: buf.len() + 1,
                };
            };
            let len = match parse_int(&buf[pos + 1..len_end]) {
                Some(n) if n >= 0 && n as u64 <= self.limits.max_arg_len as u64 => n as usize,
                _ => return Decoded::Error(ProtocolError::InvalidBulkLength),
            };
            if self.before_auth && len > PRE_AUTH_MAX_ARG_LEN {
                return Decoded::Error(ProtocolError::UnauthenticatedBulkLength);
            }
            let start = len_end + 2;
            let end = start + len;
            // Like Redis, the two bytes after the payload are skipped, not inspected.
            if buf.len() < end + 2 {
                return Decoded::Incomplete { at_least: end + 2 };
            }
            self.args.push(start..end);
            pos = end + 2;
        }
        Decoded::Request { consumed: pos }
    }

    fn decode_inline(&mut self, buf: &[u8]) -> Decoded {
        let Some(nl) = memchr(b'\n', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Decoded::Error(ProtocolError::TooBigInline);
            }
            return Decoded::Incomplete {
                at_least: buf.len() + 1,
            };
        };
        let mut line = &buf[..nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        self.scratch.clear();
        if let Err(e) = split_inline(line, &mut self.scratch, &mut self.args) {
            return Decoded::Error(e);
        }
        if self.args.len() > self.limits.max_args {
            return Decoded::Error(ProtocolError::InvalidMultibulkLength);
        }
        if self.before_auth && self.args.len() > PRE_AUTH_MAX_ARGS {
            return Decoded::Error(ProtocolError::UnauthenticatedMultibulkLength);
        }
        Decoded::Request { consumed: nl + 1 }
    }
}

/// A borrowed view of one request's arguments; index 0 is the command name.
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    base: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// A view over arguments stored as ranges of `base` (used by tests and benches).
    pub fn new(base: &'a [u8], ranges: &'a [Range<usize>]) -> Self {
        Args { base, ranges }
    }

    /// Argument `i`, if present.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.base.get(self.ranges.get(i)?.clone())
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are no arguments at all.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The arguments from index `from` on.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
        let base = self.base;
        self.ranges
            .get(from..)
            .unwrap_or_default()
            .iter()
            .filter_map(move |r| base.get(r.clone()))
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Index of the `\r` of the first `\r\n` at or after `from`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    let mut i = 0;
    while let Some(off) = memchr(b'\r', &tail[i..]) {
        let at = i + off;
        match tail.get(at + 1) {
            Some(b'\n') => return Some(from + at),
            Some(_) => i = at + 1,
            None => return None,
        }
    }
    None
}

/// Parses a decimal integer the way Redis's `string2ll` does: optional `-`, digits, no spaces.
fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Some(if neg { -v } else { v })
}

/// Splits an inline line into arguments with the quoting rules of Redis's `sdssplitargs`:
/// whitespace separates, `"…"` understands `\n \r \t \b \a \\ \" \xHH`, `'…'` understands `\'`.
fn split_inline(
    line: &[u8],
    out: &mut Vec<u8>,
    args: &mut Vec<Range<usize>>,
) -> Result<(), ProtocolError> {
    let mut i = 0;
    loop {
        // NUL separates like a space (Redis's splitter stops at it too). It must be skipped
        // here as well, or an argument that starts at a NUL would never advance.
        while line
            .get(i)
            .is_some_and(|&b| b.is_ascii_whitespace() || b == 0)
        {
            i += 1;
        }
        if i >= line.len() {
            return Ok(());
        }
        let start = out.len();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            let Some(&c) = line.get(i) else {
                if in_dq || in_sq {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                break;
            };
            if in_dq {
                if c == b'\\' && line.get(i + 1) == Some(&b'x') {
                    let hex = (line.get(i + 2).copied(), line.get(i + 3).copied());
                    if let (Some(h), Some(l)) = hex
                        && let (Some(h), Some(l)) = (hex_val(h), hex_val(l))
                    {
                        out.push(h * 16 + l);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < line.len() {
                    let e = line[i + 1];
                    out.push(match e {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                    continue;
                }
                if c == b'"' {
                    // A closing quote must be followed by a space or the end.
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                out.push(c);
                i += 1;
            } else if in_sq {
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    out.push(b'\'');
                    i += 2;
                    continue;
                }
                if c == b'\'' {
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                out.push(c);
                i += 1;
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    _ => out.push(c),
                }
                i += 1;
            }
        }
        args.push(start..out.len());
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> (Decoded, Vec<Vec<u8>>) {
        let mut d = RequestDecoder::new(Limits::default());
        let r = d.decode(input);
        let args = d.args(input).map(|a| a.to_vec()).collect();
        (r, args)
    }

    #[test]
    fn multibulk_request() {
        let input = b"*2\r\n$4\r\nLOCK\r\n$3\r\na\0b\r\nextra";
        let (r, args) = decode_all(input);
        assert_eq!(r, Decoded::Request { consumed: 23 });
        assert_eq!(args, vec![b"LOCK".to_vec(), b"a\0b".to_vec()]);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let input = b"*2\r\n$4\r\nLOCK\r\n$10\r\n0123456789\r\n";
        for n in 0..input.len() {
            let (r, _) = decode_all(&input[..n]);
            match r {
                Decoded::Incomplete { at_least } => assert!(at_least > n, "prefix {n}"),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
        assert!(matches!(decode_all(input).0, Decoded::Request { .. }));
    }

    #[test]
    fn empty_and_null_arrays_are_ignored() {
        for input in [&b"*0\r\n"[..], b"*-1\r\n", b"\r\n", b"   \n"] {
            let (r, args) = decode_all(input);
            assert_eq!(
                r,
                Decoded::Request {
                    consumed: input.len()
                }
            );
            assert!(args.is_empty());
        }
    }

    #[test]
    fn redis_error_texts() {
        let cases: [(&[u8], &str); 7] = [
            (b"*abc\r\n", "ERR Protocol error: invalid multibulk length"),
            (b"*2000\r\n", "ERR Protocol error: invalid multibulk length"),
            (b"*1\r\nx\r\n", "ERR Protocol error: expected '$', got 'x'"),
            (
                b"*1\r\n*1\r\n*1\r\n",
                "ERR Protocol error: expected '$', got '*'",
            ),
            (b"*1\r\n$-5\r\n", "ERR Protocol error: invalid bulk length"),
            (b"*1\r\n$abc\r\n", "ERR Protocol error: invalid bulk length"),
            (
                b"*1\r\n$2000000\r\n",
                "ERR Protocol error: invalid bulk length",
            ),
        ];
        for (input, text) in cases {
            match decode_all(input).0 {
                Decoded::Error(e) => assert_eq!(e.message(), text),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn too_big_inline() {
        let big = vec![b'a'; 64 * 1024 + 1];
        assert_eq!(
            decode_all(&big).0,
            Decoded::Error(ProtocolError::TooBigInline)
        );
        let ok = vec![b'a'; 1000];
        assert!(matches!(decode_all(&ok).0, Decoded::Incomplete { .. }));
    }

    #[test]
    fn inline_quoting() {
        let (r, args) = decode_all(b"ECHO \"a b\\x41\\n\" 'it\\'s' plain\r\n");
        assert!(matches!(r, Decoded::Request { .. }));
        assert_eq!(
            args,
            vec![
                b"ECHO".to_vec(),
                b"a bA\n".to_vec(),
                b"it's".to_vec(),
                b"plain".to_vec()
            ]
        );
        assert_eq!(
            decode_all(b"ECHO \"open\r\n").0,
            Decoded::Error(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn inline_nul_bytes_separate_and_always_advance() {
        // Found by the resp_decode fuzz target: this input used to loop forever.
        let (r, args) = decode_all(b"\x00\x03\n");
        assert_eq!(r, Decoded::Request { consumed: 3 });
        assert_eq!(args, vec![b"\x03".to_vec()]);
        let (_, args) = decode_all(b"PING\x00\x00x\r\n");
        assert_eq!(args, vec![b"PING".to_vec(), b"x".to_vec()]);
        let (r, args) = decode_all(b"\x00\x00\n");
        assert_eq!(r, Decoded::Request { consumed: 3 });
        assert!(args.is_empty());
    }

    #[test]
    fn bulk_limit_is_checked_before_the_body_arrives() {
        // Only the header is buffered; the decoder must refuse without waiting for 2 MB.
        let (r, _) = decode_all(b"*1\r\n$2000000\r\n");
        assert_eq!(r, Decoded::Error(ProtocolError::InvalidBulkLength));
    }

    #[test]
    fn before_auth_at_most_ten_arguments_of_16_kib() {
        let mut d = RequestDecoder::new(Limits::default());
        d.before_auth = true;
        assert_eq!(
            d.decode(b"*11\r\n"),
            Decoded::Error(ProtocolError::UnauthenticatedMultibulkLength)
        );
        assert_eq!(
            d.decode(b"*2\r\n$4\r\nAUTH\r\n$16385\r\n"),
            Decoded::Error(ProtocolError::UnauthenticatedBulkLength)
        );
        assert!(matches!(
            d.decode(b"*2\r\n$4\r\nAUTH\r\n$16384\r\n"),
            Decoded::Incomplete { .. }
        ));
        let eleven = b"a ".repeat(11);
        assert_eq!(
            d.decode(&[&eleven[..], b"\r\n"].concat()),
            Decoded::Error(ProtocolError::UnauthenticatedMultibulkLength)
        );
        assert_eq!(
            ProtocolError::UnauthenticatedBulkLength.message(),
            "ERR Protocol error: unauthenticated bulk length"
        );
        d.before_auth = false;
        assert!(matches!(d.decode(b"*11\r\n"), Decoded::Incomplete { .. }));
    }
}
