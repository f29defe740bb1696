//! HTTP statuses and bodies.
//!
//! [`reply_response`] is the one mapping from a lock command's [`Reply`] to a status and body:
//! the shard decides what happened, this file only names it in HTTP words. The other helpers
//! build the few responses the adapter makes on its own (help, 404, 405, 413).

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::protocol::Reply;
use crate::protocol::reply::hex_key;

/// The body type of every response: one small buffer.
pub type Body = Full<Bytes>;

/// A lock endpoint: which command a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/lock`: `LOCK id`.
    Lock,
    /// `/unlock`: `UNLOCK id key`.
    Unlock,
    /// `/complete`: `COMPLETE id key [RESULT value]`.
    Complete,
    /// `/renew`: `RENEW id key PX ttl`.
    Renew,
    /// `/status`: `STATUS id`, answered as JSON.
    Status,
}

impl Endpoint {
    /// The body of a `+OK` reply on this endpoint.
    fn ok_word(self) -> &'static str {
        match self {
            // LOCK answers with a key, never `+OK`; the word is here for completeness.
            Endpoint::Lock | Endpoint::Status => "ok",
            Endpoint::Unlock => "unlocked",
            Endpoint::Complete => "complete",
            Endpoint::Renew => "renewed",
        }
    }
}

/// The help text served at `/`.
const HELP: &str = "\
token-server: run-once locks over HTTP (GET, or POST with the same query)
GET /lock?id=ID[&ttl=MS][&wait=MS][&fingerprint=FP]
                               200 the key (X-Fencing-Token) | 409 locked | 409 complete | 422 mismatch
GET /unlock?id=ID&key=KEY      200 unlocked | 404 not locked | 403 wrong key | 409 complete
GET /complete?id=ID&key=KEY[&result=R]
                               200 complete | 404 not locked | 403 wrong key | 409 complete
GET /renew?id=ID&key=KEY&ttl=MS
                               200 renewed | 404 not locked | 403 wrong key | 409 complete
GET /status?id=ID              200 JSON: state, ttl_ms, fence, waiters, result
Ids are percent-decoded to bytes and name the same activities as LOCK, UNLOCK and COMPLETE
over the Redis protocol. Bad parameters get 400 with a reason.
";

/// The header that carries the fencing token of a granted lock.
pub const FENCING_TOKEN: &str = "x-fencing-token";

/// Maps the reply of a lock command run for `endpoint` to the response.
///
/// - a key: 200, the 32 hex characters and nothing else; a key with its fencing token
///   (`[key, fence]`): the same, and the token in `X-Fencing-Token`;
/// - `+OK`: 200 `unlocked` or `complete`;
/// - an error, by its code (its first word): `LOCKED` 409 `locked`, `COMPLETED` 409
///   `complete`, `NOTLOCKED` 404 `not locked`, `BADKEY` 403 `wrong key`, `MISMATCH` 422
///   `mismatch`, `ERR` 400 `bad request: <sentence>`, any other code 503 with the code alone;
/// - a STATUS map: 200 with it as a JSON object.
///
/// Error sentences of the lock commands never hold a key, and only `ERR` sentences are shown.
pub fn reply_response(endpoint: Endpoint, reply: &Reply) -> Response<Body> {
    match reply {
        Reply::Key(key) => text(StatusCode::OK, Bytes::copy_from_slice(&hex_key(key))),
        Reply::Array(items) => match items.as_slice() {
            [Reply::Key(key), Reply::Integer(fence)] => {
                let mut response = text(StatusCode::OK, Bytes::copy_from_slice(&hex_key(key)));
                response
                    .headers_mut()
                    .insert(FENCING_TOKEN, HeaderValue::from(*fence));
                response
            }
            _ => unexpected(),
        },
        Reply::Ok => text(
            StatusCode::OK,
            Bytes::from_static(endpoint.ok_word().as_bytes()),
        ),
        Reply::Error(message) => {
            let (code, sentence) = message.split_once(' ').unwrap_or((message, ""));
            let (status, body): (StatusCode, Cow<'static, str>) = match code {
                "LOCKED" => (StatusCode::CONFLICT, "locked".into()),
                "COMPLETED" => (StatusCode::CONFLICT, "complete".into()),
                "NOTLOCKED" => (StatusCode::NOT_FOUND, "not locked".into()),
                "BADKEY" => (StatusCode::FORBIDDEN, "wrong key".into()),
                "MISMATCH" => (StatusCode::UNPROCESSABLE_ENTITY, "mismatch".into()),
                "ERR" => (
                    StatusCode::BAD_REQUEST,
                    format!("bad request: {}", one_line(sentence)).into(),
                ),
                other => (StatusCode::SERVICE_UNAVAILABLE, one_line(other).into()),
            };
            text(status, Bytes::from(body.into_owned()))
        }
        Reply::Map(fields) if endpoint == Endpoint::Status => json(fields),
        _ => unexpected(),
    }
}

/// A STATUS map as a JSON object: text fields as strings, integers as numbers, null as null.
/// A result that is not UTF-8 is shown with replacement characters.
fn json(fields: &[(Reply, Reply)]) -> Response<Body> {
    let mut object = serde_json::Map::new();
    for (name, value) in fields {
        let Reply::Bulk(name) = name else { continue };
        let value = match value {
            Reply::Bulk(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
            Reply::Integer(i) => serde_json::Value::from(*i),
            _ => serde_json::Value::Null,
        };
        object.insert(String::from_utf8_lossy(name).into_owned(), value);
    }
    let body = serde_json::Value::Object(object).to_string();
    let mut response = text(StatusCode::OK, Bytes::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Adds `Retry-After` (whole seconds, rounded up) to a 409 `locked` answer when the holder's
/// lease has `ttl_ms` left.
pub fn with_retry_after(mut response: Response<Body>, ttl_ms: i64) -> Response<Body> {
    if ttl_ms > 0 {
        let secs = (ttl_ms + 999) / 1000;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Lock commands answer with nothing else; say so instead of guessing a meaning.
fn unexpected() -> Response<Body> {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        Bytes::from_static(b"internal error: unexpected reply"),
    )
}

/// A body must stay one line: CR and LF become spaces, as in RESP error lines.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// A `text/plain` response that no cache may keep (a lock answer is never reusable).
pub fn text(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 200 with the endpoint list.
pub fn help() -> Response<Body> {
    text(StatusCode::OK, Bytes::from_static(HELP.as_bytes()))
}

/// 404 for a path that is not an endpoint.
pub fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, Bytes::from_static(b"not found"))
}

/// 405 naming the methods `allow`ed on the path.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        Bytes::from_static(b"method not allowed"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 413 for a request body over the limit; the connection is closed after it, since the rest of
/// the body is never read.
pub fn payload_too_large() -> Response<Body> {
    let mut response = text(
        StatusCode::PAYLOAD_TOO_LARGE,
        Bytes::from_static(b"payload too large"),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::errors;

    fn map(endpoint: Endpoint, reply: &Reply) -> (u16, String) {
        let response = reply_response(endpoint, reply);
        let status = response.status().as_u16();
        let body = response.into_body().into_inner().unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn lock_replies() {
        let key = [0xab; 16];
        assert_eq!(
            map(Endpoint::Lock, &Reply::Key(key)),
            (200, "ab".repeat(16))
        );
        assert_eq!(map(Endpoint::Lock, &errors::LOCKED), (409, "locked".into()));
        assert_eq!(
            map(Endpoint::Lock, &errors::COMPLETED),
            (409, "complete".into())
        );
        assert_eq!(
            map(Endpoint::Lock, &errors::MISMATCH),
            (422, "mismatch".into())
        );
    }

    #[test]
    fn a_fenced_key_puts_the_token_in_a_header() {
        let fenced = Reply::Array(vec![Reply::Key([0x01; 16]), Reply::Integer(42)]);
        let response = reply_response(Endpoint::Lock, &fenced);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get(FENCING_TOKEN),
            Some(&HeaderValue::from_static("42"))
        );
        assert_eq!(
            response.into_body().into_inner(),
            Some(Bytes::from("01".repeat(16)))
        );
        assert_eq!(map(Endpoint::Lock, &Reply::Key([0x01; 16])).0, 200);
        let odd = Reply::Array(vec![Reply::Integer(42), Reply::Key([0x01; 16])]);
        assert_eq!(map(Endpoint::Lock, &odd).0, 500);
    }

    #[test]
    fn unlock_and_complete_replies() {
        assert_eq!(map(Endpoint::Unlock, &Reply::Ok), (200, "unlocked".into()));
        assert_eq!(
            map(Endpoint::Complete, &Reply::Ok),
            (200, "complete".into())
        );
        for endpoint in [Endpoint::Unlock, Endpoint::Complete] {
            assert_eq!(
                map(endpoint, &errors::NOT_LOCKED),
                (404, "not locked".into())
            );
            assert_eq!(map(endpoint, &errors::BAD_KEY), (403, "wrong key".into()));
            assert_eq!(map(endpoint, &errors::COMPLETED), (409, "complete".into()));
        }
    }

    #[test]
    fn other_errors() {
        assert_eq!(
            map(Endpoint::Lock, &errors::EMPTY_ID),
            (400, "bad request: the id must not be empty".into())
        );
        assert_eq!(
            map(Endpoint::Lock, &Reply::error("ERR two\r\nlines")),
            (400, "bad request: two  lines".into())
        );
        assert_eq!(
            map(Endpoint::Lock, &Reply::error("TRYAGAIN the log is busy")),
            (503, "TRYAGAIN".into())
        );
        assert_eq!(
            map(Endpoint::Complete, &Reply::error("IOERR")),
            (503, "IOERR".into())
        );
        assert_eq!(map(Endpoint::Lock, &Reply::Integer(1)).0, 500);
    }
}
