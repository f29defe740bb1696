//! From a query string to an [`Op`].
//!
//! Parameters are `name=value` pairs separated by `&`. Names are matched literally (`id`, `key`,
//! `ttl`, `wait`, `fingerprint`, `result`); unknown names are ignored, a repeated known name is
//! an error. Values are decoded as `application/x-www-form-urlencoded`, the encoding every
//! query builder uses (requests' `params=`, `urlencode`, `URLSearchParams`): `+` is a space, a
//! plus sign is `%2B`, and `%XX` is the byte `XX`. A `%` not followed by two hex digits is an
//! error rather than a literal `%`, so a malformed escape never silently names some other id.
//!
//! Ids go through [`parse_id`] with the server's [`CommandLimits`], exactly as over RESP; keys
//! through [`parse_key_arg`]; numbers through [`crate::command::number`]. Every error is a
//! [`BadRequest`], which the status mapping turns into 400 with its sentence; no sentence ever
//! holds a key.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::command::number;
use crate::command::{CommandLimits, parse_id, parse_key_arg};
use crate::http::status::Endpoint;
use crate::table::{Complete, Lock, Op, Renew, Status, Unlock};
use crate::types::{Error, Id, KeyBytes, parse_key};

/// Why a request's parameters were refused: an `ERR` text, shown as 400 with its sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadRequest(pub &'static str);

impl BadRequest {
    /// The sentence after `ERR`.
    pub fn sentence(self) -> &'static str {
        self.0.strip_prefix("ERR ").unwrap_or(self.0)
    }
}

impl From<Error> for BadRequest {
    fn from(error: Error) -> BadRequest {
        BadRequest(error.text())
    }
}

/// A key is 32 hex characters; anything longer cannot be one.
const KEY_HEX_LEN: usize = 32;

const MISSING_ID: BadRequest = BadRequest("ERR missing id parameter");
const DUPLICATE_ID: BadRequest = BadRequest("ERR the id parameter is given twice");
const BAD_ID_ENCODING: BadRequest = BadRequest("ERR bad percent-encoding in id");
const MISSING_KEY: BadRequest = BadRequest("ERR missing key parameter");
const DUPLICATE_KEY: BadRequest = BadRequest("ERR the key parameter is given twice");
const BAD_KEY_ENCODING: BadRequest = BadRequest("ERR bad percent-encoding in key");
const EMPTY_KEY: BadRequest = BadRequest("ERR the key must not be empty");
const KEY_TOO_LONG: BadRequest = BadRequest("ERR key too long (a key is 32 hex characters)");
const DUPLICATE_TTL: BadRequest = BadRequest("ERR the ttl parameter is given twice");
const DUPLICATE_WAIT: BadRequest = BadRequest("ERR the wait parameter is given twice");
const DUPLICATE_FINGERPRINT: BadRequest =
    BadRequest("ERR the fingerprint parameter is given twice");
const DUPLICATE_RESULT: BadRequest = BadRequest("ERR the result parameter is given twice");
const BAD_FINGERPRINT_ENCODING: BadRequest = BadRequest("ERR bad percent-encoding in fingerprint");
const BAD_RESULT_ENCODING: BadRequest = BadRequest("ERR bad percent-encoding in result");
/// A form-encoded `/complete` body that is not UTF-8 text.
pub const BAD_FORM_BODY: BadRequest = BadRequest("ERR the form-encoded body is not valid UTF-8");
const MISSING_TTL: BadRequest = BadRequest("ERR missing ttl parameter");
const BAD_WAIT: BadRequest =
    BadRequest("ERR bad wait: expected whole milliseconds from 0 to 1099511627776");
const BAD_TTL: BadRequest =
    BadRequest("ERR bad ttl: expected whole milliseconds from 1 to 1099511627776");

/// Every reason a query is refused with 400, for the test that docs/HTTP.md lists each.
#[cfg(test)]
const REASONS: &[BadRequest] = &[
    MISSING_ID,
    DUPLICATE_ID,
    BAD_ID_ENCODING,
    MISSING_KEY,
    DUPLICATE_KEY,
    BAD_KEY_ENCODING,
    EMPTY_KEY,
    KEY_TOO_LONG,
    DUPLICATE_TTL,
    DUPLICATE_WAIT,
    DUPLICATE_FINGERPRINT,
    DUPLICATE_RESULT,
    BAD_FINGERPRINT_ENCODING,
    BAD_RESULT_ENCODING,
    BAD_FORM_BODY,
    MISSING_TTL,
    BAD_WAIT,
    BAD_TTL,
    BadRequest(Error::EmptyId.text()),
    BadRequest(Error::IdTooLong.text()),
    BadRequest(Error::FingerprintTooLong.text()),
    BadRequest(Error::KeyForm.text()),
    BadRequest(Error::ResultTooLarge.text()),
];

/// The known parameters of a request, still percent-encoded.
#[derive(Debug, Default)]
struct RawParams<'a> {
    id: Option<&'a str>,
    key: Option<&'a str>,
    ttl: Option<&'a str>,
    wait: Option<&'a str>,
    fingerprint: Option<&'a str>,
    result: Option<&'a str>,
}

/// What a request's body adds to its query string (only `/complete` reads one).
#[derive(Clone, Copy, Debug)]
pub enum FromBody<'a> {
    /// Nothing: no body, or one that is not read.
    Nothing,
    /// More parameters, form-encoded (`application/x-www-form-urlencoded`) exactly as in a
    /// query string; a parameter in both is given twice.
    Form(&'a str),
    /// The result itself, as bytes (a `text/plain` or `application/octet-stream` body).
    Result(&'a [u8]),
}

/// Parses the query string of a request to `endpoint` into its command.
pub fn command(
    endpoint: Endpoint,
    query: Option<&str>,
    limits: &CommandLimits,
) -> Result<Op, BadRequest> {
    command_with_body(endpoint, query, FromBody::Nothing, limits)
}

/// Parses the query string of a request to `endpoint`, and what its body adds, into its
/// command.
pub fn command_with_body(
    endpoint: Endpoint,
    query: Option<&str>,
    body: FromBody<'_>,
    limits: &CommandLimits,
) -> Result<Op, BadRequest> {
    let mut params = RawParams::default();
    split(query.unwrap_or_default(), &mut params)?;
    let mut raw_result = None;
    match body {
        FromBody::Nothing => {}
        FromBody::Form(form) => split(form, &mut params)?,
        FromBody::Result(bytes) => {
            if params.result.is_some() {
                return Err(DUPLICATE_RESULT);
            }
            raw_result = Some(bytes);
        }
    }
    let id = decode(params.id.ok_or(MISSING_ID)?, BAD_ID_ENCODING)?;
    let id = parse_id(Some(&id), limits).map_err(BadRequest::from)?;
    Ok(match endpoint {
        Endpoint::Lock => {
            let ttl_ms = params.ttl.map(parse_ttl).transpose()?;
            let wait_ms = params.wait.map(parse_wait).transpose()?;
            let fingerprint = params
                .fingerprint
                .map(|f| decode(f, BAD_FINGERPRINT_ENCODING))
                .transpose()?;
            if fingerprint
                .as_ref()
                .is_some_and(|f| f.len() > limits.max_id_len)
            {
                return Err(Error::FingerprintTooLong.into());
            }
            let key = params
                .key
                .map(|k| decode(k, BAD_KEY_ENCODING))
                .transpose()?
                .map(|k| parse_key(&k).ok_or(BadRequest::from(Error::KeyForm)))
                .transpose()?;
            Op::Lock(lock_command(
                id,
                ttl_ms,
                wait_ms,
                fingerprint.map(|f| f.into()),
                key,
            ))
        }
        Endpoint::Unlock => Op::Unlock(Unlock {
            id,
            key: key(params.key)?,
        }),
        Endpoint::Complete => {
            let result = match raw_result {
                Some(bytes) => Some(Cow::Borrowed(bytes)),
                None => params
                    .result
                    .map(|r| decode(r, BAD_RESULT_ENCODING))
                    .transpose()?,
            };
            if result
                .as_ref()
                .is_some_and(|r| r.len() > limits.max_result_size)
            {
                return Err(Error::ResultTooLarge.into());
            }
            Op::Complete(Complete {
                id,
                key: key(params.key)?,
                result: result.map(|r| r.into()),
            })
        }
        Endpoint::Renew => Op::Renew(Renew {
            id,
            key: key(params.key)?,
            lease_ms: parse_ttl(params.ttl.ok_or(MISSING_TTL)?)?,
        }),
        Endpoint::Status => Op::Status(Status { id }),
    })
}

/// The one place an HTTP request becomes a [`Lock`]: `ttl` is the lease, `wait` the time to
/// queue for a held id, `key` the client's own key, and the fence is always asked for (it goes
/// out in `X-Fencing-Token`).
fn lock_command(
    id: Id,
    ttl_ms: Option<u64>,
    wait_ms: Option<u64>,
    fingerprint: Option<Box<[u8]>>,
    key: Option<KeyBytes>,
) -> Lock {
    Lock {
        lease_ms: ttl_ms,
        wait_ms,
        fingerprint,
        key,
        with_fence: true,
        ..Lock::new(id)
    }
}

/// A `wait` parameter: decimal digits only, 0 to [`number::MAX_LEASE_MS`].
fn parse_wait(raw: &str) -> Result<u64, BadRequest> {
    number::parse_wait(&decode(raw, BAD_WAIT)?).ok_or(BAD_WAIT)
}

/// Splits `query` into the known parameters, adding them to `params`.
fn split<'a>(query: &'a str, params: &mut RawParams<'a>) -> Result<(), BadRequest> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (slot, duplicate) = match name {
            "id" => (&mut params.id, DUPLICATE_ID),
            "key" => (&mut params.key, DUPLICATE_KEY),
            "ttl" => (&mut params.ttl, DUPLICATE_TTL),
            "wait" => (&mut params.wait, DUPLICATE_WAIT),
            "fingerprint" => (&mut params.fingerprint, DUPLICATE_FINGERPRINT),
            "result" => (&mut params.result, DUPLICATE_RESULT),
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(duplicate);
        }
    }
    Ok(())
}

/// Form-decodes `raw` to bytes (`+` is a space, `%XX` a byte); `bad` if a `%` is not followed
/// by two hex digits.
fn decode(raw: &str, bad: BadRequest) -> Result<Cow<'_, [u8]>, BadRequest> {
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_hexdigit());
            if !(hex(bytes.next()) && hex(bytes.next())) {
                return Err(bad);
            }
        }
    }
    if raw.contains('+') {
        let spaced = raw.replace('+', " ");
        return Ok(Cow::Owned(percent_decode_str(&spaced).collect()));
    }
    Ok(percent_decode_str(raw).into())
}

/// A `key` parameter: required and non-empty; over 32 characters is an error. Otherwise it is
/// parsed as over RESP, where a malformed key is one that matches nothing.
fn key(raw: Option<&str>) -> Result<Option<KeyBytes>, BadRequest> {
    let key = decode(raw.ok_or(MISSING_KEY)?, BAD_KEY_ENCODING)?;
    if key.is_empty() {
        return Err(EMPTY_KEY);
    }
    if key.len() > KEY_HEX_LEN {
        return Err(KEY_TOO_LONG);
    }
    Ok(parse_key_arg(Some(&key)))
}

/// A `ttl` parameter: decimal digits only, 1 to [`number::MAX_LEASE_MS`].
fn parse_ttl(raw: &str) -> Result<u64, BadRequest> {
    number::parse_lease_ms(&decode(raw, BAD_TTL)?).ok_or(BAD_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(endpoint: Endpoint, query: &str) -> Result<Op, String> {
        command(
            endpoint,
            Some(query),
            &CommandLimits {
                max_id_len: 8,
                ..CommandLimits::default()
            },
        )
        .map_err(|e| e.0.to_string())
    }

    fn lock_id(query: &str) -> Vec<u8> {
        match parse(Endpoint::Lock, query) {
            Ok(cmd) => cmd.id().to_vec(),
            Err(e) => panic!("{query}: {e}"),
        }
    }

    #[test]
    fn ids_are_percent_decoded_bytes() {
        assert_eq!(lock_id("id=abc"), b"abc");
        assert_eq!(lock_id("id=a%00b"), b"a\0b");
        assert_eq!(lock_id("id=%0d%0A"), b"\r\n");
        assert_eq!(lock_id("id=%C3%A9"), "é".as_bytes());
        assert_eq!(lock_id("id=a+b"), b"a b", "form encoding: + is a space");
        assert_eq!(lock_id("id=a%2Bb"), b"a+b", "a plus sign is %2B");
        assert_eq!(lock_id("id=a%20b"), b"a b");
        assert_eq!(lock_id("id=++%2B"), b"  +");
        assert_eq!(lock_id("x=1&&id=z&other"), b"z");
    }

    #[test]
    fn id_errors() {
        for (query, error) in [
            ("", "ERR missing id parameter"),
            ("ID=x", "ERR missing id parameter"),
            ("id", "ERR the id must not be empty"),
            ("id=", "ERR the id must not be empty"),
            ("id=123456789", "ERR id too long"),
            ("id=%41%41%41%41%41%41%41%41%41", "ERR id too long"),
            ("id=a&id=b", "ERR the id parameter is given twice"),
            ("id=a%", "ERR bad percent-encoding in id"),
            ("id=a%4", "ERR bad percent-encoding in id"),
            ("id=%zz", "ERR bad percent-encoding in id"),
        ] {
            assert_eq!(parse(Endpoint::Lock, query), Err(error.into()), "{query}");
        }
    }

    #[test]
    fn a_lock_may_bring_its_own_key() {
        let hex = "000102030405060708090A0B0C0D0E0F";
        let Ok(Op::Lock(lock)) = parse(Endpoint::Lock, &format!("id=a&key={hex}")) else {
            panic!("a lock with a key");
        };
        assert_eq!(
            lock.key,
            Some(*b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f")
        );
        for bad in [
            "id=a&key=xyz",
            "id=a&key=",
            "id=a&key=000102030405060708090a0b0c0d0e0f00",
        ] {
            assert_eq!(
                parse(Endpoint::Lock, bad),
                Err(Error::KeyForm.text().to_string()),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys() {
        let hex = "000102030405060708090a0b0c0d0e0f";
        let expected = Op::Unlock(Unlock {
            id: b"a"[..].into(),
            key: Some(*b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"),
        });
        assert_eq!(
            parse(Endpoint::Unlock, &format!("id=a&key={hex}")),
            Ok(expected)
        );
        let Ok(Op::Complete(c)) = parse(Endpoint::Complete, "key=xyz&id=a") else {
            panic!("a malformed key is a key that matches nothing");
        };
        assert_eq!(c.key, None);
        for (query, error) in [
            ("id=a", "ERR missing key parameter"),
            ("id=a&key=", "ERR the key must not be empty"),
            ("id=a&key=a&key=b", "ERR the key parameter is given twice"),
            ("id=a&key=%g0", "ERR bad percent-encoding in key"),
        ] {
            assert_eq!(
                parse(Endpoint::Complete, query),
                Err(error.into()),
                "{query}"
            );
        }
        let long = format!("id=a&key={hex}0");
        let err = parse(Endpoint::Unlock, &long).unwrap_err();
        assert!(err.starts_with("ERR key too long"), "{err}");
        assert!(!err.contains(hex), "an error never echoes the key: {err}");
    }

    #[test]
    fn docs_list_every_reason() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/HTTP.md"))
            .expect("docs/HTTP.md");
        for reason in REASONS {
            let row = format!("| `{}` |", reason.sentence());
            assert!(doc.contains(&row), "docs/HTTP.md does not list {row}");
        }
    }

    #[test]
    fn ttl_is_validated() {
        for good in ["1", "60000", "1099511627776", "%31"] {
            assert!(
                parse(Endpoint::Lock, &format!("id=a&ttl={good}")).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.5",
            "1e3",
            "abc",
            "1099511627777",
            "99999999999999999999999",
            "%",
        ] {
            let err = parse(Endpoint::Lock, &format!("id=a&ttl={bad}")).unwrap_err();
            assert!(err.starts_with("ERR bad ttl"), "{bad}: {err}");
        }
        // Only /lock reads ttl.
        assert!(parse(Endpoint::Unlock, "id=a&key=b&ttl=x").is_ok());
    }
}
