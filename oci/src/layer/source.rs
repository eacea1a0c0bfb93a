//! What the layer writers need to know about one entry of a source tree:
//! `lstat`, link target and xattrs, read relative to its directory's fd.

use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStringExt;

use nix::fcntl::AtFlags;
use nix::sys::stat::SFlag;

use super::sys::{self, XattrTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Regular,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

/// The metadata of one source entry that ends up in (or decides about) a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceMeta {
    pub kind: FileKind,
    /// Permission bits with setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub rdev: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    /// Symlink target (empty for other kinds).
    pub link: Vec<u8>,
    /// All xattrs, sorted by name, unfiltered (see [`layer_xattrs`]).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl SourceMeta {
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }

    pub fn xattr(&self, name: &[u8]) -> Option<&[u8]> {
        self.xattrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Does this differ from `other` in anything a layer records? Used by the
    /// naive differ; inode numbers, link counts and atimes do not count.
    pub fn differs_from(&self, other: &SourceMeta) -> bool {
        if self.kind != other.kind
            || self.mode != other.mode
            || self.uid != other.uid
            || self.gid != other.gid
            || self.mtime != other.mtime
            || self.mtime_nsec != other.mtime_nsec
        {
            return true;
        }
        let size_matters = self.kind == FileKind::Regular;
        let rdev_matters = matches!(self.kind, FileKind::Char | FileKind::Block);
        (size_matters && self.size != other.size)
            || (rdev_matters && self.rdev != other.rdev)
            || self.link != other.link
            || layer_xattrs(&self.xattrs).ne(layer_xattrs(&other.xattrs))
    }
}

/// Is this xattr recorded in layers? Overlay's own bookkeeping
/// (`trusted.overlay.*`, `user.overlay.*`) never is, and neither are SELinux
/// labels, which belong to the host that writes the files.
pub(crate) fn is_layer_xattr(name: &[u8]) -> bool {
    !(is_overlay_xattr(name) || name == b"security.selinux")
}

/// overlayfs's own xattrs: never written to a layer, never applied from one.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

pub(crate) fn layer_xattrs(
    x: &[(Vec<u8>, Vec<u8>)],
) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> + '_ {
    x.iter().filter(|(n, _)| is_layer_xattr(n))
}

/// `lstat`s `name` in `dir` and reads its link target and xattrs.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<SourceMeta> {
    let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let kind = match fmt {
        SFlag::S_IFREG => FileKind::Regular,
        SFlag::S_IFDIR => FileKind::Dir,
        SFlag::S_IFLNK => FileKind::Symlink,
        SFlag::S_IFCHR => FileKind::Char,
        SFlag::S_IFBLK => FileKind::Block,
        SFlag::S_IFIFO => FileKind::Fifo,
        _ => FileKind::Socket,
    };
    let link = if kind == FileKind::Symlink {
        nix::fcntl::readlinkat(dir, name)?.into_vec()
    } else {
        Vec::new()
    };
    let xattrs = if kind == FileKind::Socket {
        Vec::new()
    } else {
        let p = sys::proc_path(dir, name)?;
        sys::read_xattrs(XattrTarget::Link(&p))?
    };
    Ok(SourceMeta {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size.max(0) as u64,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        rdev: st.st_rdev,
        nlink: st.st_nlink,
        dev: st.st_dev,
        ino: st.st_ino,
        link,
        xattrs,
    })
}
