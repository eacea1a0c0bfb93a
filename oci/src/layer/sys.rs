//! The kernel calls of the layer module that nix does not wrap (xattrs), and
//! small helpers around the `*at` calls. Everything is relative to directory
//! file descriptors; names passed here are single path components.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// `O_CLOEXEC` plus what every open here wants.
pub(crate) const O_DIR: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);
/// A directory handle only usable as the `dirfd` of `*at` calls.
pub(crate) const O_DIR_PATH: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

pub(crate) fn errno_of(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw)
}

pub(crate) fn is_errno(e: &io::Error, errno: Errno) -> bool {
    errno_of(e) == Some(errno)
}

pub(crate) fn nul_free(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(Errno::EINVAL))
}

/// `/proc/self/fd/N/name`: lets the `l*xattr` calls reach `name` inside a
/// directory we hold a descriptor of, without following `name` itself.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    nul_free(&p)
}

pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::openat(dir, name, O_DIR, Mode::empty())?)
}

/// Calls `f(buf)` with a growing buffer until the value fits (xattr calls
/// return ERANGE when the value grew between the size query and the read).
fn with_size_retry(mut f: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    for _ in 0..8 {
        let want = f(&mut []);
        if want < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; want as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let got = f(&mut buf);
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if !is_errno(&e, Errno::ERANGE) {
            return Err(e);
        }
    }
    Err(Errno::ERANGE.into())
}

/// Where to read or write xattrs: an open descriptor, or a path that is not
/// followed in its last component.
#[derive(Clone, Copy)]
pub(crate) enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    Link(&'a CStr),
}

fn list_xattrs(t: XattrTarget<'_>) -> io::Result<Vec<u8>> {
    with_size_retry(|buf| {
        // SAFETY: buf is valid for buf.len() bytes; a null pointer with size 0
        // asks for the size only.
        let ptr = if buf.is_empty() {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        unsafe {
            match t {
                XattrTarget::Fd(fd) => libc::flistxattr(fd.as_raw_fd(), ptr, buf.len()),
                XattrTarget::Link(p) => libc::llistxattr(p.as_ptr(), ptr, buf.len()),
            }
        }
    })
}

fn get_xattr(t: XattrTarget<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    with_size_retry(|buf| {
        let ptr = if buf.is_empty() {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        // SAFETY: as in list_xattrs; name is NUL-terminated.
        unsafe {
            match t {
                XattrTarget::Fd(fd) => {
                    libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), ptr, buf.len())
                }
                XattrTarget::Link(p) => libc::lgetxattr(p.as_ptr(), name.as_ptr(), ptr, buf.len()),
            }
        }
    })
}

/// Sets one xattr (`flags` 0: create or replace).
pub(crate) fn set_xattr(t: XattrTarget<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let name = nul_free(name)?;
    // SAFETY: pointers valid for the given lengths; name NUL-terminated.
    let rc = unsafe {
        match t {
            XattrTarget::Fd(fd) => libc::fsetxattr(
                fd.as_raw_fd(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            ),
            XattrTarget::Link(p) => libc::lsetxattr(
                p.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            ),
        }
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Every xattr of the target, sorted by name. A file system without xattr
/// support yields none; an xattr removed between listing and reading is skipped.
pub(crate) fn read_xattrs(t: XattrTarget<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let list = match list_xattrs(t) {
        Ok(l) => l,
        Err(e) if is_errno(&e, Errno::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = nul_free(name)?;
        match get_xattr(t, &cname) {
            Ok(v) => out.push((name.to_vec(), v)),
            Err(e) if is_errno(&e, Errno::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Names in the directory (without `.` and `..`), sorted bytewise.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut d = Dir::openat(dir, c".", O_DIR, Mode::empty())?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// `(st_dev, st_ino)` of an open file.
pub(crate) fn file_id(fd: impl AsFd) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// What the extractor needs to know of a directory it writes into.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirStat {
    /// `(st_dev, st_ino)`.
    pub id: (u64, u64),
    pub setgid: bool,
}

pub(crate) fn dir_stat(fd: impl AsFd) -> io::Result<DirStat> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok(DirStat {
        id: (st.st_dev, st.st_ino),
        setgid: st.st_mode & libc::S_ISGID != 0,
    })
}

/// The process's umask, read without changing it (`umask(2)` can only set
/// it, which would race with other threads creating files); None when
/// `/proc` does not say.
pub(crate) fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

pub(crate) fn euid_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn list_dir_is_sorted_and_skips_dots() {
        let t = tempfile::tempdir().unwrap();
        for n in ["b", "a", "B", ".x"] {
            std::fs::write(t.path().join(n), "").unwrap();
        }
        let fd = nix::fcntl::open(t.path(), O_DIR, Mode::empty()).unwrap();
        let names = list_dir(fd.as_fd()).unwrap();
        assert_eq!(
            names,
            vec![b".x".to_vec(), b"B".to_vec(), b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn xattrs_roundtrip_on_fd_and_link() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "").unwrap();
        let file = std::fs::File::open(&f).unwrap();
        match set_xattr(XattrTarget::Fd(file.as_fd()), b"user.test", b"v1") {
            Ok(()) => {}
            // tmpfs before Linux 6.6 and some other file systems have no user xattrs.
            Err(e) if is_errno(&e, Errno::ENOTSUP) => return,
            Err(e) => panic!("{e}"),
        }
        let dir = nix::fcntl::open(t.path(), O_DIR, Mode::empty()).unwrap();
        let p = proc_path(dir.as_fd(), b"f").unwrap();
        let x = read_xattrs(XattrTarget::Link(&p)).unwrap();
        assert!(x.contains(&(b"user.test".to_vec(), b"v1".to_vec())));
        let x = read_xattrs(XattrTarget::Fd(file.as_fd())).unwrap();
        assert!(x.contains(&(b"user.test".to_vec(), b"v1".to_vec())));
    }
}
