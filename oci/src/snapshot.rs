//! Snapshots: each layer unpacked once into a directory keyed by its chain ID,
//! and writable overlayfs mounts over a chain of them.
//!
//! The life cycle follows containerd's snapshotter:
//!
//! ```text
//! let snaps = Snapshotter::new(&store);
//! let chain = snaps.unpack(&image)?;                 // layers -> committed/<chain>/fs
//! let active = snaps.prepare("build-step-3", chain.last())?;
//! active.mount(&rootfs)?;                            // overlay: lower = the chain
//! /* run something that writes into rootfs */
//! active.unmount(&rootfs)?;
//! let (layer, new_chain) = snaps.commit(active, &opts)?;  // upper dir -> layer blob
//! ```
//!
//! Committed snapshots hold their layer in overlayfs form (whiteouts as 0/0
//! character devices, opaque directories as `trusted.overlay.opaque`), so they
//! can serve as lowerdirs as they are. Where overlayfs cannot be mounted, an
//! active snapshot is a full copy instead, and commit diffs it against a second
//! copy of its parent (the naive differ).
//!
//! ```text
//! ROOT/snapshots/committed/<chain hex>/fs       the layer, unpacked
//! ROOT/snapshots/committed/<chain hex>/parent   the parent chain ID, if any
//! ROOT/snapshots/active/<key>/{upper,work}      an overlay's writable half
//! ROOT/snapshots/active/<key>/{base,rootfs}     the copy fallback
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest};
use crate::image::Image;
use crate::layer::{self, ApplyOptions, CreateOptions, LayerDigests, LayerError, WhiteoutMode};
use crate::store::{FileLock, LockMode, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {digest}")]
    Layer {
        digest: Digest,
        #[source]
        source: LayerError,
    },
    #[error("layer {digest} unpacks to diff ID {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("image has {layers} layers but {diff_ids} diff IDs")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("snapshot {0} does not exist")]
    NotFound(String),
    #[error("active snapshot {0} already exists")]
    Exists(String),
    #[error("mounting overlay at {target}")]
    Mount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        out.push(chain_id(out.last(), d));
    }
    out
}

/// The chain ID of a layer with diff ID `diff_id` on top of the chain `parent`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(parent) => {
            Digest::of_bytes(Algorithm::Sha256, format!("{parent} {diff_id}").as_bytes())
        }
    }
}

/// How an active snapshot holds its writable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// overlayfs: lowerdirs are the committed chain, writes land in `upper`.
    Overlay,
    /// A full copy of the parent chain, diffed against a second copy on commit.
    Copy,
}

/// A prepared, writable snapshot.
#[derive(Debug)]
pub struct Active {
    key: String,
    dir: PathBuf,
    parent: Option<Digest>,
    lowers: Vec<PathBuf>,
    mode: SnapshotMode,
}

impl Active {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn mode(&self) -> SnapshotMode {
        self.mode
    }

    pub fn parent(&self) -> Option<&Digest> {
        self.parent.as_ref()
    }

    /// The overlayfs option string (`lowerdir=…,upperdir=…,workdir=…`).
    pub fn overlay_options(&self) -> String {
        let lowers: Vec<String> = self
            .lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={},index=off,redirect_dir=off,metacopy=off",
            lowers.join(":"),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        )
    }

    /// Makes the snapshot's filesystem visible at `target` (an existing dir):
    /// an overlay mount, or a bind mount of the copy.
    pub fn mount(&self, target: &Path) -> Result<(), SnapshotError> {
        use nix::mount::{MsFlags, mount};
        let result = match self.mode {
            SnapshotMode::Overlay => mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(self.overlay_options().as_str()),
            ),
            SnapshotMode::Copy => mount(
                Some(&self.dir.join("rootfs")),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ),
        };
        result.map_err(|source| SnapshotError::Mount {
            target: target.to_path_buf(),
            source,
        })
    }

    pub fn unmount(&self, target: &Path) -> Result<(), SnapshotError> {
        nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).map_err(|source| {
            SnapshotError::Mount {
                target: target.to_path_buf(),
                source,
            }
        })
    }

    /// The overlay's upper directory (what the snapshot changed so far).
    pub fn upper_dir(&self) -> Option<PathBuf> {
        (self.mode == SnapshotMode::Overlay).then(|| self.dir.join("upper"))
    }

    /// Where the copy fallback's filesystem lives (usable without mounting).
    pub fn copy_rootfs(&self) -> Option<PathBuf> {
        (self.mode == SnapshotMode::Copy).then(|| self.dir.join("rootfs"))
    }
}

pub struct Snapshotter {
    store: Store,
    root: PathBuf,
}

impl Snapshotter {
    pub fn new(store: &Store) -> Snapshotter {
        Snapshotter {
            store: store.clone(),
            root: store.snapshots_dir(),
        }
    }

    fn committed_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join("committed").join(chain.hex())
    }

    /// True when the layer chain ending in `chain` is unpacked.
    pub fn exists(&self, chain: &Digest) -> bool {
        self.committed_dir(chain).join("fs").is_dir()
    }

    /// Unpacks every layer of `image` not unpacked yet, verifying each diff ID;
    /// returns the chain IDs, bottom layer first.
    pub fn unpack(&self, image: &Image) -> Result<Vec<Digest>, SnapshotError> {
        let diff_ids = &image.config.rootfs.diff_ids;
        if diff_ids.len() != image.manifest.layers.len() {
            return Err(SnapshotError::LayerCount {
                layers: image.manifest.layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let chains = chain_ids(diff_ids);
        for (i, layer_desc) in image.manifest.layers.iter().enumerate() {
            let chain = &chains[i];
            if self.exists(chain) {
                continue;
            }
            let lock_dir = self.root.join("locks");
            fs::create_dir_all(&lock_dir).map_err(io_err(&lock_dir))?;
            let lock_path = lock_dir.join(chain.hex());
            let _lock =
                FileLock::acquire(&lock_path, LockMode::Exclusive).map_err(io_err(&lock_path))?;
            if self.exists(chain) {
                continue;
            }
            let tmp = self.temp_dir("unpack")?;
            let fs_dir = tmp.join("fs");
            fs::create_dir(&fs_dir).map_err(io_err(&fs_dir))?;
            let blob = self.store.open_blob(&layer_desc.digest)?;
            let opts = ApplyOptions {
                whiteouts: WhiteoutMode::Overlay,
                ..ApplyOptions::default()
            };
            let stats =
                layer::apply_layer(io::BufReader::with_capacity(1 << 20, blob), &fs_dir, &opts)
                    .map_err(|source| SnapshotError::Layer {
                        digest: layer_desc.digest.clone(),
                        source,
                    })?;
            if stats.diff_id != diff_ids[i] {
                let _ = fs::remove_dir_all(&tmp);
                return Err(SnapshotError::DiffIdMismatch {
                    digest: layer_desc.digest.clone(),
                    expected: diff_ids[i].clone(),
                    actual: stats.diff_id,
                });
            }
            if i > 0 {
                let p = tmp.join("parent");
                fs::write(&p, chains[i - 1].to_string()).map_err(io_err(&p))?;
            }
            self.publish(&tmp, chain)?;
        }
        Ok(chains)
    }

    /// Moves a finished snapshot directory into place under its chain ID.
    fn publish(&self, tmp: &Path, chain: &Digest) -> Result<(), SnapshotError> {
        let committed = self.root.join("committed");
        fs::create_dir_all(&committed).map_err(io_err(&committed))?;
        let target = self.committed_dir(chain);
        match fs::rename(tmp, &target) {
            Ok(()) => Ok(()),
            // Someone else committed the same content first: theirs is as good.
            Err(_) if self.exists(chain) => {
                let _ = fs::remove_dir_all(tmp);
                Ok(())
            }
            Err(e) => Err(io_err(&target)(e)),
        }
    }

    fn temp_dir(&self, what: &str) -> Result<PathBuf, SnapshotError> {
        let base = self.root.join("tmp");
        fs::create_dir_all(&base).map_err(io_err(&base))?;
        for n in 0..1000u32 {
            let p = base.join(format!("{what}-{}-{n}", std::process::id()));
            match fs::create_dir(&p) {
                Ok(()) => return Ok(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        Err(io_err(&base)(io::Error::other(
            "no free temporary directory name",
        )))
    }

    /// The committed directories of a chain, top layer first (overlay's lowerdir order).
    pub fn lowers(&self, chain: &Digest) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        let mut current = Some(chain.clone());
        while let Some(c) = current {
            let dir = self.committed_dir(&c);
            if !dir.join("fs").is_dir() {
                return Err(SnapshotError::NotFound(c.to_string()));
            }
            out.push(dir.join("fs"));
            let parent_file = dir.join("parent");
            current = match fs::read_to_string(&parent_file) {
                Ok(s) => Some(Digest::parse(s.trim()).map_err(|e| SnapshotError::Io {
                    path: parent_file.clone(),
                    source: io::Error::other(e),
                })?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err(&parent_file)(e)),
            };
        }
        Ok(out)
    }

    /// Creates a writable snapshot over `parent` (None = empty, like `FROM scratch`).
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&Digest>,
        mode: SnapshotMode,
    ) -> Result<Active, SnapshotError> {
        let dir = self
            .root
            .join("active")
            .join(Digest::sha256_of(key.as_bytes()).hex());
        if dir.exists() {
            return Err(SnapshotError::Exists(key.to_string()));
        }
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut lowers = match parent {
            Some(p) => self.lowers(p)?,
            None => Vec::new(),
        };
        match mode {
            SnapshotMode::Overlay => {
                for sub in ["upper", "work"] {
                    let p = dir.join(sub);
                    fs::create_dir(&p).map_err(io_err(&p))?;
                    spread_new_directories(&p);
                }
                if lowers.is_empty() {
                    // overlayfs needs a lowerdir even for an empty base.
                    let empty = self.root.join("empty");
                    fs::create_dir_all(&empty).map_err(io_err(&empty))?;
                    lowers.push(empty);
                }
            }
            SnapshotMode::Copy => {
                for sub in ["base", "rootfs"] {
                    let target = dir.join(sub);
                    fs::create_dir(&target).map_err(io_err(&target))?;
                    // Apply bottom layer first, with whiteouts as deletions.
                    for lower in lowers.iter().rev() {
                        self.flatten_into(lower, &target)?;
                    }
                }
            }
        }
        Ok(Active {
            key: key.to_string(),
            dir,
            parent: parent.cloned(),
            lowers,
            mode,
        })
    }

    /// Re-applies an overlay-form directory onto a flat tree (copy fallback).
    fn flatten_into(&self, overlay_dir: &Path, target: &Path) -> Result<(), SnapshotError> {
        let (reader, writer) = io::pipe().map_err(io_err(overlay_dir))?;
        let src = overlay_dir.to_path_buf();
        let producer = std::thread::spawn(move || {
            let opts = CreateOptions {
                compression: layer::Compression::None,
                ..CreateOptions::default()
            };
            layer::write_upper_as_layer(&src, &opts, writer)
        });
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            ..ApplyOptions::default()
        };
        let applied = layer::apply_layer(reader, target, &opts);
        let produced = producer
            .join()
            .map_err(|_| io_err(overlay_dir)(io::Error::other("layer writer thread panicked")))?;
        let fake = Digest::sha256_of(overlay_dir.as_os_str().as_encoded_bytes());
        produced.map_err(|source| SnapshotError::Layer {
            digest: fake.clone(),
            source,
        })?;
        applied.map_err(|source| SnapshotError::Layer {
            digest: fake,
            source,
        })?;
        Ok(())
    }

    /// Turns an active snapshot (unmounted) into a layer blob in the store and a
    /// committed snapshot; returns the layer's digests and its chain ID.
    pub fn commit(
        &self,
        active: Active,
        opts: &CreateOptions,
    ) -> Result<(LayerDigests, Digest), SnapshotError> {
        let ingest_ref = format!("commit-{}", active.key);
        let mut ingest = self.store.ingest(&ingest_ref, Algorithm::Sha256)?;
        ingest.truncate()?;
        let source_name = active.key.clone();
        let written = {
            let w = &mut ingest;
            match active.mode {
                SnapshotMode::Overlay => {
                    layer::write_upper_as_layer(&active.dir.join("upper"), opts, w)
                }
                SnapshotMode::Copy => layer::write_diff_as_layer(
                    &active.dir.join("base"),
                    &active.dir.join("rootfs"),
                    opts,
                    w,
                ),
            }
        };
        let digests = written.map_err(|source| SnapshotError::Layer {
            digest: Digest::sha256_of(source_name.as_bytes()),
            source,
        })?;
        ingest.commit(Some(digests.size), Some(&digests.digest))?;
        let chain = chain_id(active.parent.as_ref(), &digests.diff_id);
        if !self.exists(&chain) {
            let tmp = self.temp_dir("commit")?;
            match active.mode {
                SnapshotMode::Overlay => {
                    let upper = active.dir.join("upper");
                    let fs_dir = tmp.join("fs");
                    fs::rename(&upper, &fs_dir).map_err(io_err(&upper))?;
                }
                SnapshotMode::Copy => {
                    let fs_dir = tmp.join("fs");
                    fs::create_dir(&fs_dir).map_err(io_err(&fs_dir))?;
                    let blob = self.store.open_blob(&digests.digest)?;
                    let apply = ApplyOptions {
                        whiteouts: WhiteoutMode::Overlay,
                        ..ApplyOptions::default()
                    };
                    layer::apply_layer(io::BufReader::new(blob), &fs_dir, &apply).map_err(
                        |source| SnapshotError::Layer {
                            digest: digests.digest.clone(),
                            source,
                        },
                    )?;
                }
            }
            if let Some(p) = &active.parent {
                let pf = tmp.join("parent");
                fs::write(&pf, p.to_string()).map_err(io_err(&pf))?;
            }
            self.publish(&tmp, &chain)?;
        }
        self.remove_active(active)?;
        Ok((digests, chain))
    }

    /// Drops an active snapshot and everything written into it.
    pub fn remove_active(&self, active: Active) -> Result<(), SnapshotError> {
        remove_tree(&active.dir)
    }

    /// Committed chain IDs present on disk.
    pub fn committed(&self) -> Result<Vec<Digest>, SnapshotError> {
        let dir = self.root.join("committed");
        let mut out = Vec::new();
        let Ok(listing) = fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in listing.flatten() {
            if let Some(name) = e.file_name().to_str()
                && let Ok(d) = Digest::from_parts(Algorithm::Sha256, name)
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes committed snapshots whose chain is not in `live` (nor a parent of
    /// one), and leftovers of interrupted unpacks. Returns how many were removed.
    pub fn prune(&self, live: &[Digest]) -> Result<usize, SnapshotError> {
        let mut keep = std::collections::HashSet::new();
        for chain in live {
            let mut c = Some(chain.clone());
            while let Some(cur) = c {
                if !keep.insert(cur.clone()) {
                    break;
                }
                c = fs::read_to_string(self.committed_dir(&cur).join("parent"))
                    .ok()
                    .and_then(|s| Digest::parse(s.trim()).ok());
            }
        }
        let mut removed = 0;
        for chain in self.committed()? {
            if !keep.contains(&chain) {
                remove_tree(&self.committed_dir(&chain))?;
                removed += 1;
            }
        }
        let tmp = self.root.join("tmp");
        if let Ok(listing) = fs::read_dir(&tmp) {
            for e in listing.flatten() {
                // Only our own process's leftovers are known to be dead for sure;
                // others' are removed when their pid no longer exists.
                let name = e.file_name().to_string_lossy().into_owned();
                let pid_alive = name
                    .split('-')
                    .nth(1)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                if !pid_alive {
                    remove_tree(&e.path())?;
                }
            }
        }
        Ok(removed)
    }
}

/// Removes a tree whose directories may have been made read-only by a layer.
fn remove_tree(path: &Path) -> Result<(), SnapshotError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path);
            fs::remove_dir_all(path).map_err(io_err(path))
        }
    }
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.is_dir()
    {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(listing) = fs::read_dir(path) {
            for e in listing.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// ext4's `FS_TOPDIR_FL` (`chattr +T`).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks `dir` as the top of unrelated directory trees for ext4's Orlov
/// allocator, so each directory made in it (and what is made below that)
/// goes to a block group with many free inodes, not its parent's group.
/// Why: without a journal, ext4 skips inodes freed in the last 30 seconds
/// when allocating one, rescanning them for every file made in a group full
/// of them (a fresh snapshot next to a deleted one: ten times slower file
/// creation, most of a cold build's time on such a disk). Best effort:
/// other file systems have no such flag.
fn spread_new_directories(dir: &Path) {
    let Ok(handle) = fs::File::open(dir) else {
        return;
    };
    // The kernel reads and writes an int, whatever the ioctl number says.
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer.
    if unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&handle),
            libc::FS_IOC_GETFLAGS,
            &mut flags,
        )
    } != 0
        || flags & FS_TOPDIR_FL != 0
    {
        return;
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer.
    let _ = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&handle),
            libc::FS_IOC_SETFLAGS,
            &flags,
        )
    };
}
