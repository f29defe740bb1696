//! A connection's input: the bytes received and not yet decoded. The buffer grows with the
//! bytes that arrive, never with a length a request declares, and a large one is released once
//! its requests are decoded.

use std::io::{self, Read};

/// Read at least this much free space per read call.
const READ_CHUNK: usize = 16 * 1024;
/// An input buffer that grew past this is released once everything in it is decoded, so a
/// burst of large requests does not stay resident while the connection lives on.
const KEEP_INPUT_CAPACITY: usize = 64 * 1024;

/// Bytes received but not yet decoded.
#[derive(Debug, Default)]
pub struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Decoding is pointless until this many bytes are buffered.
    pub need: usize,
}

impl Input {
    /// The undecoded bytes.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes as decoded.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        self.need = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_INPUT_CAPACITY {
                self.buf = Vec::new();
            }
        }
    }

    /// Reads once from `src` into free space. Returns the bytes read (0: the peer closed) and
    /// whether they filled less than the space offered.
    ///
    /// The buffer grows with the bytes that arrive, never with what a request declares: a
    /// read offers at most as much again as is buffered (and at least [`READ_CHUNK`]), so a
    /// client that announces a 512 MiB argument and sends 15 bytes holds 16 KiB, and one that
    /// sends it all reaches it by doubling.
    pub fn read_from(&mut self, src: &mut impl Read) -> io::Result<(usize, bool)> {
        let buffered = self.end - self.start;
        let missing = self.need.saturating_sub(buffered);
        let want = READ_CHUNK.max(missing.min(buffered));
        if self.buf.len() - self.end < want {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < want {
                self.buf.resize(self.end + want, 0);
            }
        }
        let offered = self.buf.len() - self.end;
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok((n, n < offered))
    }

    /// Number of undecoded bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_grows_with_the_bytes_that_arrive_not_with_declared_lengths() {
        let mut input = Input {
            need: 512 << 20,
            ..Input::default()
        };
        let mut src: &[u8] = b"*2\r\n$536870912\r\n";
        input.read_from(&mut src).unwrap();
        assert!(input.buf.len() <= 2 * READ_CHUNK, "{}", input.buf.len());
        // Sending the bytes grows it by doubling.
        let data = vec![b'x'; 300 * 1024];
        let mut src: &[u8] = &data;
        while !src.is_empty() {
            input.read_from(&mut src).unwrap();
            assert!(input.buf.len() <= 2 * input.len() + 2 * READ_CHUNK);
        }
        assert_eq!(input.len(), 300 * 1024 + 16);
    }

    #[test]
    fn a_large_input_buffer_is_released_once_decoded() {
        let mut input = Input::default();
        let data = vec![b'x'; 1 << 20];
        let mut src: &[u8] = &data;
        while !src.is_empty() {
            input.need = 1 << 20;
            input.read_from(&mut src).unwrap();
        }
        assert!(input.buf.len() >= 1 << 20);
        input.consume(1 << 20);
        assert_eq!(input.buf.capacity(), 0, "released");
        let mut src: &[u8] = b"PING\r\n";
        input.read_from(&mut src).unwrap();
        input.consume(6);
        assert_eq!(input.buf.len(), READ_CHUNK, "a small buffer is kept");
    }

    #[test]
    fn input_grows_for_large_requests_and_compacts() {
        let mut input = Input::default();
        let data = vec![7u8; 100_000];
        let mut src = &data[..];
        input.need = 100_000;
        while input.len() < 100_000 {
            assert!(input.read_from(&mut src).unwrap().0 > 0);
        }
        input.consume(99_990);
        assert_eq!(input.pending(), &[7u8; 10][..]);
        input.consume(10);
        assert!(input.is_empty());
    }
}
