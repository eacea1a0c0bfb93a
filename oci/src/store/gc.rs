//! Mark-and-sweep garbage collection of blobs, from the tags in index.json
//! (and, once the builder has them, build-cache roots).

use std::collections::HashSet;
use std::fs;
use std::time::{Duration, SystemTime};

use super::{Store, StoreError};
use crate::digest::{Algorithm, Digest};
use crate::manifest::Manifest;
use crate::media_types as mt;

/// What a prune removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub untagged_images: Vec<Digest>,
    pub blobs_removed: Vec<Digest>,
    pub bytes_reclaimed: u64,
    pub ingests_removed: usize,
}

/// Ingests untouched for this long and not locked by a writer are abandoned.
const STALE_INGEST_AGE: Duration = Duration::from_secs(24 * 3600);

impl Store {
    /// Every blob reachable from the given roots: manifests, their configs and
    /// layers, index children and subjects that are present locally.
    pub fn mark(&self, roots: &[Digest]) -> Result<HashSet<Digest>, StoreError> {
        let mut live = HashSet::new();
        let mut stack: Vec<(Digest, Option<String>)> =
            roots.iter().map(|d| (d.clone(), None)).collect();
        while let Some((digest, media_type)) = stack.pop() {
            if !live.insert(digest.clone()) {
                continue;
            }
            let is_manifest = media_type
                .as_deref()
                .is_none_or(|m| mt::is_index(m) || mt::is_image_manifest(m));
            if !is_manifest || !self.has_blob(&digest) {
                continue;
            }
            let bytes = self.read_document(&digest, "manifest")?;
            let Ok(manifest) = Manifest::parse(&bytes, media_type.as_deref()) else {
                continue;
            };
            for child in manifest.references() {
                stack.push((child.digest.clone(), Some(child.media_type.clone())));
            }
        }
        Ok(live)
    }

    /// Removes untagged images (when `untagged` is set), then every blob no tag
    /// reaches, and abandoned ingests. Waits for running loads to finish first.
    pub fn prune(&self, untagged: bool, extra_roots: &[Digest]) -> Result<PruneReport, StoreError> {
        let _gc = self.gc_exclusive()?;
        let mut report = PruneReport::default();
        if untagged {
            report.untagged_images = self.update_index(|entries| {
                let (keep, drop): (Vec<_>, Vec<_>) = std::mem::take(entries)
                    .into_iter()
                    .partition(super::index::TagEntry::is_tagged_descriptor);
                *entries = keep;
                drop.into_iter().map(|d| d.digest).collect()
            })?;
        }
        let mut roots: Vec<Digest> = self
            .entries()?
            .into_iter()
            .map(|e| e.descriptor.digest)
            .collect();
        roots.extend_from_slice(extra_roots);
        let live = self.mark(&roots)?;

        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root().join("blobs").join(algorithm.as_str());
            let listing = match fs::read_dir(&dir) {
                Ok(l) => l,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&dir, e)),
            };
            for entry in listing {
                let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let path = entry.path();
                let Ok(digest) = Digest::from_parts(algorithm, name) else {
                    // Not a blob (a stray temp file): nothing may reference it.
                    let _ = fs::remove_file(&path);
                    continue;
                };
                if live.contains(&digest) {
                    continue;
                }
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                report.bytes_reclaimed += size;
                report.blobs_removed.push(digest);
            }
        }
        report.ingests_removed = self.remove_stale_ingests()?;
        self.remove_orphaned_sources();
        Ok(report)
    }

    fn remove_stale_ingests(&self) -> Result<usize, StoreError> {
        let dir = self.root().join("ingest");
        let mut removed = 0;
        let Ok(listing) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        for entry in listing.flatten() {
            let path = entry.path();
            let Ok(Some(_lock)) = super::FileLock::try_exclusive(&path.join("lock")) else {
                continue;
            };
            let age = fs::metadata(path.join("data"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or(STALE_INGEST_AGE);
            if age >= STALE_INGEST_AGE && fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
