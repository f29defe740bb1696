//! Reading and writing a shard's connections: serving a readable connection (read, decode,
//! run, until drained or paused), acting on a hang-up, writing replies, and closing (its
//! unsent grants given back, its waits cancelled on every shard).

use std::io;

use tracing::debug;

use super::Shard;
use super::requests::run_requests;
use crate::clock::Clock;
use crate::shard::mesh::Message;
use crate::types::{ConnRef, Origin};

impl<C: Clock> Shard<C> {
    /// Reads and runs requests from connection `idx` until its socket is drained, its input is
    /// incomplete, or it is backlogged. A plain socket counts as drained after a read that did
    /// not fill the space offered: on epoll, data arriving later is a new readiness event, so
    /// the read that would only answer `WouldBlock` is skipped (one syscall less per request
    /// when clients do not pipeline).
    pub(super) fn serve(&mut self, idx: usize) {
        if self.stopping {
            // A stopping shard reads no more requests.
            return;
        }
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        let cref = ConnRef {
            slot: idx as u32,
            conn_id: conn.session.id,
        };
        let mut drained = false;
        loop {
            run_requests(&mut self.core, &mut self.decoder, conn, cref);
            if conn.hold_until_ms > self.core.now_ms {
                // Its next request waits; reading more would only fill the buffer.
                if !self.held.iter().any(|&(_, i)| i == idx) {
                    self.held.push((conn.hold_until_ms, idx));
                }
                break;
            }
            if conn.paused && conn.peer_closed {
                self.close(idx);
                return;
            }
            if conn.paused || conn.closing {
                break;
            }
            if conn.input.len() > self.limits.query_buffer {
                self.query_buffer_exceeded(idx);
                break;
            }
            if drained {
                break;
            }
            match conn.input.read_from(&mut conn.stream) {
                Ok((0, _)) => {
                    // The peer closed: nothing more can be read.
                    self.finish(idx);
                    return;
                }
                Ok((_, short)) => {
                    conn.last_active_ms = self.core.now_ms;
                    // After a hang-up, read on until the end is seen.
                    drained = short && conn.stream.short_read_drains() && !conn.peer_closed;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(client = conn.session.id, error = %e, "read failed");
                    self.close(idx);
                    return;
                }
            }
        }
        self.mark_dirty(idx);
    }

    /// The peer of connection `idx` closed its side (or the socket failed): read what it sent
    /// before, up to the end, then close, as Redis does when a read finds the end. Nobody
    /// reads the replies of a client that has gone, and a grant must not go to it. A
    /// connection whose reading is paused is closed at once: its unread requests would only
    /// make replies that nobody reads.
    pub(super) fn hang_up(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        conn.peer_closed = true;
        if conn.paused || self.stopping {
            self.close(idx);
        } else {
            self.serve(idx);
        }
    }

    /// Closes connection `idx` after its peer closed: the replies that are ready go out in
    /// one attempt (a half-closed client may still read them), unless one carries a lock,
    /// which a client that has gone must not be given: then nothing is written, and
    /// [`Shard::close`] gives the locks back.
    pub(super) fn finish(&mut self, idx: usize) {
        if let Some(conn) = self.conns.get_mut(idx) {
            conn.output.encode_ready();
            if !conn.output.holds_grants() {
                let _ = conn.output.write_to(&mut conn.stream);
            }
        }
        self.close(idx);
    }

    pub(super) fn mark_dirty(&mut self, idx: usize) {
        if let Some(conn) = self.conns.get_mut(idx)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(idx);
        }
    }

    /// Encodes the ready replies of connection `idx` and writes what the socket takes.
    pub(super) fn write(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        conn.dirty = false;
        conn.output.encode_ready();
        if conn.output.hung_up() {
            conn.closing = true;
        }
        // A lock goes only to a connection known to be open: if its peer closed meanwhile
        // (during the log sync, say), close instead, and the lock is given back.
        if conn.output.holds_grants() && (conn.peer_closed || conn.stream.peer_has_closed()) {
            self.close(idx);
            return;
        }
        let sent = conn.output.sent();
        match conn.output.write_to(&mut conn.stream) {
            Ok(_) => {}
            Err(e) => {
                debug!(client = conn.session.id, error = %e, "write failed");
                self.close(idx);
                return;
            }
        }
        if conn.output.sent() != sent {
            conn.last_active_ms = self.core.now_ms;
        }
        if self.output_buffer_exceeded(idx) {
            return;
        }
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        if conn.closing && conn.output.is_idle() {
            self.close(idx);
            return;
        }
        if conn.paused && !conn.output.is_backlogged() {
            conn.paused = false;
            self.resume.push(idx);
        }
    }

    /// Closes connection `idx`. Nobody will read its replies, so what was owed to it is
    /// taken back: the locks granted to its waits whose replies were not written whole are
    /// given back (at the start of the next iteration, as an UNLOCK would), and its queued
    /// `LOCK ... WAIT`s are dropped here and on every other shard.
    pub(super) fn close(&mut self, idx: usize) {
        if self.conns.contains(idx) {
            let mut conn = self.conns.remove(idx);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.core.ctx.figures.clients.left();
            for grant in conn.output.take_unsent_grants() {
                self.core.orphan(grant);
            }
            if conn.waited {
                let gone = ConnRef {
                    slot: idx as u32,
                    conn_id: conn.session.id,
                };
                let me = self.core.id;
                self.core.table.cancel_waiters(|origin| {
                    matches!(origin, Origin::Conn { shard, conn, .. } if *shard == me && *conn == gone)
                });
                for shard in (0..self.core.shards).filter(|&s| s != me) {
                    self.core
                        .mesh
                        .push(shard, Message::CancelWaits { conn: gone });
                }
            }
            debug!(client = conn.session.id, "connection closed");
        }
    }
}
