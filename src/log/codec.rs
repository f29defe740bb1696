//! Record frames: encoding [`LogRecord`]s and decoding them from untrusted bytes.
//!
//! A frame is `[len u32 LE][crc32c u32 LE][type u8][payload]`, where `len` counts the type
//! byte and the payload, and the checksum covers the four length bytes, then the body.
//! `docs/LOG_FORMAT.md` gives each payload byte by byte.
//!
//! Invariants:
//! - Encoding is total: every [`LogRecord`] encodes, and decoding what was encoded gives it back.
//! - Decoding never panics and never trusts a length: every read is bounds-checked, because
//!   the bytes come from disk. A payload must be consumed exactly.
//! - A record's checksum covers its length field as well as its body, so a damaged length
//!   is caught by the checksum whenever the damaged length still fits in the file.
//! - [`decode_body`] borrows from the buffer it is given; recovery decodes millions of
//!   records without allocating for each one.

use super::format::FRAME_HEADER_LEN;
use crate::types::{KeyBytes, LogRecord, RecordRef};

/// Record type tags. Zero is never used, so zero-filled space never looks like a record.
mod tag {
    pub const LOCK: u8 = 1;
    pub const UNLOCK: u8 = 2;
    pub const RENEW: u8 = 3;
    pub const COMPLETE: u8 = 4;
    pub const FENCE: u8 = 5;
    pub const EPOCH: u8 = 6;
    pub const GROUP: u8 = 7;
}

impl LogRecord {
    /// Appends this record's frame (`len`, `crc32c`, type, payload) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.borrowed().encode_into(out);
    }

    /// This record's frame as a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

impl RecordRef<'_> {
    /// Appends this record's frame (`len`, `crc32c`, type, payload) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
        match *self {
            RecordRef::Lock {
                id,
                key,
                fence,
                deadline_ms,
                fingerprint,
            } => {
                out.push(tag::LOCK);
                out.extend_from_slice(&fence.to_le_bytes());
                out.extend_from_slice(&deadline_ms.to_le_bytes());
                out.extend_from_slice(&key);
                put_bytes(out, id);
                put_opt_bytes(out, fingerprint);
            }
            RecordRef::Unlock { id } => {
                out.push(tag::UNLOCK);
                put_bytes(out, id);
            }
            RecordRef::Renew { id, deadline_ms } => {
                out.push(tag::RENEW);
                out.extend_from_slice(&deadline_ms.to_le_bytes());
                put_bytes(out, id);
            }
            RecordRef::Complete {
                id,
                key,
                fence,
                at_ms,
                fingerprint,
                result,
            } => {
                out.push(tag::COMPLETE);
                out.extend_from_slice(&fence.to_le_bytes());
                out.extend_from_slice(&at_ms.to_le_bytes());
                out.extend_from_slice(&key);
                put_bytes(out, id);
                put_opt_bytes(out, fingerprint);
                put_opt_bytes(out, result);
            }
            RecordRef::Fence { value } => {
                out.push(tag::FENCE);
                out.extend_from_slice(&value.to_le_bytes());
            }
            RecordRef::Epoch { epoch } => {
                out.push(tag::EPOCH);
                out.extend_from_slice(&epoch.to_le_bytes());
            }
            RecordRef::Group { count } => {
                out.push(tag::GROUP);
                out.extend_from_slice(&count.to_le_bytes());
            }
        }
        let body = out.get(start + FRAME_HEADER_LEN..).unwrap_or_default();
        // Bodies are bounded by the request limits (see `MAX_BODY_LEN`); saturate rather than
        // wrap so an impossible oversized record reads back as corruption, never as another
        // record.
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
        let crc = frame_crc(len, body).to_le_bytes();
        if let Some((len_field, crc_field)) = out
            .get_mut(start..start + FRAME_HEADER_LEN)
            .and_then(|head| head.split_first_chunk_mut::<4>())
        {
            *len_field = len;
            crc_field.copy_from_slice(&crc);
        }
    }
}

/// The checksum stored in a frame: CRC32C over the little-endian length, then the body.
pub fn frame_crc(len: [u8; 4], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), body)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

/// Why a body with a valid checksum could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The type byte names no record type this version knows.
    UnknownType(u8),
    /// The payload is shorter or longer than its type requires, or a flag is invalid.
    Malformed(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownType(t) => write!(f, "unknown record type {t}"),
            DecodeError::Malformed(why) => write!(f, "malformed record: {why}"),
        }
    }
}

/// Decodes a record body (type byte and payload), borrowing byte strings from `body`.
pub fn decode_body(body: &[u8]) -> Result<RecordRef<'_>, DecodeError> {
    let mut r = Cursor::new(body);
    let short = DecodeError::Malformed("payload too short");
    let kind = r.u8().ok_or(DecodeError::Malformed("empty body"))?;
    let rec = match kind {
        tag::LOCK => {
            let fence = r.u64().ok_or(short.clone())?;
            let deadline_ms = r.u64().ok_or(short.clone())?;
            let key = r.key().ok_or(short.clone())?;
            let id = r.bytes().ok_or(short.clone())?;
            let fingerprint = r.opt_bytes()?;
            RecordRef::Lock {
                id,
                key,
                fence,
                deadline_ms,
                fingerprint,
            }
        }
        tag::UNLOCK => RecordRef::Unlock {
            id: r.bytes().ok_or(short.clone())?,
        },
        tag::RENEW => {
            let deadline_ms = r.u64().ok_or(short.clone())?;
            let id = r.bytes().ok_or(short.clone())?;
            RecordRef::Renew { id, deadline_ms }
        }
        tag::COMPLETE => {
            let fence = r.u64().ok_or(short.clone())?;
            let at_ms = r.u64().ok_or(short.clone())?;
            let key = r.key().ok_or(short.clone())?;
            let id = r.bytes().ok_or(short.clone())?;
            let fingerprint = r.opt_bytes()?;
            let result = r.opt_bytes()?;
            RecordRef::Complete {
                id,
                key,
                fence,
                at_ms,
                fingerprint,
                result,
            }
        }
        tag::FENCE => RecordRef::Fence {
            value: r.u64().ok_or(short.clone())?,
        },
        tag::EPOCH => RecordRef::Epoch {
            epoch: r.u64().ok_or(short)?,
        },
        tag::GROUP => RecordRef::Group {
            count: r.u32().ok_or(short)?,
        },
        other => return Err(DecodeError::UnknownType(other)),
    };
    if !r.rest().is_empty() {
        return Err(DecodeError::Malformed("trailing bytes after the payload"));
    }
    Ok(rec)
}

/// A bounds-checked reader over untrusted bytes.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }

    fn rest(&self) -> &'a [u8] {
        self.rest
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn key(&mut self) -> Option<KeyBytes> {
        self.array()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.u8() {
            Some(0) => Ok(None),
            Some(1) => self
                .bytes()
                .map(Some)
                .ok_or(DecodeError::Malformed("payload too short")),
            Some(_) => Err(DecodeError::Malformed("bad presence flag")),
            None => Err(DecodeError::Malformed("payload too short")),
        }
    }
}
