//! Reading and writing inside an image's filesystem from the host, with every
//! path resolved as if that filesystem were `/`: `openat2(RESOLVE_IN_ROOT)`
//! makes the kernel keep symlinks and `..` inside it, so a Dockerfile cannot
//! make the build touch a host file through a link in the image.
//! (No crate wraps openat2 with RESOLVE_IN_ROOT for std files; it is one
//! syscall.)

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Opens `path` (absolute or relative: both start at `root`) inside `root`.
pub fn open_in_root(root: &Path, path: &str, flags: i32) -> io::Result<OwnedFd> {
    let root_fd = File::open(root)?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let c_path = CString::new(rel).map_err(|_| io::Error::other("path contains NUL"))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: valid pointers to a NUL-terminated path and an open_how of the
    // size passed; the returned descriptor is owned by us.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_fd.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reads a small file inside `root`; None when it does not exist.
pub fn read_in_root(root: &Path, path: &str) -> io::Result<Option<Vec<u8>>> {
    match open_in_root(root, path, libc::O_RDONLY) {
        Ok(fd) => {
            let mut f = File::from(fd);
            let mut out = Vec::new();
            f.by_ref().take(16 << 20).read_to_end(&mut out)?;
            Ok(Some(out))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The host path that `path` inside `root` resolves to (following links
/// inside the root), or None when it does not exist.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<Option<PathBuf>> {
    match open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => {
            let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
            // The kernel's answer lies inside root; check anyway.
            if !link.starts_with(root) {
                return Err(io::Error::other(format!(
                    "{} resolves outside the image",
                    path
                )));
            }
            Ok(Some(link))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Resolves `user[:group]` (names or numbers) with the image's /etc/passwd
/// and /etc/group, as `COPY --chown` does.
pub fn lookup_owner(root: &Path, spec: &str) -> io::Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(root, "/etc/passwd")?.unwrap_or_default();
    let passwd = String::from_utf8_lossy(&passwd);
    let find = |db: &str, name: &str, id_field: usize| -> Option<(u32, Option<u32>)> {
        db.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                let id = f.get(id_field)?.parse().ok()?;
                Some((id, f.get(3).and_then(|g| g.parse().ok())))
            })?
        })
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => match find(&passwd, user, 2) {
            Some((uid, gid)) => (uid, gid),
            None => {
                return Err(io::Error::other(format!(
                    "unable to find user {user}: no matching entries in passwd file"
                )));
            }
        },
    };
    let gid = match group {
        None => primary_gid.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let groups = read_in_root(root, "/etc/group")?.unwrap_or_default();
                let groups = String::from_utf8_lossy(&groups);
                match find(&groups, g, 2) {
                    Some((gid, _)) => gid,
                    None => {
                        return Err(io::Error::other(format!(
                            "unable to find group {g}: no matching entries in group file"
                        )));
                    }
                }
            }
        },
    };
    Ok((uid, gid))
}

/// True when `path` inside `root` exists (following links inside it).
pub fn exists_in_root(root: &Path, path: &str) -> bool {
    open_in_root(root, path, libc::O_PATH).is_ok()
}

pub fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path contains NUL"))
}
