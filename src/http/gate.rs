//! Who may use the HTTP endpoints: protected mode and `Authorization: Bearer`, checked on every
//! request before it is routed.
//!
//! Invariants:
//! - With a password (`--requirepass`), every path but [`OPEN_PATHS`] needs
//!   `Authorization: Bearer <password>`, or `Basic` with the user `default` (or none) and the
//!   password, as `curl -u default:PASS` and requests' `auth=` send it; anything else gets 401
//!   with `WWW-Authenticate: Bearer` and no hint of what the password is. The comparison takes
//!   the same time whatever the token, like AUTH over RESP.
//! - Under protected mode (no password, `--protected-mode yes`) a client that did not connect
//!   over loopback gets 403 with Redis's explanation on every path but [`OPEN_PATHS`], and the
//!   connection closes. Probes on [`OPEN_PATHS`] say nothing about the locks, so they stay open
//!   for load balancers and orchestrators either way.

use std::net::IpAddr;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::config::Config;
use crate::http::status::{self, Body};
use crate::net::access;
use crate::types::password_matches;

/// Paths answered without a password and under protected mode: liveness and readiness probes.
pub const OPEN_PATHS: [&str; 2] = ["/health", "/ready"];

/// What a gate decides about one request.
#[derive(Debug)]
pub struct Gate {
    /// `--requirepass`, as bytes.
    password: Option<Box<[u8]>>,
    /// Protected mode applies (on and no password).
    protected: bool,
}

impl Gate {
    /// The gate `config` asks for.
    pub fn new(config: &Config) -> Self {
        Gate {
            password: config
                .requirepass
                .as_ref()
                .map(|p| p.as_bytes().to_vec().into_boxed_slice()),
            protected: config.security.protected_mode && config.requirepass.is_none(),
        }
    }

    /// Lets a request from `peer` for `path` with this `Authorization` header through
    /// (`None`), or answers it.
    pub fn check(
        &self,
        peer: IpAddr,
        path: &str,
        authorization: Option<&HeaderValue>,
    ) -> Option<Response<Body>> {
        if OPEN_PATHS.contains(&path) {
            return None;
        }
        if self.protected && !access::is_loopback(peer) {
            return Some(denied());
        }
        let password = self.password.as_deref()?;
        match authorization {
            None => Some(unauthorized(
                "unauthorized: send Authorization: Bearer <password>",
                false,
            )),
            Some(value) => match credentials(value.as_bytes(), password) {
                Credentials::Match => None,
                Credentials::OtherUser => {
                    Some(unauthorized("unauthorized: the only user is default", true))
                }
                Credentials::Wrong => Some(unauthorized("unauthorized: wrong password", true)),
            },
        }
    }
}

/// Whether a refusal says the credentials given were wrong (not missing): a failed
/// authentication to count.
pub fn is_wrong_credentials(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .is_some_and(|v| v.as_bytes().ends_with(b"error=\"invalid_token\""))
}

/// What an `Authorization` header value comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credentials {
    /// `Bearer <password>`, or `Basic` with the user `default` or none and the password.
    Match,
    /// `Basic` with a user other than `default`: there is no other user (as over RESP).
    OtherUser,
    /// Anything else: a wrong password, another scheme, or a malformed value.
    Wrong,
}

fn credentials(value: &[u8], password: &[u8]) -> Credentials {
    if bearer_matches(value, password) {
        return Credentials::Match;
    }
    match basic_credentials(value) {
        Some((user, pass)) if user.is_empty() || user == b"default" => {
            if password_matches(password, &pass) {
                Credentials::Match
            } else {
                Credentials::Wrong
            }
        }
        Some(_) => Credentials::OtherUser,
        None => Credentials::Wrong,
    }
}

/// The user and password of an `Authorization: Basic <base64(user:password)>` value (scheme
/// in any case); `None` for another scheme or a value that does not decode.
fn basic_credentials(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine as _;
    let (scheme, encoded) = value.split_first_chunk::<6>()?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let (user, pass) = decoded.split_at(colon);
    Some((user.to_vec(), pass.get(1..).unwrap_or_default().to_vec()))
}

/// Whether an `Authorization` header value is `Bearer <password>` (scheme in any case). The
/// token is compared in constant time ([`password_matches`]).
pub fn bearer_matches(value: &[u8], password: &[u8]) -> bool {
    let Some((scheme, token)) = value.split_first_chunk::<7>() else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    password_matches(password, token.trim_ascii())
}

/// 401 with the challenge; `invalid` says a token was given and is wrong (RFC 6750).
fn unauthorized(body: &'static str, invalid: bool) -> Response<Body> {
    let mut response = status::text(
        StatusCode::UNAUTHORIZED,
        Bytes::from_static(body.as_bytes()),
    );
    let challenge = if invalid {
        "Bearer realm=\"token-server\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"token-server\""
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// 403 with protected mode's explanation; the connection closes after it.
fn denied() -> Response<Body> {
    let text = access::DENIED
        .strip_prefix(b"-")
        .and_then(|t| t.strip_suffix(b"\r\n"))
        .unwrap_or(access::DENIED);
    let mut response = status::text(StatusCode::FORBIDDEN, Bytes::from_static(text));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_with_the_default_user_or_none() {
        use base64::Engine as _;
        let basic = |s: &str| {
            let mut v = b"Basic ".to_vec();
            v.extend(base64::engine::general_purpose::STANDARD.encode(s).bytes());
            v
        };
        assert_eq!(credentials(&basic("default:pw"), b"pw"), Credentials::Match);
        assert_eq!(credentials(&basic(":pw"), b"pw"), Credentials::Match);
        assert_eq!(
            credentials(&basic("default:p:w"), b"p:w"),
            Credentials::Match
        );
        assert_eq!(
            credentials(b"basic ZGVmYXVsdDpwdw==", b"pw"),
            Credentials::Match
        );
        assert_eq!(
            credentials(&basic("default:nope"), b"pw"),
            Credentials::Wrong
        );
        assert_eq!(
            credentials(&basic("alice:pw"), b"pw"),
            Credentials::OtherUser
        );
        assert_eq!(credentials(&basic("no-colon"), b"pw"), Credentials::Wrong);
        assert_eq!(credentials(b"Basic !!!", b"pw"), Credentials::Wrong);
        assert_eq!(credentials(b"Bearer pw", b"pw"), Credentials::Match);
        assert_eq!(credentials(b"Digest pw", b"pw"), Credentials::Wrong);
    }

    fn gate(args: &[&str]) -> Gate {
        let config =
            Config::from_args(std::iter::once("token-server").chain(args.iter().copied())).unwrap();
        Gate::new(&config)
    }

    #[test]
    fn bearer_tokens() {
        assert!(bearer_matches(b"Bearer pw", b"pw"));
        assert!(bearer_matches(b"bearer pw ", b"pw"));
        assert!(bearer_matches(b"BEARER   pw", b"pw"));
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer p",
            b"Bearer pw2",
            b"Basic pw",
            b"pw",
        ] {
            assert!(!bearer_matches(bad, b"pw"), "{bad:?}");
        }
    }

    #[test]
    fn password_needed_except_for_probes() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let g = gate(&["--requirepass", "pw"]);
        let good = HeaderValue::from_static("Bearer pw");
        let bad = HeaderValue::from_static("Bearer nope");
        assert!(g.check(local, "/lock", Some(&good)).is_none());
        let r = g.check(local, "/lock", Some(&bad)).unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = g.check(local, "/", None).unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers().get(header::WWW_AUTHENTICATE).unwrap();
        assert!(challenge.as_bytes().starts_with(b"Bearer"));
        assert!(g.check(local, "/health", None).is_none());
        assert!(g.check(local, "/ready", None).is_none());
    }

    #[test]
    fn protected_mode_refuses_remote_clients_but_not_probes() {
        let remote: IpAddr = "192.0.2.1".parse().unwrap();
        let local: IpAddr = "::1".parse().unwrap();
        let g = gate(&[]);
        assert!(g.check(local, "/lock", None).is_none());
        assert_eq!(
            g.check(remote, "/lock", None).unwrap().status(),
            StatusCode::FORBIDDEN
        );
        assert!(g.check(remote, "/health", None).is_none());
        assert!(
            gate(&["--protected-mode", "no"])
                .check(remote, "/lock", None)
                .is_none()
        );
    }
}
