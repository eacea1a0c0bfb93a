//! Ingests: resumable blob writers keyed by a ref, visible under `blobs/` only
//! once committed with a matching size and digest (containerd's `Ingester`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use super::lock::{FileLock, LockMode};
use super::{Store, StoreError, fsync_dir};
use crate::digest::{Algorithm, Digest, Hasher};

/// An open ingest. Write the blob's bytes, then [`Ingest::commit`]. Dropping it
/// without committing keeps the partial data so the same ref can resume.
pub struct Ingest {
    store: Store,
    dir: PathBuf,
    file: File,
    hasher: Hasher,
    algorithm: Algorithm,
    _lock: FileLock,
}

impl Ingest {
    pub(super) fn open(
        store: &Store,
        reference: &str,
        algorithm: Algorithm,
    ) -> Result<Ingest, StoreError> {
        let dir = store.ingest_dir(reference);
        let lock_path = dir.join("lock");
        let lock = FileLock::acquire(&lock_path, LockMode::Exclusive)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        fs::write(dir.join("ref"), reference).map_err(|e| StoreError::io(&dir, e))?;
        let data = dir.join("data");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data)
            .map_err(|e| StoreError::io(&data, e))?;
        // Resuming: the hash state is rebuilt from what is already on disk.
        let mut hasher = Hasher::new(algorithm);
        io::copy(&mut (&mut file).take(u64::MAX), &mut hasher)
            .map_err(|e| StoreError::io(&data, e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| StoreError::io(&data, e))?;
        Ok(Ingest {
            store: store.clone(),
            dir,
            file,
            hasher,
            algorithm,
            _lock: lock,
        })
    }

    /// Bytes written so far (including those of an earlier, interrupted write).
    pub fn offset(&self) -> u64 {
        self.hasher.len()
    }

    /// Discards what was written and starts over.
    pub fn truncate(&mut self) -> Result<(), StoreError> {
        let data = self.dir.join("data");
        self.file.set_len(0).map_err(|e| StoreError::io(&data, e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| StoreError::io(&data, e))?;
        self.hasher = Hasher::new(self.algorithm);
        Ok(())
    }

    /// Makes the blob visible under its digest if its size and digest match the
    /// expected ones (when given). On a mismatch the ingest is discarded.
    pub fn commit(
        mut self,
        expected_size: Option<u64>,
        expected: Option<&Digest>,
    ) -> Result<Digest, StoreError> {
        let data = self.dir.join("data");
        self.file.flush().map_err(|e| StoreError::io(&data, e))?;
        let size = self.hasher.len();
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(self.algorithm));
        let actual = hasher.finish();
        if let Some(want) = expected_size
            && want != size
        {
            self.discard();
            return Err(StoreError::SizeMismatch {
                digest: expected.cloned().unwrap_or(actual),
                expected: want,
                actual: size,
            });
        }
        if let Some(want) = expected
            && *want != actual
        {
            self.discard();
            return Err(StoreError::DigestMismatch {
                expected: want.clone(),
                actual,
            });
        }
        let target = self.store.blob_path(&actual);
        if target.exists() {
            self.discard();
            return Ok(actual);
        }
        self.file.sync_all().map_err(|e| StoreError::io(&data, e))?;
        let parent = target.parent().map(PathBuf::from).unwrap_or_default();
        fs::create_dir_all(&parent).map_err(|e| StoreError::io(&parent, e))?;
        let mut perms = self
            .file
            .metadata()
            .map_err(|e| StoreError::io(&data, e))?
            .permissions();
        perms.set_readonly(true);
        fs::set_permissions(&data, perms).map_err(|e| StoreError::io(&data, e))?;
        fs::rename(&data, &target).map_err(|e| StoreError::io(&target, e))?;
        fsync_dir(&parent).map_err(|e| StoreError::io(&parent, e))?;
        self.discard();
        Ok(actual)
    }

    /// Removes the ingest and its data.
    pub fn discard(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
