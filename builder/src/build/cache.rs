//! The build cache index: step key -> the layer the step produced (or none,
//! when it changed nothing). Entries are small JSON files under
//! `ROOT/buildcache/index/`, written atomically; the layers they name are
//! garbage-collection roots of the store until the entry ages out
//! (`berth builder prune`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_oci::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The layer blob, or None for a step whose diff was empty.
    pub layer: Option<Descriptor>,
    /// The layer's uncompressed digest.
    pub diff_id: Option<Digest>,
    /// Seconds since the epoch when the entry was last written or used.
    pub used: u64,
}

#[derive(Debug, Clone)]
pub struct CacheIndex {
    dir: PathBuf,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl CacheIndex {
    pub fn open(store_root: &Path) -> CacheIndex {
        CacheIndex {
            dir: store_root.join("buildcache/index"),
        }
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(key.hex())
    }

    /// The entry for `key`, if any. An unreadable entry is a miss.
    pub fn get(&self, key: &Digest) -> Option<CacheEntry> {
        let bytes = fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records (or refreshes) an entry.
    pub fn put(&self, key: &Digest, layer: Option<(Descriptor, Digest)>) -> io::Result<()> {
        let (layer, diff_id) = match layer {
            Some((d, id)) => (Some(d), Some(id)),
            None => (None, None),
        };
        let entry = CacheEntry {
            layer,
            diff_id,
            used: now(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        fs::create_dir_all(&self.dir)?;
        let target = self.path(key);
        let tmp = self
            .dir
            .join(format!(".tmp-{}-{}", std::process::id(), key.hex()));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, &target)
    }

    /// Every entry with its key file.
    fn all(&self) -> Vec<(PathBuf, CacheEntry)> {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        listing
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let bytes = fs::read(e.path()).ok()?;
                let entry = serde_json::from_slice(&bytes).ok()?;
                Some((e.path(), entry))
            })
            .collect()
    }

    /// Layer digests the cache keeps alive (GC roots).
    pub fn roots(&self) -> Vec<Digest> {
        self.all()
            .into_iter()
            .filter_map(|(_, e)| e.layer.map(|l| l.digest))
            .collect()
    }

    /// Removes entries unused for longer than `keep_duration`, then the oldest
    /// ones until the layers they name total at most `keep_storage` bytes.
    /// Returns how many entries were removed.
    pub fn prune(&self, keep_duration: Option<Duration>, keep_storage: Option<u64>) -> usize {
        let mut entries = self.all();
        let mut removed = 0;
        let now = now();
        if let Some(keep) = keep_duration {
            entries.retain(|(path, e)| {
                let old = now.saturating_sub(e.used) > keep.as_secs();
                if old && fs::remove_file(path).is_ok() {
                    removed += 1;
                }
                !old
            });
        }
        if let Some(limit) = keep_storage {
            // Newest first; drop from the end until under the limit.
            entries.sort_by_key(|e| std::cmp::Reverse(e.1.used));
            let mut total: u64 = entries
                .iter()
                .map(|(_, e)| e.layer.as_ref().map_or(0, |l| l.size))
                .sum();
            while total > limit {
                let Some((path, e)) = entries.pop() else {
                    break;
                };
                total -= e.layer.as_ref().map_or(0, |l| l.size);
                if fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Removes every entry.
    pub fn clear(&self) -> usize {
        self.all()
            .into_iter()
            .filter(|(p, _)| fs::remove_file(p).is_ok())
            .count()
    }
}
