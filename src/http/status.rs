//! HTTP statuses and bodies.
//!
//! [`outcome_response`] is the one mapping from a lock operation's [`Outcome`] to a status and
//! body: the shard decides what happened, this file only names it in HTTP words. The other
//! helpers build the few responses the adapter makes on its own (help, 400, 404, 405, 413).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::table::{Outcome, Standing};
use crate::types::{Error, hex_key};

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
GET /lock?id=ID[&ttl=MS][&wait=MS][&fingerprint=FP][&key=KEY]
                               200 the key (X-Fencing-Token) | 409 locked | 409 complete | 422 mismatch
GET /unlock?id=ID&key=KEY      200 unlocked | 404 not locked | 403 wrong key | 409 complete
GET /complete?id=ID&key=KEY[&result=R]
                               200 complete | 404 not locked | 403 wrong key | 409 complete
                               (POST: a large result as a text/plain or form-encoded body)
GET /renew?id=ID&key=KEY&ttl=MS
                               200 renewed | 404 not locked | 403 wrong key | 409 complete
GET /status?id=ID              200 JSON: state, ttl_ms, fence, waiters, result
Ids are percent-decoded to bytes and name the same activities as LOCK, UNLOCK and COMPLETE
over the Redis protocol. Bad parameters get 400 with a reason.
";

/// The header that carries the fencing token of a granted lock.
pub const FENCING_TOKEN: &str = "x-fencing-token";

/// Maps the outcome of a lock operation run for `endpoint` to the response.
///
/// - granted: 200, the key's 32 hex characters and nothing else, and the fencing token in
///   `X-Fencing-Token` when it was asked for (HTTP always asks);
/// - done: 200 `unlocked`, `complete` or `renewed`;
/// - refused, by the error's code: `LOCKED` 409 `locked` (with `Retry-After` when the holder's
///   lease is known), `COMPLETED` 409 `complete`, `NOTLOCKED` 404 `not locked`, `BADKEY` 403
///   `wrong key`, `MISMATCH` 422 `mismatch`, `ERR` 400 `bad request: <sentence>`, any other
///   code 503 with the code alone;
/// - a status: 200 with it as a JSON object.
///
/// Error sentences of the lock commands never hold a key, and only `ERR` sentences are shown.
pub fn outcome_response(endpoint: Endpoint, outcome: Outcome) -> Response<Body> {
    match outcome {
        Outcome::Granted {
            key,
            fence,
            with_fence,
        } => {
            let mut response = text(StatusCode::OK, Bytes::copy_from_slice(&hex_key(&key)));
            if with_fence {
                response
                    .headers_mut()
                    .insert(FENCING_TOKEN, HeaderValue::from(fence));
            }
            response
        }
        Outcome::Done => text(
            StatusCode::OK,
            Bytes::from_static(endpoint.ok_word().as_bytes()),
        ),
        Outcome::Refused {
            error,
            lease_left_ms,
        } => {
            let response = error_response(error);
            match (error, lease_left_ms) {
                (Error::Locked | Error::QueueFull, Some(ms)) => with_retry_after(response, ms),
                _ => response,
            }
        }
        Outcome::Status { standing, waiters } => json(standing, waiters),
        // HTTP sends no TRYLOCK; were it to, a taken id reads as LOCK's refusal.
        Outcome::Taken { standing } => error_response(standing.refusal()),
        // A parked wait is answered later, never with this.
        Outcome::Parked => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"internal error: unexpected outcome"),
        ),
    }
}

/// The response to a refusal, by its error's code.
pub fn error_response(error: Error) -> Response<Body> {
    let (status, body): (StatusCode, &'static str) = match error {
        Error::Locked | Error::QueueFull => (StatusCode::CONFLICT, "locked"),
        Error::Completed => (StatusCode::CONFLICT, "complete"),
        Error::NotLocked => (StatusCode::NOT_FOUND, "not locked"),
        Error::BadKey => (StatusCode::FORBIDDEN, "wrong key"),
        Error::Mismatch => (StatusCode::UNPROCESSABLE_ENTITY, "mismatch"),
        Error::LogFailed | Error::ChaosRefused => (StatusCode::SERVICE_UNAVAILABLE, error.code()),
        Error::EmptyId
        | Error::IdTooLong
        | Error::Syntax
        | Error::ResultTooLarge
        | Error::FingerprintTooLong
        | Error::KeyForm
        | Error::LockExpire
        | Error::RenewExpire
        | Error::WaitTimeout => return bad_request(error.sentence()),
    };
    text(status, Bytes::from_static(body.as_bytes()))
}

/// 400 `bad request: <sentence>`.
pub fn bad_request(sentence: &str) -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        Bytes::from(format!("bad request: {}", one_line(sentence))),
    )
}

/// 503 with `code` alone: the shard could not take or answer the request.
pub fn unavailable(code: &'static str) -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from_static(code.as_bytes()),
    )
}

/// A status as a JSON object: `state`, `ttl_ms` (-1 for none), `fence`, `waiters`, and for a
/// completed id `result` (null if none was stored). A result that is not UTF-8 is shown with
/// replacement characters.
fn json(standing: Standing, waiters: usize) -> Response<Body> {
    use serde_json::{Map, Value};
    let mut object = Map::new();
    let (state, ttl, fence, result) = match standing {
        Standing::Free => ("free", None, 0, None),
        Standing::Locked { ttl_ms, fence } => ("locked", ttl_ms, fence, None),
        Standing::Completed { fence, result } => ("completed", None, fence, Some(result)),
    };
    object.insert("state".into(), Value::from(state));
    object.insert(
        "ttl_ms".into(),
        ttl.map_or(Value::from(-1), |ms| Value::from(ms.min(i64::MAX as u64))),
    );
    object.insert("fence".into(), Value::from(fence.min(i64::MAX as u64)));
    object.insert("waiters".into(), Value::from(waiters));
    if let Some(result) = result {
        let value = result.map_or(Value::Null, |r| {
            Value::String(String::from_utf8_lossy(&r).into_owned())
        });
        object.insert("result".into(), value);
    }
    let body = Value::Object(object).to_string();
    let mut response = text(StatusCode::OK, Bytes::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Adds `Retry-After` (whole seconds, rounded up) to a 409 `locked` answer when the holder's
/// lease has `ttl_ms` left.
fn with_retry_after(mut response: Response<Body>, ttl_ms: u64) -> Response<Body> {
    if ttl_ms > 0 {
        let secs = ttl_ms.div_ceil(1000);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
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

/// 408 for a request body that did not arrive within `--http-header-timeout`; the connection
/// is closed after it.
pub fn body_timeout() -> Response<Body> {
    let mut response = text(
        StatusCode::REQUEST_TIMEOUT,
        Bytes::from_static(b"request timeout: the body did not arrive in time"),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
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

    fn map(endpoint: Endpoint, outcome: Outcome) -> (u16, String) {
        let response = outcome_response(endpoint, outcome);
        let status = response.status().as_u16();
        let body = response.into_body().into_inner().unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn granted(key: [u8; 16], fence: u64, with_fence: bool) -> Outcome {
        Outcome::Granted {
            key,
            fence,
            with_fence,
        }
    }

    #[test]
    fn lock_replies() {
        let key = [0xab; 16];
        assert_eq!(
            map(Endpoint::Lock, granted(key, 1, false)),
            (200, "ab".repeat(16))
        );
        assert_eq!(
            map(Endpoint::Lock, Error::Locked.into()),
            (409, "locked".into())
        );
        assert_eq!(
            map(Endpoint::Lock, Error::Completed.into()),
            (409, "complete".into())
        );
        assert_eq!(
            map(Endpoint::Lock, Error::Mismatch.into()),
            (422, "mismatch".into())
        );
    }

    #[test]
    fn a_refused_lock_says_when_to_retry() {
        let refused = |lease_left_ms| Outcome::Refused {
            error: Error::Locked,
            lease_left_ms,
        };
        let retry = |o| {
            outcome_response(Endpoint::Lock, o)
                .headers()
                .get(header::RETRY_AFTER)
                .cloned()
        };
        assert_eq!(retry(refused(Some(1500))), Some(HeaderValue::from(2)));
        assert_eq!(retry(refused(Some(0))), None);
        assert_eq!(retry(refused(None)), None);
    }

    #[test]
    fn a_fenced_key_puts_the_token_in_a_header() {
        let response = outcome_response(Endpoint::Lock, granted([0x01; 16], 42, true));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get(FENCING_TOKEN),
            Some(&HeaderValue::from_static("42"))
        );
        assert_eq!(
            response.into_body().into_inner(),
            Some(Bytes::from("01".repeat(16)))
        );
        assert_eq!(map(Endpoint::Lock, granted([0x01; 16], 42, false)).0, 200);
    }

    #[test]
    fn unlock_and_complete_replies() {
        assert_eq!(
            map(Endpoint::Unlock, Outcome::Done),
            (200, "unlocked".into())
        );
        assert_eq!(
            map(Endpoint::Complete, Outcome::Done),
            (200, "complete".into())
        );
        for endpoint in [Endpoint::Unlock, Endpoint::Complete] {
            assert_eq!(
                map(endpoint, Error::NotLocked.into()),
                (404, "not locked".into())
            );
            assert_eq!(
                map(endpoint, Error::BadKey.into()),
                (403, "wrong key".into())
            );
            assert_eq!(
                map(endpoint, Error::Completed.into()),
                (409, "complete".into())
            );
        }
    }

    #[test]
    fn other_errors() {
        assert_eq!(
            map(Endpoint::Lock, Error::EmptyId.into()),
            (400, "bad request: the id must not be empty".into())
        );
        let body = |r: Response<Body>| r.into_body().into_inner().unwrap_or_default();
        assert_eq!(body(bad_request("two\r\nlines")), "bad request: two  lines");
        assert_eq!(
            map(Endpoint::Lock, Error::ChaosRefused.into()),
            (503, "TRYAGAIN".into())
        );
        assert_eq!(
            map(Endpoint::Complete, Error::LogFailed.into()),
            (503, "IOERR".into())
        );
        assert_eq!(map(Endpoint::Lock, Outcome::Parked).0, 500);
    }

    #[test]
    fn status_is_json() {
        let (code, body) = map(
            Endpoint::Status,
            Outcome::Status {
                standing: Standing::Completed {
                    fence: 7,
                    result: Some(b"done"[..].into()),
                },
                waiters: 0,
            },
        );
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["state"], "completed");
        assert_eq!(v["ttl_ms"], -1);
        assert_eq!(v["fence"], 7);
        assert_eq!(v["result"], "done");
    }
}
