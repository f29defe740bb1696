//! Raw RESP connections: TCP with timeouts, requests encoded by hand, replies framed by the
//! shared reply reader, and the bytes shown readably.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use super::*;

// ---------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------

/// A plain TCP connection for sending arbitrary bytes.
pub struct RawConn {
    pub stream: TcpStream,
    /// Bytes received but not yet consumed by a reader method.
    pending: Vec<u8>,
}

/// A TCP connection to `addr` with [`IO_TIMEOUT`] on connecting, reading and writing, and
/// no Nagle delay: what every raw test connection starts from. `None` if it cannot connect.
pub fn try_tcp(addr: SocketAddr) -> Option<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.set_nodelay(true).ok()?;
    Some(stream)
}

/// [`try_tcp`], failing the test if it cannot connect.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    try_tcp(addr).unwrap_or_else(|| panic!("cannot connect to {addr}"))
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = tcp(addr);
        RawConn {
            stream,
            pending: Vec::new(),
        }
    }

    /// Writes all bytes; panics on failure.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    /// Writes as much as the server accepts, ignoring a reset or broken pipe
    /// (used when the server is expected to give up on the connection).
    pub fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// Reads more bytes into `pending`. Returns 0 on a clean or reset close.
    fn fill(&mut self) -> io::Result<usize> {
        let mut buf = [0u8; 64 * 1024];
        match self.stream.read(&mut buf) {
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(0),
            Err(e) if e.kind() == ErrorKind::Interrupted => self.fill(),
            Err(e) => Err(e),
        }
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.pending.len() < n {
            match self.fill() {
                Ok(0) => panic!(
                    "connection closed after {} of {n} expected bytes: {:?}",
                    self.pending.len(),
                    show(&self.pending)
                ),
                Ok(_) => {}
                Err(e) => panic!(
                    "read failed ({e}) after {} of {n} expected bytes: {:?}",
                    self.pending.len(),
                    show(&self.pending)
                ),
            }
        }
        self.pending.drain(..n).collect()
    }

    /// Reads as many replies as `expected` holds and compares the bytes.
    ///
    /// Counts whole replies rather than bytes, so a reply that is shorter
    /// than expected fails at once instead of waiting for more data.
    pub fn expect_bytes(&mut self, expected: &[u8], what: &str) {
        let mut frames = 0;
        let mut rest = expected;
        while let Some(len) = resp_frame_len(rest) {
            frames += 1;
            rest = &rest[len..];
        }
        let got = if rest.is_empty() && frames > 0 {
            let mut got = Vec::new();
            for _ in 0..frames {
                got.extend(self.read_reply());
                if !expected.starts_with(&got) {
                    break;
                }
            }
            got
        } else {
            self.read_exact_bytes(expected.len())
        };
        assert_eq!(show(&got), show(expected), "{what}: unexpected reply bytes");
    }

    /// Reads one complete RESP2/RESP3 reply and returns its raw bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(len) = resp_frame_len(&self.pending) {
                return self.pending.drain(..len).collect();
            }
            match self.fill() {
                Ok(0) => panic!(
                    "connection closed before a full reply arrived; got {:?}",
                    show(&self.pending)
                ),
                Ok(_) => {}
                Err(e) => panic!(
                    "read failed ({e}) before a full reply arrived; got {:?}",
                    show(&self.pending)
                ),
            }
        }
    }

    /// Connects, or `None` if the server is not there (it may have been killed).
    pub fn try_connect(addr: SocketAddr) -> Option<RawConn> {
        let stream = try_tcp(addr)?;
        Some(RawConn {
            stream,
            pending: Vec::new(),
        })
    }

    /// Writes all bytes; false if the connection failed (the server may have been killed).
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Reads `n` complete replies; `None` if the connection closes or fails first.
    pub fn try_read_replies(&mut self, n: usize) -> Option<Vec<Vec<u8>>> {
        let mut replies = Vec::with_capacity(n);
        while replies.len() < n {
            if let Some(len) = resp_frame_len(&self.pending) {
                replies.push(self.pending.drain(..len).collect());
                continue;
            }
            match self.fill() {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        Some(replies)
    }

    /// Reads until the server closes the connection and returns everything
    /// received. Panics if the connection is still open after the timeout.
    pub fn read_until_closed(&mut self, timeout: Duration) -> Vec<u8> {
        self.set_read_timeout(timeout);
        loop {
            match self.fill() {
                Ok(0) => return std::mem::take(&mut self.pending),
                Ok(_) => {}
                Err(e) => panic!(
                    "server did not close the connection within {timeout:?} ({e}); received {:?}",
                    show(&self.pending)
                ),
            }
        }
    }

    /// Asserts that nothing arrives within `wait` (connection stays open and
    /// silent).
    pub fn expect_silence(&mut self, wait: Duration, what: &str) {
        self.set_read_timeout(wait);
        let result = self.fill();
        self.set_read_timeout(IO_TIMEOUT);
        match result {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("{what}: connection was closed"),
            Ok(_) => panic!("{what}: unexpected bytes {:?}", show(&self.pending)),
            Err(e) => panic!("{what}: read error {e}"),
        }
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// A process's resident set size in bytes, from `/proc/<pid>/status` (0 if unreadable).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Human-readable rendering of protocol bytes for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    let limit = 400;
    for &b in bytes.iter().take(limit) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > limit {
        s.push_str(&format!("...({} bytes)", bytes.len()));
    }
    s
}

/// Length of the first complete RESP frame in `buf`, if it is complete (read by the one reply
/// reader, `token_server::protocol::reply_reader`, which token-bench uses too).
pub fn resp_frame_len(buf: &[u8]) -> Option<usize> {
    match token_server::protocol::reply_reader::parse(buf) {
        Ok(frame) => frame.map(|(_, len)| len),
        Err(e) => panic!("{e} in {:?}", show(buf)),
    }
}

/// Encodes a command as a RESP multibulk request.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Encodes a bulk-string reply the way the server must send it.
pub fn bulk(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

/// Parses a raw `$32\r\n<key>\r\n` reply into the key.
pub fn raw_key(reply: &[u8]) -> String {
    assert!(
        reply.starts_with(b"$32\r\n") && reply.len() == 32 + 7 && reply.ends_with(b"\r\n"),
        "expected a 32-byte bulk-string key, got {:?}",
        show(reply)
    );
    let key = String::from_utf8(reply[5..37].to_vec()).expect("key is ASCII");
    assert!(is_key(&key), "malformed key {key:?}");
    key
}
