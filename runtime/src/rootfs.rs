//! Building the container's filesystem view inside its mount namespace:
//! propagation made private, the root mounted (or bound onto itself), the
//! spec's mounts made under it with every destination resolved *inside* the
//! root (symlinks in an image cannot point a mount at the host), /dev filled,
//! `pivot_root`, then the masked and read-only paths.
//!
//! All kernel calls go through [`Syscall`]; the tests below run the whole
//! sequence against a recorder.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

use crate::spec::{Device, Mount, Spec};
use crate::syscall::{FileKind, Syscall};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{what} {}", path.display())]
    Kernel {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bind mount source {} does not exist", .0.display())]
    MissingSource(PathBuf),
    #[error("too many levels of symbolic links resolving {} in the container", .0.display())]
    SymlinkLoop(PathBuf),
}

fn kernel<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Kernel {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Facts about the situation the rootfs is set up in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// The container has its own network namespace (sysfs can be mounted fresh).
    pub netns: bool,
    /// The container has its own user namespace (mknod is not allowed).
    pub userns: bool,
    /// The host uses the unified cgroup v2 hierarchy.
    pub cgroup_v2: bool,
}

/// mount(8)-style options split into what mount(2) wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// MS_PRIVATE/MS_SLAVE/... (with MS_REC), applied by a second call.
    pub propagation: MsFlags,
    /// Everything else, comma-joined for the filesystem.
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: Vec::new(),
        }
    }
}

impl MountOptions {
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// Splits mount options into flags, propagation and filesystem data.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut out = MountOptions::default();
    for o in options {
        let (set, clear, prop) = match o.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
            "rbind" => (
                MsFlags::MS_BIND | MsFlags::MS_REC,
                MsFlags::empty(),
                MsFlags::empty(),
            ),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            ),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SHARED | MsFlags::MS_REC,
            ),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
            ),
            "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
            "runbindable" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            ),
            other => {
                out.data.push(other.to_string());
                continue;
            }
        };
        out.flags = (out.flags | set) & !clear;
        if !prop.is_empty() {
            out.propagation = prop;
        }
    }
    out
}

/// Resolves `path` as if `root` were `/`: symlinks are followed, but never
/// out of `root` (an absolute link restarts at `root`, `..` stops there).
/// Components that do not exist are kept as they are. The result is a host
/// path under `root`.
pub fn resolve_in_root(
    sys: &dyn Syscall,
    root: &Path,
    path: &Path,
) -> Result<PathBuf, RootfsError> {
    fn push_components(queue: &mut VecDeque<OsString>, path: &Path) {
        let mut comps: Vec<OsString> = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(n) => comps.push(n.to_os_string()),
                Component::ParentDir => comps.push(OsString::from("..")),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        for c in comps.into_iter().rev() {
            queue.push_front(c);
        }
    }
    let mut remaining = VecDeque::new();
    push_components(&mut remaining, path);
    let mut current: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = remaining.pop_front() {
        if c == ".." {
            current.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(current.iter());
        candidate.push(&c);
        match sys
            .lstat_kind(&candidate)
            .map_err(kernel("lstat", &candidate))?
        {
            Some(FileKind::Symlink) => {
                links += 1;
                if links > 255 {
                    return Err(RootfsError::SymlinkLoop(path.to_path_buf()));
                }
                let target = sys
                    .read_link(&candidate)
                    .map_err(kernel("readlink", &candidate))?;
                if target.is_absolute() {
                    current.clear();
                }
                push_components(&mut remaining, &target);
            }
            _ => current.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(current.iter());
    Ok(out)
}

/// Flags a bind mount inherits from the mount it was taken from and that a
/// remount must repeat (the kernel refuses to drop them in a user namespace).
fn locked_flags(sys: &dyn Syscall, path: &Path) -> MsFlags {
    sys.mount_flags(path)
        .map(|f| f & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC))
        .unwrap_or(MsFlags::empty())
}

/// Everything before `pivot_root`: propagation, the root, the mounts, /dev.
pub fn prepare(spec: &Spec, ctx: &Context, sys: &dyn Syscall) -> Result<(), RootfsError> {
    let root = spec.root.path.as_path();
    // Nothing mounted from here on may reach the host's namespace.
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(kernel("making / private", Path::new("/")))?;

    match &spec.root.mount {
        Some(m) => {
            let opts = parse_options(&m.options);
            let source = m.source.clone().unwrap_or_else(|| PathBuf::from(&m.kind));
            sys.mount(
                Some(&source),
                root,
                Some(&m.kind),
                opts.flags,
                opts.data_string().as_deref(),
            )
            .map_err(kernel("mounting the root filesystem at", root))?;
        }
        None => {
            // pivot_root needs a mount point.
            sys.mount(
                Some(root),
                root,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(kernel("bind-mounting the root filesystem", root))?;
        }
    }

    let mut dev_is_tmpfs = false;
    for m in &spec.mounts {
        if m.destination == Path::new("/dev") && m.kind == "tmpfs" {
            dev_is_tmpfs = true;
        }
        mount_one(root, m, ctx, sys)?;
    }
    if dev_is_tmpfs {
        for d in &spec.devices {
            create_device(root, d, ctx, sys)?;
        }
        dev_symlinks(root, sys)?;
    }
    Ok(())
}

fn mount_one(root: &Path, m: &Mount, ctx: &Context, sys: &dyn Syscall) -> Result<(), RootfsError> {
    let dest = resolve_in_root(sys, root, &m.destination)?;
    let opts = parse_options(&m.options);
    // sysfs cannot be mounted fresh in a user namespace that does not own the
    // network namespace: bind the host's instead, as runc does.
    let sysfs_by_bind = m.kind == "sysfs" && ctx.userns && !ctx.netns;
    if m.is_bind() || sysfs_by_bind {
        let source = if sysfs_by_bind {
            PathBuf::from("/sys")
        } else {
            m.source
                .clone()
                .ok_or_else(|| RootfsError::MissingSource(m.destination.clone()))?
        };
        let kind = sys
            .stat_kind(&source)
            .map_err(kernel("stat", &source))?
            .ok_or_else(|| RootfsError::MissingSource(source.clone()))?;
        if kind == FileKind::Dir {
            sys.mkdir_all(&dest, 0o755)
                .map_err(kernel("mkdir", &dest))?;
        } else {
            if let Some(parent) = dest.parent() {
                sys.mkdir_all(parent, 0o755)
                    .map_err(kernel("mkdir", parent))?;
            }
            sys.create_file(&dest).map_err(kernel("creating", &dest))?;
        }
        let recursive = sysfs_by_bind || opts.flags.contains(MsFlags::MS_REC);
        let mut bind = MsFlags::MS_BIND;
        if recursive {
            bind |= MsFlags::MS_REC;
        }
        sys.mount(Some(&source), &dest, None, bind, None)
            .map_err(kernel("bind-mounting onto", &dest))?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | locked_flags(sys, &dest);
            sys.mount(None, &dest, None, flags, None)
                .map_err(kernel("remounting", &dest))?;
        }
    } else {
        sys.mkdir_all(&dest, 0o755)
            .map_err(kernel("mkdir", &dest))?;
        let source = m.source.clone().unwrap_or_else(|| PathBuf::from(&m.kind));
        sys.mount(
            Some(&source),
            &dest,
            Some(&m.kind),
            opts.flags,
            opts.data_string().as_deref(),
        )
        .map_err(kernel("mounting", &dest))?;
    }
    if !opts.propagation.is_empty() {
        sys.mount(None, &dest, None, opts.propagation, None)
            .map_err(kernel("setting propagation of", &dest))?;
    }
    Ok(())
}

fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

fn create_device(
    root: &Path,
    d: &Device,
    ctx: &Context,
    sys: &dyn Syscall,
) -> Result<(), RootfsError> {
    let dest = resolve_in_root(sys, root, &d.path)?;
    if let Some(parent) = dest.parent() {
        sys.mkdir_all(parent, 0o755)
            .map_err(kernel("mkdir", parent))?;
    }
    let kind = if d.kind == 'b' {
        libc::S_IFBLK
    } else {
        libc::S_IFCHR
    };
    let made = if ctx.userns {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    } else {
        sys.mknod(&dest, kind, d.mode, makedev(d.major, d.minor))
    };
    match made {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            // Not allowed to make nodes: bind the host's.
            sys.create_file(&dest).map_err(kernel("creating", &dest))?;
            sys.mount(Some(&d.path), &dest, None, MsFlags::MS_BIND, None)
                .map_err(kernel("bind-mounting device onto", &dest))
        }
        Err(e) => Err(RootfsError::Kernel {
            what: "mknod",
            path: dest,
            source: e,
        }),
    }
}

/// /dev/fd, /dev/std{in,out,err}, /dev/core and /dev/ptmx, as runc makes them.
fn dev_symlinks(root: &Path, sys: &dyn Syscall) -> Result<(), RootfsError> {
    let dev = root.join("dev");
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if sys
        .lstat_kind(Path::new("/proc/kcore"))
        .ok()
        .flatten()
        .is_some()
    {
        links.push(("/proc/kcore", "core"));
    }
    // /dev is the tmpfs just mounted: nothing is in the way.
    for (target, name) in links {
        let link = dev.join(name);
        sys.symlink(Path::new(target), &link)
            .map_err(kernel("symlink", &link))?;
    }
    Ok(())
}

/// Everything after `pivot_root` (run with `/` as the container's root):
/// /sys/fs/cgroup, masked paths, read-only paths, a read-only root.
pub fn finish(spec: &Spec, ctx: &Context, sys: &dyn Syscall) -> Result<(), RootfsError> {
    let root = Path::new("/");
    if spec.mount_cgroupfs && ctx.cgroup_v2 && spec.namespaces.cgroup {
        let dest = resolve_in_root(sys, root, Path::new("/sys/fs/cgroup"))?;
        if sys.lstat_kind(&dest).ok().flatten() == Some(FileKind::Dir) {
            sys.mount(
                Some(Path::new("cgroup2")),
                &dest,
                Some("cgroup2"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
                None,
            )
            .map_err(kernel("mounting cgroup2 at", &dest))?;
        }
    }
    for p in &spec.masked_paths {
        let path = resolve_in_root(sys, root, p)?;
        match sys.stat_kind(&path).map_err(kernel("stat", &path))? {
            None => {}
            Some(FileKind::Dir) => sys
                .mount(
                    Some(Path::new("tmpfs")),
                    &path,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    Some("size=0"),
                )
                .map_err(kernel("masking", &path))?,
            Some(_) => sys
                .mount(
                    Some(Path::new("/dev/null")),
                    &path,
                    None,
                    MsFlags::MS_BIND,
                    None,
                )
                .map_err(kernel("masking", &path))?,
        }
    }
    for p in &spec.readonly_paths {
        let path = resolve_in_root(sys, root, p)?;
        if sys
            .stat_kind(&path)
            .map_err(kernel("stat", &path))?
            .is_none()
        {
            continue;
        }
        sys.mount(
            Some(&path),
            &path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(kernel("bind-mounting", &path))?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_REC
            | locked_flags(sys, &path);
        sys.mount(None, &path, None, flags, None)
            .map_err(kernel("making read-only", &path))?;
    }
    if spec.root.readonly {
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(sys, root);
        sys.mount(None, root, None, flags, None)
            .map_err(kernel("making the root read-only", root))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Mount;
    use crate::syscall::test::{Call, Recorder};

    fn spec() -> Spec {
        Spec::new(Path::new("/r"), vec!["sh".into()])
    }

    fn image_tree() -> Recorder {
        let r = Recorder::with_dirs(&[
            "/r/bin", "/r/etc", "/r/dev", "/r/proc", "/r/sys", "/r/tmp", "/proc",
        ]);
        r.add("/proc/kcore", FileKind::File);
        r.add("/sys", FileKind::Dir);
        r.add("/host/data", FileKind::Dir);
        r.add("/host/file.txt", FileKind::File);
        r
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(&[
            "nosuid".into(),
            "ro".into(),
            "mode=755".into(),
            "size=65536k".into(),
            "rprivate".into(),
            "rw".into(),
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        let b = parse_options(&["rbind".into(), "ro".into()]);
        assert_eq!(
            b.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let r = Recorder::with_dirs(&["/r/etc", "/r/usr/lib"]);
        // An absolute link must not escape to the host's /etc.
        r.add_link(
            "/r/etc/resolv.conf",
            "/run/systemd/resolve/stub-resolv.conf",
        );
        r.add_link("/r/lib", "usr/lib");
        r.add_link("/r/escape", "../../../../etc");
        r.add_link("/r/loop", "loop");
        let res = |p: &str| resolve_in_root(&r, Path::new("/r"), Path::new(p));
        assert_eq!(
            res("/etc/resolv.conf").unwrap(),
            Path::new("/r/run/systemd/resolve/stub-resolv.conf")
        );
        assert_eq!(res("/lib/x").unwrap(), Path::new("/r/usr/lib/x"));
        assert_eq!(res("/escape/passwd").unwrap(), Path::new("/r/etc/passwd"));
        assert_eq!(res("/../../tmp").unwrap(), Path::new("/r/tmp"));
        assert!(matches!(res("/loop"), Err(RootfsError::SymlinkLoop(_))));
    }

    #[test]
    fn prepare_mounts_dockers_defaults_in_order() {
        let r = image_tree();
        let s = spec();
        prepare(&s, &Context::default(), &r).unwrap();
        let mounts = r.mounts();
        // First: / private, then the root bound onto itself.
        assert_eq!(mounts[0].0, Path::new("/"));
        assert_eq!(mounts[0].2, MsFlags::MS_REC | MsFlags::MS_PRIVATE);
        assert_eq!(mounts[1].0, Path::new("/r"));
        assert_eq!(mounts[1].2, MsFlags::MS_BIND | MsFlags::MS_REC);
        let targets: Vec<&Path> = mounts[2..].iter().map(|m| m.0.as_path()).collect();
        assert_eq!(
            targets,
            [
                "/r/proc",
                "/r/dev",
                "/r/dev/pts",
                "/r/sys",
                "/r/dev/mqueue",
                "/r/dev/shm"
            ]
            .map(Path::new)
        );
        let proc_ = &mounts[2];
        assert_eq!(proc_.1.as_deref(), Some("proc"));
        assert_eq!(
            proc_.2,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV
        );
        let shm = &mounts[7];
        assert_eq!(shm.3.as_deref(), Some("mode=1777,size=65536k"));
        let pts = &mounts[4];
        assert!(pts.3.as_deref().unwrap().contains("newinstance"));
        let sys_ = &mounts[5];
        assert!(sys_.2.contains(MsFlags::MS_RDONLY));

        let calls = r.calls();
        let nodes: Vec<u64> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Mknod { dev, .. } => Some(*dev),
                _ => None,
            })
            .collect();
        assert_eq!(nodes.len(), 6, "null zero full random urandom tty");
        assert_eq!(nodes[0], makedev(1, 3));
        assert!(calls.contains(&Call::Symlink {
            target: PathBuf::from("pts/ptmx"),
            link: PathBuf::from("/r/dev/ptmx")
        }));
        assert!(calls.contains(&Call::Symlink {
            target: PathBuf::from("/proc/self/fd"),
            link: PathBuf::from("/r/dev/fd")
        }));
    }

    #[test]
    fn overlay_root_is_mounted_not_bound() {
        let r = image_tree();
        let mut s = spec();
        s.root.mount = Some(Mount::new(
            "/",
            "overlay",
            Some("overlay"),
            &["lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w", "index=off"],
        ));
        prepare(&s, &Context::default(), &r).unwrap();
        let m = &r.mounts()[1];
        assert_eq!(m.0, Path::new("/r"));
        assert_eq!(m.1.as_deref(), Some("overlay"));
        assert_eq!(
            m.3.as_deref(),
            Some("lowerdir=/l1:/l2,upperdir=/u,workdir=/w,index=off")
        );
    }

    #[test]
    fn readonly_binds_are_remounted_and_files_get_file_mount_points() {
        let r = image_tree();
        let mut s = spec();
        s.mounts = vec![
            Mount::bind(Path::new("/host/data"), Path::new("/data"), true),
            Mount::bind(Path::new("/host/file.txt"), Path::new("/etc/hosts"), false),
        ];
        r.flags
            .borrow_mut()
            .insert(PathBuf::from("/r/data"), MsFlags::MS_NODEV);
        prepare(&s, &Context::default(), &r).unwrap();
        let calls = r.calls();
        assert!(calls.contains(&Call::Mkdir(PathBuf::from("/r/data"))));
        assert!(calls.contains(&Call::CreateFile(PathBuf::from("/r/etc/hosts"))));
        let data: Vec<_> = r
            .mounts()
            .into_iter()
            .filter(|m| m.0 == Path::new("/r/data"))
            .collect();
        assert_eq!(data[0].2, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(
            data[1].2,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NODEV
        );
        // rprivate propagation is a third call.
        assert_eq!(data[2].2, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    }

    #[test]
    fn missing_bind_source_is_an_error() {
        let r = image_tree();
        let mut s = spec();
        s.mounts = vec![Mount::bind(Path::new("/nope"), Path::new("/x"), false)];
        assert!(matches!(
            prepare(&s, &Context::default(), &r),
            Err(RootfsError::MissingSource(_))
        ));
    }

    #[test]
    fn user_namespace_binds_devices_and_sysfs() {
        let r = image_tree();
        let s = spec();
        let ctx = Context {
            userns: true,
            netns: false,
            cgroup_v2: false,
        };
        prepare(&s, &ctx, &r).unwrap();
        let calls = r.calls();
        assert!(!calls.iter().any(|c| matches!(c, Call::Mknod { .. })));
        let mounts = r.mounts();
        assert!(
            mounts
                .iter()
                .any(|m| m.0 == Path::new("/r/dev/null") && m.2 == MsFlags::MS_BIND)
        );
        let sys_: Vec<_> = mounts
            .iter()
            .filter(|m| m.0 == Path::new("/r/sys"))
            .collect();
        assert_eq!(sys_[0].2, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(sys_[1].2.contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT));
    }

    #[test]
    fn finish_masks_and_protects_existing_paths() {
        let r =
            Recorder::with_dirs(&["/proc/acpi", "/proc/sys", "/sys/firmware", "/sys/fs/cgroup"]);
        r.add("/proc/kcore", FileKind::File);
        r.add("/proc/keys", FileKind::File);
        r.add("/proc/sysrq-trigger", FileKind::File);
        r.flags.borrow_mut().insert(
            PathBuf::from("/proc/sys"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        );
        let mut s = spec();
        s.root.readonly = true;
        finish(
            &s,
            &Context {
                cgroup_v2: true,
                ..Context::default()
            },
            &r,
        )
        .unwrap();
        let mounts = r.mounts();
        let find = |p: &str| -> Vec<_> {
            mounts
                .iter()
                .filter(|m| m.0 == Path::new(p))
                .cloned()
                .collect()
        };
        assert_eq!(find("/sys/fs/cgroup")[0].1.as_deref(), Some("cgroup2"));
        assert_eq!(find("/proc/kcore")[0].2, MsFlags::MS_BIND);
        assert_eq!(find("/proc/acpi")[0].1.as_deref(), Some("tmpfs"));
        assert!(find("/proc/acpi")[0].2.contains(MsFlags::MS_RDONLY));
        assert!(
            find("/proc/timer_list").is_empty(),
            "absent paths are skipped"
        );
        let sysctl = find("/proc/sys");
        assert_eq!(sysctl.len(), 2);
        assert!(sysctl[1].2.contains(
            MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC
        ));
        let root = find("/");
        assert!(
            root.last()
                .unwrap()
                .2
                .contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT)
        );
    }
}
