//! The operational endpoints: `/health` (the process answers), `/ready` (it should get
//! traffic) and `/metrics` (every figure, for Prometheus). None of them reads a lock table or
//! waits for a shard: they read atomics only.

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::context::ServerContext;
use crate::http::exposition;
use crate::http::status::{Body, text};

/// `/health`: 200 `ok` whenever the process can answer at all.
pub fn health() -> Response<Body> {
    text(StatusCode::OK, Bytes::from_static(b"ok"))
}

/// `/ready`: 200 `ready` once recovery is done (it finishes before the server listens) while
/// every shard's log can be written and no shutdown is under way; otherwise 503 with the
/// reason.
pub fn ready(ctx: &ServerContext) -> Response<Body> {
    if ctx.lifecycle.is_stopping() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"not ready: shutting down"),
        );
    }
    let failed: Vec<String> = ctx
        .figures
        .shards
        .iter()
        .enumerate()
        .filter(|(_, s)| s.log_failed.load(std::sync::atomic::Ordering::Relaxed) != 0)
        .map(|(i, _)| i.to_string())
        .collect();
    if failed.is_empty() {
        return text(StatusCode::OK, Bytes::from_static(b"ready"));
    }
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from(format!(
            "not ready: the log of shard {} cannot be written",
            failed.join(", ")
        )),
    )
}

/// `/metrics`: the OpenMetrics page.
pub fn metrics(ctx: &std::sync::Arc<ServerContext>) -> Response<Body> {
    let mut response = text(StatusCode::OK, Bytes::from(exposition::render(ctx)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(exposition::CONTENT_TYPE),
    );
    response
}

/// What a lock request gets once a shutdown has begun: 503, and the connection closes.
pub fn shutting_down() -> Response<Body> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from_static(b"shutting down"),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
