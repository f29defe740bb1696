//! Helpers for the HTTP black-box tests: a `ureq` agent that reports every status as a value,
//! and a raw HTTP/1.1 connection for keep-alive, pipelining and malformed requests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::{IO_TIMEOUT, Server, show};

/// A response as the tests look at it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status and the exact body.
    pub fn expect(&self, status: u16, body: &str, what: &str) {
        assert_eq!(
            (self.status, self.text().as_str()),
            (status, body),
            "{what}: unexpected response {self:?}"
        );
    }
}

/// A `ureq` agent with generous timeouts that returns 4xx/5xx responses instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(IO_TIMEOUT))
        .build()
        .into()
}

fn collect(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
) -> HttpResponse {
    let mut response = result.unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .read_to_vec()
        .unwrap_or_else(|e| panic!("{what}: cannot read the body: {e}"));
    HttpResponse {
        status: response.status().as_u16(),
        headers,
        body,
    }
}

/// `GET http://<server>/<target>` with `agent`.
pub fn get(agent: &ureq::Agent, server: &Server, target: &str) -> HttpResponse {
    let url = format!("http://{}{target}", server.http_addr);
    collect(agent.get(&url).call(), &format!("GET {target}"))
}

/// `method http://<server>/<target>` without a body.
pub fn request(agent: &ureq::Agent, server: &Server, method: &str, target: &str) -> HttpResponse {
    let url = format!("http://{}{target}", server.http_addr);
    let what = format!("{method} {target}");
    let result = match method {
        "GET" => agent.get(&url).call(),
        "HEAD" => agent.head(&url).call(),
        "DELETE" => agent.delete(&url).call(),
        "OPTIONS" => agent.options(&url).call(),
        "POST" => agent.post(&url).send_empty(),
        "PUT" => agent.put(&url).send_empty(),
        "PATCH" => agent.patch(&url).send_empty(),
        other => panic!("no helper for method {other}"),
    };
    collect(result, &what)
}

/// `POST http://<server>/<target>` with `body` of type `content_type` (none if empty).
pub fn post(
    agent: &ureq::Agent,
    server: &Server,
    target: &str,
    content_type: &str,
    body: &[u8],
) -> HttpResponse {
    let url = format!("http://{}{target}", server.http_addr);
    let mut request = agent.post(&url);
    if !content_type.is_empty() {
        request = request.header("Content-Type", content_type);
    }
    collect(request.send(body), &format!("POST {target}"))
}

/// `GET /lock?id=<id>` and asserts a 200 with a key as the whole body; returns the key.
pub fn lock_key(agent: &ureq::Agent, server: &Server, encoded_id: &str) -> String {
    let response = get(agent, server, &format!("/lock?id={encoded_id}"));
    assert_eq!(response.status, 200, "lock {encoded_id}: {response:?}");
    let key = response.text();
    assert!(
        crate::common::is_key(&key),
        "lock {encoded_id}: the body must be exactly a key, got {:?}",
        show(&response.body)
    );
    key
}

/// Percent-encodes every byte of `id`.
pub fn encode_all(id: &[u8]) -> String {
    id.iter().map(|b| format!("%{b:02X}")).collect()
}

/// A plain TCP connection speaking HTTP/1.1 by hand.
pub struct HttpConn {
    reader: BufReader<TcpStream>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> HttpConn {
        let stream = crate::common::tcp(addr);
        HttpConn {
            reader: BufReader::new(stream),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    /// Writes what the server takes, ignoring a reset (it may give up on us mid-way).
    pub fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.reader.get_mut().write_all(bytes);
    }

    /// Sends one `GET target` and reads its response.
    pub fn get(&mut self, target: &str) -> HttpResponse {
        self.send(&get_request(target));
        self.read_response()
            .unwrap_or_else(|| panic!("GET {target}: connection closed without a response"))
    }

    /// Reads one response; `None` if the server closed (or reset) the connection first.
    pub fn read_response(&mut self) -> Option<HttpResponse> {
        let status_line = self.read_line()?;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self
                .read_line()
                .unwrap_or_else(|| panic!("connection closed inside the headers"));
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = response
            .header("content-length")
            .unwrap_or_else(|| panic!("no content-length in {response:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("bad content-length: {e}"));
        response.body = vec![0; length];
        self.reader
            .read_exact(&mut response.body)
            .unwrap_or_else(|e| panic!("body cut short: {e}"));
        Some(response)
    }

    /// One CRLF-terminated line without its ending; `None` at a clean close or reset before it.
    fn read_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("read failed: {e}; got {:?}", show(&line)),
        }
        assert!(
            line.ends_with(b"\r\n"),
            "line without CRLF: {:?}",
            show(&line)
        );
        line.truncate(line.len() - 2);
        Some(String::from_utf8(line).expect("response heads are ASCII"))
    }

    /// Reads until the server closes the connection; returns what arrived, or panics if it is
    /// still open after `timeout`.
    pub fn read_until_closed(&mut self, timeout: Duration) -> Vec<u8> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
                Err(e) => panic!(
                    "the server kept the connection open past {timeout:?} ({e}); got {:?}",
                    show(&out)
                ),
            }
        }
    }
}

/// The bytes of `GET target HTTP/1.1` with a Host header.
pub fn get_request(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: token-server\r\n\r\n").into_bytes()
}
