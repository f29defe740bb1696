//! Shards: the lock table partitioned by id, each partition owned by exactly one thread.
//!
//! Which shard owns an id is [`crate::types::shard_for`]; the table itself is
//! [`crate::table`]. Here:
//! - [`mesh`] carries commands and answers between shards (an N×N grid of SPSC queues) and
//!   from outside threads into a shard (an MPSC inbox per shard).
//! - [`event_loop`] is a shard thread: one mio loop over its connections and its mailboxes.

pub mod event_loop;
pub mod mesh;
