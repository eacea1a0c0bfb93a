//! The container spec: everything the runtime needs to start one process, and
//! nothing about where it came from (images, Dockerfiles). It travels from the
//! caller to the container's init as JSON over a socket, so it is plain data.
//!
//! [`Spec::new`] fills in Docker's defaults (namespaces, the /proc /dev /sys
//! mounts, devices, masked and read-only paths, the 14 default capabilities,
//! no_new_privs, the default seccomp filter); callers then adjust fields.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::capabilities::{Capability, docker_default_capabilities};
use crate::tty::WinSize;

/// One container: its root filesystem, the process to run, and how it is isolated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub root: Root,
    pub process: Process,
    /// The UTS namespace's hostname (ignored without a UTS namespace).
    #[serde(default)]
    pub hostname: Option<String>,
    pub namespaces: Namespaces,
    /// Mounts in order, destinations inside the container. [`Spec::new`] puts
    /// Docker's defaults (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys)
    /// first; bind and tmpfs mounts of the user come after them.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Device nodes created in /dev (a bind of the host's node when mknod is
    /// not allowed, as in a user namespace).
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Paths hidden from the process: files get /dev/null bound over them,
    /// directories an empty read-only tmpfs.
    #[serde(default)]
    pub masked_paths: Vec<PathBuf>,
    /// Paths made read-only (bind-mounted over themselves, then remounted ro).
    #[serde(default)]
    pub readonly_paths: Vec<PathBuf>,
    /// Mount the cgroup2 filesystem read-only at /sys/fs/cgroup (unified hosts only).
    #[serde(default)]
    pub mount_cgroupfs: bool,
    #[serde(default)]
    pub seccomp: Seccomp,
    /// Run a minimal init as PID 1 that reaps zombies and forwards signals,
    /// with the process as its child (`docker run --init`).
    #[serde(default)]
    pub init: bool,
    /// The cgroup to create for the container and its limits; None runs the
    /// process in the caller's cgroups.
    #[serde(default)]
    pub cgroup: Option<CgroupSpec>,
}

/// The root filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// A directory on the host. It becomes the container's `/` by pivot_root.
    pub path: PathBuf,
    /// Remount `/` read-only once everything is mounted (`--read-only`).
    #[serde(default)]
    pub readonly: bool,
    /// A filesystem to mount at `path` inside the container's mount namespace
    /// first (an overlay of image layers, typically). Mounted there, it
    /// disappears with the namespace, so no mount outlives the container.
    /// None: `path` is bind-mounted onto itself.
    #[serde(default)]
    pub mount: Option<Mount>,
}

/// The process to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// argv; `args[0]` is looked up in the container's `$PATH` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value` entries. `HOME` is added from /etc/passwd when missing.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory inside the container; created (owned by root) if missing.
    #[serde(default = "default_cwd")]
    pub cwd: PathBuf,
    #[serde(default)]
    pub user: User,
    /// Give the process a new pseudo-terminal as its stdin/stdout/stderr and
    /// controlling terminal; its master end comes back to the caller.
    #[serde(default)]
    pub terminal: bool,
    /// The bounding, permitted and effective sets (inheritable and ambient stay empty).
    #[serde(default = "docker_default_capabilities")]
    pub capabilities: Vec<Capability>,
    #[serde(default = "yes")]
    pub no_new_privileges: bool,
    /// Only what was asked for: the runtime never changes a limit on its own.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// The terminal's initial size (set before the process starts).
    #[serde(default)]
    pub console_size: Option<WinSize>,
}

fn default_cwd() -> PathBuf {
    PathBuf::from("/")
}

fn yes() -> bool {
    true
}

/// Who the process runs as, the way `docker run -u` takes it: `user[:group]`,
/// each a name (looked up in the container's /etc/passwd and /etc/group) or a
/// number. Empty means root.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(default)]
    pub spec: String,
    /// Supplementary groups (names or numbers) added to those of /etc/group.
    #[serde(default)]
    pub additional_groups: Vec<String>,
}

/// A resource limit to set with setrlimit(2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// Docker's name: `nofile`, `nproc`, `core`, `memlock`, `stack`, ...
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Which namespaces the process gets. A mount namespace is always made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespaces {
    pub pid: bool,
    pub uts: bool,
    pub ipc: bool,
    pub cgroup: bool,
    pub network: Network,
    /// A user namespace with these mappings (root in the container is then
    /// an unprivileged user on the host).
    #[serde(default)]
    pub user: Option<IdMappings>,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces {
            pid: true,
            uts: true,
            ipc: true,
            cgroup: true,
            network: Network::None,
            user: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Share the caller's network namespace.
    Host,
    /// A new network namespace with only the loopback interface, up.
    None,
}

/// uid and gid maps of a user namespace: (container id, host id, count) triples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMappings {
    pub uid: Vec<IdMap>,
    pub gid: Vec<IdMap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// A mount, in the OCI runtime spec's shape: `kind` is the filesystem type
/// (`bind` for bind mounts) and `options` the mount(8) options; options mount(2)
/// has no flag for go to the filesystem as its data string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub destination: PathBuf,
    pub kind: String,
    #[serde(default)]
    pub source: Option<PathBuf>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl Mount {
    pub fn new(destination: &str, kind: &str, source: Option<&str>, options: &[&str]) -> Mount {
        Mount {
            destination: PathBuf::from(destination),
            kind: kind.to_string(),
            source: source.map(PathBuf::from),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A bind mount of a host path (`-v src:dst[:ro]`).
    pub fn bind(source: &Path, destination: &Path, readonly: bool) -> Mount {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if readonly {
            options.push("ro".to_string());
        }
        Mount {
            destination: destination.to_path_buf(),
            kind: "bind".to_string(),
            source: Some(source.to_path_buf()),
            options,
        }
    }

    pub fn is_bind(&self) -> bool {
        self.kind == "bind" || self.options.iter().any(|o| o == "bind" || o == "rbind")
    }
}

/// A character or block device node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub path: PathBuf,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
}

impl Device {
    fn char(path: &str, major: u32, minor: u32) -> Device {
        Device {
            path: PathBuf::from(path),
            kind: 'c',
            major,
            minor,
            mode: 0o666,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Seccomp {
    /// No filter.
    Unconfined,
    /// The equivalent of Docker's default profile (see [`crate::seccomp`]).
    #[default]
    DockerDefault,
}

/// The container's cgroup: a directory named `name` under `parent` in every
/// hierarchy berth uses (memory, pids, cpu).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupSpec {
    pub name: String,
    /// Relative to the caller's own cgroup on cgroup v1 (as runc treats a
    /// relative cgroupsPath) and to the root on v2; default `berth`.
    #[serde(default)]
    pub parent: Option<PathBuf>,
    #[serde(default)]
    pub resources: Resources,
}

/// Limits, all optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Bytes (`--memory`).
    #[serde(default)]
    pub memory: Option<i64>,
    /// Memory plus swap, bytes; -1 = unlimited. Default: twice `memory`, as Docker does.
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// CPUs, as `--cpus` takes them (1.5 = 150 ms of CPU time per 100 ms).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Maximum number of tasks (`--pids-limit`).
    #[serde(default)]
    pub pids: Option<i64>,
}

/// Docker's default mounts, in order.
pub fn docker_default_mounts() -> Vec<Mount> {
    vec![
        Mount::new(
            "/proc",
            "proc",
            Some("proc"),
            &["nosuid", "noexec", "nodev"],
        ),
        Mount::new(
            "/dev",
            "tmpfs",
            Some("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        Mount::new(
            "/dev/pts",
            "devpts",
            Some("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        Mount::new(
            "/sys",
            "sysfs",
            Some("sysfs"),
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        Mount::new(
            "/dev/mqueue",
            "mqueue",
            Some("mqueue"),
            &["nosuid", "noexec", "nodev"],
        ),
        Mount::new(
            "/dev/shm",
            "tmpfs",
            Some("shm"),
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    ]
}

/// The device nodes Docker creates in /dev.
pub fn docker_default_devices() -> Vec<Device> {
    vec![
        Device::char("/dev/null", 1, 3),
        Device::char("/dev/zero", 1, 5),
        Device::char("/dev/full", 1, 7),
        Device::char("/dev/random", 1, 8),
        Device::char("/dev/urandom", 1, 9),
        Device::char("/dev/tty", 5, 0),
    ]
}

/// Docker's masked paths (moby's oci/defaults.go).
pub const DOCKER_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const DOCKER_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The `PATH` Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Spec {
    /// A spec with Docker's defaults for running `args` on the directory `root`:
    /// private pid, uts, ipc, cgroup and network (loopback only) namespaces, the
    /// default mounts, devices, masked and read-only paths, capabilities,
    /// no_new_privs and seccomp filter; no cgroup limits, no rlimits.
    pub fn new(root: &Path, args: Vec<String>) -> Spec {
        Spec {
            root: Root {
                path: root.to_path_buf(),
                readonly: false,
                mount: None,
            },
            process: Process {
                args,
                env: vec![format!("PATH={DEFAULT_PATH}")],
                cwd: default_cwd(),
                user: User::default(),
                terminal: false,
                capabilities: docker_default_capabilities(),
                no_new_privileges: true,
                rlimits: Vec::new(),
                console_size: None,
            },
            hostname: None,
            namespaces: Namespaces::default(),
            mounts: docker_default_mounts(),
            devices: docker_default_devices(),
            masked_paths: DOCKER_MASKED_PATHS.iter().map(PathBuf::from).collect(),
            readonly_paths: DOCKER_READONLY_PATHS.iter().map(PathBuf::from).collect(),
            mount_cgroupfs: true,
            seccomp: Seccomp::DockerDefault,
            init: false,
            cgroup: None,
        }
    }

    /// `--privileged`: every capability, no seccomp filter, no masked or
    /// read-only paths, /sys writable, no_new_privs off.
    pub fn make_privileged(&mut self) {
        self.process.capabilities = Capability::all();
        self.process.no_new_privileges = false;
        self.seccomp = Seccomp::Unconfined;
        self.masked_paths.clear();
        self.readonly_paths.clear();
        for m in &mut self.mounts {
            if m.destination == Path::new("/sys") {
                m.options.retain(|o| o != "ro");
            }
        }
    }

    /// Checks what the init would otherwise fail on late: an empty argv,
    /// relative paths.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.process.args.is_empty() || self.process.args[0].is_empty() {
            return Err(SpecError::NoCommand);
        }
        if !self.root.path.is_absolute() {
            return Err(SpecError::Relative {
                what: "root path",
                path: self.root.path.clone(),
            });
        }
        if !self.process.cwd.is_absolute() {
            return Err(SpecError::Relative {
                what: "working directory",
                path: self.process.cwd.clone(),
            });
        }
        for m in &self.mounts {
            if !m.destination.is_absolute() {
                return Err(SpecError::Relative {
                    what: "mount destination",
                    path: m.destination.clone(),
                });
            }
        }
        if let Some(h) = &self.hostname
            && (h.is_empty() || h.len() > 64)
        {
            return Err(SpecError::Hostname(h.clone()));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command specified")]
    NoCommand,
    #[error("{what} must be absolute: {}", path.display())]
    Relative { what: &'static str, path: PathBuf },
    #[error("invalid hostname {0:?}")]
    Hostname(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_dockers() {
        let s = Spec::new(Path::new("/r"), vec!["sh".into()]);
        let dests: Vec<_> = s.mounts.iter().map(|m| m.destination.clone()).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/dev/mqueue",
                "/dev/shm"
            ]
            .iter()
            .map(PathBuf::from)
            .collect::<Vec<_>>()
        );
        assert!(s.process.no_new_privileges);
        assert_eq!(s.process.capabilities.len(), 14);
        assert!(s.process.rlimits.is_empty(), "never set rlimits unasked");
        assert!(s.masked_paths.contains(&PathBuf::from("/proc/kcore")));
        assert!(s.readonly_paths.contains(&PathBuf::from("/proc/sys")));
        let shm = &s.mounts[5];
        assert!(shm.options.contains(&"size=65536k".to_string()));
        s.validate().unwrap();
    }

    #[test]
    fn spec_round_trips_as_json() {
        let mut s = Spec::new(
            Path::new("/r"),
            vec!["sh".into(), "-c".into(), "true".into()],
        );
        s.cgroup = Some(CgroupSpec {
            name: "abc".into(),
            parent: None,
            resources: Resources {
                memory: Some(1 << 20),
                cpus: Some(1.5),
                ..Resources::default()
            },
        });
        let text = serde_json::to_string(&s).unwrap();
        let back: Spec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn privileged_lifts_restrictions() {
        let mut s = Spec::new(Path::new("/r"), vec!["sh".into()]);
        s.make_privileged();
        assert!(s.masked_paths.is_empty() && s.readonly_paths.is_empty());
        assert_eq!(s.seccomp, Seccomp::Unconfined);
        assert!(!s.process.no_new_privileges);
        let sys = s
            .mounts
            .iter()
            .find(|m| m.destination == Path::new("/sys"))
            .unwrap();
        assert!(!sys.options.contains(&"ro".to_string()));
    }

    #[test]
    fn validation_catches_mistakes() {
        let mut s = Spec::new(Path::new("/r"), vec![]);
        assert!(matches!(s.validate(), Err(SpecError::NoCommand)));
        s.process.args = vec!["sh".into()];
        s.process.cwd = PathBuf::from("rel");
        assert!(matches!(s.validate(), Err(SpecError::Relative { .. })));
    }
}
