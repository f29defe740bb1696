//! An in-memory disk that fails on request and loses power on request, for tests.
//!
//! It models what the log must survive on a real filesystem:
//! - File bytes are *written* (visible) and separately *durable* (synced). A crash keeps only
//!   the durable bytes of each file, optionally followed by a torn piece of the unsynced ones
//!   (their first bytes, or zeros standing in for blocks that never reached the disk).
//! - Directory entries are visible at once but durable only after `sync_dir` on their
//!   directory: after a crash an unsynced create, rename or removal is undone.
//! - `create` always binds the name to a fresh, empty file (like writing a new file and
//!   renaming it in); directories are durable as soon as they are created.
//!
//! Faults: fail the n-th write (after writing a chosen prefix: a short or torn write), fail the
//! n-th sync (the data then stays not durable, as after a failed `fsync` on Linux), "disk
//! full" (every write fails until cleared), and `crash_at(n)`: the n-th mutating operation
//! never happens and every later one fails, until [`FaultyStorage::crash`] restarts the disk.
//! Handles opened before a crash stay dead afterwards. Counting starts when a fault is set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{LogFile, Storage};

/// What a crash leaves of the bytes written to a file after its last successful sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashTail {
    /// Nothing: every file ends at its last synced byte.
    Drop,
    /// Up to this many of the unsynced bytes survive (a torn write).
    Keep(usize),
    /// Up to this many zero bytes stand in for the unsynced bytes (size grew, data did not).
    Zeros(usize),
}

/// An in-memory [`Storage`] with fault injection. Clones share the same disk.
#[derive(Clone, Debug, Default)]
pub struct FaultyStorage {
    disk: Arc<Mutex<Disk>>,
}

#[derive(Debug, Default)]
struct Disk {
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    generation: u64,
    ops: u64,
    writes: u64,
    syncs: u64,
    fail_write: Option<(u64, usize)>,
    fail_sync: Option<u64>,
    crash_at: Option<u64>,
    dead: bool,
    disk_full: bool,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected failure: {what}"))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display()))
}

impl Disk {
    /// Counts a mutating operation; fails if the disk is dead or dies now.
    fn op(&mut self) -> io::Result<()> {
        if self.dead {
            return Err(injected("the disk has crashed"));
        }
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            self.dead = true;
            return Err(injected("crash"));
        }
        Ok(())
    }

    fn alive(&self) -> io::Result<()> {
        if self.dead {
            Err(injected("the disk has crashed"))
        } else {
            Ok(())
        }
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() && !self.dirs.contains(p) => Err(not_found(p)),
            _ => Ok(()),
        }
    }

    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.inodes.insert(self.next_inode, Inode::default());
        self.next_inode
    }

    fn inode(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let ino = *self.names.get(path).ok_or_else(|| not_found(path))?;
        self.inodes.get_mut(&ino).ok_or_else(|| not_found(path))
    }

    fn sync_fault(&mut self) -> io::Result<()> {
        self.syncs += 1;
        if self.fail_sync == Some(self.syncs) {
            return Err(injected("sync"));
        }
        Ok(())
    }
}

impl FaultyStorage {
    /// An empty disk with no faults set.
    pub fn new() -> FaultyStorage {
        FaultyStorage::default()
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mutating operations performed so far (crash points are counted in these).
    pub fn ops(&self) -> u64 {
        self.disk().ops
    }

    /// Whether a `crash_at` point has been reached and the disk waits for [`Self::crash`].
    pub fn is_crashed(&self) -> bool {
        self.disk().dead
    }

    /// The `nth` write from now (1 = the next) fails after writing its first `keep` bytes.
    pub fn fail_write(&self, nth: u64, keep: usize) {
        let mut d = self.disk();
        d.fail_write = Some((d.writes + nth, keep));
    }

    /// The `nth` sync from now (file or directory; 1 = the next) fails and syncs nothing.
    pub fn fail_sync(&self, nth: u64) {
        let mut d = self.disk();
        d.fail_sync = Some(d.syncs + nth);
    }

    /// While on, every write fails with `StorageFull` and writes nothing.
    pub fn set_disk_full(&self, on: bool) {
        self.disk().disk_full = on;
    }

    /// The `nth` mutating operation from now (1 = the next) does not happen and the disk
    /// fails everything until [`Self::crash`].
    pub fn crash_at(&self, nth: u64) {
        let mut d = self.disk();
        d.crash_at = Some(d.ops + nth);
    }

    /// Power loss and restart: unsynced bytes and directory changes are lost (keeping
    /// `tail`), handles opened before become dead, and every fault is cleared.
    pub fn crash(&self, tail: CrashTail) {
        let mut d = self.disk();
        d.names = d.durable_names.clone();
        let live: BTreeSet<u64> = d.names.values().copied().collect();
        d.inodes.retain(|ino, _| live.contains(ino));
        for inode in d.inodes.values_mut() {
            let mut kept = inode.durable.clone();
            if let Some(extra) = inode.data.strip_prefix(inode.durable.as_slice()) {
                match tail {
                    CrashTail::Drop => {}
                    CrashTail::Keep(n) => kept.extend_from_slice(&extra[..n.min(extra.len())]),
                    CrashTail::Zeros(n) => kept.resize(kept.len() + n.min(extra.len()), 0),
                }
            }
            inode.data = kept.clone();
            inode.durable = kept;
        }
        d.generation += 1;
        d.dead = false;
        d.fail_write = None;
        d.fail_sync = None;
        d.crash_at = None;
        d.disk_full = false;
    }

    /// The current (written, not necessarily durable) bytes of a file.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let d = self.disk();
        let ino = d.names.get(path)?;
        d.inodes.get(ino).map(|i| i.data.clone())
    }

    /// Replaces a file's bytes durably, creating it and its directories if needed; for
    /// preparing damaged files in tests. Counts as no operation and ignores faults.
    pub fn put(&self, path: &Path, bytes: &[u8]) {
        let mut d = self.disk();
        if let Some(parent) = path.parent() {
            for dir in parent.ancestors() {
                d.dirs.insert(dir.to_path_buf());
            }
        }
        let ino = d.new_inode();
        if let Some(inode) = d.inodes.get_mut(&ino) {
            inode.data = bytes.to_vec();
            inode.durable = bytes.to_vec();
        }
        d.names.insert(path.to_path_buf(), ino);
        d.durable_names.insert(path.to_path_buf(), ino);
    }

    fn handle(&self, ino: u64, generation: u64) -> Box<dyn LogFile> {
        Box::new(FaultyFile {
            disk: Arc::clone(&self.disk),
            ino,
            generation,
        })
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut d = self.disk();
        d.op()?;
        for dir in path.ancestors() {
            d.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let d = self.disk();
        d.alive()?;
        if !d.dirs.contains(path) {
            return Err(not_found(path));
        }
        let files = d.names.keys();
        Ok(files
            .chain(d.dirs.iter())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(OsString::from))
            .collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let d = self.disk();
        d.alive()?;
        Ok(d.names.contains_key(path) || d.dirs.contains(path))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let mut d = self.disk();
        d.op()?;
        d.check_parent(path)?;
        let ino = d.new_inode();
        d.names.insert(path.to_path_buf(), ino);
        Ok(self.handle(ino, d.generation))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let mut d = self.disk();
        d.op()?;
        d.check_parent(path)?;
        let ino = match d.names.get(path) {
            Some(&ino) => ino,
            None => {
                let ino = d.new_inode();
                d.names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        Ok(self.handle(ino, d.generation))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        let mut d = self.disk();
        d.alive()?;
        let data = d.inode(path)?.data.clone();
        Ok(Box::new(Cursor::new(data)))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let mut d = self.disk();
        d.alive()?;
        Ok(d.inode(path)?.data.len() as u64)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut d = self.disk();
        d.op()?;
        let inode = d.inode(path)?;
        inode
            .data
            .truncate(usize::try_from(len).unwrap_or(usize::MAX));
        inode.durable = inode.data.clone();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut d = self.disk();
        d.op()?;
        d.check_parent(to)?;
        let ino = d.names.remove(from).ok_or_else(|| not_found(from))?;
        d.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut d = self.disk();
        d.op()?;
        d.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut d = self.disk();
        d.op()?;
        if !d.dirs.contains(path) {
            return Err(not_found(path));
        }
        d.sync_fault()?;
        let in_dir = |p: &PathBuf| p.parent() == Some(path);
        let visible: Vec<(PathBuf, u64)> = d
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        d.durable_names.retain(|p, _| !in_dir(p));
        d.durable_names.extend(visible);
        Ok(())
    }
}

/// A handle on a file of [`FaultyStorage`].
#[derive(Debug)]
struct FaultyFile {
    disk: Arc<Mutex<Disk>>,
    ino: u64,
    generation: u64,
}

impl FaultyFile {
    fn with_inode<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut Disk, u64) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut d = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        if mutating {
            d.op()?;
        } else {
            d.alive()?;
        }
        if d.generation != self.generation || !d.inodes.contains_key(&self.ino) {
            return Err(injected("file handle from before a crash"));
        }
        f(&mut d, self.ino)
    }
}

impl LogFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.with_inode(true, |d, ino| {
            d.writes += 1;
            if d.disk_full {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "injected failure: disk full",
                ));
            }
            let fault = match d.fail_write {
                Some((n, keep)) if n == d.writes => Some(keep),
                _ => None,
            };
            let inode = d.inodes.get_mut(&ino).ok_or_else(|| injected("gone"))?;
            match fault {
                Some(keep) => {
                    inode.data.extend_from_slice(&buf[..keep.min(buf.len())]);
                    Err(injected("write"))
                }
                None => {
                    inode.data.extend_from_slice(buf);
                    Ok(())
                }
            }
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with_inode(true, |d, ino| {
            d.sync_fault()?;
            let inode = d.inodes.get_mut(&ino).ok_or_else(|| injected("gone"))?;
            inode.durable = inode.data.clone();
            Ok(())
        })
    }

    fn size(&self) -> io::Result<u64> {
        self.with_inode(false, |d, ino| {
            Ok(d.inodes.get(&ino).map_or(0, |i| i.data.len() as u64))
        })
    }
}
