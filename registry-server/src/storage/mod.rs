//! Storage drivers: the few operations over paths the registry needs, in the
//! style of distribution's `StorageDriver`, so that a filesystem, an object
//! store or memory can hold a registry.
//!
//! Paths are relative, `/`-separated, made of `[A-Za-z0-9._-]` components
//! (never `.` or `..`). The registry keeps no invariant that depends on an
//! atomic rename of a directory: `move_to` moves one file, which an object
//! store does as copy + delete, and every file becomes visible whole
//! (`put_content`, `FileWriter::commit` followed by `move_to`).
//!
//! ```text
//! // A blob upload: append chunks, make them durable, then publish the file.
//! let mut w = driver.writer("repositories/app/_uploads/ab12/data", true).await?;
//! w.write(chunk).await?;
//! w.commit().await?;
//! driver.move_to("repositories/app/_uploads/ab12/data", "blobs/sha256/..../data").await?;
//! ```

pub mod filesystem;

use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

pub use filesystem::FilesystemDriver;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("path not found: {0}")]
    PathNotFound(String),
    #[error("invalid storage path {0:?}")]
    InvalidPath(String),
    #[error("offset {offset} is beyond the end of {path}")]
    InvalidOffset { path: String, offset: u64 },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::PathNotFound(_))
    }
}

/// What `stat` knows about a path.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub size: u64,
    pub modified: SystemTime,
    pub is_dir: bool,
}

/// A stream of a file's bytes, in chunks of the driver's choosing.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

pub type StorageResult<T> = Result<T, StorageError>;

/// The storage a registry lives in. Every method is safe to call
/// concurrently; none holds a lock across calls.
pub trait StorageDriver: Send + Sync + 'static {
    /// The whole content of a small file (links, manifests).
    fn get_content<'a>(&'a self, path: &'a str) -> BoxFuture<'a, StorageResult<Bytes>>;
    /// Replaces a small file atomically: readers see the old or the new content.
    fn put_content<'a>(&'a self, path: &'a str, content: Bytes)
    -> BoxFuture<'a, StorageResult<()>>;
    /// Streams a file from `offset`, `len` bytes or to the end.
    fn reader<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: Option<u64>,
    ) -> BoxFuture<'a, StorageResult<ByteStream>>;
    /// Like [`reader`](Self::reader), for a file that is never changed in
    /// place once written (blob data: written elsewhere, then moved here,
    /// removed whole), so a driver may serve it from a memory map.
    fn committed_reader<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: Option<u64>,
    ) -> BoxFuture<'a, StorageResult<ByteStream>> {
        self.reader(path, offset, len)
    }
    /// A writer that appends to the file (or truncates it when `append` is
    /// false). Nothing written is guaranteed durable before `commit`.
    fn writer<'a>(
        &'a self,
        path: &'a str,
        append: bool,
    ) -> BoxFuture<'a, StorageResult<Box<dyn FileWriter>>>;
    fn stat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, StorageResult<FileInfo>>;
    /// Names (not paths) of the direct children of a directory, sorted.
    fn list<'a>(&'a self, path: &'a str) -> BoxFuture<'a, StorageResult<Vec<String>>>;
    /// Moves one file, replacing the destination.
    fn move_to<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, StorageResult<()>>;
    /// Deletes a file or a directory tree. Deleting what is absent is an error
    /// (`PathNotFound`) so callers can tell.
    fn delete<'a>(&'a self, path: &'a str) -> BoxFuture<'a, StorageResult<()>>;
}

/// An append-only writer of one file.
pub trait FileWriter: Send {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, StorageResult<()>>;
    /// Bytes in the file, including those written before this writer opened it.
    fn size(&self) -> u64;
    /// Makes everything written durable.
    fn commit(self: Box<Self>) -> BoxFuture<'static, StorageResult<()>>;
}

/// Checks a driver path: relative, components of `[A-Za-z0-9._-]`, no `.`/`..`.
pub fn check_path(path: &str) -> StorageResult<()> {
    let ok = !path.is_empty()
        && path.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidPath(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert!(check_path("blobs/sha256/ab/abcd/data").is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "..", "a/./b", "a b", "a/b/"] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
