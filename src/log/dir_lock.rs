//! One server per data directory: an exclusive lock on `dir/LOCK` held for the server's life.
//!
//! Invariants:
//! - The lock is an advisory whole-file lock (`File::try_lock`, `flock` on Unix) held by an
//!   open file: it is released when the [`DirLock`] is dropped or the process exits, however
//!   it exits, so a crash never leaves a stale lock behind.
//! - The file's contents (the holder's process id) are informational only; the lock, not the
//!   file's existence, is what counts.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Holds the data directory's lock until dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` if needed and locks it for this process. Fails, saying so, if another
/// server holds the lock.
pub fn lock_dir(dir: &Path) -> io::Result<DirLock> {
    fs::create_dir_all(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("creating data directory {}: {e}", dir.display()),
        )
    })?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let by = if holder.is_empty() {
                String::new()
            } else {
                format!(" (process {holder})")
            };
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "another server is using the data directory {}{by}: {} is locked",
                    dir.display(),
                    path.display()
                ),
            ));
        }
        Err(TryLockError::Error(e)) => {
            return Err(io::Error::new(
                e.kind(),
                format!("locking {}: {e}", path.display()),
            ));
        }
    }
    // Record who holds it, for the error message above; best effort.
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(DirLock { file, path })
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Closing the file releases the lock; unlocking first makes the release explicit.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("ts-dirlock-{}", std::process::id()));
        let first = lock_dir(&dir).expect("first lock");
        let err = lock_dir(&dir).expect_err("second lock must fail");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(err.to_string().contains("another server is using"), "{err}");
        assert!(err.to_string().contains(&std::process::id().to_string()));
        assert_eq!(first.path(), dir.join(LOCK_FILE));
        drop(first);
        let again = lock_dir(&dir).expect("lock after release");
        drop(again);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
