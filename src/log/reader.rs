//! Streaming frame reader: yields record bodies and tells a torn tail from corruption.
//!
//! The reader never loads a whole file: it reads through a large [`BufReader`] into one
//! reused body buffer, so a multi-gigabyte log costs one buffer of memory.
//!
//! Classification of a bad frame at offset `o` (see `docs/LOG_FORMAT.md`):
//! - *Torn* (the last write before a crash, dropped with a warning): fewer than 8 bytes left;
//!   a length that runs past the end of the file; a checksum mismatch with nothing, or only
//!   zero bytes, after the record; or nothing but zero bytes from `o` to the end.
//! - *Corrupt* (refuse to start unless repairing): a length of 0 or above
//!   [`MAX_BODY_LEN`] followed by anything but zeros; a checksum mismatch followed by
//!   non-zero bytes. (A body with a valid checksum that does not decode is also corruption;
//!   the caller decides that, since the reader does not decode.)

use std::io::{self, BufRead, BufReader, Read};

use super::codec::frame_crc;
use super::format::{FRAME_HEADER_LEN, MAX_BODY_LEN};

const READ_BUFFER: usize = 1 << 20;

/// One step through a log file.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A frame whose checksum matched.
    Record {
        /// Where the frame starts.
        offset: u64,
        /// Its body: type byte and payload.
        body: &'a [u8],
    },
    /// The file ends cleanly here.
    End,
    /// The file ends with an incomplete last write starting at `offset`.
    Torn {
        /// Where the torn frame starts.
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// A damaged frame at `offset` with data after it.
    Corrupt {
        /// Where the damaged frame starts.
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
}

/// Reads frames from a file of known length.
pub(crate) struct FrameReader<R: Read> {
    inner: BufReader<R>,
    offset: u64,
    file_len: u64,
    body: Vec<u8>,
    /// Bytes of the read buffer lent out by the last fast-path record, consumed on the next
    /// call.
    lent: usize,
}

impl<R: Read> FrameReader<R> {
    /// A reader positioned at `offset` of a file `file_len` bytes long; `inner` must be
    /// positioned at `offset` too.
    pub(crate) fn new(inner: R, offset: u64, file_len: u64) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(READ_BUFFER, inner),
            offset,
            file_len,
            body: Vec::new(),
            lent: 0,
        }
    }

    /// The offset just past the last frame returned as a record.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame, or how the file ends.
    pub(crate) fn next_frame(&mut self) -> io::Result<Step<'_>> {
        self.inner.consume(std::mem::take(&mut self.lent));
        let offset = self.offset;
        let remaining = self.file_len.saturating_sub(offset);
        if remaining == 0 {
            return Ok(Step::End);
        }
        if remaining < FRAME_HEADER_LEN as u64 {
            return Ok(Step::Torn {
                offset,
                reason: format!("truncated record header ({remaining} bytes)"),
            });
        }
        // Fast path: a valid frame wholly inside the read buffer is lent out, not copied.
        if self.inner.buffer().is_empty() {
            self.inner.fill_buf()?;
        }
        if let Some(frame_len) = valid_frame_at_start(self.inner.buffer(), remaining) {
            self.lent = frame_len;
            self.offset = offset + frame_len as u64;
            let body = self.inner.buffer().get(FRAME_HEADER_LEN..frame_len);
            return Ok(Step::Record {
                offset,
                body: body.unwrap_or_default(),
            });
        }
        // Slow path: a frame that straddles the buffer's end, or a bad one.
        let mut head = [0u8; FRAME_HEADER_LEN];
        self.inner.read_exact(&mut head)?;
        let [l0, l1, l2, l3, c0, c1, c2, c3] = head;
        let len_bytes = [l0, l1, l2, l3];
        let len = u32::from_le_bytes(len_bytes);
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        if len == 0 || len > MAX_BODY_LEN {
            if head == [0; FRAME_HEADER_LEN] && self.rest_is_zero()? {
                return Ok(Step::Torn {
                    offset,
                    reason: "zero-filled tail".into(),
                });
            }
            return Ok(Step::Corrupt {
                offset,
                reason: format!("bad record length {len}"),
            });
        }
        let after_head = remaining - FRAME_HEADER_LEN as u64;
        if u64::from(len) > after_head {
            return Ok(Step::Torn {
                offset,
                reason: format!("record of {len} bytes cut short at {after_head} bytes"),
            });
        }
        let body_len = usize::try_from(len).map_err(io::Error::other)?;
        self.body.clear();
        self.body.resize(body_len, 0);
        self.inner.read_exact(&mut self.body)?;
        if frame_crc(len_bytes, &self.body) != crc {
            let after = after_head - u64::from(len);
            if after == 0 || self.rest_is_zero()? {
                return Ok(Step::Torn {
                    offset,
                    reason: "checksum mismatch in the last record".into(),
                });
            }
            return Ok(Step::Corrupt {
                offset,
                reason: "checksum mismatch".into(),
            });
        }
        self.offset = offset + FRAME_HEADER_LEN as u64 + u64::from(len);
        Ok(Step::Record {
            offset,
            body: &self.body,
        })
    }

    /// Whether every byte from the current read position to the end of the file is zero.
    fn rest_is_zero(&mut self) -> io::Result<bool> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                return Ok(true);
            }
            if chunk.get(..n).is_some_and(|c| c.iter().any(|&b| b != 0)) {
                return Ok(false);
            }
        }
    }
}

/// The length of the frame at the start of `buffered`, if it is wholly there, fits in the
/// `remaining` bytes of the file, and its checksum matches.
fn valid_frame_at_start(buffered: &[u8], remaining: u64) -> Option<usize> {
    let (head, rest) = buffered.split_first_chunk::<FRAME_HEADER_LEN>()?;
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *head;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    if len == 0 || len > MAX_BODY_LEN {
        return None;
    }
    let frame_len = FRAME_HEADER_LEN + usize::try_from(len).ok()?;
    if frame_len as u64 > remaining {
        return None;
    }
    let body = rest.get(..frame_len - FRAME_HEADER_LEN)?;
    let ok = frame_crc([l0, l1, l2, l3], body) == u32::from_le_bytes([c0, c1, c2, c3]);
    ok.then_some(frame_len)
}
