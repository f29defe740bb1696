//! Shared harness for the black-box integration tests.
//!
//! Every test starts its own `token-server` process on free ports with a fresh
//! data directory, talks to it over TCP, and kills it when the [`Server`]
//! value is dropped.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{RedisError, RedisResult, Value};

/// How long to wait for the server to announce its listening address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Read/write timeout used on every client socket so a misbehaving server
/// fails a test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Marker the server prints once it accepts RESP connections.
const LISTEN_MARKER: &str = "listening resp=";
/// Marker the server prints (before the RESP one) once it accepts HTTP connections.
const HTTP_LISTEN_MARKER: &str = "listening http=";
/// Number of server output lines kept for failure diagnostics.
const MAX_LOG_LINES: usize = 500;

/// The RESP protocol version a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Resp2,
    Resp3,
}

impl Proto {
    pub const ALL: [Proto; 2] = [Proto::Resp2, Proto::Resp3];
}

/// A running `token-server` child process.
pub struct Server {
    pub resp_addr: SocketAddr,
    /// The HTTP address, from the `listening http=` line.
    pub http_addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Leave `dir` in place on drop (servers started on a given directory).
    keep_dir: bool,
}

impl Server {
    /// Starts the server with `--port 0 --http-port 0 --dir <fresh dir>`
    /// followed by `extra_args`, and waits until it reports its RESP address.
    pub fn start(extra_args: &[&str]) -> Server {
        Server::start_with_env(extra_args, &[])
    }

    /// [`Server::start`] through `wrapper`, a program that runs the server (it must exec it, so
    /// that the child is the server), such as `prlimit --nofile=100 --`.
    pub fn start_wrapped(wrapper: &[&str], extra_args: &[&str]) -> Server {
        let dir = unique_temp_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create data dir {}: {e}", dir.display()));
        Server::launch(&dir, false, wrapper, extra_args, &[]).unwrap_or_else(|f| {
            panic!(
                "token-server {extra_args:?} under {wrapper:?} exited with {}\n{}",
                f.status, f.output
            )
        })
    }

    /// [`Server::start`], with `env` added to the server's environment.
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = unique_temp_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create data dir {}: {e}", dir.display()));
        Server::launch(&dir, false, &[], extra_args, env).unwrap_or_else(|f| {
            panic!(
                "token-server {extra_args:?} exited with {} before printing `{LISTEN_MARKER}`\n{}",
                f.status, f.output
            )
        })
    }

    pub fn port(&self) -> u16 {
        self.resp_addr.port()
    }

    /// Finds the `listening http=` line in the output collected so far (the server prints it
    /// before the RESP line), waiting for it until `deadline`.
    fn wait_http_addr(&self, deadline: Instant) -> SocketAddr {
        loop {
            let found = {
                let lines = self.log.lock().unwrap_or_else(|e| e.into_inner());
                lines.iter().find_map(|line| parse_http_addr(line))
            };
            if let Some(addr) = found {
                return addr;
            }
            if Instant::now() > deadline {
                panic!(
                    "token-server did not print `{HTTP_LISTEN_MARKER}`\n{}",
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://` URL for the given protocol, without credentials.
    pub fn url(&self, proto: Proto) -> String {
        match proto {
            Proto::Resp2 => format!("redis://{}/", self.resp_addr),
            Proto::Resp3 => format!("redis://{}/?protocol=resp3", self.resp_addr),
        }
    }

    /// `redis://` URL carrying a password for the default user.
    pub fn url_with_password(&self, password: &str, proto: Proto) -> String {
        match proto {
            Proto::Resp2 => format!("redis://:{password}@{}/", self.resp_addr),
            Proto::Resp3 => format!("redis://:{password}@{}/?protocol=resp3", self.resp_addr),
        }
    }

    pub fn client(&self, proto: Proto) -> redis::Client {
        redis::Client::open(self.url(proto)).expect("valid redis URL")
    }

    /// A synchronous connection with generous I/O timeouts.
    pub fn connection(&self, proto: Proto) -> redis::Connection {
        connect_sync(&self.client(proto))
    }

    /// A multiplexed async connection with generous timeouts (the client's
    /// default response timeout is far too short for large debug-build
    /// pipelines).
    pub async fn async_connection(&self, proto: Proto) -> redis::aio::MultiplexedConnection {
        connect_async(&self.client(proto)).await
    }

    /// A raw TCP connection for byte-exact protocol checks.
    pub fn raw(&self) -> RawConn {
        RawConn::connect(self.resp_addr)
    }

    /// True while the child process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics with the captured server output if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            thread::sleep(Duration::from_millis(100));
            panic!(
                "token-server exited unexpectedly with {status}\n{}",
                self.log_text()
            );
        }
    }

    /// The most recent lines the server wrote to stdout/stderr.
    pub fn log_text(&self) -> String {
        let lines = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::from("---- token-server output ----\n");
        for line in lines.iter() {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str("---- end of token-server output ----");
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `Child::kill` sends SIGKILL to the child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("{}", self.log_text());
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn connect_sync(client: &redis::Client) -> redis::Connection {
    let con = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot connect to token-server: {e}"));
    con.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    con.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    con
}

pub fn async_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(IO_TIMEOUT))
        .set_response_timeout(Some(IO_TIMEOUT))
}

pub async fn connect_async(client: &redis::Client) -> redis::aio::MultiplexedConnection {
    client
        .get_multiplexed_async_connection_with_config(&async_config())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to token-server: {e}"))
}

fn unique_temp_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "token-server-test-{}-{n}-{nanos}",
        std::process::id()
    ))
}

/// Reads `stream` line by line until EOF, keeping the last lines for
/// diagnostics and reporting the first listening address seen.
fn spawn_drain<R: Read + Send + 'static>(
    name: &'static str,
    stream: R,
    addr_tx: mpsc::Sender<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
) {
    thread::Builder::new()
        .name(format!("token-server-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            let mut sent = false;
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = strip_ansi(&String::from_utf8_lossy(&buf));
                let line = line.trim_end().to_string();
                if !sent && let Some(addr) = parse_listen_addr(&line) {
                    sent = addr_tx.send(addr).is_ok();
                }
                let mut lines = log.lock().unwrap_or_else(|e| e.into_inner());
                if lines.len() >= MAX_LOG_LINES {
                    lines.remove(0);
                }
                lines.push(format!("[{name}] {line}"));
            }
        })
        .expect("spawn output drain thread");
}

/// Removes ANSI escape sequences (colours) from a log line.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Extracts the address following `listening resp=` in a log line.
pub fn parse_listen_addr(line: &str) -> Option<SocketAddr> {
    parse_addr_after(line, LISTEN_MARKER)
}

/// Extracts the address following `listening http=` in a log line.
pub fn parse_http_addr(line: &str) -> Option<SocketAddr> {
    parse_addr_after(line, HTTP_LISTEN_MARKER)
}

/// Extracts the address following `marker` in a log line.
fn parse_addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let start = line.find(marker)? + marker.len();
    let rest = &line[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    SocketAddr::from_str(&rest[..end]).ok()
}

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

// ---------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------

/// A plain TCP connection for sending arbitrary bytes.
pub struct RawConn {
    pub stream: TcpStream,
    /// Bytes received but not yet consumed by a reader method.
    pending: Vec<u8>,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
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
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
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

/// Length of the first complete RESP frame in `buf`, if it is complete.
pub fn resp_frame_len(buf: &[u8]) -> Option<usize> {
    frame_end(buf, 0)
}

fn line_end(buf: &[u8], start: usize) -> Option<usize> {
    buf[start..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| start + p)
}

fn frame_end(buf: &[u8], start: usize) -> Option<usize> {
    let kind = *buf.get(start)?;
    let eol = line_end(buf, start)?;
    let header = std::str::from_utf8(&buf[start + 1..eol]).ok();
    let after_line = eol + 2;
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after_line),
        b'$' | b'!' | b'=' => {
            let len: i64 = header?.parse().ok()?;
            if len < 0 {
                return Some(after_line);
            }
            let end = after_line + len as usize + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count: i64 = header?.parse().ok()?;
            if count < 0 {
                return Some(after_line);
            }
            let items = if matches!(kind, b'%' | b'|') {
                count * 2
            } else {
                count
            };
            let mut pos = after_line;
            for _ in 0..items {
                pos = frame_end(buf, pos)?;
            }
            if kind == b'|' {
                // An attribute precedes the actual reply.
                return frame_end(buf, pos);
            }
            Some(pos)
        }
        _ => panic!(
            "unexpected RESP type byte {:?} in {:?}",
            kind as char,
            show(buf)
        ),
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

// ---------------------------------------------------------------------------
// External tools
// ---------------------------------------------------------------------------

/// Locates an external program on `PATH`.
///
/// When it is missing the calling test should skip: this prints a loud
/// notice and returns `None`. With `TOKEN_SERVER_REQUIRE_TOOLS=1` a missing
/// tool fails the test instead.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    if let Some(path) = find_in_path(name) {
        return Some(path);
    }
    if std::env::var("TOKEN_SERVER_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("required tool `{name}` not found on PATH (TOKEN_SERVER_REQUIRE_TOOLS=1)");
    }
    // Written straight to the stderr handle rather than with `eprintln!`, so
    // the notice shows up even though the test harness captures the output
    // of passing tests.
    let _ = writeln!(
        io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPING TEST: `{name}` not found on PATH.\n\
         !!! Install it (Debian: apt-get install redis-tools) or set\n\
         !!! TOKEN_SERVER_REQUIRE_TOOLS=1 to turn this skip into a failure.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

/// Locates an optional program on `PATH`, without the skip notice of [`require_tool`].
pub fn find_tool(name: &str) -> Option<PathBuf> {
    find_in_path(name)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------
// Restarts on one data directory, kills and signals (durability tests)
// ---------------------------------------------------------------------------

/// A fresh, empty data directory that outlives the servers started on it with
/// [`Server::start_in`]; removed when dropped.
pub struct DataDir {
    pub path: PathBuf,
}

impl DataDir {
    pub fn new() -> DataDir {
        let path = unique_temp_dir();
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create data dir {}: {e}", path.display()));
        DataDir { path }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A server that exited before it reported its RESP address.
#[derive(Debug)]
pub struct StartFailure {
    pub status: ExitStatus,
    /// Everything it wrote to stdout and stderr.
    pub output: String,
}

impl Server {
    /// Starts the server with `--port 0 --http-port 0 --dir <dir>` followed by `extra_args`
    /// and waits until it reports its RESP address. The directory is left in place when
    /// the server is dropped, so another server can start on it.
    pub fn start_in(dir: &Path, extra_args: &[&str]) -> Server {
        Server::try_start_in(dir, extra_args).unwrap_or_else(|f| {
            panic!(
                "token-server {extra_args:?} on {} exited with {} before it was ready\n{}",
                dir.display(),
                f.status,
                f.output
            )
        })
    }

    /// [`Server::start_in`], returning the exit status and output of a server that exits
    /// before it is ready instead of panicking.
    pub fn try_start_in(dir: &Path, extra_args: &[&str]) -> Result<Server, StartFailure> {
        Server::launch(dir, true, &[], extra_args, &[])
    }

    /// Starts the binary on `dir` with `extra_args` and `env`, and waits until it reports its
    /// addresses; a server that exits first gives its status and output. `keep_dir`: leave
    /// the directory in place when the server is dropped.
    fn launch(
        dir: &Path,
        keep_dir: bool,
        wrapper: &[&str],
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, StartFailure> {
        let binary = env!("CARGO_BIN_EXE_token-server");
        let mut command = match wrapper.split_first() {
            None => Command::new(binary),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
        };
        command
            .args(["--port", "0", "--http-port", "0", "--dir"])
            .arg(dir)
            .args(extra_args)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("failed to spawn token-server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_drain("stdout", stdout, tx.clone(), Arc::clone(&log));
        spawn_drain("stderr", stderr, tx, Arc::clone(&log));
        let mut server = Server {
            resp_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: dir.to_path_buf(),
            child,
            log,
            keep_dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut exited: Option<(ExitStatus, Instant)> = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(addr) => {
                    server.resp_addr = addr;
                    server.http_addr = server.wait_http_addr(deadline);
                    return Ok(server);
                }
                // Both output pipes are closed: all the output is in.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = match exited {
                        Some((status, _)) => status,
                        None => server.child.wait().expect("wait for token-server"),
                    };
                    return Err(StartFailure {
                        status,
                        output: server.log_text(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if exited.is_none()
                && let Ok(Some(status)) = server.child.try_wait()
            {
                exited = Some((status, Instant::now()));
            }
            // An exited server whose pipes stay open (never expected): give up on the rest.
            if let Some((status, at)) = exited
                && at.elapsed() > Duration::from_secs(5)
            {
                return Err(StartFailure {
                    status,
                    output: server.log_text(),
                });
            }
            if Instant::now() > deadline {
                panic!(
                    "token-server {extra_args:?} did not print `{LISTEN_MARKER}` within {STARTUP_TIMEOUT:?}\n{}",
                    server.log_text()
                );
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL (`Child::kill` on Unix) and reaps it.
    pub fn kill_hard(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "token-server had already exited with {status} before the kill\n{}",
                self.log_text()
            );
        }
        self.child.kill().expect("SIGKILL token-server");
        self.child.wait().expect("reap token-server")
    }

    /// Sends SIGTERM (with the `kill` program) and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {} failed: {sent}", self.pid());
        self.wait_exit(timeout)
    }

    /// Whether any output line so far contains `needle`.
    pub fn output_contains(&self, needle: &str) -> bool {
        let lines = self.log.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().any(|l| l.contains(needle))
    }

    /// Waits up to `timeout` for a line containing `needle`: the server's output is read by
    /// another thread, so a line logged just before an event the test saw may not be in yet.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.output_contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

// ---------------------------------------------------------------------------
// Stopping on its own (SHUTDOWN) and looking at the output (operability tests)
// ---------------------------------------------------------------------------

impl Server {
    /// Waits up to `timeout` for the server to exit by itself (after `SHUTDOWN`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for token-server") {
                // Let the drain threads collect the last lines.
                thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "token-server did not exit within {timeout:?}\n{}",
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every output line so far, without the `[stdout]`/`[stderr]` prefix.
    pub fn output_lines(&self) -> Vec<String> {
        let lines = self.log.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .map(|l| {
                l.split_once("] ")
                    .map_or(l.as_str(), |(_, rest)| rest)
                    .to_string()
            })
            .collect()
    }
}

/// `python3`, if it is on `PATH` and can import `module` (e.g. `redis` for redis-py).
/// Like [`require_tool`], a missing one skips loudly, or fails with
/// `TOKEN_SERVER_REQUIRE_TOOLS=1`.
pub fn require_python_module(module: &str) -> Option<PathBuf> {
    let python = require_tool("python3")?;
    let imports = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if imports {
        return Some(python);
    }
    if std::env::var("TOKEN_SERVER_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("python module `{module}` not importable (TOKEN_SERVER_REQUIRE_TOOLS=1)");
    }
    let _ = writeln!(
        io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPING TEST: python module `{module}` is not installed.\n\
         !!! Install it (pip install {module}) or set\n\
         !!! TOKEN_SERVER_REQUIRE_TOOLS=1 to turn this skip into a failure.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}
