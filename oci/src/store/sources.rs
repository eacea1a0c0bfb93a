//! Where blobs were seen: for each blob, the registry repositories it was
//! pulled from or pushed to, newest first, so that a push to another
//! repository of the same registry can mount it there instead of uploading
//! it again (docker's push does the same; containerd keeps such sources as
//! `distribution.source` labels on its content).
//!
//! ```text
//! ROOT/sources/sha256/HEX   one "REGISTRY REPOSITORY" line per source
//! ```
//!
//! A hint, never a promise: a source may have lost the blob since, and the
//! registry then answers the mount with an upload session. So the files are
//! replaced by rename without fsync (a crash costs at most an upload), and
//! two processes recording the same blob at once may keep only one source.

use std::fs;
use std::path::PathBuf;

use super::{Store, StoreError, replace_file};
use crate::digest::{Algorithm, Digest};

/// Sources kept per blob; older ones are dropped.
const MAX_SOURCES: usize = 16;

/// A registry repository a blob is known to be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSource {
    /// The registry's host as references name it (`docker.io`, `host:5000`).
    pub registry: String,
    pub repository: String,
}

impl Store {
    fn source_path(&self, digest: &Digest) -> PathBuf {
        self.root()
            .join("sources")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// The repositories `digest` was seen in, newest first (none when
    /// nothing was recorded or the record cannot be read).
    pub fn blob_sources(&self, digest: &Digest) -> Vec<BlobSource> {
        let Ok(text) = fs::read_to_string(self.source_path(digest)) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|line| {
                let (registry, repository) = line.split_once(' ')?;
                (!registry.is_empty() && !repository.is_empty()).then(|| BlobSource {
                    registry: registry.to_string(),
                    repository: repository.to_string(),
                })
            })
            .collect()
    }

    /// Records that `digest` is in `repository` of `registry`.
    pub fn record_blob_source(
        &self,
        digest: &Digest,
        registry: &str,
        repository: &str,
    ) -> Result<(), StoreError> {
        let valid = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        if !valid(registry) || !valid(repository) {
            return Ok(());
        }
        let new = BlobSource {
            registry: registry.to_string(),
            repository: repository.to_string(),
        };
        let mut sources = self.blob_sources(digest);
        if sources.first() == Some(&new) {
            return Ok(());
        }
        sources.retain(|s| s != &new);
        sources.insert(0, new);
        sources.truncate(MAX_SOURCES);
        let text: String = sources
            .iter()
            .map(|s| format!("{} {}\n", s.registry, s.repository))
            .collect();
        let path = self.source_path(digest);
        let dir = path.parent().unwrap_or(self.root());
        fs::create_dir_all(dir)
            .and_then(|()| replace_file(&path, text.as_bytes(), false))
            .map_err(|e| StoreError::io(&path, e))
    }

    /// Drops the sources of blobs the store no longer has.
    pub(crate) fn remove_orphaned_sources(&self) {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root().join("sources").join(algorithm.as_str());
            let Ok(listing) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in listing.flatten() {
                let name = entry.file_name();
                let Some(Ok(digest)) = name.to_str().map(|n| Digest::from_parts(algorithm, n))
                else {
                    continue;
                };
                if !self.has_blob(&digest) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(registry: &str, repository: &str) -> BlobSource {
        BlobSource {
            registry: registry.to_string(),
            repository: repository.to_string(),
        }
    }

    #[test]
    fn sources_are_kept_newest_first_without_repeats_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"blob");
        assert!(store.blob_sources(&d).is_empty());
        store.record_blob_source(&d, "r:5000", "a/b").unwrap();
        store
            .record_blob_source(&d, "docker.io", "library/x")
            .unwrap();
        store.record_blob_source(&d, "r:5000", "a/b").unwrap();
        assert_eq!(
            store.blob_sources(&d),
            vec![source("r:5000", "a/b"), source("docker.io", "library/x")]
        );
        // Names that could not be read back are not recorded.
        store.record_blob_source(&d, "r:5000", "a b").unwrap();
        store.record_blob_source(&d, "", "a").unwrap();
        assert_eq!(store.blob_sources(&d).len(), 2);
        for i in 0..2 * MAX_SOURCES {
            store.record_blob_source(&d, "r", &format!("n{i}")).unwrap();
        }
        let kept = store.blob_sources(&d);
        assert_eq!(kept.len(), MAX_SOURCES);
        assert_eq!(kept[0], source("r", &format!("n{}", 2 * MAX_SOURCES - 1)));
        // No temp files are left beside the record.
        let files = fs::read_dir(dir.path().join("sources/sha256"))
            .unwrap()
            .count();
        assert_eq!(files, 1);
    }

    #[test]
    fn prune_drops_the_sources_of_removed_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = store.write_blob(b"kept", None).unwrap();
        let gone = Digest::sha256_of(b"never stored");
        store.record_blob_source(&kept, "r", "a").unwrap();
        store.record_blob_source(&gone, "r", "a").unwrap();
        store.remove_orphaned_sources();
        assert_eq!(store.blob_sources(&kept), vec![source("r", "a")]);
        assert!(store.blob_sources(&gone).is_empty());
    }
}
