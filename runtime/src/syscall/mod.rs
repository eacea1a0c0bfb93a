//! Every kernel call the container setup makes (mounts, pivot_root, device
//! nodes, hostname, namespaces) goes through [`Syscall`], so the logic that
//! decides *what* to call is plain Rust: [`linux::Linux`] is the real thing,
//! the recording fake in `test.rs` lets unit tests check the sequence without
//! root. (The pattern is youki's `syscall` module.)

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

pub mod linux;
#[cfg(test)]
pub mod test;

/// What `lstat`/`stat` found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    /// Devices, sockets, fifos.
    Other,
}

pub trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    fn umount(&self, target: &Path, flags: MntFlags) -> io::Result<()>;
    /// Makes `new_root` the root (pivot_root(".", ".") inside it), detaches
    /// the old root and changes to the new `/`.
    fn pivot_root(&self, new_root: &Path) -> io::Result<()>;
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Creates an empty file (a mount point for a file bind) if nothing is there.
    fn create_file(&self, path: &Path) -> io::Result<()>;
    /// `kind` is `libc::S_IFCHR` or `libc::S_IFBLK`.
    fn mknod(&self, path: &Path, kind: u32, mode: u32, dev: u64) -> io::Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    /// lstat: None when nothing is there.
    fn lstat_kind(&self, path: &Path) -> io::Result<Option<FileKind>>;
    /// stat (follows symlinks): None when nothing is there.
    fn stat_kind(&self, path: &Path) -> io::Result<Option<FileKind>>;
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// The per-mount flags (nosuid, nodev, noexec, ro, ...) of the mount holding `path`.
    fn mount_flags(&self, path: &Path) -> io::Result<MsFlags>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> io::Result<()>;
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> io::Result<()>;
}
