//! Message passing between shards and into shards.
//!
//! Shard to shard: a fixed N×N grid of single-producer/single-consumer ring buffers, created at
//! start-up. Each carries whole batches: a shard collects everything for one destination during
//! a loop iteration and pushes it as one [`Batch`], then wakes that destination once.
//! From other threads (the acceptor, HTTP workers): one MPSC [`Inbox`] per shard. A sender
//! wakes the shard only if no wake is pending since the shard last emptied its inbox, so a
//! burst of HTTP requests costs one wake system call, not one each.
//!
//! A shard never blocks on another: a full ring keeps the batch in the sender's outbox for the
//! next iteration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use mio::Waker;

use crate::command;
use crate::protocol::Reply;
use crate::table::{Op, Outcome};
use crate::types::{ConnRef, Id, KeyBytes, ShardId};

/// Capacity of each shard-to-shard ring, in batches.
const RING_BATCHES: usize = 1024;

/// The answer to a lock command run for someone else: its outcome, or the order to drop the
/// reply and close the connection (chaos mode's lost reply).
#[derive(Debug)]
pub enum Answer {
    /// What the command came to.
    Outcome(Outcome),
    /// The command ran, but its caller gets no reply: the connection is closed instead.
    Hangup,
    /// What each command of a transaction came to, in order.
    Outcomes(Vec<Outcome>),
}

/// What an answer puts in its connection's reply slot.
#[derive(Debug)]
pub enum SlotFill {
    /// This reply.
    Reply(Reply),
    /// Nothing yet: a `LOCK ... WAIT` was queued and is answered later.
    Pending,
    /// No reply: the connection closes here.
    Hangup,
}

impl Answer {
    /// What this answer puts in its connection's reply slot.
    pub fn into_slot(self) -> SlotFill {
        match self {
            Answer::Outcome(outcome) => {
                command::reply(outcome).map_or(SlotFill::Pending, SlotFill::Reply)
            }
            Answer::Outcomes(outcomes) => {
                SlotFill::Reply(command::transaction::exec_reply(outcomes))
            }
            Answer::Hangup => SlotFill::Hangup,
        }
    }
}

/// One message between shards.
#[derive(Debug)]
pub enum Message {
    /// Run `cmd` on the receiving shard and send the reply back to the sender.
    Request {
        /// The connection that sent the command, on the sending shard.
        conn: ConnRef,
        /// The reply slot it waits in.
        seq: u64,
        /// The command.
        cmd: Op,
    },
    /// Run a transaction's commands (all of one slot, owned by the receiving shard) in order,
    /// nothing in between, and send back their outcomes.
    Transaction {
        /// The connection that sent EXEC, on the sending shard.
        conn: ConnRef,
        /// The reply slot it waits in.
        seq: u64,
        /// The queued commands.
        ops: Vec<Op>,
    },
    /// A connection of the sending shard has closed: drop its queued `LOCK ... WAIT`s here.
    CancelWaits {
        /// The connection that closed.
        conn: ConnRef,
    },
    /// The reply to a request this shard sent earlier.
    Reply {
        /// The connection the reply belongs to.
        conn: ConnRef,
        /// The reply slot to fill.
        seq: u64,
        /// The answer.
        answer: Answer,
        /// For a lock granted to a waiter: its id and key, so that if the connection has gone
        /// meanwhile the receiver can release the lock instead of leaving it held by nobody.
        grant: Option<Box<(Id, KeyBytes)>>,
    },
}

/// Messages from one shard to another, gathered during one loop iteration.
pub type Batch = Vec<Message>;

/// A caller outside the shards (an HTTP request) waiting for the answer to its command.
pub trait Caller: Send {
    /// Hands over the answer; returns whether the caller was still there to take it: a lock
    /// granted to a caller that has gone is released again.
    fn answer(self: Box<Self>, answer: Answer) -> bool;
    /// Whether the caller has gone (its client disconnected): a `LOCK ... WAIT` it queued is
    /// dropped rather than granted to nobody.
    fn has_gone(&self) -> bool;
}

/// How a shard answers an outside caller.
pub type ReplyFn = Box<dyn Caller>;

/// Work handed to a shard by another thread.
pub enum External {
    /// A newly accepted RESP connection to serve, plain or TLS.
    Connection(crate::net::acceptor::Accepted),
    /// A lock command from outside the shards (HTTP); `done` gets its reply.
    Command {
        /// The command; its id belongs to the receiving shard.
        cmd: Op,
        /// Called with the answer, on the shard thread.
        done: ReplyFn,
    },
    /// Finish this loop iteration, make the log durable, close connections and stop.
    Shutdown,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            External::Connection(a) => f.debug_tuple("Connection").field(&a.stream).finish(),
            External::Command { cmd, .. } => f.debug_struct("Command").field("cmd", cmd).finish(),
            External::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// How other threads reach one shard.
#[derive(Clone, Debug)]
pub struct Inbox {
    sender: mpsc::Sender<External>,
    waker: Arc<Waker>,
    /// Set by the first sender after the shard last emptied the inbox, cleared by the shard.
    woken: Arc<AtomicBool>,
}

impl Inbox {
    /// Delivers `work` and wakes the shard unless a wake is already pending. Fails only if
    /// the shard has stopped.
    pub fn send(&self, work: External) -> Result<(), External> {
        self.sender.send(work).map_err(|e| e.0)?;
        // The swap is a read-modify-write: when it finds a wake pending, the shard's clearing
        // swap comes after it, and the shard empties the inbox after that.
        if !self.woken.swap(true, Ordering::AcqRel) {
            // A failed wake means the shard's poll is gone, i.e. it has stopped.
            let _ = self.waker.wake();
        }
        Ok(())
    }
}

/// One shard's end of the mesh.
pub struct Endpoint {
    /// This shard.
    pub id: ShardId,
    to: Vec<Option<rtrb::Producer<Batch>>>,
    from: Vec<Option<rtrb::Consumer<Batch>>>,
    wakers: Vec<Arc<Waker>>,
    outbox: Vec<Batch>,
    stalled: Vec<Batch>,
    /// Receives work from other threads; call [`Endpoint::rearm_inbox`] before emptying it.
    pub inbox: mpsc::Receiver<External>,
    inbox_woken: Arc<AtomicBool>,
    /// Messages queued for other shards since start (for the figures).
    pub sent: u64,
    /// Messages taken from other shards since start.
    pub received: u64,
}

impl Endpoint {
    /// Lets the next sender to the inbox wake this shard again. Call it before emptying the
    /// inbox: anything sent after that either is taken now or wakes the shard.
    pub fn rearm_inbox(&self) {
        self.inbox_woken.swap(false, Ordering::AcqRel);
    }

    /// Queues `msg` for shard `to`; it leaves at the next [`Endpoint::flush`].
    pub fn push(&mut self, to: ShardId, msg: Message) {
        if let Some(batch) = self.outbox.get_mut(to) {
            batch.push(msg);
            self.sent += 1;
        }
    }

    /// Number of messages queued for shard `to` in this iteration's outbox.
    pub fn queued(&self, to: ShardId) -> usize {
        self.outbox.get(to).map_or(0, Vec::len)
    }

    /// Replaces the answer of the queued message `index` for shard `to` (an answer that must
    /// not go out as it is, because the change behind it could not be logged).
    pub fn replace_answer(&mut self, to: ShardId, index: usize, new: Answer) {
        if let Some(Message::Reply { answer, grant, .. }) =
            self.outbox.get_mut(to).and_then(|b| b.get_mut(index))
        {
            *answer = new;
            *grant = None;
        }
    }

    /// Sends every non-empty outbox as one batch and wakes each destination once. Returns
    /// whether some batch could not be sent (its ring was full) and waits for the next flush.
    pub fn flush(&mut self) -> bool {
        let mut stalled = false;
        for to in 0..self.outbox.len() {
            let Some(Some(producer)) = self.to.get_mut(to) else {
                continue;
            };
            let mut sent = false;
            let pending = &mut self.stalled[to];
            if !pending.is_empty() {
                match producer.push(std::mem::take(pending)) {
                    Ok(()) => sent = true,
                    Err(rtrb::PushError::Full(batch)) => *pending = batch,
                }
            }
            let batch = &mut self.outbox[to];
            if !batch.is_empty() {
                let batch = std::mem::take(batch);
                if pending.is_empty() {
                    match producer.push(batch) {
                        Ok(()) => sent = true,
                        Err(rtrb::PushError::Full(batch)) => *pending = batch,
                    }
                } else {
                    pending.extend(batch);
                }
            }
            stalled |= !pending.is_empty();
            if sent {
                let _ = self.wakers[to].wake();
            }
        }
        stalled
    }

    /// Takes every batch waiting from every other shard, in order per sender.
    pub fn drain(&mut self, mut each: impl FnMut(ShardId, Message)) {
        for (from, consumer) in self.from.iter_mut().enumerate() {
            let Some(consumer) = consumer else { continue };
            while let Ok(batch) = consumer.pop() {
                self.received += batch.len() as u64;
                for msg in batch {
                    each(from, msg);
                }
            }
        }
    }
}

/// Builds the mesh for `wakers.len()` shards: one [`Endpoint`] per shard, and the inboxes other
/// threads use to reach them.
pub fn build(wakers: Vec<Arc<Waker>>) -> (Vec<Endpoint>, Vec<Inbox>) {
    let n = wakers.len();
    let mut to: Vec<Vec<Option<rtrb::Producer<Batch>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut from: Vec<Vec<Option<rtrb::Consumer<Batch>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for (a, row) in to.iter_mut().enumerate() {
        for (b, cell) in row.iter_mut().enumerate() {
            if a != b {
                let (p, c) = rtrb::RingBuffer::new(RING_BATCHES);
                *cell = Some(p);
                from[b][a] = Some(c);
            }
        }
    }
    let mut endpoints = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    for (id, (to, from)) in to.into_iter().zip(from).enumerate() {
        let (sender, receiver) = mpsc::channel();
        let woken = Arc::new(AtomicBool::new(false));
        inboxes.push(Inbox {
            sender,
            waker: wakers[id].clone(),
            woken: Arc::clone(&woken),
        });
        endpoints.push(Endpoint {
            id,
            to,
            from,
            wakers: wakers.clone(),
            outbox: (0..n).map(|_| Vec::new()).collect(),
            stalled: (0..n).map(|_| Vec::new()).collect(),
            inbox: receiver,
            inbox_woken: woken,
            sent: 0,
            received: 0,
        });
    }
    (endpoints, inboxes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mio::{Events, Poll, Token};

    use super::*;

    #[test]
    fn a_burst_to_an_inbox_wakes_the_shard_once() {
        let mut poll = Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).expect("waker"));
        let (endpoints, inboxes) = build(vec![waker]);
        let (shard, inbox) = (&endpoints[0], &inboxes[0]);
        let mut events = Events::with_capacity(8);
        let woken = |poll: &mut Poll, events: &mut Events| {
            poll.poll(events, Some(Duration::ZERO)).expect("poll");
            events.iter().any(|e| e.token() == Token(7))
        };

        for _ in 0..3 {
            inbox.send(External::Shutdown).expect("send");
        }
        assert!(shard.inbox_woken.load(Ordering::Acquire));
        assert!(
            woken(&mut poll, &mut events),
            "the first send wakes the shard"
        );
        shard.rearm_inbox();
        assert_eq!(shard.inbox.try_iter().count(), 3, "all three are there");
        assert!(!shard.inbox_woken.load(Ordering::Acquire));
        // The next send after the shard looked wakes it again.
        inbox.send(External::Shutdown).expect("send");
        assert!(shard.inbox_woken.load(Ordering::Acquire));
        assert!(woken(&mut poll, &mut events));
    }
}
