//! Applying a layer onto a directory, safely.
//!
//! Two threads: one decompresses the blob into 1 MiB chunks handed over a
//! bounded channel (buffers are recycled), the calling thread hashes the
//! uncompressed stream (the diffID) and extracts. Nothing is ever held whole
//! in memory.
//!
//! Safety rests on three rules:
//! 1. names are normalised lexically first: absolute names, NUL bytes and
//!    `..` that climbs above the root are refused;
//! 2. the parent directory of every entry is resolved by [`Resolver`], which
//!    walks each component itself with `O_NOFOLLOW` and confines symlinks to
//!    the target like a chroot;
//! 3. the last component is never followed: it is created with `O_EXCL`,
//!    `mkdirat`, `symlinkat`, `linkat` (no `AT_SYMLINK_FOLLOW`) or `mknodat`
//!    relative to the parent's descriptor, and whatever was there before is
//!    unlinked first (a directory only when the new entry is not one).
//!
//! Directory modes and times are set in a last pass, once nothing more is
//! written into them.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use super::compression::{decoder, read_magic};
use super::resolve::{DirHandle, ResolveError, Resolver};
use super::source::is_overlay_xattr;
use super::sys::{self, O_DIR, XattrTarget, is_errno};
use super::tar_read::{ByteSource, Entry, EntryType, TarReader};
use super::{Compression, LayerError, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, display_name};
use crate::digest::{Algorithm, Digest, Hasher};

/// Uncompressed bytes per chunk handed from the decompressing thread.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the threads.
const QUEUE: usize = 4;

/// What to do with whiteout entries (`.wh.<name>`, `.wh..wh..opq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Turn them into overlayfs whiteouts: `.wh.x` becomes a `0/0` character
    /// device `x`, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
    /// directory. For a snapshot directory that will be an overlay lowerdir.
    Overlay,
    /// Carry them out: `.wh.x` removes `x` (recursively) from the target,
    /// `.wh..wh..opq` removes everything in its directory that this layer did
    /// not write. For unpacking a whole image into one plain directory.
    #[default]
    Delete,
}

/// How to apply a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Overlay whiteouts (snapshot used as a lowerdir) or deletions (plain rootfs).
    pub whiteouts: WhiteoutMode,
    /// Give entries the tar's uid/gid (needs root); otherwise they belong to
    /// the caller. Defaults to whether the effective uid is 0.
    pub preserve_owner: bool,
    /// Give every entry this uid/gid instead of the tar's (ADD --chown of
    /// an archive). Needs root.
    pub owner: Option<(u32, u32)>,
    /// Extract `.wh.*` entries as the plain files they are named (an archive
    /// ADD unpacks is not a layer: it has no whiteouts).
    pub literal_whiteouts: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            preserve_owner: sys::euid_is_root(),
            owner: None,
            literal_whiteouts: false,
        }
    }
}

/// What applying a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the uncompressed stream, all of it (also what follows the
    /// end-of-archive marker), as the image config's `diff_ids` expects.
    pub diff_id: Digest,
    /// Bytes of the uncompressed stream.
    pub uncompressed_size: u64,
    /// Compression detected from the blob's first bytes.
    pub compression: Compression,
}

/// Reads a layer blob (gzip, zstd or plain tar, detected from its first
/// bytes), extracts it into `target` (an existing directory) and returns the
/// diffID of the uncompressed stream. No entry can create, write or follow a
/// link to anything outside `target`; entries that try are refused with an
/// error naming them, as are malformed, truncated or corrupt streams. On error
/// the target holds whatever was extracted before the failing entry.
pub fn apply_layer(
    mut blob: impl Read + Send,
    target: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, LayerError> {
    let root = nix::fcntl::open(
        target,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Target {
        path: target.to_path_buf(),
        source: e.into(),
    })?;
    let (magic, n) = read_magic(&mut blob).map_err(|e| LayerError::Decompress {
        compression: Compression::None,
        source: e,
    })?;
    let compression = Compression::detect(&magic[..n]);
    let reader = Cursor::new(magic).take(n as u64).chain(blob);

    std::thread::scope(|s| {
        let (tx, rx) = sync_channel(QUEUE);
        let (back_tx, back_rx) = channel();
        let decode = std::thread::Builder::new()
            .name("berth-layer-decode".into())
            .spawn_scoped(s, move || decode_chunks(reader, compression, tx, back_rx))
            .map_err(|e| LayerError::Decompress {
                compression,
                source: e,
            })?;

        let src = ChunkSource {
            rx,
            back: back_tx,
            cur: Vec::new(),
            pos: 0,
            compression,
            hasher: Hasher::new(Algorithm::Sha256),
            done: false,
        };
        let mut tar = TarReader::new(src);
        let result = (|| {
            let mut ex = Extractor::new(root, opts)?;
            while let Some(entry) = tar.next_entry()? {
                ex.entry(&mut tar, &entry)?;
            }
            ex.finish_dirs()?;
            // The diffID covers the whole stream, padding after the end marker included.
            tar.drain()
        })();
        let src = tar.into_source();
        let diff_id = src.hasher;
        // Dropping the receiver stops the decoder if we gave up early.
        drop(src.rx);
        let decoded = decode.join();
        result?;
        match decoded {
            Ok(true) => Ok(ApplyStats {
                uncompressed_size: diff_id.len(),
                diff_id: diff_id.finish(),
                compression,
            }),
            Ok(false) => Err(LayerError::Decompress {
                compression,
                source: io::Error::other("decompression stopped early"),
            }),
            Err(_) => Err(LayerError::Decompress {
                compression,
                source: io::Error::other("decompression thread panicked"),
            }),
        }
    })
}

/// The decompressing thread: fills chunks and sends them until the end of the
/// stream (true) or an error, which is sent after the data before it (false).
fn decode_chunks<R: Read + Send>(
    reader: R,
    compression: Compression,
    tx: SyncSender<io::Result<Vec<u8>>>,
    back: Receiver<Vec<u8>>,
) -> bool {
    let mut dec = match decoder(reader, compression) {
        Ok(d) => d,
        Err(e) => {
            let _ = tx.send(Err(e));
            return false;
        }
    };
    loop {
        let mut buf = back.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        let mut failure = None;
        let mut eof = false;
        while filled < CHUNK {
            match dec.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        buf.truncate(filled);
        if filled > 0 && tx.send(Ok(buf)).is_err() {
            return false;
        }
        if let Some(e) = failure {
            let _ = tx.send(Err(e));
            return false;
        }
        if eof {
            return true;
        }
    }
}

/// The receiving end: hands chunks to the tar reader and hashes them.
struct ChunkSource {
    rx: Receiver<io::Result<Vec<u8>>>,
    back: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    compression: Compression,
    hasher: Hasher,
    done: bool,
}

impl ByteSource for ChunkSource {
    fn chunk(&mut self) -> Result<&[u8], LayerError> {
        while self.pos == self.cur.len() && !self.done {
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    self.hasher.update(&buf);
                    let old = std::mem::replace(&mut self.cur, buf);
                    if old.capacity() > 0 {
                        let _ = self.back.send(old);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(LayerError::Decompress {
                        compression: self.compression,
                        source: e,
                    });
                }
                Err(_) => self.done = true,
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.cur.len());
    }
}

/// Why a name is refused, before any file system access.
#[derive(Debug, PartialEq, Eq)]
enum NameError {
    Absolute,
    Nul,
    Empty,
    Escapes,
}

/// Splits a tar name into components, dropping empty and `.` ones and
/// resolving `..` lexically. `[]` is the root itself.
fn normalize(name: &[u8]) -> Result<Vec<&[u8]>, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains(&0) {
        return Err(NameError::Nul);
    }
    if name[0] == b'/' {
        return Err(NameError::Absolute);
    }
    let mut comps: Vec<&[u8]> = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if comps.pop().is_none() {
                    return Err(NameError::Escapes);
                }
            }
            c => comps.push(c),
        }
    }
    Ok(comps)
}

/// `(parent directory (dev, ino), name)` of entries a layer wrote.
type WrittenSet = HashSet<((u64, u64), Vec<u8>)>;

/// Mode and times of a directory, set once extraction is done.
struct DirMeta {
    mode: u32,
    mtime: TimeSpec,
}

struct Extractor<'o> {
    resolver: Resolver,
    opts: &'o ApplyOptions,
    root_user: bool,
    /// Deferred directory metadata by normalised path ("" is the root).
    dirs: BTreeMap<Vec<u8>, DirMeta>,
    /// Delete mode: `(parent dir id, name)` of everything this layer wrote,
    /// which its own whiteouts and opaque markers must leave alone.
    written: Option<WrittenSet>,
    /// Who new files belong to before any chown: `(euid, egid)`.
    creator: (u32, u32),
    /// The process umask (None: unknown), which filters the mode files are
    /// created with.
    umask: Option<u32>,
}

fn apply_err<'a>(entry: &'a Entry, op: &'static str) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |source| LayerError::Apply {
        entry: entry.display(),
        op,
        source,
    }
}

fn errno_err<'a>(entry: &'a Entry, op: &'static str) -> impl FnOnce(Errno) -> LayerError + 'a {
    move |e| LayerError::Apply {
        entry: entry.display(),
        op,
        source: e.into(),
    }
}

fn mtime_of(e: &Entry) -> TimeSpec {
    TimeSpec::new(e.mtime, i64::from(e.mtime_nsec))
}

impl<'o> Extractor<'o> {
    fn new(root: OwnedFd, opts: &'o ApplyOptions) -> Result<Self, LayerError> {
        Ok(Extractor {
            resolver: Resolver::new(root),
            opts,
            root_user: sys::euid_is_root(),
            dirs: BTreeMap::new(),
            written: match opts.whiteouts {
                WhiteoutMode::Delete => Some(HashSet::new()),
                WhiteoutMode::Overlay => None,
            },
            creator: (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
            umask: sys::current_umask(),
        })
    }

    fn entry<S: ByteSource>(
        &mut self,
        tar: &mut TarReader<S>,
        e: &Entry,
    ) -> Result<(), LayerError> {
        let comps = normalize(&e.path).map_err(|err| match err {
            NameError::Escapes => LayerError::PathEscapes { entry: e.display() },
            NameError::Absolute => LayerError::InvalidPath {
                entry: e.display(),
                reason: "absolute names are not allowed",
            },
            NameError::Nul => LayerError::InvalidPath {
                entry: e.display(),
                reason: "name contains a NUL byte",
            },
            NameError::Empty => LayerError::InvalidPath {
                entry: e.display(),
                reason: "empty name",
            },
        })?;
        let Some((&last, parents)) = comps.split_last() else {
            return self.root_entry(e);
        };
        if !self.opts.literal_whiteouts
            && let Some(whited) = last.strip_prefix(WHITEOUT_PREFIX.as_bytes())
        {
            return self.whiteout(e, parents, last, whited);
        }
        let parent = self.resolve(e, parents, true)?;
        match e.kind {
            EntryType::Dir => self.make_dir(e, &parent, last, &comps),
            EntryType::Regular => self.make_file(tar, e, &parent, last),
            EntryType::Symlink => self.make_symlink(e, &parent, last),
            EntryType::Hardlink => self.make_hardlink(e, &parent, last),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.make_node(e, &parent, last)
            }
        }
    }

    fn resolve(
        &mut self,
        e: &Entry,
        comps: &[&[u8]],
        create: bool,
    ) -> Result<Rc<DirHandle>, LayerError> {
        let written = &mut self.written;
        let mut on_create = |parent: &DirHandle, name: &[u8]| {
            if let (Some(set), Ok(id)) = (written.as_mut(), parent.id()) {
                set.insert((id, name.to_vec()));
            }
        };
        self.resolver
            .resolve(comps, create, &mut on_create)
            .map_err(|err| resolve_error(e, err))
    }

    fn note_written(&mut self, parent: &DirHandle, name: &[u8]) -> Result<(), LayerError> {
        if let Some(set) = self.written.as_mut() {
            let id = parent.id().map_err(|source| LayerError::Apply {
                entry: display_name(name),
                op: "reading parent directory",
                source,
            })?;
            set.insert((id, name.to_vec()));
        }
        Ok(())
    }

    fn was_written(&self, parent: &DirHandle, name: &[u8]) -> bool {
        match (&self.written, parent.id()) {
            (Some(set), Ok(id)) => set.contains(&(id, name.to_vec())),
            _ => false,
        }
    }

    /// `./` or `.`: the target directory itself.
    /// The owner an entry gets: the override, or the tar's.
    fn owner_of(&self, e: &Entry) -> Result<(Uid, Gid), LayerError> {
        match self.opts.owner {
            Some((u, g)) => Ok((Uid::from_raw(u), Gid::from_raw(g))),
            None => ids(e),
        }
    }

    fn root_entry(&mut self, e: &Entry) -> Result<(), LayerError> {
        if e.kind != EntryType::Dir {
            return Err(LayerError::InvalidPath {
                entry: e.display(),
                reason: "only a directory can stand for the target root",
            });
        }
        let root = Rc::clone(self.resolver.root());
        if self.opts.preserve_owner {
            let (uid, gid) = self.owner_of(e)?;
            nix::unistd::fchown(root.fd(), Some(uid), Some(gid))
                .map_err(errno_err(e, "changing owner"))?;
        }
        self.set_xattrs(e, XattrTarget::Fd(root.fd()), false)?;
        self.dirs.insert(
            Vec::new(),
            DirMeta {
                mode: e.mode,
                mtime: mtime_of(e),
            },
        );
        Ok(())
    }

    /// Removes whatever is at `name` in `parent` (a directory recursively).
    fn remove_existing(
        &mut self,
        e: &Entry,
        parent: &DirHandle,
        name: &[u8],
    ) -> Result<(), LayerError> {
        let st = match nix::sys::stat::fstatat(parent.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(err) => return Err(errno_err(e, "examining existing entry")(err)),
        };
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if fmt == SFlag::S_IFDIR {
            self.resolver.invalidate();
            remove_all_at(parent.fd(), name, self.root_user)
                .map_err(apply_err(e, "removing existing directory"))
        } else {
            if fmt == SFlag::S_IFLNK {
                self.resolver.invalidate();
            }
            match nix::unistd::unlinkat(parent.fd(), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(err) => Err(errno_err(e, "removing existing entry")(err)),
            }
        }
    }

    /// Runs `create`; if the name is taken, removes what is there and runs it once more.
    fn create_replacing<T>(
        &mut self,
        e: &Entry,
        parent: &DirHandle,
        name: &[u8],
        op: &'static str,
        mut create: impl FnMut() -> Result<T, Errno>,
    ) -> Result<T, LayerError> {
        match create() {
            Ok(v) => Ok(v),
            Err(Errno::EEXIST) => {
                self.remove_existing(e, parent, name)?;
                create().map_err(errno_err(e, op))
            }
            Err(err) => Err(errno_err(e, op)(err)),
        }
    }

    fn make_dir(
        &mut self,
        e: &Entry,
        parent: &DirHandle,
        name: &[u8],
        comps: &[&[u8]],
    ) -> Result<(), LayerError> {
        // Owner-writable while we fill it; the real mode comes in finish_dirs.
        let initial = Mode::from_bits_truncate(0o700);
        match nix::sys::stat::mkdirat(parent.fd(), name, initial) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = nix::sys::stat::fstatat(parent.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(errno_err(e, "examining existing entry"))?;
                if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFDIR {
                    self.remove_existing(e, parent, name)?;
                    nix::sys::stat::mkdirat(parent.fd(), name, initial)
                        .map_err(errno_err(e, "creating directory"))?;
                }
            }
            Err(err) => return Err(errno_err(e, "creating directory")(err)),
        }
        self.note_written(parent, name)?;
        self.chown_entry(e, parent, name)?;
        if e.xattrs.iter().any(|(n, _)| !is_overlay_xattr(n)) {
            let fd =
                sys::open_dir_at(parent.fd(), name).map_err(apply_err(e, "opening directory"))?;
            self.set_xattrs(e, XattrTarget::Fd(fd.as_fd()), false)?;
        }
        self.dirs.insert(
            comps.join(&b'/'),
            DirMeta {
                mode: e.mode,
                mtime: mtime_of(e),
            },
        );
        Ok(())
    }

    fn make_file<S: ByteSource>(
        &mut self,
        tar: &mut TarReader<S>,
        e: &Entry,
        parent: &DirHandle,
        name: &[u8],
    ) -> Result<(), LayerError> {
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY;
        // A plain mode the umask leaves alone is given at creation, saving a
        // chmod per file; setuid/setgid/sticky must follow the chown.
        let mode = e.mode & 0o7777;
        let final_at_creation = mode & 0o7000 == 0 && self.umask.is_some_and(|m| mode & m == 0);
        let create_mode = if final_at_creation { mode } else { 0o600 };
        let fd = self.create_replacing(e, parent, name, "creating file", || {
            nix::fcntl::openat(
                parent.fd(),
                name,
                flags,
                Mode::from_bits_truncate(create_mode),
            )
        })?;
        self.note_written(parent, name)?;
        let mut file = File::from(fd);
        loop {
            let n = tar.read_data(usize::MAX, &mut |bytes| {
                file.write_all(bytes).map_err(apply_err(e, "writing file"))
            })?;
            if n == 0 {
                break;
            }
        }
        if self.opts.preserve_owner {
            let (uid, gid) = self.owner_of(e)?;
            // A new file already belongs to its creator, unless its
            // directory is setgid: skip the chown that would change nothing.
            let unchanged = (uid.as_raw(), gid.as_raw()) == self.creator
                && parent.setgid().is_ok_and(|setgid| !setgid);
            if !unchanged {
                nix::unistd::fchown(file.as_fd(), Some(uid), Some(gid))
                    .map_err(errno_err(e, "changing owner"))?;
            }
        }
        if !final_at_creation {
            // After chown, which clears setuid/setgid.
            nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(mode))
                .map_err(errno_err(e, "changing mode"))?;
        }
        // After chown and writing, which clear security.capability.
        self.set_xattrs(e, XattrTarget::Fd(file.as_fd()), false)?;
        let t = mtime_of(e);
        nix::sys::stat::futimens(file.as_fd(), &t, &t).map_err(errno_err(e, "setting times"))?;
        Ok(())
    }

    fn make_symlink(
        &mut self,
        e: &Entry,
        parent: &DirHandle,
        name: &[u8],
    ) -> Result<(), LayerError> {
        if e.link.is_empty() {
            return Err(LayerError::MalformedEntry {
                entry: e.display(),
                reason: "symlink with an empty target".into(),
            });
        }
        self.create_replacing(e, parent, name, "creating symlink", || {
            nix::unistd::symlinkat(e.link.as_slice(), parent.fd(), name)
        })?;
        self.note_written(parent, name)?;
        self.finish_node(e, parent, name, true)
    }

    fn make_node(&mut self, e: &Entry, parent: &DirHandle, name: &[u8]) -> Result<(), LayerError> {
        let kind = match e.kind {
            EntryType::Char => SFlag::S_IFCHR,
            EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let (major, minor) = match (u32::try_from(e.dev_major), u32::try_from(e.dev_minor)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                return Err(LayerError::MalformedEntry {
                    entry: e.display(),
                    reason: "device number out of range".into(),
                });
            }
        };
        let dev = libc::makedev(major, minor);
        let perm = Mode::from_bits_truncate(e.mode & 0o777);
        let made = self.create_replacing(e, parent, name, "creating device node", || {
            nix::sys::stat::mknodat(parent.fd(), name, kind, perm, dev)
        });
        match made {
            Ok(()) => {}
            Err(LayerError::Apply { source, .. })
                if kind != SFlag::S_IFIFO && !self.root_user && is_errno(&source, Errno::EPERM) =>
            {
                tracing::warn!(entry = %e.display(), "skipping device node: creating it needs CAP_MKNOD");
                return Ok(());
            }
            Err(err) => return Err(err),
        }
        self.note_written(parent, name)?;
        self.finish_node(e, parent, name, false)
    }

    /// Gives the entry at `parent/name` the tar's uid/gid, never following a
    /// symlink (when `preserve_owner`).
    fn chown_entry(&self, e: &Entry, parent: &DirHandle, name: &[u8]) -> Result<(), LayerError> {
        if !self.opts.preserve_owner {
            return Ok(());
        }
        let (uid, gid) = self.owner_of(e)?;
        nix::unistd::fchownat(
            parent.fd(),
            name,
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno_err(e, "changing owner"))
    }
    /// Owner, mode, xattrs and times of a symlink, device or fifo, by name
    /// relative to the parent (never following the name).
    fn finish_node(
        &mut self,
        e: &Entry,
        parent: &DirHandle,
        name: &[u8],
        symlink: bool,
    ) -> Result<(), LayerError> {
        self.chown_entry(e, parent, name)?;
        if !symlink {
            // `name` is the node we just made (not a symlink): following is moot.
            nix::sys::stat::fchmodat(
                parent.fd(),
                name,
                Mode::from_bits_truncate(e.mode & 0o7777),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(errno_err(e, "changing mode"))?;
        }
        if e.xattrs.iter().any(|(n, _)| !is_overlay_xattr(n)) {
            let path = sys::proc_path(parent.fd(), name)
                .map_err(apply_err(e, "setting extended attribute"))?;
            self.set_xattrs(e, XattrTarget::Link(&path), symlink)?;
        }
        let t = mtime_of(e);
        nix::sys::stat::utimensat(parent.fd(), name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(errno_err(e, "setting times"))?;
        Ok(())
    }

    fn make_hardlink(
        &mut self,
        e: &Entry,
        parent: &DirHandle,
        name: &[u8],
    ) -> Result<(), LayerError> {
        let bad = |reason: &'static str| LayerError::InvalidLink {
            entry: e.display(),
            target: display_name(&e.link),
            reason,
        };
        let tcomps = normalize(&e.link).map_err(|err| match err {
            NameError::Escapes => bad("escapes the target directory"),
            NameError::Absolute => bad("is absolute"),
            NameError::Nul => bad("contains a NUL byte"),
            NameError::Empty => bad("is empty"),
        })?;
        let Some((&tname, tparents)) = tcomps.split_last() else {
            return Err(bad("is the target directory itself"));
        };
        let missing = |err: LayerError| match err {
            LayerError::Apply { source, .. } if is_errno(&source, Errno::ENOENT) => {
                bad("does not exist")
            }
            other => other,
        };
        let tparent = self.resolve(e, tparents, false).map_err(missing)?;
        self.create_replacing(e, parent, name, "creating hardlink", || {
            nix::unistd::linkat(tparent.fd(), tname, parent.fd(), name, AtFlags::empty())
        })
        .map_err(missing)?;
        self.note_written(parent, name)
    }

    fn whiteout(
        &mut self,
        e: &Entry,
        parents: &[&[u8]],
        last: &[u8],
        whited: &[u8],
    ) -> Result<(), LayerError> {
        if last == WHITEOUT_OPAQUE.as_bytes() {
            return self.opaque(e, parents);
        }
        if whited.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other `.wh..wh.*` names are aufs bookkeeping (e.g. `.wh..wh.plnk`).
            return Ok(());
        }
        if whited.is_empty() || whited == b"." || whited == b".." {
            return Err(LayerError::InvalidPath {
                entry: e.display(),
                reason: "whiteout of an invalid name",
            });
        }
        match self.opts.whiteouts {
            WhiteoutMode::Delete => {
                let parent = match self.resolve(e, parents, false) {
                    Ok(p) => p,
                    // Nothing there to delete.
                    Err(LayerError::NotADirectory { .. }) => return Ok(()),
                    Err(LayerError::Apply { source, .. }) if is_errno(&source, Errno::ENOENT) => {
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                };
                if self.was_written(&parent, whited) {
                    // Whiteouts hide lower layers only, not this layer's entries.
                    return Ok(());
                }
                self.remove_existing(e, &parent, whited)
            }
            WhiteoutMode::Overlay => {
                let parent = self.resolve(e, parents, true)?;
                match nix::sys::stat::fstatat(parent.fd(), whited, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    // This layer's own entry of that name stays visible.
                    Ok(_) => return Ok(()),
                    Err(Errno::ENOENT) => {}
                    Err(err) => return Err(errno_err(e, "examining whiteout target")(err)),
                }
                nix::sys::stat::mknodat(
                    parent.fd(),
                    whited,
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    libc::makedev(0, 0),
                )
                .map_err(errno_err(e, "creating overlay whiteout"))
            }
        }
    }

    fn opaque(&mut self, e: &Entry, dir: &[&[u8]]) -> Result<(), LayerError> {
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let handle = self.resolve(e, dir, true)?;
                let fd = nix::fcntl::openat(handle.fd(), c".", O_DIR, Mode::empty())
                    .map_err(errno_err(e, "opening opaque directory"))?;
                sys::set_xattr(XattrTarget::Fd(fd.as_fd()), b"trusted.overlay.opaque", b"y")
                    .map_err(apply_err(
                        e,
                        "marking directory opaque (trusted.overlay.opaque)",
                    ))
            }
            WhiteoutMode::Delete => {
                let handle = match self.resolve(e, dir, false) {
                    Ok(h) => h,
                    Err(LayerError::NotADirectory { .. }) => return Ok(()),
                    Err(LayerError::Apply { source, .. }) if is_errno(&source, Errno::ENOENT) => {
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                };
                self.resolver.invalidate();
                self.clear_lower(&handle)
                    .map_err(apply_err(e, "removing lower entries of opaque directory"))
            }
        }
    }

    /// Delete mode, opaque directory: removes everything below `dir` that
    /// this layer did not write, looking inside the directories it did write.
    fn clear_lower(&self, dir: &DirHandle) -> io::Result<()> {
        let mut todo: Vec<OwnedFd> = vec![
            nix::fcntl::openat(dir.fd(), c".", O_DIR, Mode::empty()).map_err(io::Error::from)?,
        ];
        while let Some(fd) = todo.pop() {
            let id = sys::file_id(&fd)?;
            let mut keep_dirs = Vec::new();
            for name in sys::list_dir(fd.as_fd())? {
                let kept = self
                    .written
                    .as_ref()
                    .is_some_and(|s| s.contains(&(id, name.clone())));
                if !kept {
                    remove_all_at(fd.as_fd(), &name, self.root_user)?;
                } else {
                    let st = nix::sys::stat::fstatat(
                        fd.as_fd(),
                        name.as_slice(),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )?;
                    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                        == SFlag::S_IFDIR
                    {
                        keep_dirs.push(name);
                    }
                }
            }
            for name in keep_dirs {
                todo.push(sys::open_dir_at(fd.as_fd(), &name)?);
            }
        }
        Ok(())
    }

    fn set_xattrs(
        &self,
        e: &Entry,
        target: XattrTarget<'_>,
        symlink: bool,
    ) -> Result<(), LayerError> {
        for (name, value) in &e.xattrs {
            // Overlay's bookkeeping must never come from an image: it would let
            // a layer redirect lookups or hide lower directories.
            if is_overlay_xattr(name) {
                tracing::debug!(entry = %e.display(), xattr = %display_name(name), "ignoring overlay xattr");
                continue;
            }
            let Err(err) = sys::set_xattr(target, name, value) else {
                continue;
            };
            let privileged = name.starts_with(b"security.") || name.starts_with(b"trusted.");
            let tolerated = is_errno(&err, Errno::ENOTSUP)
                || (is_errno(&err, Errno::EPERM) && (privileged && !self.root_user || symlink))
                || (name == b"security.selinux" && is_errno(&err, Errno::EINVAL));
            if tolerated {
                tracing::warn!(entry = %e.display(), xattr = %display_name(name), error = %err, "ignoring extended attribute");
                continue;
            }
            return Err(LayerError::Apply {
                entry: e.display(),
                op: "setting extended attribute",
                source: io::Error::new(err.kind(), format!("{}: {err}", display_name(name))),
            });
        }
        Ok(())
    }

    /// Sets the modes and times of directories, deepest first, now that
    /// nothing more is written into them.
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, meta) in dirs.iter().rev() {
            let entry = display_name(path);
            let err = |op: &'static str| {
                let entry = entry.clone();
                move |e: Errno| LayerError::Apply {
                    entry,
                    op,
                    source: e.into(),
                }
            };
            let fd = if path.is_empty() {
                nix::fcntl::openat(self.resolver.root().fd(), c".", O_DIR, Mode::empty())
                    .map_err(err("opening directory"))?
            } else {
                let comps: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
                let Some((&last, parents)) = comps.split_last() else {
                    continue;
                };
                // A later entry may have replaced or removed the directory:
                // then there is nothing left to set.
                let Ok(parent) = self.resolver.resolve(parents, false, &mut |_, _| {}) else {
                    continue;
                };
                match nix::fcntl::openat(parent.fd(), last, O_DIR, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                    Err(e) => return Err(err("opening directory")(e)),
                }
            };
            nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(meta.mode & 0o7777))
                .map_err(err("changing mode"))?;
            nix::sys::stat::futimens(fd.as_fd(), &meta.mtime, &meta.mtime)
                .map_err(err("setting times"))?;
        }
        Ok(())
    }
}

fn ids(e: &Entry) -> Result<(Uid, Gid), LayerError> {
    // (uid_t)-1 means "leave unchanged" to chown: not a real id.
    match (u32::try_from(e.uid), u32::try_from(e.gid)) {
        (Ok(u), Ok(g)) if u != u32::MAX && g != u32::MAX => {
            Ok((Uid::from_raw(u), Gid::from_raw(g)))
        }
        _ => Err(LayerError::MalformedEntry {
            entry: e.display(),
            reason: format!("uid/gid {}:{} out of range", e.uid, e.gid),
        }),
    }
}

fn resolve_error(e: &Entry, err: ResolveError) -> LayerError {
    match err {
        ResolveError::SymlinkEscapes { symlink } => LayerError::SymlinkEscapes {
            entry: e.display(),
            symlink: display_name(&symlink),
        },
        ResolveError::TooManySymlinks => LayerError::TooManySymlinks { entry: e.display() },
        ResolveError::NotADirectory { component } => LayerError::NotADirectory {
            entry: e.display(),
            component: display_name(&component),
        },
        ResolveError::NotFound => LayerError::Apply {
            entry: e.display(),
            op: "resolving parent directory",
            source: Errno::ENOENT.into(),
        },
        ResolveError::Io { op, source } => LayerError::Apply {
            entry: e.display(),
            op,
            source,
        },
    }
}

/// Removes `name` in `parent`, emptying it first if it is a directory. Never
/// follows a symlink: directories are entered with `O_NOFOLLOW` relative to
/// their parent's descriptor. Iterative, so depth costs no stack.
pub(crate) fn remove_all_at(
    parent: BorrowedFd<'_>,
    name: &[u8],
    root_user: bool,
) -> io::Result<()> {
    match nix::unistd::unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    struct Level {
        fd: OwnedFd,
        name: Vec<u8>,
        names: std::vec::IntoIter<Vec<u8>>,
    }
    let open = |at: BorrowedFd<'_>, name: &[u8]| -> io::Result<Level> {
        let fd = sys::open_dir_at(at, name)?;
        if !root_user {
            // Our own read-only directories must become writable to be emptied.
            let _ = nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(0o700));
        }
        let names = sys::list_dir(fd.as_fd())?;
        Ok(Level {
            fd,
            name: name.to_vec(),
            names: names.into_iter(),
        })
    };
    let mut stack = vec![open(parent, name)?];
    loop {
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        if let Some(child) = top.names.next() {
            match nix::unistd::unlinkat(
                top.fd.as_fd(),
                child.as_slice(),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(Errno::EISDIR) => {
                    let level = open(top.fd.as_fd(), &child)?;
                    stack.push(level);
                }
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let Some(done) = stack.pop() else {
            return Ok(());
        };
        drop(done.fd);
        let at = match stack.last() {
            Some(l) => l.fd.as_fd(),
            None => parent,
        };
        match nix::unistd::unlinkat(at, done.name.as_slice(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_names() {
        let ok = |n: &[u8]| -> Vec<Vec<u8>> {
            normalize(n)
                .unwrap()
                .into_iter()
                .map(|c| c.to_vec())
                .collect()
        };
        assert_eq!(
            ok(b"./a//b/./c/"),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(ok(b"a/../b"), vec![b"b".to_vec()]);
        assert!(ok(b"./").is_empty());
        assert!(ok(b".").is_empty());
        assert_eq!(normalize(b"../x"), Err(NameError::Escapes));
        assert_eq!(normalize(b"a/../../x"), Err(NameError::Escapes));
        assert_eq!(normalize(b"/etc/x"), Err(NameError::Absolute));
        assert_eq!(normalize(b"a\0b"), Err(NameError::Nul));
        assert_eq!(normalize(b""), Err(NameError::Empty));
    }

    fn file_entry(name: &str, mode: u32, gid: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(gid);
        h.set_size(2);
        h.set_mtime(7);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(b"hi");
        out.resize(1024, 0);
        out
    }

    #[test]
    fn files_get_their_modes_and_owners_also_without_chmod_or_chown() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !sys::euid_is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        // Files made in a setgid directory take its group: the tar's must win.
        let shared = t.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::os::unix::fs::chown(&shared, None, Some(4242)).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2775)).unwrap();
        let mut tar = Vec::new();
        for (name, mode) in [
            ("a", 0o644),
            ("b", 0o755),
            ("c", 0o4755),
            ("d", 0o666),
            ("e", 0),
        ] {
            tar.extend(file_entry(name, mode, 0));
        }
        tar.extend(file_entry("f", 0o640, 4242));
        tar.extend([0u8; 1024]);
        apply_layer(&tar[..], &shared, &ApplyOptions::default()).unwrap();
        for (name, mode, gid) in [
            ("a", 0o644, 0),
            ("b", 0o755, 0),
            ("c", 0o4755, 0),
            ("d", 0o666, 0),
            ("e", 0, 0),
            ("f", 0o640, 4242),
        ] {
            let m = std::fs::metadata(shared.join(name)).unwrap();
            assert_eq!(m.mode() & 0o7777, mode, "mode of {name}");
            assert_eq!((m.uid(), m.gid()), (0, gid), "owner of {name}");
            assert_eq!(m.mtime(), 7, "mtime of {name}");
        }
    }

    #[test]
    fn remove_all_never_follows_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let d = t.path().join("d");
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        std::fs::write(d.join("a/b/c/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, d.join("a/link")).unwrap();
        let fd = nix::fcntl::open(t.path(), O_DIR, Mode::empty()).unwrap();
        remove_all_at(fd.as_fd(), b"d", true).unwrap();
        assert!(!d.exists());
        assert!(outside.join("keep").exists());
        remove_all_at(fd.as_fd(), b"missing", true).unwrap();
    }
}
