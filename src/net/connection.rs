//! One RESP client connection: its socket, its input buffer and its ordered reply slots.
//!
//! Replies leave strictly in request order. Each request takes a slot when it is read: a local
//! command fills its slot at once, a command sent to another shard leaves its slot pending
//! until the reply message returns. Only the filled prefix of the slot queue is encoded and
//! written, so a slow remote reply holds back the replies after it and nothing else.
//!
//! A connection stops reading when too many replies wait to be written (the client pipelines
//! without reading), so its memory stays bounded without disconnecting it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::command::admin::Session;
use crate::protocol::{Protocol, Reply};

/// Stop reading a connection's requests while this many replies wait in its queue.
const MAX_QUEUED_REPLIES: usize = 8 * 1024;
/// Stop reading a connection's requests while this many encoded bytes wait to be written.
const MAX_UNWRITTEN_BYTES: usize = 4 * 1024 * 1024;
/// Read at least this much free space per read call.
const READ_CHUNK: usize = 16 * 1024;
/// An output buffer that grew past this is released once it drains.
const KEEP_OUTPUT_CAPACITY: usize = 256 * 1024;

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
        }
    }

    /// Reads once from `src` into free space. `Ok(0)` means the peer closed.
    pub fn read_from(&mut self, src: &mut impl Read) -> io::Result<usize> {
        let want = READ_CHUNK.max(self.need.saturating_sub(self.end - self.start));
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
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
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

/// One reply slot.
#[derive(Debug)]
struct Slot {
    reply: Option<Reply>,
    /// The protocol in force when the request was read, so a later HELLO does not change how
    /// earlier replies are encoded.
    protocol: Protocol,
}

/// Replies in request order and the bytes waiting to be written.
#[derive(Debug, Default)]
pub struct Output {
    slots: VecDeque<Slot>,
    head_seq: u64,
    buf: Vec<u8>,
    written: usize,
}

impl Output {
    /// Queues a reply that is ready now.
    pub fn push_ready(&mut self, reply: Reply, protocol: Protocol) {
        self.slots.push_back(Slot {
            reply: Some(reply),
            protocol,
        });
    }

    /// The sequence number the next queued slot will get.
    pub fn next_seq(&self) -> u64 {
        self.head_seq + self.slots.len() as u64
    }

    /// Queues an empty slot and returns its sequence number, to be filled by [`Output::fill`].
    pub fn push_pending(&mut self, protocol: Protocol) -> u64 {
        let seq = self.head_seq + self.slots.len() as u64;
        self.slots.push_back(Slot {
            reply: None,
            protocol,
        });
        seq
    }

    /// Fills the pending slot `seq`. Returns false if there is no such pending slot.
    pub fn fill(&mut self, seq: u64, reply: Reply) -> bool {
        let Some(index) = seq.checked_sub(self.head_seq) else {
            return false;
        };
        match self.slots.get_mut(index as usize) {
            Some(slot) if slot.reply.is_none() => {
                slot.reply = Some(reply);
                true
            }
            _ => false,
        }
    }

    /// Replaces the reply in slot `seq`, if it is still queued.
    pub fn replace(&mut self, seq: u64, reply: Reply) {
        if let Some(index) = seq.checked_sub(self.head_seq)
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            slot.reply = Some(reply);
        }
    }

    /// Encodes the filled prefix of the slot queue into the output buffer.
    pub fn encode_ready(&mut self) {
        while let Some(slot) = self.slots.front() {
            let Some(reply) = &slot.reply else { break };
            reply.encode(slot.protocol, &mut self.buf);
            self.slots.pop_front();
            self.head_seq += 1;
        }
    }

    /// Writes buffered bytes to `dst` until done or it would block. Returns whether all
    /// buffered bytes are written.
    pub fn write_to(&mut self, dst: &mut impl Write) -> io::Result<bool> {
        while self.written < self.buf.len() {
            match dst.write(&self.buf[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.written = 0;
        if self.buf.capacity() > KEEP_OUTPUT_CAPACITY {
            self.buf = Vec::new();
        }
        Ok(true)
    }

    /// Whether replies or bytes are still waiting.
    pub fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.written == self.buf.len()
    }

    /// Whether the client has so much unread output that reading its requests must pause.
    pub fn is_backlogged(&self) -> bool {
        self.slots.len() >= MAX_QUEUED_REPLIES
            || self.buf.len() - self.written >= MAX_UNWRITTEN_BYTES
    }
}

/// A client connection owned by one shard thread.
#[derive(Debug)]
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// Protocol version, name, authentication.
    pub session: Session,
    /// Undecoded input.
    pub input: Input,
    /// Replies and output bytes.
    pub output: Output,
    /// Reading is paused because of [`Output::is_backlogged`].
    pub paused: bool,
    /// No more requests are read; close once the queued replies are written.
    pub closing: bool,
    /// Already listed for writing at the end of this loop iteration.
    pub dirty: bool,
}

impl Connection {
    /// A connection over `stream`.
    pub fn new(stream: TcpStream, session: Session) -> Self {
        Connection {
            stream,
            session,
            input: Input::default(),
            output: Output::default(),
            paused: false,
            closing: false,
            dirty: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_leave_in_request_order() {
        let mut out = Output::default();
        out.push_ready(Reply::Integer(1), Protocol::Resp2);
        let a = out.push_pending(Protocol::Resp2);
        out.push_ready(Reply::Integer(3), Protocol::Resp2);
        let b = out.push_pending(Protocol::Resp2);
        out.encode_ready();
        assert_eq!(out.buf, b":1\r\n");
        assert!(out.fill(b, Reply::Integer(4)));
        out.encode_ready();
        assert_eq!(out.buf, b":1\r\n");
        assert!(out.fill(a, Reply::Integer(2)));
        assert!(!out.fill(a, Reply::Integer(2)), "a slot fills once");
        out.encode_ready();
        assert_eq!(out.buf, b":1\r\n:2\r\n:3\r\n:4\r\n");
        let mut sink = Vec::new();
        assert!(out.write_to(&mut sink).unwrap());
        assert!(out.is_idle());
        assert!(!out.fill(99, Reply::Ok));
    }

    #[test]
    fn input_grows_for_large_requests_and_compacts() {
        let mut input = Input::default();
        let data = vec![7u8; 100_000];
        let mut src = &data[..];
        input.need = 100_000;
        while input.len() < 100_000 {
            assert!(input.read_from(&mut src).unwrap() > 0);
        }
        input.consume(99_990);
        assert_eq!(input.pending(), &[7u8; 10][..]);
        input.consume(10);
        assert!(input.is_empty());
    }
}
