//! Writing a directory tree, or an overlayfs upper dir, as a layer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::compression::{CompressWriter, compress_writer};
use super::source::{FileKind, SourceMeta, layer_xattrs, stat_at};
use super::sys;
use super::tar_write::{self, Header, Kind};
use super::{CreateOptions, LayerDigests, LayerError, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use crate::digest::{Algorithm, Hasher, HashingWriter};

/// Size of the buffer file contents are read through.
const COPY_BUF: usize = 1 << 20;

/// The full tree of `src` as a layer: every file, directory, symlink, device
/// and fifo below `src` (sockets are skipped; `src` itself is not an entry),
/// named like `bin/sh` and `etc/`, in bytewise order within each directory.
/// Files with several links inside the tree become one file and hardlinks to
/// it. Output and digests depend only on the tree and `opts` (not on
/// `opts.threads`).
pub fn write_dir_as_layer(
    src: &Path,
    opts: &CreateOptions,
    out: impl Write + Send,
) -> Result<LayerDigests, LayerError> {
    let root = open_root(src)?;
    let mut w = LayerWriter::new(out, opts, src)?;
    w.write_tree(root, Vec::new(), TreeMode::Plain)?;
    w.finish()
}

/// An overlayfs upper directory as a layer (the change set of a container or
/// build step): a `0/0` character device (or an entry with an
/// `overlay.whiteout` xattr) becomes a `.wh.<name>` entry; a directory with
/// `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`) becomes its
/// directory entry followed by `<dir>/.wh..wh..opq`. Overlay's own xattrs are
/// never written. Uppers written with `redirect_dir` or `metacopy` cannot be
/// expressed as a layer and are rejected: mount with both off.
pub fn write_upper_as_layer(
    upper: &Path,
    opts: &CreateOptions,
    out: impl Write + Send,
) -> Result<LayerDigests, LayerError> {
    let root = open_root(upper)?;
    let mut w = LayerWriter::new(out, opts, upper)?;
    w.write_tree(root, Vec::new(), TreeMode::Upper)?;
    w.finish()
}

pub(crate) fn open_root(path: &Path) -> Result<OwnedFd, LayerError> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Source {
        path: path.to_path_buf(),
        op: "opening directory",
        source: e.into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeMode {
    /// Every entry as it is.
    Plain,
    /// Convert overlayfs whiteouts and opaque directories.
    Upper,
}

/// The tar stream of a layer on its way to the output: entries are encoded
/// here, hashed (diffID), compressed and hashed again (digest) in one pass.
pub(crate) struct LayerWriter<W: Write> {
    tar: CompressWriter<HashingWriter<BufWriter<W>>>,
    diff: Hasher,
    hdr: Vec<u8>,
    buf: Vec<u8>,
    /// First tar path of each multiply-linked inode written so far.
    links: HashMap<(u64, u64), Vec<u8>>,
    clamp: Option<i64>,
    /// Set clamped times on the source too.
    clamp_source: bool,
    /// The tree's root, for error messages.
    root: PathBuf,
}

impl<W: Write> LayerWriter<W> {
    pub fn new(out: W, opts: &CreateOptions, root: &Path) -> Result<Self, LayerError> {
        let hashed =
            HashingWriter::new(BufWriter::with_capacity(256 * 1024, out), Algorithm::Sha256);
        let tar = compress_writer(hashed, opts.compression, opts.level, opts.threads)?;
        Ok(LayerWriter {
            tar,
            diff: Hasher::new(Algorithm::Sha256),
            hdr: Vec::with_capacity(4096),
            buf: vec![0u8; COPY_BUF],
            links: HashMap::new(),
            clamp: opts.mtime_clamp,
            clamp_source: opts.clamp_source_times,
            root: root.to_path_buf(),
        })
    }

    fn src_path(&self, tar_path: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(tar_path))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), LayerError> {
        self.diff.update(bytes);
        self.tar.write_all(bytes).map_err(LayerError::Output)
    }

    fn put_header(&mut self, h: &Header<'_>, src: &[u8]) -> Result<(), LayerError> {
        let mut hdr = std::mem::take(&mut self.hdr);
        hdr.clear();
        let encoded = tar_write::encode_header(h, &mut hdr);
        let result = match encoded {
            Ok(()) => self.put(&hdr),
            Err(e) => Err(LayerError::UnsupportedSource {
                path: self.src_path(src),
                reason: e.to_string(),
            }),
        };
        self.hdr = hdr;
        result
    }

    fn mtime(&self, t: i64) -> i64 {
        match self.clamp {
            Some(c) => t.min(c),
            None => t,
        }
    }

    /// Writes the entry `name` of `dir` (already `lstat`ed into `meta`) under
    /// the tar name `path` (without trailing slash). Sockets are skipped.
    pub fn write_entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        meta: &SourceMeta,
    ) -> Result<(), LayerError> {
        if meta.kind == FileKind::Socket {
            return Ok(());
        }
        if name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return Err(LayerError::UnsupportedSource {
                path: self.src_path(path),
                reason: "names starting with \".wh.\" are reserved for whiteouts in layers".into(),
            });
        }
        if meta.kind != FileKind::Dir && meta.nlink > 1 {
            let key = (meta.dev, meta.ino);
            if let Some(first) = self.links.get(&key).cloned() {
                let h = Header {
                    link: &first,
                    ..self.base_header(path, Kind::Hardlink, meta)
                };
                return self.put_header(&h, path);
            }
            self.links.insert(key, path.to_vec());
        }
        let xattrs: Vec<(Vec<u8>, Vec<u8>)> = layer_xattrs(&meta.xattrs).cloned().collect();
        match meta.kind {
            FileKind::Dir => {
                let mut dname = path.to_vec();
                dname.push(b'/');
                let h = Header {
                    name: &dname,
                    xattrs: &xattrs,
                    ..self.base_header(path, Kind::Dir, meta)
                };
                self.put_header(&h, path)
            }
            FileKind::Regular => self.write_file(dir, name, path, meta, &xattrs),
            FileKind::Symlink => {
                let h = Header {
                    link: &meta.link,
                    xattrs: &xattrs,
                    ..self.base_header(path, Kind::Symlink, meta)
                };
                self.put_header(&h, path)
            }
            FileKind::Char | FileKind::Block => {
                let kind = if meta.kind == FileKind::Char {
                    Kind::Char
                } else {
                    Kind::Block
                };
                let h = Header {
                    dev_major: u64::from(libc::major(meta.rdev)),
                    dev_minor: u64::from(libc::minor(meta.rdev)),
                    xattrs: &xattrs,
                    ..self.base_header(path, kind, meta)
                };
                self.put_header(&h, path)
            }
            FileKind::Fifo => {
                let h = Header {
                    xattrs: &xattrs,
                    ..self.base_header(path, Kind::Fifo, meta)
                };
                self.put_header(&h, path)
            }
            FileKind::Socket => Ok(()),
        }
    }

    fn base_header<'a>(&self, path: &'a [u8], kind: Kind, meta: &SourceMeta) -> Header<'a> {
        Header {
            name: path,
            kind,
            mode: meta.mode,
            uid: u64::from(meta.uid),
            gid: u64::from(meta.gid),
            size: 0,
            mtime: self.mtime(meta.mtime),
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        }
    }

    fn write_file(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        meta: &SourceMeta,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), LayerError> {
        let src_err = |this: &Self, op: &'static str, e: io::Error| LayerError::Source {
            path: this.src_path(path),
            op,
            source: e,
        };
        let fd = nix::fcntl::openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| src_err(self, "opening", e.into()))?;
        let mut file = File::from(fd);
        let h = Header {
            size: meta.size,
            xattrs,
            ..self.base_header(path, Kind::Regular, meta)
        };
        self.put_header(&h, path)?;

        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            let mut left = meta.size;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = match file.read(&mut buf[..want]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(src_err(self, "reading", e)),
                };
                if n == 0 {
                    return Err(LayerError::UnsupportedSource {
                        path: self.src_path(path),
                        reason: "file shrank while it was being archived".into(),
                    });
                }
                self.put(&buf[..n])?;
                left -= n as u64;
            }
            // A file that grew would make the header lie about its content.
            match file.read(&mut buf[..1]) {
                Ok(0) => Ok(()),
                Ok(_) => Err(LayerError::UnsupportedSource {
                    path: self.src_path(path),
                    reason: "file grew while it was being archived".into(),
                }),
                Err(e) => Err(src_err(self, "reading", e)),
            }
        })();
        self.buf = buf;
        result?;
        let pad = tar_write::padding(meta.size);
        if pad > 0 {
            self.put(&[0u8; tar_write::BLOCK][..pad])?;
        }
        Ok(())
    }

    /// A whiteout or opaque marker (`.wh.*`): an empty regular file with mode,
    /// owner and time zero, as containerd writes them, so that it does not
    /// depend on when or by whom the deletion happened.
    pub fn write_marker(&mut self, path: &[u8]) -> Result<(), LayerError> {
        let h = Header {
            name: path,
            kind: Kind::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        };
        self.put_header(&h, path)
    }

    /// Writes every entry below the directory `dir`, whose tar names start
    /// with `prefix` (empty, or ending in `/`). Depth-first, children sorted
    /// bytewise; one open directory per level.
    pub fn write_tree(
        &mut self,
        dir: OwnedFd,
        prefix: Vec<u8>,
        mode: TreeMode,
    ) -> Result<(), LayerError> {
        struct Frame {
            fd: OwnedFd,
            prefix: Vec<u8>,
            names: std::vec::IntoIter<Vec<u8>>,
        }
        let names = self.list(dir.as_fd(), &prefix)?;
        let mut stack = vec![Frame {
            fd: dir,
            prefix,
            names: names.into_iter(),
        }];
        while let Some(frame) = stack.last_mut() {
            let Some(name) = frame.names.next() else {
                stack.pop();
                continue;
            };
            let mut path = frame.prefix.clone();
            path.extend_from_slice(&name);
            let fd = frame.fd.as_fd();
            let meta = stat_at(fd, &name).map_err(|e| LayerError::Source {
                path: self.src_path(&path),
                op: "reading metadata",
                source: e,
            })?;
            if self.clamp_source
                && let Some(clamp) = self.clamp
                && meta.mtime > clamp
            {
                let t = TimeSpec::new(clamp, 0);
                // Best effort, as the times in the layer do not depend on it.
                let _ = nix::sys::stat::utimensat(
                    fd,
                    name.as_slice(),
                    &t,
                    &t,
                    UtimensatFlags::NoFollowSymlink,
                );
            }

            if mode == TreeMode::Upper {
                if let Some(reason) = unsupported_overlay_feature(&meta) {
                    return Err(LayerError::UnsupportedSource {
                        path: self.src_path(&path),
                        reason: reason.into(),
                    });
                }
                if is_overlay_whiteout(&meta) {
                    let mut wh = frame.prefix.clone();
                    wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
                    wh.extend_from_slice(&name);
                    self.write_marker(&wh)?;
                    continue;
                }
            }

            self.write_entry(fd, &name, &path, &meta)?;
            if meta.is_dir() {
                let child = sys::open_dir_at(fd, &name).map_err(|e| LayerError::Source {
                    path: self.src_path(&path),
                    op: "opening directory",
                    source: e,
                })?;
                path.push(b'/');
                if mode == TreeMode::Upper && is_overlay_opaque(&meta) {
                    let mut marker = path.clone();
                    marker.extend_from_slice(WHITEOUT_OPAQUE.as_bytes());
                    self.write_marker(&marker)?;
                }
                let names = self.list(child.as_fd(), &path)?;
                stack.push(Frame {
                    fd: child,
                    prefix: path,
                    names: names.into_iter(),
                });
            }
        }
        Ok(())
    }

    fn list(&self, dir: BorrowedFd<'_>, prefix: &[u8]) -> Result<Vec<Vec<u8>>, LayerError> {
        sys::list_dir(dir).map_err(|e| LayerError::Source {
            path: self.src_path(prefix),
            op: "listing directory",
            source: e,
        })
    }

    /// Ends the tar, flushes the compressor and the output, returns the digests.
    pub fn finish(mut self) -> Result<LayerDigests, LayerError> {
        self.put(&tar_write::END_OF_ARCHIVE)?;
        let uncompressed_size = self.diff.len();
        let diff_id = self.diff.finish();
        let hashed = self.tar.finish().map_err(LayerError::Output)?;
        let (digest, size, buffered) = hashed.finish();
        let mut out = buffered
            .into_inner()
            .map_err(|e| LayerError::Output(e.into_error()))?;
        out.flush().map_err(LayerError::Output)?;
        Ok(LayerDigests {
            diff_id,
            digest,
            size,
            uncompressed_size,
        })
    }
}

/// An overlayfs whiteout: a `0/0` character device, or (Linux 6.7+, nested
/// overlays) an entry carrying an `overlay.whiteout` xattr.
fn is_overlay_whiteout(meta: &SourceMeta) -> bool {
    (meta.kind == FileKind::Char && meta.rdev == 0)
        || meta.xattr(b"trusted.overlay.whiteout").is_some()
        || meta.xattr(b"user.overlay.whiteout").is_some()
}

fn is_overlay_opaque(meta: &SourceMeta) -> bool {
    meta.xattr(b"trusted.overlay.opaque") == Some(b"y")
        || meta.xattr(b"user.overlay.opaque") == Some(b"y")
}

/// Overlay features whose upper dirs do not describe the change on their own.
fn unsupported_overlay_feature(meta: &SourceMeta) -> Option<&'static str> {
    for prefix in ["trusted.overlay.", "user.overlay."] {
        let has = |suffix: &str| {
            let name = format!("{prefix}{suffix}");
            meta.xattr(name.as_bytes()).is_some()
        };
        if has("redirect") {
            return Some(
                "renamed directory (overlay redirect_dir) cannot be written as a layer; mount the overlay with redirect_dir=off",
            );
        }
        if has("metacopy") {
            return Some(
                "metadata-only copy-up (overlay metacopy) cannot be written as a layer; mount the overlay with metacopy=off",
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::layer::Compression;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("d/f", t.path().join("l")).unwrap();
        t
    }

    fn mtimes(root: &Path) -> Vec<i64> {
        ["d", "d/f", "l"]
            .iter()
            .map(|p| std::fs::symlink_metadata(root.join(p)).unwrap().mtime())
            .collect()
    }

    #[test]
    fn clamping_source_times_sets_them_on_disk_and_leaves_the_layer_alone() {
        let layer = |dir: &Path, on_disk: bool| {
            let opts = CreateOptions {
                compression: Compression::None,
                mtime_clamp: Some(100),
                clamp_source_times: on_disk,
                ..CreateOptions::default()
            };
            let mut out = Vec::new();
            write_dir_as_layer(dir, &opts, &mut out).unwrap();
            out
        };
        let kept = tree();
        let plain = layer(kept.path(), false);
        assert!(mtimes(kept.path()).iter().all(|&t| t > 100));

        let clamped = tree();
        let touched = layer(clamped.path(), true);
        assert_eq!(mtimes(clamped.path()), vec![100, 100, 100]);
        assert_eq!(plain, touched);
    }
}
