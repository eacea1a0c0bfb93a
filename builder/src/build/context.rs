//! The build context: the files a build may read, filtered by
//! `.dockerignore`, and the content digests of those files. Digests are
//! cached per context (keyed by inode, size, mtime and ctime, as BuildKit's
//! content hash cache does), so a rebuild re-hashes only files whose stat
//! changed; what goes into cache keys is content and mode, never a time.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_oci::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::dockerignore::{self, Dockerignore};

use super::BuildError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One file of the context.
#[derive(Debug, Clone)]
pub struct ContextEntry {
    /// Slash-separated, relative to the context root, no leading `./`.
    pub rel: String,
    pub kind: EntryKind,
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    pub size: u64,
    pub link_target: Option<String>,
    stat: StatKey,
}

impl ContextEntry {
    /// Modification time in seconds (for the copied file; keys never see it).
    pub fn mtime(&self) -> u64 {
        u64::try_from(self.stat.mtime_ns / 1_000_000_000).unwrap_or(0)
    }
}

/// What says a file is unchanged since it was last hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StatKey {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct HashCacheFile {
    files: BTreeMap<String, (StatKey, String)>,
}

/// A directory context. Without one (`berth build -` with a Dockerfile on
/// stdin) the build sees an empty context.
pub struct Context {
    root: Option<PathBuf>,
    entries: Vec<ContextEntry>,
    by_rel: BTreeMap<String, usize>,
    cache_path: Option<PathBuf>,
    hashes: Mutex<HashCache>,
}

struct HashCache {
    old: HashCacheFile,
    new: HashCacheFile,
    dirty: bool,
}

impl Context {
    pub fn empty() -> Context {
        Context {
            root: None,
            entries: Vec::new(),
            by_rel: BTreeMap::new(),
            cache_path: None,
            hashes: Mutex::new(HashCache {
                old: HashCacheFile::default(),
                new: HashCacheFile::default(),
                dirty: false,
            }),
        }
    }

    /// Lists the context at `root`, minus what `.dockerignore` (or
    /// `<dockerfile>.dockerignore`) excludes. `cache_dir` holds the hash
    /// caches of contexts.
    pub fn open(
        root: &Path,
        dockerfile: Option<&Path>,
        cache_dir: &Path,
    ) -> Result<Context, BuildError> {
        let root = fs::canonicalize(root).map_err(|e| BuildError::io(root, e))?;
        if !root.is_dir() {
            return Err(BuildError::Context(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let ignore = dockerignore::load(&root, dockerfile)
            .map_err(|e| BuildError::Context(e.to_string()))?;
        // An ignored Dockerfile or .dockerignore is not copied by COPY . (the
        // build reads the Dockerfile itself), as docker documents.
        let mut entries = Vec::new();
        walk(&root, "", &ignore, &mut entries)?;
        let by_rel = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.rel.clone(), i))
            .collect();
        let name = Digest::sha256_of(root.as_os_str().as_encoded_bytes());
        let cache_path = cache_dir.join(format!("{}.json", name.hex()));
        let old = fs::read(&cache_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Context {
            root: Some(root),
            entries,
            by_rel,
            cache_path: Some(cache_path),
            hashes: Mutex::new(HashCache {
                old,
                new: HashCacheFile::default(),
                dirty: false,
            }),
        })
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    pub fn entries(&self) -> &[ContextEntry] {
        &self.entries
    }

    pub fn get(&self, rel: &str) -> Option<&ContextEntry> {
        self.by_rel.get(rel).map(|&i| &self.entries[i])
    }

    /// Entries under the directory `rel` ("" = the root), in path order.
    pub fn children_of<'a>(&'a self, rel: &'a str) -> impl Iterator<Item = &'a ContextEntry> + 'a {
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        self.by_rel
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, &i)| &self.entries[i])
    }

    pub fn host_path(&self, entry: &ContextEntry) -> PathBuf {
        match &self.root {
            Some(r) => r.join(&entry.rel),
            None => PathBuf::from(&entry.rel),
        }
    }

    /// The sha256 of a regular file's content, from the cache when its stat
    /// is unchanged.
    pub fn file_digest(&self, entry: &ContextEntry) -> Result<Digest, BuildError> {
        {
            let mut cache = self.hashes.lock().map_err(|_| poisoned())?;
            let hit = cache
                .old
                .files
                .get(&entry.rel)
                .filter(|(stat, _)| *stat == entry.stat)
                .cloned();
            if let Some((stat, digest)) = hit
                && let Ok(d) = Digest::parse(&digest)
            {
                cache.new.files.insert(entry.rel.clone(), (stat, digest));
                return Ok(d);
            }
        }
        let path = self.host_path(entry);
        let mut file = fs::File::open(&path).map_err(|e| BuildError::io(&path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(|e| BuildError::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let digest = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize())))
            .map_err(|e| BuildError::Context(e.to_string()))?;
        let mut cache = self.hashes.lock().map_err(|_| poisoned())?;
        cache
            .new
            .files
            .insert(entry.rel.clone(), (entry.stat, digest.to_string()));
        cache.dirty = true;
        Ok(digest)
    }

    /// Writes the hash cache back when something was hashed afresh.
    pub fn save_hash_cache(&self) {
        let Some(path) = &self.cache_path else {
            return;
        };
        let Ok(mut cache) = self.hashes.lock() else {
            return;
        };
        // Keep what this build did not look at: another Dockerfile may.
        let old = std::mem::take(&mut cache.old.files);
        for (k, v) in old {
            if self.by_rel.contains_key(&k) {
                cache.new.files.entry(k).or_insert(v);
            }
        }
        if !cache.dirty {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(&cache.new) else {
            return;
        };
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if fs::write(&tmp, bytes).is_ok() {
            let _ = fs::rename(&tmp, path);
        }
    }
}

fn poisoned() -> BuildError {
    BuildError::Context("context hash cache lock poisoned".to_string())
}

fn walk(
    root: &Path,
    rel: &str,
    ignore: &Dockerignore,
    out: &mut Vec<ContextEntry>,
) -> Result<(), BuildError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| BuildError::io(&dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| BuildError::io(&dir, e))?;
    names.sort();
    for name in names {
        let Some(name) = name.to_str() else {
            return Err(BuildError::Context(format!(
                "{}: file name is not UTF-8",
                dir.join(&name).display()
            )));
        };
        let child_rel = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let excluded = ignore.is_excluded(&child_rel);
        let path = root.join(&child_rel);
        let meta = fs::symlink_metadata(&path).map_err(|e| BuildError::io(&path, e))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_file() {
            EntryKind::File
        } else {
            // Sockets, fifos and devices are not sent to builds.
            continue;
        };
        if excluded {
            // A later `!pattern` may re-include something below.
            if kind == EntryKind::Dir && ignore.has_exclusions() {
                walk(root, &child_rel, ignore, out)?;
            }
            continue;
        }
        let link_target = if kind == EntryKind::Symlink {
            let t = fs::read_link(&path).map_err(|e| BuildError::io(&path, e))?;
            Some(t.to_string_lossy().into_owned())
        } else {
            None
        };
        out.push(ContextEntry {
            rel: child_rel.clone(),
            kind,
            mode: meta.permissions().mode() & 0o7777,
            size: meta.len(),
            link_target,
            stat: StatKey {
                ino: meta.ino(),
                size: meta.len(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            },
        });
        if kind == EntryKind::Dir {
            walk(root, &child_rel, ignore, out)?;
        }
    }
    Ok(())
}
