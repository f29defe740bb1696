//! Tests of the log: codec round trips, corruption handling, the writer's failure modes,
//! crashes at every step of a rewrite, and recovery across shard counts.
//!
//! Every scenario is checked against [`Model`], a plain map that applies records in order.

mod codec;
mod corruption;
mod crash;
mod groups;
mod reshard;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::recovery::{Recovered, recover};
use super::replay::LiveRecord;
use super::storage::{FaultyStorage, Storage};
use super::writer::{ShardLog, encode_snapshot};
use crate::types::LogRecord;
use crate::types::{shard_for, slot_for};

/// The directory every in-memory test uses.
fn dir() -> PathBuf {
    PathBuf::from("/data")
}

fn log_path(shard: usize) -> PathBuf {
    super::shard_dir(&dir(), shard).join(super::LOG_FILE)
}

fn disk() -> (FaultyStorage, Arc<dyn Storage>) {
    let disk = FaultyStorage::new();
    let shared: Arc<dyn Storage> = Arc::new(disk.clone());
    (disk, shared)
}

fn key(n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&n.to_le_bytes());
    k[8..].copy_from_slice(&(!n).to_le_bytes());
    k
}

fn lock(id: &[u8], fence: u64, deadline_ms: u64) -> LogRecord {
    LogRecord::Lock {
        id: id.into(),
        key: key(fence),
        fence,
        deadline_ms,
        fingerprint: None,
    }
}

fn unlock(id: &[u8]) -> LogRecord {
    LogRecord::Unlock { id: id.into() }
}

fn renew(id: &[u8], deadline_ms: u64) -> LogRecord {
    LogRecord::Renew {
        id: id.into(),
        deadline_ms,
    }
}

fn complete(id: &[u8], fence: u64, result: Option<&[u8]>) -> LogRecord {
    LogRecord::Complete {
        id: id.into(),
        key: key(fence),
        fence,
        at_ms: 1_700_000_000_000 + fence,
        fingerprint: Some(b"fp".as_slice().into()),
        result: result.map(Box::from),
    }
}

/// The reference: the live state after applying records in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    ids: BTreeMap<Vec<u8>, LogRecord>,
    max_fence: u64,
}

impl Model {
    fn apply(&mut self, rec: &LogRecord) {
        match rec {
            LogRecord::Lock { id, fence, .. } | LogRecord::Complete { id, fence, .. } => {
                self.max_fence = self.max_fence.max(*fence);
                self.ids.insert(id.to_vec(), rec.clone());
            }
            LogRecord::Unlock { id } => {
                self.ids.remove(id.as_ref());
            }
            LogRecord::Renew { id, deadline_ms } => {
                if let Some(LogRecord::Lock { deadline_ms: d, .. }) = self.ids.get_mut(id.as_ref())
                {
                    *d = *deadline_ms;
                }
            }
            LogRecord::Fence { value } => self.max_fence = self.max_fence.max(*value),
            LogRecord::Epoch { .. } | LogRecord::Group { .. } => {}
        }
    }

    fn after(records: &[LogRecord]) -> Model {
        let mut m = Model::default();
        records.iter().for_each(|r| m.apply(r));
        m
    }

    /// The records of the ids that `shard_for` gives to `shard` of `shards`.
    fn shard(&self, shard: usize, shards: usize) -> impl Iterator<Item = LogRecord> + '_ {
        self.ids
            .iter()
            .filter(move |(id, _)| shard_for(id, shards) == shard)
            .map(|(_, r)| r.clone())
    }
}

/// The recovered live state as a map, checking that every id comes with its hash slot.
fn state_of(recovered: &Recovered) -> BTreeMap<Vec<u8>, LogRecord> {
    let mut out = BTreeMap::new();
    for LiveRecord { hash_slot, record } in recovered.live.clone() {
        let id = record.id().expect("live records have ids");
        assert_eq!(slot_for(id), hash_slot, "id {id:?} with the wrong slot");
        assert!(
            matches!(record, LogRecord::Lock { .. } | LogRecord::Complete { .. }),
            "{record:?}"
        );
        assert!(
            out.insert(id.to_vec(), record.clone()).is_none(),
            "duplicate id"
        );
    }
    out
}

fn recover_ok(storage: &dyn Storage) -> Recovered {
    match recover(storage, &dir(), false) {
        Ok(r) => r,
        Err(e) => panic!("recovery failed: {e}"),
    }
}

/// A server run over the in-memory disk: one log per shard, records routed by `shard_for`.
struct Run {
    logs: Vec<ShardLog>,
    shards: usize,
    epoch: u64,
}

impl Run {
    /// Recovers, checks the result against `model`, and opens every shard's log.
    fn start(storage: &Arc<dyn Storage>, shards: usize, model: &Model) -> Run {
        let recovered = recover_ok(&**storage);
        assert_eq!(state_of(&recovered), model.ids, "recovered state");
        assert!(recovered.max_fence >= model.max_fence);
        let epoch = recovered.epoch;
        let logs = (0..shards)
            .map(|s| ShardLog::open(Arc::clone(storage), &dir(), s, epoch).expect("open"))
            .collect();
        Run {
            logs,
            shards,
            epoch,
        }
    }

    fn log_for(&mut self, id: &[u8]) -> &mut ShardLog {
        let shard = shard_for(id, self.shards);
        &mut self.logs[shard]
    }

    /// Appends and commits one record, keeping the model in step.
    fn commit(&mut self, model: &mut Model, rec: LogRecord) {
        let id = rec.id().expect("an id").to_vec();
        let log = self.log_for(&id);
        log.append(&rec);
        log.flush(true).expect("flush");
        model.apply(&rec);
    }

    /// Rewrites shard `shard`'s log from the model and waits for the switch.
    fn rewrite(&mut self, shard: usize, model: &Model) {
        let snapshot = encode_snapshot(
            model.shard(shard, self.shards),
            shard,
            self.shards,
            self.epoch,
            model.max_fence,
        );
        let log = &mut self.logs[shard];
        log.begin_rewrite(snapshot).expect("begin");
        finish_rewrite(log).expect("rewrite");
    }
}

/// Polls a running rewrite until it ends.
fn finish_rewrite(log: &mut ShardLog) -> std::io::Result<super::writer::RewriteReport> {
    loop {
        if let Some(result) = log.poll_rewrite() {
            return result;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Whether `path` exists on `storage`.
fn exists(storage: &dyn Storage, path: &Path) -> bool {
    storage.exists(path).expect("exists")
}
