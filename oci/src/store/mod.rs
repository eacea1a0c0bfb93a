//! The local content store: an OCI image layout on disk.
//!
//! ```text
//! ROOT/oci-layout          {"imageLayoutVersion":"1.0.0"}
//! ROOT/index.json          tags: one descriptor per tag, annotated with the
//!                          familiar name (org.opencontainers.image.ref.name)
//!                          and the normalised one (io.containerd.image.name)
//! ROOT/blobs/sha256/HEX    content, read-only, only ever complete
//! ROOT/ingest/KEY/         in-progress writes (resumable), invisible to readers
//! ROOT/snapshots/          unpacked layers (see `snapshot`)
//! ROOT/locks/              flock files
//! ROOT/sources/             registry repositories each blob was seen in
//!                          (see `sources`: for cross-repository mounts)
//! ```
//!
//! Because the root is a plain image layout, `skopeo inspect oci:ROOT:busybox:latest`
//! and `umoci` read it directly.
//!
//! Concurrency: `index.json` is rewritten by rename under `locks/index.lock`;
//! operations that add blobs hold `locks/gc.lock` shared from their first blob
//! until their tag is set, and garbage collection holds it exclusively, so a
//! blob that a running load has written but not yet tagged is never swept.

mod gc;
mod index;
mod ingest;
mod lock;
mod sources;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use gc::PruneReport;
pub use index::TagEntry;
pub(crate) use index::{entry_reference, untagged_descriptor};
pub use ingest::Ingest;
pub use lock::{FileLock, LockMode};
pub use sources::BlobSource;

use crate::digest::{Algorithm, Digest};
use crate::manifest::ManifestError;
use crate::media_types as mt;
use crate::reference::ReferenceError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {0} not found in the store")]
    BlobNotFound(Digest),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{what} {digest} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("{path}: not an OCI image layout: {reason}")]
    BadLayout { path: PathBuf, reason: String },
    #[error("no such image: {0}")]
    ImageNotFound(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Largest manifest or config read into memory (distribution's default limit is 4 MiB).
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

/// A handle on a store root; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Paths>,
}

#[derive(Debug)]
struct Paths {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating the layout if the directory is new.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
        let store = Store {
            inner: Arc::new(Paths {
                root: root.to_path_buf(),
            }),
        };
        for dir in ["blobs/sha256", "ingest", "locks", "snapshots"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(|e| StoreError::io(&p, e))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            let body = format!("{{\"imageLayoutVersion\":\"{}\"}}", mt::OCI_LAYOUT_VERSION);
            write_atomic(&layout, body.as_bytes())?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            let _guard = store.lock_index()?;
            if !index.exists() {
                index::write_entries(&store, &[])?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn blob_size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(StoreError::io(&p, e)),
        }
    }

    /// Opens a blob for reading (seek to read at an offset).
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io(&p, e),
        })
    }

    /// Reads a small blob (manifest, config) whole, refusing anything over
    /// [`MAX_DOCUMENT_SIZE`], and checks its digest.
    pub fn read_document(
        &self,
        digest: &Digest,
        what: &'static str,
    ) -> Result<Vec<u8>, StoreError> {
        let size = self.blob_size(digest)?;
        if size > MAX_DOCUMENT_SIZE {
            return Err(StoreError::TooLarge {
                what,
                digest: digest.clone(),
                size,
                limit: MAX_DOCUMENT_SIZE,
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        let p = self.blob_path(digest);
        self.open_blob(digest)?
            .take(MAX_DOCUMENT_SIZE + 1)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::io(&p, e))?;
        let actual = Digest::of_bytes(digest.algorithm(), &buf);
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(buf)
    }

    /// Opens (or resumes) the ingest named `reference`. Blocks while another
    /// process writes the same ref.
    pub fn ingest(&self, reference: &str, algorithm: Algorithm) -> Result<Ingest, StoreError> {
        Ingest::open(self, reference, algorithm)
    }

    /// Stores a small in-memory document and returns its digest.
    pub fn write_blob(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest, StoreError> {
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of_bytes(algorithm, bytes);
        if let Some(want) = expected
            && *want != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: want.clone(),
                actual: digest,
            });
        }
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut ingest = self.ingest(&format!("doc-{digest}"), algorithm)?;
        if self.has_blob(&digest) {
            // Another process stored it while we waited for the ingest.
            ingest.discard();
            return Ok(digest);
        }
        ingest.truncate()?;
        ingest
            .write_all(bytes)
            .map_err(|e| StoreError::io(&self.blob_path(&digest), e))?;
        ingest.commit(Some(bytes.len() as u64), Some(&digest))
    }

    /// Copies a blob from a reader into the store, verifying size and digest.
    pub fn write_blob_from(
        &self,
        reader: &mut dyn Read,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Digest, StoreError> {
        if self.has_blob(expected) {
            // Still consume nothing: the caller may skip the source.
            return Ok(expected.clone());
        }
        let mut ingest = self.ingest(&format!("blob-{expected}"), expected.algorithm())?;
        if self.has_blob(expected) {
            ingest.discard();
            return Ok(expected.clone());
        }
        ingest.truncate()?;
        let target = self.blob_path(expected);
        io::copy(reader, &mut ingest).map_err(|e| StoreError::io(&target, e))?;
        ingest.commit(expected_size, Some(expected))
    }

    /// Holds off garbage collection while blobs are written and tagged.
    pub fn writer_guard(&self) -> Result<FileLock, StoreError> {
        let p = self.inner.root.join("locks/gc.lock");
        FileLock::acquire(&p, LockMode::Shared).map_err(|e| StoreError::io(&p, e))
    }

    pub(crate) fn gc_exclusive(&self) -> Result<FileLock, StoreError> {
        let p = self.inner.root.join("locks/gc.lock");
        FileLock::acquire(&p, LockMode::Exclusive).map_err(|e| StoreError::io(&p, e))
    }

    pub(crate) fn lock_index(&self) -> Result<FileLock, StoreError> {
        let p = self.inner.root.join("locks/index.lock");
        FileLock::acquire(&p, LockMode::Exclusive).map_err(|e| StoreError::io(&p, e))
    }

    fn ingest_dir(&self, reference: &str) -> PathBuf {
        // The ref may hold any characters; its digest makes a safe directory name.
        let key = Digest::sha256_of(reference.as_bytes());
        self.inner.root.join("ingest").join(&key.hex()[..32])
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.inner.root.join("snapshots")
    }
}

/// Writes a small file atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    replace_file(path, bytes, true).map_err(|e| StoreError::io(path, e))
}

/// Replaces `path` by a new file with `bytes` through a temp file and a
/// rename, so a reader sees the old or the new content, never a part. With
/// `durable`, the file and then its directory are synced, so the new content
/// also survives a crash.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call: two threads may replace the same file.
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            fsync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
