//! A [`Syscall`] that records every call and keeps a tiny in-memory file
//! tree, so tests can check what the setup code would do to the kernel.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::{FileKind, Syscall};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount(PathBuf),
    PivotRoot(PathBuf),
    Mkdir(PathBuf),
    CreateFile(PathBuf),
    Mknod {
        path: PathBuf,
        dev: u64,
    },
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    Sethostname(String),
    Unshare(CloneFlags),
    LoopbackUp,
}

#[derive(Default)]
pub struct Recorder {
    pub calls: RefCell<Vec<Call>>,
    /// The fake file tree: path -> kind; symlinks also in `links`.
    pub files: RefCell<BTreeMap<PathBuf, FileKind>>,
    pub links: RefCell<BTreeMap<PathBuf, PathBuf>>,
    /// Per-path mount flags reported by `mount_flags`.
    pub flags: RefCell<BTreeMap<PathBuf, MsFlags>>,
    /// mknod fails with EPERM (as in a user namespace).
    pub deny_mknod: bool,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    pub fn with_dirs(dirs: &[&str]) -> Recorder {
        let r = Recorder::new();
        for d in dirs {
            r.add(d, FileKind::Dir);
        }
        r
    }

    pub fn add(&self, path: &str, kind: FileKind) {
        let mut files = self.files.borrow_mut();
        let mut p = PathBuf::from(path);
        files.insert(p.clone(), kind);
        while p.pop() {
            files.entry(p.clone()).or_insert(FileKind::Dir);
        }
    }

    pub fn add_link(&self, path: &str, target: &str) {
        self.add(path, FileKind::Symlink);
        self.links
            .borrow_mut()
            .insert(PathBuf::from(path), PathBuf::from(target));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// Mount calls only, as (target, fstype, flags) with the data.
    pub fn mounts(&self) -> Vec<(PathBuf, Option<String>, MsFlags, Option<String>)> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| match c {
                Call::Mount {
                    target,
                    fstype,
                    flags,
                    data,
                    ..
                } => Some((target.clone(), fstype.clone(), *flags, data.clone())),
                _ => None,
            })
            .collect()
    }

    fn record(&self, c: Call) {
        self.calls.borrow_mut().push(c);
    }
}

impl Syscall for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(String::from),
            flags,
            data: data.map(String::from),
        });
        Ok(())
    }

    fn umount(&self, target: &Path, _flags: MntFlags) -> io::Result<()> {
        self.record(Call::Umount(target.to_path_buf()));
        Ok(())
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        self.record(Call::PivotRoot(new_root.to_path_buf()));
        // Re-root the fake tree.
        let mut files = self.files.borrow_mut();
        let moved: BTreeMap<PathBuf, FileKind> = files
            .iter()
            .filter_map(|(p, k)| {
                p.strip_prefix(new_root)
                    .ok()
                    .map(|rel| (Path::new("/").join(rel), *k))
            })
            .collect();
        *files = moved;
        let mut links = self.links.borrow_mut();
        let moved: BTreeMap<PathBuf, PathBuf> = links
            .iter()
            .filter_map(|(p, t)| {
                p.strip_prefix(new_root)
                    .ok()
                    .map(|rel| (Path::new("/").join(rel), t.clone()))
            })
            .collect();
        *links = moved;
        Ok(())
    }

    fn mkdir_all(&self, path: &Path, _mode: u32) -> io::Result<()> {
        self.record(Call::Mkdir(path.to_path_buf()));
        self.add(&path.to_string_lossy(), FileKind::Dir);
        Ok(())
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        self.record(Call::CreateFile(path.to_path_buf()));
        if !self.files.borrow().contains_key(path) {
            self.add(&path.to_string_lossy(), FileKind::File);
        }
        Ok(())
    }

    fn mknod(&self, path: &Path, _kind: u32, _mode: u32, dev: u64) -> io::Result<()> {
        if self.deny_mknod {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.record(Call::Mknod {
            path: path.to_path_buf(),
            dev,
        });
        self.add(&path.to_string_lossy(), FileKind::Other);
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(Call::Symlink {
            target: target.to_path_buf(),
            link: link.to_path_buf(),
        });
        self.add_link(&link.to_string_lossy(), &target.to_string_lossy());
        Ok(())
    }

    fn lstat_kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        Ok(self.files.borrow().get(path).copied())
    }

    fn stat_kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        let mut p = path.to_path_buf();
        for _ in 0..40 {
            let target = self.links.borrow().get(&p).cloned();
            match target {
                Some(t) => {
                    p = if t.is_absolute() {
                        t
                    } else {
                        p.parent().unwrap_or(Path::new("/")).join(t)
                    }
                }
                None => return Ok(self.files.borrow().get(&p).copied()),
            }
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.links
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    }

    fn mount_flags(&self, path: &Path) -> io::Result<MsFlags> {
        Ok(self
            .flags
            .borrow()
            .get(path)
            .copied()
            .unwrap_or(MsFlags::empty()))
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(Call::Sethostname(name.to_string()));
        Ok(())
    }

    fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
        self.record(Call::Unshare(flags));
        Ok(())
    }

    fn loopback_up(&self) -> io::Result<()> {
        self.record(Call::LoopbackUp);
        Ok(())
    }
}
