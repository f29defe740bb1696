//! A connection's output: its ordered reply slots and the encoded bytes waiting to be written.
//!
//! Replies leave strictly in request order. Each request takes a slot when it is read: a local
//! command fills its slot at once, a command sent to another shard leaves its slot pending
//! until the reply message returns. Only the filled prefix of the slot queue is encoded and
//! written, so a slow remote reply holds back the replies after it and nothing else.
//!
//! A connection stops reading when too many replies wait to be written (the client pipelines
//! without reading), so its memory stays bounded without disconnecting it: reading pauses at
//! 8,192 queued replies or at 4 MiB of unsent reply bytes (half of
//! `--client-output-buffer-limit` when that is lower). Unsent bytes count replies still held
//! as values too (the memory a value holds), so one burst of large replies cannot run past the
//! pause before it is encoded. Replies can still pile up past the pause when they come back
//! from other shards or from waits; past `--client-output-buffer-limit` the shard disconnects
//! the client ([`Output::over_limit`]), as Redis's client-output-buffer-limit does.
//!
//! Over 500 lines with its unit tests, which take the slot queue through every path (pending,
//! filled, hang-up, grants written whole or given back, pauses); the code is about 300.

use std::collections::VecDeque;
use std::io::{self, Write};

use crate::protocol::{Protocol, Reply};
use crate::types::{Id, KeyBytes};

/// A lock granted to a waiting `LOCK ... WAIT` of this connection: given back if the
/// connection closes before the reply carrying it is written whole.
pub type Grant = (Id, KeyBytes);

/// Stop reading a connection's requests while this many replies wait in its queue.
const MAX_QUEUED_REPLIES: usize = 8 * 1024;
/// Stop reading a connection's requests while this many encoded bytes wait to be written.
const MAX_UNWRITTEN_BYTES: usize = 4 * 1024 * 1024;
/// An output buffer that grew past this is released once it drains.
const KEEP_OUTPUT_CAPACITY: usize = 256 * 1024;

/// What a reply slot holds.
#[derive(Debug)]
enum Content {
    /// The reply will come later (from another shard, or a LOCK ... WAIT).
    Pending,
    /// The reply, ready to encode.
    Ready(Reply),
    /// Close the connection here, after the replies before it, without sending anything from
    /// this slot on (chaos mode's lost reply, SHUTDOWN).
    Hangup,
}

/// One reply slot.
#[derive(Debug)]
struct Slot {
    content: Content,
    /// The grant this slot's reply carries, if it answers a waiting LOCK.
    grant: Option<Box<Grant>>,
    /// For a pending slot, the bytes its reply may take, counted in the unsent bytes until it
    /// arrives.
    reserve: usize,
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
    /// Estimated encoded size of the filled slots not yet encoded.
    queued_bytes: usize,
    /// Bytes written to the stream since the connection opened.
    sent: u64,
    /// The stream held back bytes at the last flush (TLS records the socket did not take).
    unflushed: bool,
    /// `--client-output-buffer-limit` in bytes; 0 means none.
    limit: usize,
    /// A hang-up reached the front: nothing more is sent, the connection closes.
    hung_up: bool,
    /// Grants whose replies are encoded but not yet written whole, each with the value of
    /// `sent` at which its last byte will have gone; and grants of slots a hang-up dropped.
    unsent_grants: Vec<(u64, Grant)>,
    /// Queued slots that carry a grant.
    grant_slots: usize,
}

impl Output {
    /// An empty output that may hold at most `limit` unsent bytes (0: no limit).
    pub fn with_limit(limit: usize) -> Self {
        Output {
            limit,
            ..Output::default()
        }
    }

    /// Queues a reply that is ready now.
    pub fn push_ready(&mut self, reply: Reply, protocol: Protocol) {
        self.queued_bytes += approx_len(&reply);
        self.slots.push_back(Slot {
            content: Content::Ready(reply),
            grant: None,
            reserve: 0,
            protocol,
        });
    }

    /// Queues a hang-up: the connection closes once the replies before it are written, and
    /// nothing after it is sent.
    pub fn push_hangup(&mut self) {
        self.slots.push_back(Slot {
            content: Content::Hangup,
            grant: None,
            reserve: 0,
            protocol: Protocol::Resp2,
        });
    }

    /// The sequence number the next queued slot will get.
    pub fn next_seq(&self) -> u64 {
        self.head_seq + self.slots.len() as u64
    }

    /// Queues an empty slot and returns its sequence number, to be filled by [`Output::fill`].
    pub fn push_pending(&mut self, protocol: Protocol) -> u64 {
        self.push_pending_sized(protocol, 0)
    }

    /// [`Output::push_pending`] for a reply that may take up to `reserve` bytes (a STATUS
    /// with a stored result, from another shard): they count as unsent until it arrives, so
    /// reading pauses before replies still on their way can pass the limits.
    pub fn push_pending_sized(&mut self, protocol: Protocol, reserve: usize) -> u64 {
        let seq = self.head_seq + self.slots.len() as u64;
        self.queued_bytes += reserve;
        self.slots.push_back(Slot {
            content: Content::Pending,
            grant: None,
            reserve,
            protocol,
        });
        seq
    }

    /// Fills the pending slot `seq`. Returns false if there is no such pending slot.
    pub fn fill(&mut self, seq: u64, reply: Reply) -> bool {
        self.fill_grant(seq, reply, None).is_ok()
    }

    /// [`Output::fill`] with the grant the reply carries, kept until the reply is written
    /// whole ([`Output::take_unsent_grants`]). Hands the grant back if there is no such
    /// pending slot.
    pub fn fill_grant(
        &mut self,
        seq: u64,
        reply: Reply,
        grant: Option<Grant>,
    ) -> Result<(), Option<Grant>> {
        let len = approx_len(&reply);
        let Some(slot) = self.fill_with(seq, Content::Ready(reply)) else {
            return Err(grant);
        };
        let carries = grant.is_some();
        slot.grant = grant.map(Box::new);
        self.grant_slots += usize::from(carries);
        self.queued_bytes += len;
        Ok(())
    }

    /// Whether some reply not yet written whole may carry a grant (cheap: checked before
    /// every write).
    pub fn holds_grants(&self) -> bool {
        self.grant_slots > 0 || !self.unsent_grants.is_empty()
    }

    /// The grants whose replies have not been written whole: the connection is closing, so
    /// nobody will hold them, and the caller gives them back.
    pub fn take_unsent_grants(&mut self) -> Vec<Grant> {
        let sent = self.sent;
        let mut grants: Vec<Grant> = std::mem::take(&mut self.unsent_grants)
            .into_iter()
            .filter(|(end, _)| *end > sent)
            .map(|(_, g)| g)
            .collect();
        grants.extend(
            self.slots
                .iter_mut()
                .filter_map(|s| s.grant.take())
                .map(|g| *g),
        );
        self.grant_slots = 0;
        grants
    }

    /// Puts a hang-up in the pending slot `seq` (its reply is lost on purpose). Returns false
    /// if there is no such pending slot.
    pub fn fill_hangup(&mut self, seq: u64) -> bool {
        self.fill_with(seq, Content::Hangup).is_some()
    }

    /// Puts `content` in the pending slot `seq`, releasing what the slot reserved; the slot,
    /// or `None` if there is no such pending slot.
    fn fill_with(&mut self, seq: u64, content: Content) -> Option<&mut Slot> {
        let index = seq.checked_sub(self.head_seq)?;
        let slot = self
            .slots
            .get_mut(index as usize)
            .filter(|slot| matches!(slot.content, Content::Pending))?;
        slot.content = content;
        self.queued_bytes = self
            .queued_bytes
            .saturating_sub(std::mem::take(&mut slot.reserve));
        Some(slot)
    }

    /// Replaces the reply in slot `seq`, if it is still queued.
    pub fn replace(&mut self, seq: u64, reply: Reply) {
        if let Some(index) = seq.checked_sub(self.head_seq)
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            let old = match &slot.content {
                Content::Ready(old) => approx_len(old),
                Content::Pending => slot.reserve,
                Content::Hangup => 0,
            };
            slot.reserve = 0;
            self.queued_bytes = self.queued_bytes.saturating_sub(old) + approx_len(&reply);
            slot.content = Content::Ready(reply);
        }
    }

    /// Encodes the filled prefix of the slot queue into the output buffer. A hang-up ends
    /// it: that slot and every later one are dropped unsent, and [`Output::hung_up`] turns
    /// true.
    pub fn encode_ready(&mut self) {
        while let Some(slot) = self.slots.front() {
            let reply = match &slot.content {
                Content::Pending => break,
                Content::Ready(reply) => reply,
                Content::Hangup => {
                    self.hung_up = true;
                    self.head_seq += self.slots.len() as u64;
                    // Dropped unsent: their grants are never delivered.
                    for g in self.slots.drain(..).filter_map(|s| s.grant) {
                        self.grant_slots -= 1;
                        self.unsent_grants.push((u64::MAX, *g));
                    }
                    break;
                }
            };
            self.queued_bytes = self.queued_bytes.saturating_sub(approx_len(reply));
            reply.encode(slot.protocol, &mut self.buf);
            if let Some(slot) = self.slots.pop_front()
                && let Some(grant) = slot.grant
            {
                self.grant_slots -= 1;
                let end = self.sent + (self.buf.len() - self.written) as u64;
                self.unsent_grants.push((end, *grant));
            }
            self.head_seq += 1;
        }
        if self.slots.is_empty() {
            self.queued_bytes = 0;
        }
    }

    /// Writes buffered bytes to `dst` until done or it would block. Returns whether all
    /// buffered bytes are written.
    pub fn write_to(&mut self, dst: &mut impl Write) -> io::Result<bool> {
        while self.written < self.buf.len() {
            match dst.write(&self.buf[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.written = 0;
        if !self.unsent_grants.is_empty() {
            let sent = self.sent;
            self.unsent_grants.retain(|(end, _)| *end > sent);
        }
        if self.buf.capacity() > KEEP_OUTPUT_CAPACITY {
            self.buf = Vec::new();
        }
        // A TLS stream may still hold records of what it took; they must leave too.
        match dst.flush() {
            Ok(()) => self.unflushed = false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.unflushed = true;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        Ok(true)
    }

    /// Bytes written to the stream since the connection opened (to tell progress).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Unsent reply bytes: encoded ones not yet written, plus an estimate for queued replies.
    pub fn pending_bytes(&self) -> usize {
        self.queued_bytes + (self.buf.len() - self.written)
    }

    /// Whether the unsent replies exceed `--client-output-buffer-limit`: the client must be
    /// disconnected.
    pub fn over_limit(&self) -> bool {
        self.limit > 0 && self.pending_bytes() > self.limit
    }

    /// Whether a slot waits for a reply from elsewhere (another shard, a LOCK ... WAIT).
    pub fn awaits_reply(&self) -> bool {
        self.slots
            .iter()
            .any(|s| matches!(s.content, Content::Pending))
    }

    /// Whether a hang-up was reached: the connection must close once the bytes
    /// before it are written.
    pub fn hung_up(&self) -> bool {
        self.hung_up
    }

    /// Whether replies or bytes are still waiting.
    pub fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.written == self.buf.len() && !self.unflushed
    }

    /// Whether the client has so much unread output that reading its requests must pause.
    pub fn is_backlogged(&self) -> bool {
        let pause_at = match self.limit {
            0 => MAX_UNWRITTEN_BYTES,
            limit => MAX_UNWRITTEN_BYTES.min(limit / 2).max(1),
        };
        self.slots.len() >= MAX_QUEUED_REPLIES || self.pending_bytes() >= pause_at
    }
}

/// About how much memory `reply` holds while it waits as a value: its own node (in its parent's
/// vector, or in the reply slot) and the heap blocks behind it, with the allocator's overhead.
/// At least what it takes once encoded (a reply of many small parts, such as `COMMAND DOCS`,
/// holds about three times its encoded size), so pausing on it bounds real memory. Cheap: one
/// walk over the value.
fn approx_len(reply: &Reply) -> usize {
    /// The allocator's header and rounding for one heap block, about.
    const BLOCK: usize = 16;
    let heap = match reply {
        Reply::Bulk(b) => b.len() + BLOCK,
        Reply::Error(text) => text.len() + BLOCK,
        Reply::Verbatim(text) => text.len() + BLOCK,
        Reply::Array(items) | Reply::Set(items) => {
            BLOCK + items.iter().map(approx_len).sum::<usize>()
        }
        Reply::Map(pairs) => {
            BLOCK
                + pairs
                    .iter()
                    .map(|(k, v)| approx_len(k) + approx_len(v))
                    .sum::<usize>()
        }
        Reply::Ok | Reply::Simple(_) | Reply::Key(_) | Reply::Null | Reply::Integer(_) => 0,
    };
    std::mem::size_of::<Reply>() + heap
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
    fn a_hangup_drops_its_reply_and_every_later_one() {
        let mut out = Output::default();
        out.push_ready(Reply::Integer(1), Protocol::Resp2);
        let a = out.push_pending(Protocol::Resp2);
        out.push_ready(Reply::Integer(3), Protocol::Resp2);
        let b = out.push_pending(Protocol::Resp2);
        assert!(out.fill_hangup(a));
        out.encode_ready();
        assert_eq!(out.buf, b":1\r\n");
        assert!(out.hung_up());
        assert!(!out.fill(b, Reply::Integer(4)), "later slots are gone");
        let mut sink = Vec::new();
        assert!(out.write_to(&mut sink).unwrap());
        assert!(out.is_idle());
    }

    fn grant(n: u8) -> Grant {
        (vec![n].into_boxed_slice(), [n; 16])
    }

    #[test]
    fn pending_replies_count_what_they_may_take() {
        let mut out = Output::default();
        let a = out.push_pending_sized(Protocol::Resp2, 70_000);
        assert_eq!(out.pending_bytes(), 70_000);
        for _ in 0..60 {
            out.push_pending_sized(Protocol::Resp2, 70_000);
        }
        assert!(
            out.is_backlogged(),
            "61 x 70 KB on their way pass the 4 MiB pause"
        );
        assert!(out.fill(a, Reply::Integer(1)));
        assert_eq!(
            out.pending_bytes(),
            60 * 70_000 + std::mem::size_of::<Reply>()
        );
    }

    #[test]
    fn grants_are_handed_back_until_their_reply_is_written_whole() {
        let mut out = Output::default();
        let a = out.push_pending(Protocol::Resp2);
        let b = out.push_pending(Protocol::Resp2);
        assert!(!out.holds_grants());
        assert!(
            out.fill_grant(a, Reply::Key([1; 16]), Some(grant(1)))
                .is_ok()
        );
        assert_eq!(
            out.fill_grant(a, Reply::Key([1; 16]), Some(grant(9))),
            Err(Some(grant(9))),
            "a filled slot hands the grant back"
        );
        assert!(out.holds_grants());
        out.encode_ready();
        // Half of the first reply is written: its grant is not delivered.
        let mut sink = Sink {
            room: 10,
            held: false,
        };
        assert!(!out.write_to(&mut sink).unwrap());
        assert!(
            out.fill_grant(b, Reply::Key([2; 16]), Some(grant(2)))
                .is_ok()
        );
        let mut back = out.take_unsent_grants();
        back.sort();
        assert_eq!(back, vec![grant(1), grant(2)]);
        assert!(!out.holds_grants());
    }

    #[test]
    fn a_written_grant_is_delivered_and_a_dropped_one_is_not() {
        let mut out = Output::default();
        let a = out.push_pending(Protocol::Resp2);
        assert!(
            out.fill_grant(a, Reply::Key([1; 16]), Some(grant(1)))
                .is_ok()
        );
        out.encode_ready();
        let mut all = Vec::new();
        assert!(out.write_to(&mut all).unwrap());
        assert!(!out.holds_grants());
        assert!(out.take_unsent_grants().is_empty());

        let h = out.push_pending(Protocol::Resp2);
        let b = out.push_pending(Protocol::Resp2);
        assert!(
            out.fill_grant(b, Reply::Key([2; 16]), Some(grant(2)))
                .is_ok()
        );
        assert!(out.fill_hangup(h));
        out.encode_ready();
        assert!(out.hung_up());
        assert_eq!(out.take_unsent_grants(), vec![grant(2)]);
    }

    /// A sink that takes `room` bytes, then would block; `flush` blocks while `held`.
    struct Sink {
        room: usize,
        held: bool,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match buf.len().min(self.room) {
                0 => Err(io::ErrorKind::WouldBlock.into()),
                n => {
                    self.room -= n;
                    Ok(n)
                }
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            if self.held {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn unsent_bytes_count_queued_replies_too() {
        let big = Reply::Bulk(bytes::Bytes::from(vec![b'x'; 100_000]));
        let mut out = Output::with_limit(1_000_000);
        out.push_ready(big.clone(), Protocol::Resp2);
        assert!(
            out.pending_bytes() >= 100_000,
            "counted before it is encoded"
        );
        let seq = out.push_pending(Protocol::Resp2);
        out.replace(0, Reply::Ok);
        assert!(out.pending_bytes() < 100, "a replaced reply stops counting");
        assert!(out.fill(seq, big.clone()));
        out.encode_ready();
        assert!((100_000..100_100).contains(&out.pending_bytes()));
        let mut sink = Sink {
            room: 60_000,
            held: false,
        };
        assert!(!out.write_to(&mut sink).unwrap());
        assert_eq!(out.sent(), 60_000);
        assert!(out.pending_bytes() < 41_000);
        sink.room = usize::MAX;
        assert!(out.write_to(&mut sink).unwrap());
        assert_eq!(out.pending_bytes(), 0);
    }

    #[test]
    fn reading_pauses_below_the_limit_and_the_limit_is_a_hard_cap() {
        let reply = Reply::Bulk(bytes::Bytes::from(vec![b'x'; 1000]));
        let mut out = Output::with_limit(10_000);
        while !out.is_backlogged() {
            out.push_ready(reply.clone(), Protocol::Resp2);
        }
        assert!(
            (5_000..6_100).contains(&out.pending_bytes()),
            "pauses at half the limit"
        );
        assert!(!out.over_limit());
        for _ in 0..5 {
            out.push_ready(reply.clone(), Protocol::Resp2);
        }
        assert!(out.over_limit());
        let mut unlimited = Output::default();
        for _ in 0..100 {
            unlimited.push_ready(reply.clone(), Protocol::Resp2);
        }
        assert!(!unlimited.over_limit() && !unlimited.is_backlogged());
    }

    #[test]
    fn bytes_held_by_the_stream_keep_the_output_busy() {
        let mut out = Output::default();
        out.push_ready(Reply::Ok, Protocol::Resp2);
        out.encode_ready();
        let mut sink = Sink {
            room: usize::MAX,
            held: true,
        };
        assert!(!out.write_to(&mut sink).unwrap());
        assert!(
            !out.is_idle(),
            "a closing connection must wait for the flush"
        );
        sink.held = false;
        assert!(out.write_to(&mut sink).unwrap());
        assert!(out.is_idle());
    }

    #[test]
    fn a_slot_awaiting_a_reply_is_not_idle_time() {
        let mut out = Output::default();
        let seq = out.push_pending(Protocol::Resp2);
        assert!(out.awaits_reply());
        out.fill(seq, Reply::Ok);
        assert!(!out.awaits_reply());
    }
}
