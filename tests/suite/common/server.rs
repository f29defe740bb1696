//! Starting the server binary (on fresh or given data directories), reading its output,
//! stopping, killing and signalling it, and connecting the `redis` crate to it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

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

    // Restarts on one data directory, kills and signals (durability tests).

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

    // Stopping on its own (SHUTDOWN) and looking at the output (operability tests).

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
