//! Cgroups: finding the host's layout (v1 per-controller hierarchies, as this
//! project's CI machine has, or the unified v2 hierarchy), making one cgroup per
//! container with its limits (memory, pids, cpu), moving the process in,
//! telling an OOM kill apart from other deaths, and removing it again.
//!
//! Where the container's cgroup goes: on v1, under the caller's own cgroup of
//! each hierarchy (runc's rule for a relative cgroupsPath), so a caller that is
//! itself limited keeps its limits; on v2, under the root, because v2 forbids
//! enabling controllers for children of a cgroup that has processes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::spec::{CgroupSpec, Resources};

/// Controllers berth sets limits with, for v1.
const V1_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// The default parent of container cgroups.
pub const DEFAULT_PARENT: &str = "berth";
const CFS_PERIOD_US: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the {0} cgroup controller is not available on this host")]
    NoController(String),
    #[error("cgroup {} still has processes after killing them", .0.display())]
    Busy(PathBuf),
    #[error("invalid cgroup name {0:?}")]
    Name(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One line of /proc/self/mountinfo, the fields this module needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: Vec<String>,
}

/// Parses mountinfo(5) text (octal escapes in paths decoded).
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 {
                return None;
            }
            Some(MountInfo {
                root: PathBuf::from(unescape(l[3])),
                mount_point: PathBuf::from(unescape(l[4])),
                fstype: r[0].to_string(),
                super_options: r[2].split(',').map(String::from).collect(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A v1 hierarchy: where it is mounted and which controllers it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    /// The cgroup the mount shows at its mount point (not `/` inside a cgroup namespace).
    pub root: PathBuf,
    /// The caller's own cgroup in this hierarchy.
    pub own: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V1(Vec<V1Hierarchy>),
    V2 { mount_point: PathBuf },
}

impl Layout {
    /// Reads /proc/self/mountinfo and /proc/self/cgroup.
    pub fn detect() -> Result<Layout, CgroupError> {
        let mi = Path::new("/proc/self/mountinfo");
        let cg = Path::new("/proc/self/cgroup");
        let mountinfo = fs::read_to_string(mi).map_err(io_err(mi))?;
        let own = fs::read_to_string(cg).map_err(io_err(cg))?;
        Layout::from_texts(&mountinfo, &own)
    }

    /// v1 when any cgroup v1 hierarchy carries a controller (hybrid hosts
    /// included: their v2 mount has no controllers); else v2.
    pub fn from_texts(mountinfo: &str, proc_self_cgroup: &str) -> Result<Layout, CgroupError> {
        let mounts = parse_mountinfo(mountinfo);
        let own: Vec<(Vec<String>, PathBuf)> = proc_self_cgroup
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                let _id = f.next()?;
                let ctrls = f.next()?;
                let path = f.next()?;
                Some((
                    ctrls
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    PathBuf::from(path),
                ))
            })
            .collect();
        let mut v1 = Vec::new();
        for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
            let controllers: Vec<String> = m
                .super_options
                .iter()
                .filter(|o| V1_CONTROLLERS.contains(&o.as_str()) || *o == "cpuacct")
                .cloned()
                .collect();
            if controllers.is_empty()
                || v1
                    .iter()
                    .any(|h: &V1Hierarchy| h.controllers == controllers)
            {
                continue;
            }
            let own_path = own
                .iter()
                .find(|(c, _)| c.iter().any(|x| controllers.contains(x)))
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| PathBuf::from("/"));
            v1.push(V1Hierarchy {
                controllers,
                mount_point: m.mount_point.clone(),
                root: m.root.clone(),
                own: own_path,
            });
        }
        if !v1.is_empty() {
            return Ok(Layout::V1(v1));
        }
        mounts
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .map(|m| Layout::V2 {
                mount_point: m.mount_point.clone(),
            })
            .ok_or_else(|| CgroupError::NoController("any".into()))
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Layout::V2 { .. })
    }

    /// The directories a container cgroup named by `spec` lives in, one per
    /// hierarchy used.
    pub fn paths_for(&self, spec: &CgroupSpec) -> Result<Vec<PathBuf>, CgroupError> {
        let mut out: Vec<PathBuf> = Vec::new();
        for (_, p) in self.dirs_for(spec)? {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// (controller, directory) pairs; v2 has one directory for all, named "".
    fn dirs_for(&self, spec: &CgroupSpec) -> Result<Vec<(String, PathBuf)>, CgroupError> {
        if spec.name.is_empty() || spec.name.contains('/') || spec.name == "." || spec.name == ".."
        {
            return Err(CgroupError::Name(spec.name.clone()));
        }
        let parent = spec
            .parent
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PARENT));
        let rel = |p: &Path| -> PathBuf {
            p.components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect()
        };
        match self {
            Layout::V2 { mount_point } => Ok(vec![(
                String::new(),
                mount_point.join(rel(&parent)).join(&spec.name),
            )]),
            Layout::V1(hs) => {
                let mut out = Vec::new();
                for ctrl in V1_CONTROLLERS {
                    let h = hs
                        .iter()
                        .find(|h| h.controllers.iter().any(|c| c == ctrl))
                        .ok_or_else(|| CgroupError::NoController(ctrl.to_string()))?;
                    // The caller's cgroup as seen under this mount.
                    let own = h.own.strip_prefix(&h.root).unwrap_or(&h.own);
                    let base = if parent.is_absolute() {
                        h.mount_point.clone()
                    } else {
                        h.mount_point.join(rel(own))
                    };
                    out.push((ctrl.to_string(), base.join(rel(&parent)).join(&spec.name)));
                }
                Ok(out)
            }
        }
    }
}

/// The (controller file, value) writes that set `r` on a cgroup.
pub fn limit_writes(r: &Resources, v2: bool) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if v2 {
        if let Some(m) = r.memory {
            out.push(("memory.max", m.to_string()));
            let swap = match r.memory_swap {
                Some(-1) => "max".to_string(),
                Some(total) => (total - m).max(0).to_string(),
                None => m.to_string(),
            };
            out.push(("memory.swap.max", swap));
        }
        if let Some(p) = r.pids {
            out.push((
                "pids.max",
                if p > 0 {
                    p.to_string()
                } else {
                    "max".to_string()
                },
            ));
        }
        if let Some(c) = r.cpus {
            out.push(("cpu.max", format!("{} {CFS_PERIOD_US}", cpu_quota(c))));
        }
    } else {
        if let Some(m) = r.memory {
            out.push(("memory.limit_in_bytes", m.to_string()));
            let total = match r.memory_swap {
                Some(t) => t,
                None => m.saturating_mul(2),
            };
            out.push(("memory.memsw.limit_in_bytes", total.to_string()));
        }
        if let Some(p) = r.pids {
            out.push((
                "pids.max",
                if p > 0 {
                    p.to_string()
                } else {
                    "max".to_string()
                },
            ));
        }
        if let Some(c) = r.cpus {
            out.push(("cpu.cfs_period_us", CFS_PERIOD_US.to_string()));
            out.push(("cpu.cfs_quota_us", cpu_quota(c).to_string()));
        }
    }
    out
}

fn cpu_quota(cpus: f64) -> u64 {
    ((cpus * CFS_PERIOD_US as f64).round() as u64).max(1000)
}

/// Which hierarchy a control file belongs to (its prefix names the controller).
fn controller_of(file: &str) -> &str {
    file.split('.').next().unwrap_or("")
}

/// A container's cgroup: one directory per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    paths: Vec<PathBuf>,
    /// v1: which directory holds which controller.
    by_controller: Vec<(String, PathBuf)>,
    v2: bool,
}

impl Cgroup {
    /// Makes the directories and writes the limits.
    pub fn create(layout: &Layout, spec: &CgroupSpec) -> Result<Cgroup, CgroupError> {
        let paths = layout.paths_for(spec)?;
        let by_controller = layout.dirs_for(spec)?;
        let v2 = layout.is_v2();
        if let Layout::V2 { mount_point } = layout
            && let Some(p) = paths.first()
        {
            enable_v2_controllers(mount_point, p)?;
        }
        let cg = Cgroup {
            paths,
            by_controller,
            v2,
        };
        for p in &cg.paths {
            match fs::create_dir_all(p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(p)(e)),
            }
        }
        for (file, value) in limit_writes(&spec.resources, v2) {
            let Some(dir) = cg.dir_for(controller_of(file)) else {
                continue;
            };
            let path = dir.join(file);
            if !path.exists() && !file.contains("memsw") && !file.contains("swap") {
                // Control files exist exactly when the controller is enabled.
                let _ = cg.remove();
                return Err(CgroupError::NoController(controller_of(file).to_string()));
            }
            if let Err(e) = fs::write(&path, &value) {
                // memsw/swap files are absent when swap accounting is off.
                let optional = file.contains("memsw") || file.contains("swap");
                let absent =
                    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::EINVAL);
                if !(optional && absent) {
                    let _ = cg.remove();
                    return Err(io_err(&path)(e));
                }
            }
        }
        Ok(cg)
    }

    /// A cgroup found again by its directories (e.g. from a container's saved state).
    pub fn from_paths(paths: Vec<PathBuf>, v2: bool) -> Cgroup {
        let by_controller = paths
            .iter()
            .map(|p| {
                let ctrl = V1_CONTROLLERS
                    .iter()
                    .find(|c| p.components().any(|x| x.as_os_str() == **c))
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                (ctrl, p.clone())
            })
            .collect();
        Cgroup {
            paths,
            by_controller,
            v2,
        }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    pub fn is_v2(&self) -> bool {
        self.v2
    }

    fn dir_for(&self, controller: &str) -> Option<&PathBuf> {
        if self.v2 {
            return self.paths.first();
        }
        self.by_controller
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, p)| p)
    }

    /// Moves `pid` into every hierarchy.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for p in &self.paths {
            let f = p.join("cgroup.procs");
            fs::write(&f, pid.to_string()).map_err(io_err(&f))?;
        }
        Ok(())
    }

    /// The v2 directory, for clone3's CLONE_INTO_CGROUP.
    pub fn v2_dir(&self) -> Option<&Path> {
        if self.v2 {
            self.paths.first().map(PathBuf::as_path)
        } else {
            None
        }
    }

    /// True when the kernel's OOM killer killed something in this cgroup.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        let Some(dir) = self.dir_for("memory") else {
            return false;
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
                })
            })
            .is_some_and(|n| n > 0)
    }

    /// Process IDs in the cgroup (any hierarchy).
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for p in &self.paths {
            if let Ok(text) = fs::read_to_string(p.join("cgroup.procs")) {
                for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    if !out.contains(&pid) {
                        out.push(pid);
                    }
                }
            }
        }
        out
    }

    /// SIGKILLs everything left in the cgroup.
    pub fn kill_all(&self) {
        if self.v2
            && let Some(p) = self.paths.first()
            && fs::write(p.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for pid in self.pids() {
            // SAFETY: kill with a pid read from cgroup.procs and a constant signal.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// Kills what is left and removes the directories. Processes that are
    /// still exiting keep a cgroup busy for a moment: retried for up to 5 s.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut delay = Duration::from_micros(200);
        for p in &self.paths {
            loop {
                match fs::remove_dir(p) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        if Instant::now() >= deadline {
                            return Err(CgroupError::Busy(p.clone()));
                        }
                        self.kill_all();
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_millis(50));
                    }
                    Err(e) => return Err(io_err(p)(e)),
                }
            }
        }
        Ok(())
    }
}

/// On v2, a child only gets a controller its parent enables in
/// cgroup.subtree_control: enable memory, pids and cpu down to `cgroup`'s parent.
fn enable_v2_controllers(mount_point: &Path, cgroup: &Path) -> Result<(), CgroupError> {
    let available = fs::read_to_string(mount_point.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<&str> = ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let line = wanted
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let Ok(rel) = cgroup.strip_prefix(mount_point) else {
        return Ok(());
    };
    let mut dir = mount_point.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let control = dir.join("cgroup.subtree_control");
        let current = fs::read_to_string(&control).unwrap_or_default();
        if !wanted
            .iter()
            .all(|w| current.split_whitespace().any(|c| c == *w))
        {
            fs::write(&control, &line).map_err(io_err(&control))?;
        }
        if i + 1 == comps.len() {
            break;
        }
        dir.push(c);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // This project's CI machine: hybrid layout, cpu and cpuacct apart, the
    // caller's memory cgroup nested.
    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/jobs/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    const UNIFIED: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    fn spec(name: &str) -> CgroupSpec {
        CgroupSpec {
            name: name.into(),
            parent: None,
            resources: Resources::default(),
        }
    }

    #[test]
    fn hybrid_host_is_v1_nested_under_own_cgroup() {
        let l = Layout::from_texts(HYBRID, HYBRID_SELF).unwrap();
        assert!(!l.is_v2());
        let paths = l.paths_for(&spec("c1")).unwrap();
        assert_eq!(
            paths,
            [
                "/sys/fs/cgroup/memory/jobs/abc/berth/c1",
                "/sys/fs/cgroup/pids/berth/c1",
                "/sys/fs/cgroup/cpu/berth/c1",
            ]
            .map(PathBuf::from)
        );
        let mut abs = spec("c1");
        abs.parent = Some(PathBuf::from("/top"));
        assert_eq!(
            l.paths_for(&abs).unwrap()[0],
            Path::new("/sys/fs/cgroup/memory/top/c1")
        );
    }

    #[test]
    fn comounted_cpu_cpuacct_is_one_hierarchy() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                  39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        let l = Layout::from_texts(mi, "").unwrap();
        let p = l.paths_for(&spec("x")).unwrap();
        assert_eq!(p[2], Path::new("/sys/fs/cgroup/cpu,cpuacct/berth/x"));
    }

    #[test]
    fn unified_host_is_v2_under_the_root() {
        let l = Layout::from_texts(UNIFIED, "0::/user.slice/session-1.scope\n").unwrap();
        assert!(l.is_v2());
        assert_eq!(
            l.paths_for(&spec("c1")).unwrap(),
            vec![PathBuf::from("/sys/fs/cgroup/berth/c1")]
        );
    }

    #[test]
    fn names_cannot_escape() {
        let l = Layout::from_texts(UNIFIED, "").unwrap();
        assert!(l.paths_for(&spec("../x")).is_err());
        assert!(l.paths_for(&spec("")).is_err());
    }

    #[test]
    fn limits_in_both_versions() {
        let r = Resources {
            memory: Some(32 << 20),
            memory_swap: None,
            cpus: Some(1.5),
            pids: Some(50),
        };
        let v1 = limit_writes(&r, false);
        assert!(v1.contains(&("memory.limit_in_bytes", "33554432".into())));
        assert!(v1.contains(&("memory.memsw.limit_in_bytes", "67108864".into())));
        assert!(v1.contains(&("cpu.cfs_quota_us", "150000".into())));
        assert!(v1.contains(&("pids.max", "50".into())));
        let v2 = limit_writes(&r, true);
        assert!(v2.contains(&("memory.max", "33554432".into())));
        assert!(v2.contains(&("memory.swap.max", "33554432".into())));
        assert!(v2.contains(&("cpu.max", "150000 100000".into())));
        assert!(limit_writes(&Resources::default(), false).is_empty());
    }

    #[test]
    fn create_writes_limits_into_a_fake_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().display();
        let mi = format!(
            "35 31 0:32 / {t}/memory rw - cgroup cgroup rw,memory\n\
             39 31 0:36 / {t}/pids rw - cgroup cgroup rw,pids\n\
             32 31 0:29 / {t}/cpu rw - cgroup cgroup rw,cpu\n"
        );
        let l = Layout::from_texts(&mi, "").unwrap();
        let mut s = spec("c9");
        s.resources.memory = Some(1 << 25);
        s.resources.pids = Some(10);
        // The kernel makes the control files; a fake hierarchy needs them made.
        for (d, f) in [
            ("memory/berth/c9", "memory.limit_in_bytes"),
            ("pids/berth/c9", "pids.max"),
        ] {
            fs::create_dir_all(tmp.path().join(d)).unwrap();
            fs::write(tmp.path().join(d).join(f), "").unwrap();
        }
        let cg = Cgroup::create(&l, &s).unwrap();
        let mem = tmp.path().join("memory/berth/c9");
        assert_eq!(
            fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap(),
            "33554432"
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join("pids/berth/c9/pids.max")).unwrap(),
            "10"
        );
        assert!(!tmp.path().join("cpu/berth/c9/cpu.cfs_quota_us").exists());
        cg.add(1234).unwrap();
        assert_eq!(cg.pids(), vec![1234]);
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
    }

    #[test]
    fn v2_enables_controllers_and_writes_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let mp = tmp.path();
        fs::write(mp.join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        fs::write(mp.join("cgroup.subtree_control"), "").unwrap();
        let l = Layout::V2 {
            mount_point: mp.to_path_buf(),
        };
        let mut s = spec("c2");
        s.resources.pids = Some(7);
        // The kernel makes the control files; a fake hierarchy needs them made.
        let dir = mp.join("berth/c2");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("pids.max"), "max").unwrap();
        let cg = Cgroup::create(&l, &s).unwrap();
        assert_eq!(cg.v2_dir(), Some(dir.as_path()));
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "7");
        assert_eq!(
            fs::read_to_string(mp.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        assert_eq!(
            fs::read_to_string(mp.join("berth/cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        // A limit whose controller is not there is refused clearly.
        s.resources.memory = Some(1 << 26);
        let e = Cgroup::create(&l, &s).unwrap_err();
        assert!(
            matches!(e, CgroupError::NoController(ref c) if c == "memory"),
            "{e}"
        );
    }

    #[test]
    fn mountinfo_unescapes_paths() {
        let m = parse_mountinfo("1 2 0:3 / /a\\040b rw - tmpfs x rw\n");
        assert_eq!(m[0].mount_point, Path::new("/a b"));
    }
}
