//! berth-runtime owns running one process in new Linux namespaces on a rootfs
//! it is handed: pivot_root, /proc /dev /sys, users, capabilities, seccomp,
//! cgroup limits, stdio/TTY, signals and exit status. It knows nothing of
//! images or registries: its input is a [`Spec`] (a root directory or a mount
//! for it, the process, namespaces, mounts, limits) and its output an
//! [`Exit`] (code or signal, OOM, timing).
//!
//! The process model: [`spawn`] clones a child into new namespaces that
//! immediately re-executes the current binary (`/proc/self/exe __berth-init`);
//! that fresh process receives the spec as JSON over a socket on fd 3, sets
//! the container up ([`init`]) and execs the user's program. So no
//! non-async-signal-safe code runs between fork and exec of a multi-threaded
//! caller. Binaries that start containers call [`init::main_if_init`] first
//! thing in `main`.
//!
//! ```text
//! let spec = Spec::new(Path::new("/var/lib/x/rootfs"), vec!["sh".into()]);
//! let mut c = berth_runtime::spawn(&spec, SpawnOptions::default())?;
//! let exit = c.wait()?;           // or supervise::attach for signals/TTY
//! std::process::exit(exit.code());
//! ```
//!
//! Docker's defaults live beside the code that applies them: the mounts,
//! devices and masked/read-only paths in [`spec`], the 14 capabilities in
//! [`capabilities`], the seccomp profile (compiled to BPF here) in [`seccomp`].
//!
//! Kernel calls of the setup go through [`syscall::Syscall`] so the mount and
//! namespace logic is unit-tested without root; the real thing is tested end
//! to end through `berth run` (tests/run.rs, tests/runtime_compare.rs).

pub mod capabilities;
pub mod cgroups;
pub mod channel;
pub mod etc;
pub mod init;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod supervise;
pub mod syscall;
pub mod tty;
pub mod user;

pub use process::{Container, Exit, ExitStatus, SpawnOptions, Stdio, spawn};
pub use spec::Spec;

/// Everything that can go wrong, by module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Capability(#[from] capabilities::CapabilityError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The container could not be started; `code` is Docker's exit code for
    /// it (125 setup, 126 not executable, 127 not found).
    #[error("{message}")]
    Start { code: i32, message: String },
}

/// An error and its causes joined by ": " (what `{:#}` of anyhow prints).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

impl Error {
    /// The exit code `docker run` would give for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Start { code, .. } => *code,
            _ => 125,
        }
    }
}
