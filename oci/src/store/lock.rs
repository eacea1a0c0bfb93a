//! Advisory file locks (flock) that keep concurrent `berth` processes on one
//! root from corrupting each other.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// A held lock; released when dropped.
pub struct FileLock {
    _lock: Flock<File>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

impl FileLock {
    /// Blocks until the lock is held.
    pub fn acquire(path: &Path, mode: LockMode) -> io::Result<FileLock> {
        let arg = match mode {
            LockMode::Shared => FlockArg::LockShared,
            LockMode::Exclusive => FlockArg::LockExclusive,
        };
        Self::lock(path, arg)
            .map(|l| l.ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock)))?
    }

    /// Returns `None` when another process holds the lock.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
        Self::lock(path, FlockArg::LockExclusiveNonblock)
    }

    fn lock(path: &Path, arg: FlockArg) -> io::Result<Option<FileLock>> {
        loop {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            let lock = match Flock::lock(file, arg) {
                Ok(lock) => lock,
                Err((_, nix::errno::Errno::EINTR)) => continue,
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, e)) => return Err(io::Error::from(e)),
            };
            // The holder before us may have deleted the lock file (an ingest
            // removes its directory when it commits): a lock on an unlinked
            // file excludes nobody, so start over on the file now at `path`.
            let held = lock.metadata()?;
            match fs::metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(Some(FileLock { _lock: lock }));
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
