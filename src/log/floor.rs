//! `<dir>/FLOOR`: the lowest epoch and fence the next run may use, kept apart from the logs so
//! that nothing `--repair-log` does to a log can make fences go back.
//!
//! The logs hold the highest fence handed out (each grant's record, and a Fence record at the
//! head of every rewritten log), but repair may cut or empty a log, and with it those records.
//! So fences are also *reserved* here, [`FENCE_STEP`] at a time: a fence above the reserved
//! value is never acknowledged before this file says so (the shard writes it before it syncs
//! its log), and a start continues above both the logs and this file. The cost is one small
//! file write and sync per [`FENCE_STEP`] grants, and a restart skips the unused rest of a
//! reservation (fences must only grow; they need not be dense).
//!
//! The file is 32 bytes: `TOKFLOOR`, version `u32` (1), epoch `u64`, fence `u64`, CRC32C `u32`
//! of the bytes before it; little-endian. It is replaced atomically (a new file, synced, then
//! renamed over it, and the directory synced). A damaged file is refused, never guessed.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::storage::{Storage, with_path};

/// The file's name under `--dir`.
pub const FLOOR_FILE: &str = "FLOOR";
/// Fences reserved at a time.
pub const FENCE_STEP: u64 = 1 << 20;

const MAGIC: &[u8; 8] = b"TOKFLOOR";
const VERSION: u32 = 1;
const LEN: usize = 32;

/// What the file holds: every epoch and fence already used is below these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Floor {
    /// The epoch of the run that wrote it.
    pub epoch: u64,
    /// Fences up to this value may have been handed out.
    pub fence: u64,
}

impl Floor {
    fn encode(self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.epoch.to_le_bytes());
        out[20..28].copy_from_slice(&self.fence.to_le_bytes());
        let crc = crc32c::crc32c(&out[..28]);
        out[28..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Floor, &'static str> {
        let bytes: &[u8; LEN] = bytes.try_into().map_err(|_| "not 32 bytes long")?;
        let (body, crc) = bytes.split_at(28);
        if &body[..8] != MAGIC {
            return Err("bad magic");
        }
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err("bad checksum");
        }
        let word = |r: std::ops::Range<usize>| body.get(r).unwrap_or_default();
        if word(8..12) != VERSION.to_le_bytes() {
            return Err("unknown version");
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(word(at..at + 8));
            u64::from_le_bytes(b)
        };
        Ok(Floor {
            epoch: u64_at(12),
            fence: u64_at(20),
        })
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FLOOR_FILE)
}

/// Reads the floor under `dir`: zero if there is no file yet (a new directory, or one from a
/// version without it). A damaged file is an error naming it.
pub fn read_floor(storage: &dyn Storage, dir: &Path) -> io::Result<Floor> {
    let file = path(dir);
    if !storage.exists(&file)? {
        return Ok(Floor::default());
    }
    let mut bytes = Vec::with_capacity(LEN);
    storage
        .open_read(&file)?
        .take(LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| with_path(e, "reading", &file))?;
    Floor::decode(&bytes).map_err(|why| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "damaged fence floor {} ({why}): it keeps fences from going back; restore it \
                 from a backup, or remove it only if no log was ever cut or lost",
                file.display()
            ),
        )
    })
}

/// Replaces the floor under `dir` with `floor`, durably, before returning.
pub fn write_floor(storage: &dyn Storage, dir: &Path, floor: Floor) -> io::Result<()> {
    let file = path(dir);
    let tmp = dir.join(format!("{FLOOR_FILE}.new"));
    storage.create_dir_all(dir)?;
    let mut out = storage.create(&tmp)?;
    out.write_all(&floor.encode())
        .map_err(|e| with_path(e, "writing", &tmp))?;
    out.sync_data().map_err(|e| with_path(e, "syncing", &tmp))?;
    drop(out);
    storage.rename(&tmp, &file)?;
    storage.sync_dir(dir)
}

/// The running server's reservation of fences: shards check it before they acknowledge a
/// batch, and the first that finds a fence past it reserves the next [`FENCE_STEP`].
pub struct FenceReservation {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    epoch: u64,
    reserved: AtomicU64,
    /// One writer of the file at a time.
    writing: Mutex<()>,
}

impl std::fmt::Debug for FenceReservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceReservation")
            .field("dir", &self.dir)
            .field("epoch", &self.epoch)
            .field("reserved", &self.reserved)
            .finish()
    }
}

impl FenceReservation {
    /// A reservation up to `reserved`, already in the file under `dir`, for run `epoch`.
    pub fn new(storage: Arc<dyn Storage>, dir: &Path, epoch: u64, reserved: u64) -> Self {
        FenceReservation {
            storage,
            dir: dir.to_path_buf(),
            epoch,
            reserved: AtomicU64::new(reserved),
            writing: Mutex::new(()),
        }
    }

    /// Makes sure fences up to `fence` are reserved on disk before returning; writes the file
    /// only when `fence` passes the reservation. An error means fences past the reservation
    /// must not be acknowledged.
    pub fn cover(&self, fence: u64) -> io::Result<()> {
        if fence <= self.reserved.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if fence <= self.reserved.load(Ordering::Acquire) {
            return Ok(());
        }
        let next = fence.saturating_add(FENCE_STEP);
        let floor = Floor {
            epoch: self.epoch,
            fence: next,
        };
        write_floor(&*self.storage, &self.dir, floor)?;
        self.reserved.store(next, Ordering::Release);
        Ok(())
    }

    /// Fences up to this value are reserved.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::FaultyStorage;

    #[test]
    fn round_trip_missing_and_damaged() {
        let disk = FaultyStorage::new();
        let dir = Path::new("/data");
        disk.create_dir_all(dir).unwrap();
        assert_eq!(read_floor(&disk, dir).unwrap(), Floor::default());
        let floor = Floor {
            epoch: 7,
            fence: 3 << 20,
        };
        write_floor(&disk, dir, floor).unwrap();
        assert_eq!(read_floor(&disk, dir).unwrap(), floor);
        let mut bytes = disk.contents(&dir.join(FLOOR_FILE)).unwrap();
        bytes[21] ^= 1;
        disk.put(&dir.join(FLOOR_FILE), &bytes);
        let err = read_floor(&disk, dir).unwrap_err();
        assert!(err.to_string().contains("bad checksum"), "{err}");
        disk.put(&dir.join(FLOOR_FILE), b"short");
        assert!(read_floor(&disk, dir).is_err());
    }

    #[test]
    fn a_reservation_grows_in_steps_and_is_on_disk_first() {
        let disk = FaultyStorage::new();
        let dir = Path::new("/data");
        disk.create_dir_all(dir).unwrap();
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let r = FenceReservation::new(storage, dir, 3, 100);
        r.cover(100).unwrap();
        assert_eq!(
            read_floor(&disk, dir).unwrap(),
            Floor::default(),
            "no write"
        );
        r.cover(101).unwrap();
        assert_eq!(r.reserved(), 101 + FENCE_STEP);
        assert_eq!(
            read_floor(&disk, dir).unwrap(),
            Floor {
                epoch: 3,
                fence: 101 + FENCE_STEP
            }
        );
    }
}
