//! Resolving an entry's parent directory inside the target as if the target
//! were the root of the file system.
//!
//! Each component is opened with `openat(O_PATH|O_DIRECTORY|O_NOFOLLOW)`
//! relative to the directory resolved so far, so the kernel never follows a
//! link for us. When a component is a symlink, its target is read and walked
//! here instead: an absolute target restarts from the target root (images have
//! `var/run -> /run` and later layers write `var/run/x`), a `..` above the
//! root is an error, and more than 40 links is `ELOOP`. The result is a
//! directory descriptor that is guaranteed to lie inside the target.
//!
//! Consecutive entries mostly share their parent, so the resolution of the
//! last path's prefixes is cached; the extractor clears the cache whenever it
//! removes or replaces a directory or symlink, the only changes that could
//! make a cached resolution stale.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use nix::errno::Errno;
use nix::sys::stat::Mode;
use std::os::unix::ffi::OsStringExt;

use super::sys::{self, O_DIR_PATH};

/// Symlinks followed for one path at most, as the kernel's `MAXSYMLINKS`.
pub(crate) const MAX_SYMLINKS: usize = 40;

/// An open directory inside the target.
#[derive(Debug)]
pub(crate) struct DirHandle {
    fd: OwnedFd,
    stat: OnceCell<sys::DirStat>,
}

impl DirHandle {
    pub fn new(fd: OwnedFd) -> Self {
        DirHandle {
            fd,
            stat: OnceCell::new(),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `(st_dev, st_ino)`, looked up once.
    pub fn id(&self) -> io::Result<(u64, u64)> {
        Ok(self.stat()?.id)
    }

    /// Whether the directory is setgid (files made in it take its group).
    /// The extractor changes directory modes only once it is done, so a
    /// directory that was not setgid when first asked stays so meanwhile.
    pub fn setgid(&self) -> io::Result<bool> {
        Ok(self.stat()?.setgid)
    }

    fn stat(&self) -> io::Result<&sys::DirStat> {
        if let Some(st) = self.stat.get() {
            return Ok(st);
        }
        let st = sys::dir_stat(&self.fd)?;
        Ok(self.stat.get_or_init(|| st))
    }
}

#[derive(Debug)]
pub(crate) enum ResolveError {
    /// `..` above the root, reached through the symlink at this lexical path.
    SymlinkEscapes {
        symlink: Vec<u8>,
    },
    TooManySymlinks,
    /// The component at this lexical path is neither a directory nor a symlink.
    NotADirectory {
        component: Vec<u8>,
    },
    /// A component does not exist and `create` was false.
    NotFound,
    Io {
        op: &'static str,
        source: io::Error,
    },
}

type Stack = Vec<Rc<DirHandle>>;

pub(crate) struct Resolver {
    root: Rc<DirHandle>,
    /// For the last resolved path: each lexical component and the stack of
    /// directories (root first) it resolved to.
    cache: Vec<(Vec<u8>, Stack)>,
}

impl Resolver {
    pub fn new(root: OwnedFd) -> Self {
        Resolver {
            root: Rc::new(DirHandle::new(root)),
            cache: Vec::new(),
        }
    }

    pub fn root(&self) -> &Rc<DirHandle> {
        &self.root
    }

    /// Forgets cached resolutions (after a directory or symlink was removed).
    pub fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// The directory at the lexical path `comps` (already normalised: no
    /// empty, `.` or `..` components). With `create`, missing directories
    /// are made (mode 0755) and reported to `on_create(parent, name)`.
    pub fn resolve(
        &mut self,
        comps: &[&[u8]],
        create: bool,
        on_create: &mut dyn FnMut(&DirHandle, &[u8]),
    ) -> Result<Rc<DirHandle>, ResolveError> {
        let common = self
            .cache
            .iter()
            .zip(comps)
            .take_while(|((cached, _), comp)| cached.as_slice() == **comp)
            .count();
        self.cache.truncate(common);
        let mut stack: Stack = match self.cache.last() {
            Some((_, s)) => s.clone(),
            None => vec![Rc::clone(&self.root)],
        };
        let mut links = 0usize;
        for i in common..comps.len() {
            let lexical = comps[..=i].join(&b'/');
            step(
                &mut stack, comps[i], &lexical, create, &mut links, on_create,
            )?;
            self.cache.push((comps[i].to_vec(), stack.clone()));
        }
        match stack.last() {
            Some(d) => Ok(Rc::clone(d)),
            None => Ok(Rc::clone(&self.root)),
        }
    }
}

/// Walks one lexical component (and whatever symlinks it expands to) from the
/// top of `stack`.
fn step(
    stack: &mut Stack,
    comp: &[u8],
    lexical: &[u8],
    create: bool,
    links: &mut usize,
    on_create: &mut dyn FnMut(&DirHandle, &[u8]),
) -> Result<(), ResolveError> {
    let mut queue: VecDeque<Vec<u8>> = VecDeque::from([comp.to_vec()]);
    // The lexical path of the symlink being expanded, for error messages.
    let mut via: Vec<u8> = lexical.to_vec();
    let mut retries = 0;
    while let Some(c) = queue.pop_front() {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." {
            if stack.len() <= 1 {
                return Err(ResolveError::SymlinkEscapes { symlink: via });
            }
            stack.pop();
            continue;
        }
        let top = match stack.last() {
            Some(t) => Rc::clone(t),
            None => return Err(ResolveError::SymlinkEscapes { symlink: via }),
        };
        match nix::fcntl::openat(top.fd(), c.as_slice(), O_DIR_PATH, Mode::empty()) {
            Ok(fd) => {
                stack.push(Rc::new(DirHandle::new(fd)));
                continue;
            }
            Err(Errno::ENOENT) if create && retries < 8 => {
                retries += 1;
                match nix::sys::stat::mkdirat(
                    top.fd(),
                    c.as_slice(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) => on_create(&top, &c),
                    Err(Errno::EEXIST) => {}
                    Err(e) => {
                        return Err(ResolveError::Io {
                            op: "creating parent directory",
                            source: e.into(),
                        });
                    }
                }
                // Whatever is there now (our directory, or something that
                // appeared meanwhile) is examined again from scratch.
                queue.push_front(c);
                continue;
            }
            Err(Errno::ENOENT) => return Err(ResolveError::NotFound),
            Err(Errno::ENOTDIR | Errno::ELOOP) => {}
            Err(e) => {
                return Err(ResolveError::Io {
                    op: "opening parent directory",
                    source: e.into(),
                });
            }
        }
        // Not a directory: a symlink to walk ourselves, or a dead end.
        let target = match nix::fcntl::readlinkat(top.fd(), c.as_slice()) {
            Ok(t) => t.into_vec(),
            Err(Errno::EINVAL) => {
                return Err(ResolveError::NotADirectory {
                    component: lexical.to_vec(),
                });
            }
            Err(e) => {
                return Err(ResolveError::Io {
                    op: "reading symlink",
                    source: e.into(),
                });
            }
        };
        *links += 1;
        if *links > MAX_SYMLINKS {
            return Err(ResolveError::TooManySymlinks);
        }
        via = lexical.to_vec();
        if target.first() == Some(&b'/') {
            stack.truncate(1);
        }
        for part in target.split(|&b| b == b'/').rev() {
            queue.push_front(part.to_vec());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn resolver(dir: &std::path::Path) -> Resolver {
        Resolver::new(nix::fcntl::open(dir, sys::O_DIR, Mode::empty()).unwrap())
    }

    fn ident(h: &DirHandle) -> (u64, u64) {
        h.id().unwrap()
    }

    fn path_id(p: &std::path::Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    #[test]
    fn absolute_links_restart_at_the_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("run")).unwrap();
        std::fs::create_dir_all(t.path().join("var")).unwrap();
        symlink("/run", t.path().join("var/run")).unwrap();
        let mut r = resolver(t.path());
        let h = r.resolve(&[b"var", b"run"], false, &mut |_, _| {}).unwrap();
        assert_eq!(ident(&h), path_id(&t.path().join("run")));
    }

    #[test]
    fn dotdot_above_root_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        symlink("../../..", t.path().join("evil")).unwrap();
        let mut r = resolver(t.path());
        match r.resolve(&[b"evil"], true, &mut |_, _| {}) {
            Err(ResolveError::SymlinkEscapes { symlink }) => assert_eq!(symlink, b"evil"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loops_stop() {
        let t = tempfile::tempdir().unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let mut r = resolver(t.path());
        assert!(matches!(
            r.resolve(&[b"a", b"x"], true, &mut |_, _| {}),
            Err(ResolveError::TooManySymlinks)
        ));
    }

    #[test]
    fn creates_missing_and_caches() {
        let t = tempfile::tempdir().unwrap();
        let mut r = resolver(t.path());
        let mut made = Vec::new();
        r.resolve(&[b"a", b"b", b"c"], true, &mut |_, n| made.push(n.to_vec()))
            .unwrap();
        assert_eq!(made, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert!(t.path().join("a/b/c").is_dir());
        // A file where a directory is needed.
        std::fs::write(t.path().join("a/f"), "").unwrap();
        assert!(matches!(
            r.resolve(&[b"a", b"f", b"x"], true, &mut |_, _| {}),
            Err(ResolveError::NotADirectory { .. })
        ));
        assert!(matches!(
            r.resolve(&[b"nope"], false, &mut |_, _| {}),
            Err(ResolveError::NotFound)
        ));
    }

    #[test]
    fn relative_links_inside_are_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib")).unwrap();
        symlink("usr/lib", t.path().join("lib")).unwrap();
        std::fs::create_dir_all(t.path().join("x")).unwrap();
        symlink("../lib/../lib", t.path().join("x/l")).unwrap();
        let mut r = resolver(t.path());
        let h = r.resolve(&[b"x", b"l"], false, &mut |_, _| {}).unwrap();
        assert_eq!(ident(&h), path_id(&t.path().join("usr/lib")));
    }
}
