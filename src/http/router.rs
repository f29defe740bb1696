//! One request in, one response out: route by path and method, read the query (and a
//! `/complete` body, which may carry the result) into an [`Op`], run it on the shard that owns
//! its id, and map its outcome. Every request is timed
//! and counted by endpoint and status ([`crate::metrics::http`]). A refused `/lock` carries the
//! holder's lease left, for `Retry-After`.
//!
//! The one request that gets no response is a write chaos mode ran and then dropped
//! ([`Answer::Hangup`]): [`Router::handle`] fails with [`LostReply`], and the HTTP library then
//! closes the connection without answering, as a crash after the change would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::oneshot;

use crate::command::CommandLimits;
use crate::context::ServerContext;
use crate::http::status::{self, Body, Endpoint};
use crate::http::{probes, query};
use crate::metrics::http::HttpStats;
use crate::shard::mesh::{Answer, External, Inbox, ReplyFn};
use crate::table::Op;
use crate::types::shard_for;

/// The most request-body bytes read (and thrown away) where parameters come in the query
/// string; and what a `/complete` body may hold besides its result.
const MAX_BODY: usize = 8 * 1024;

/// The methods a lock endpoint accepts.
const LOCK_METHODS: &str = "GET, POST";
/// The methods the help page and the probes accept.
const HELP_METHODS: &str = "GET, HEAD";

/// The failure that makes the HTTP library close the connection without a response: chaos
/// mode ran the request and drops its reply.
#[derive(Debug)]
pub struct LostReply;

impl std::fmt::Display for LostReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("chaos mode dropped the reply")
    }
}

impl std::error::Error for LostReply {}

/// The code answered when the owning shard cannot take or answer the command (it has
/// stopped).
const UNAVAILABLE: &str = "UNAVAILABLE";

/// What every request handler shares.
#[derive(Debug)]
pub struct Router {
    /// One inbox per shard, indexed by [`shard_for`].
    pub inboxes: Vec<Inbox>,
    /// The limits ids are checked against, the same as over RESP.
    pub limits: CommandLimits,
    /// Figures, readiness and the shutdown switch.
    pub ctx: Arc<ServerContext>,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
}

impl Router {
    /// Answers one request, and counts it. Every problem is a response; the only failure is
    /// [`LostReply`].
    pub async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, LostReply> {
        let started = Instant::now();
        let endpoint = HttpStats::endpoint_of(request.uri().path());
        let result = self.respond(request).await;
        let status = result.as_ref().map_or(0, |r| r.status().as_u16());
        self.ctx
            .figures
            .http
            .record(endpoint, status, started.elapsed());
        result
    }

    async fn respond(&self, request: Request<Incoming>) -> Result<Response<Body>, LostReply> {
        let endpoint = match request.uri().path() {
            path @ ("/" | "/health" | "/ready" | "/metrics") => {
                if !matches!(*request.method(), Method::GET | Method::HEAD) {
                    return Ok(status::method_not_allowed(HELP_METHODS));
                }
                return Ok(match path {
                    "/" => status::help(),
                    "/health" => probes::health(),
                    "/ready" => probes::ready(&self.ctx),
                    _ => probes::metrics(&self.ctx),
                });
            }
            "/lock" => Endpoint::Lock,
            "/unlock" => Endpoint::Unlock,
            "/complete" => Endpoint::Complete,
            "/renew" => Endpoint::Renew,
            "/status" => Endpoint::Status,
            _ => return Ok(status::not_found()),
        };
        if !matches!(*request.method(), Method::GET | Method::POST) {
            return Ok(status::method_not_allowed(LOCK_METHODS));
        }
        if self.ctx.lifecycle.is_stopping() {
            return Ok(probes::shutting_down());
        }
        let (parts, body) = request.into_parts();
        // Only /complete reads its body (the result may be large); others throw it away.
        let limit = match endpoint {
            Endpoint::Complete => self.limits.max_result_size.saturating_mul(3) + MAX_BODY,
            _ => MAX_BODY,
        };
        let body = match tokio::time::timeout(self.body_timeout, read_body(body, limit)).await {
            Ok(Ok(body)) => body,
            Ok(Err(response)) => return Ok(response),
            Err(_) => return Ok(status::body_timeout()),
        };
        let from_body = match endpoint {
            Endpoint::Complete if !body.is_empty() => match body_kind(&parts.headers, &body) {
                Ok(from_body) => from_body,
                Err(BodyRefusal::NotUtf8) => {
                    return Ok(status::bad_request(query::BAD_FORM_BODY.sentence()));
                }
                Err(BodyRefusal::MediaType) => {
                    return Ok(status::text(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        Bytes::from_static(
                            b"unsupported media type: send the result form-encoded \
                              (application/x-www-form-urlencoded) or as text/plain",
                        ),
                    ));
                }
            },
            _ => query::FromBody::Nothing,
        };
        let query = parts.uri.query();
        let cmd = match query::command_with_body(endpoint, query, from_body, &self.limits) {
            Ok(cmd) => cmd,
            Err(bad) => return Ok(status::bad_request(bad.sentence())),
        };
        match self.run(cmd).await {
            Some(Answer::Outcome(outcome)) => Ok(status::outcome_response(endpoint, outcome)),
            Some(Answer::Hangup) => Err(LostReply),
            // A single command never comes back as a transaction's outcomes.
            Some(Answer::Outcomes(_)) => Ok(status::text(
                hyper::StatusCode::INTERNAL_SERVER_ERROR,
                bytes::Bytes::from_static(b"internal error"),
            )),
            None => Ok(status::unavailable(UNAVAILABLE)),
        }
    }

    /// Sends `cmd` to the shard that owns its id and waits for the answer; `None` if the shard
    /// has stopped.
    async fn run(&self, cmd: Op) -> Option<Answer> {
        let inbox = self.inboxes.get(shard_for(cmd.id(), self.inboxes.len()))?;
        let (tx, rx) = oneshot::channel();
        // The client may have gone: the send then fails, and a lock granted meanwhile is
        // released by the shard.
        let done: ReplyFn = Box::new(Waiting(tx));
        inbox.send(External::Command { cmd, done }).ok()?;
        rx.await.ok()
    }
}

/// An HTTP request waiting for its shard's answer. When its client disconnects, hyper drops
/// the request, and with it the receiving end: the shard then sees the caller has gone.
struct Waiting(oneshot::Sender<Answer>);

impl crate::shard::mesh::Caller for Waiting {
    fn answer(self: Box<Self>, answer: Answer) -> bool {
        self.0.send(answer).is_ok()
    }

    fn has_gone(&self) -> bool {
        self.0.is_closed()
    }
}

/// Reads a request body, if any, up to `limit` bytes, so that the connection can carry the
/// next request. Over the limit the answer is 413 and the connection closes.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, Response<Body>> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(status::payload_too_large()),
        Err(e) => {
            tracing::debug!(error = %e, "http request body unreadable");
            Err(status::text(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"bad request: the request body could not be read"),
            ))
        }
    }
}

/// Why a `/complete` body was not taken.
enum BodyRefusal {
    /// A form-encoded body that is not UTF-8 text (400).
    NotUtf8,
    /// Neither form-encoded nor plain (415).
    MediaType,
}

/// What a `/complete` body holds, by its `Content-Type`: form-encoded parameters, or the result
/// itself (`text/plain`, `application/octet-stream`, or no type).
fn body_kind<'a>(
    headers: &hyper::HeaderMap,
    body: &'a [u8],
) -> Result<query::FromBody<'a>, BodyRefusal> {
    let media = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match media.as_deref() {
        Some("application/x-www-form-urlencoded") => std::str::from_utf8(body)
            .map(query::FromBody::Form)
            .map_err(|_| BodyRefusal::NotUtf8),
        None | Some("text/plain" | "application/octet-stream") => Ok(query::FromBody::Result(body)),
        Some(_) => Err(BodyRefusal::MediaType),
    }
}
