//! The caller's side of starting a container.
//!
//! ```text
//! caller (any number of threads)            container
//! ───────────────────────────────            ─────────
//! make the cgroup, write limits
//! socketpair; dup stdio + socket to fds >= 10
//! block all signals
//! clone3(NEWNS|NEWPID|NEWUTS|NEWIPC|NEWNET,   ─► child: dup2 to 0..3, PDEATHSIG,
//!        CLONE_PIDFD[, INTO_CGROUP])               execve(/proc/self/exe __berth-init)
//! restore the signal mask                      init (a fresh single-threaded process):
//! move the pid into the v1 cgroups               read the spec from fd 3 ...
//! write uid/gid maps (user namespace)            (see crate::init)
//! send the spec ─────────────────────────────►
//! read frames until EOF ◄───────────────────── Tty(fd) / Exec / Error, then execve
//! ```
//!
//! Between clone3 and execve the child only calls async-signal-safe functions
//! (dup2, prctl, execve, _exit) on data prepared before the clone, so the caller
//! may be multi-threaded (a tokio runtime in the builder). Everything else
//! happens in the re-executed binary.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::Error;
use crate::cgroups::{Cgroup, CgroupError, Layout};
use crate::channel::{Bootstrap, Channel, Message};
use crate::init::INIT_ARG;
use crate::namespaces::clone_flags;
use crate::spec::{IdMap, Spec};

/// Where a standard stream of the process comes from.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The caller's own descriptor.
    #[default]
    Inherit,
    /// /dev/null.
    Null,
    /// A descriptor the caller opened (a pipe end, a file).
    Fd(OwnedFd),
}

#[derive(Debug)]
pub struct SpawnOptions {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// The binary to re-execute in init mode: one whose `main` starts with
    /// [`crate::init::main_if_init`]. Default: `/proc/self/exe`.
    pub init_exe: Option<PathBuf>,
    /// Kill the container (SIGKILL) when the thread that spawned it dies, so a
    /// killed caller leaves no orphan. Default true.
    pub kill_with_parent: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            init_exe: None,
            kill_with_parent: true,
        }
    }
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's (and Docker's) number: the exit code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// The end of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: ExitStatus,
    /// The kernel's OOM killer killed a process of the container's cgroup.
    pub oom_killed: bool,
    /// From the call to [`spawn`] to the process's execve.
    pub startup: Duration,
    /// From the execve to the exit.
    pub running: Duration,
}

impl Exit {
    /// Docker's exit code: 137 for an OOM kill, else [`ExitStatus::code`].
    pub fn code(&self) -> i32 {
        if self.oom_killed && self.status == ExitStatus::Signaled(libc::SIGKILL) {
            137
        } else {
            self.status.code()
        }
    }
}

/// A started container. Dropping it without [`Container::wait`] kills it and
/// removes its cgroup.
#[derive(Debug)]
pub struct Container {
    pid: i32,
    pidfd: OwnedFd,
    cgroup: Option<Cgroup>,
    tty: Option<OwnedFd>,
    spawned_at: Instant,
    started_at: Instant,
    reaped: bool,
}

/// The cgroup layout, read once per process.
fn layout() -> Result<&'static Layout, CgroupError> {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    if let Some(l) = LAYOUT.get() {
        return Ok(l);
    }
    let l = Layout::detect()?;
    Ok(LAYOUT.get_or_init(|| l))
}

/// The directories the cgroup of `spec` lives in on this host (to record
/// them before [`spawn`] creates it, for cleanup after a crash).
pub fn cgroup_paths(spec: &crate::spec::CgroupSpec) -> Result<Vec<PathBuf>, Error> {
    Ok(layout()?.paths_for(spec)?)
}

/// True when the host uses the unified cgroup v2 hierarchy only.
pub fn host_is_cgroup_v2() -> bool {
    layout().map(Layout::is_v2).unwrap_or(false)
}

/// clone3's flag to start the child in a cgroup (v2), given as a directory fd.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What the child needs between clone and execve, allocated beforehand.
struct Prepared {
    exe: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// Sources for fds 0, 1, 2 and 3, all >= 10.
    fds: [RawFd; 4],
    pdeathsig: bool,
    /// With a user namespace: the child waits for a byte on this pipe (the
    /// id maps are written), then becomes uid/gid 0 there before execve, so
    /// that the init keeps its capabilities in the namespace. -1 otherwise.
    userns_sync: RawFd,
}

/// Runs in the child of clone: async-signal-safe calls only.
///
/// # Safety
/// Only to be called in the child right after clone/fork.
unsafe fn child_exec(p: &Prepared) -> ! {
    // SAFETY: dup2, prctl, execve and _exit are async-signal-safe and only
    // read memory prepared before the clone.
    unsafe {
        for (target, src) in p.fds.iter().enumerate() {
            if libc::dup2(*src, target as libc::c_int) < 0 {
                libc::_exit(125);
            }
        }
        if p.pdeathsig {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        }
        if p.userns_sync >= 0 {
            let mut byte = 0u8;
            loop {
                let n = libc::read(p.userns_sync, (&mut byte as *mut u8).cast(), 1);
                if n == 1 {
                    break;
                }
                if n == 0 || *libc::__errno_location() != libc::EINTR {
                    libc::_exit(125);
                }
            }
            // Raw system calls: glibc's wrappers would try to signal the
            // caller's other threads, which do not exist in this child.
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                || libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0
            {
                libc::_exit(125);
            }
        }
        libc::execve(p.exe.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
        libc::_exit(125)
    }
}

fn cstring(s: &OsStr) -> Result<CString, Error> {
    CString::new(s.as_bytes()).map_err(|_| Error::Io {
        what: "a path or argument with a NUL byte",
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })
}

/// Duplicates `fd` to a close-on-exec descriptor >= 10 (out of the way of 0..3).
fn dup_high(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new one we own.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn stdio_fd(s: Stdio, own: RawFd) -> io::Result<OwnedFd> {
    match s {
        // SAFETY: the standard descriptors stay open for the caller's lifetime.
        Stdio::Inherit => dup_high(unsafe { BorrowedFd::borrow_raw(own) }),
        Stdio::Null => {
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            dup_high(f.as_fd())
        }
        Stdio::Fd(fd) => dup_high(fd.as_fd()),
    }
}

/// Restores the signal mask when dropped.
struct MaskGuard(libc::sigset_t);

impl MaskGuard {
    fn block_all() -> MaskGuard {
        // SAFETY: sigset_t is plain data; the calls only fill and apply masks.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            MaskGuard(old)
        }
    }
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

fn write_id_map(pid: i32, file: &str, maps: &[IdMap]) -> Result<(), Error> {
    if maps.is_empty() {
        return Ok(());
    }
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    fs::write(&path, text).map_err(|source| Error::Io {
        what: "writing the user namespace's id map",
        source,
    })
}

/// Starts `spec`'s process and returns once it has exec'd (or failed to).
pub fn spawn(spec: &Spec, opts: SpawnOptions) -> Result<Container, Error> {
    let spawned_at = Instant::now();
    spec.validate()?;

    let cgroup = match &spec.cgroup {
        Some(c) => Some(Cgroup::create(layout()?, c)?),
        None => None,
    };
    // From here on, any error must remove the cgroup again.
    let cleanup = |cg: &Option<Cgroup>| {
        if let Some(c) = cg {
            let _ = c.remove();
        }
    };
    match start(spec, opts, cgroup.as_ref(), spawned_at) {
        Ok((pid, pidfd, tty)) => Ok(Container {
            pid,
            pidfd,
            cgroup,
            tty,
            spawned_at,
            started_at: Instant::now(),
            reaped: false,
        }),
        Err(e) => {
            cleanup(&cgroup);
            Err(e)
        }
    }
}

fn start(
    spec: &Spec,
    opts: SpawnOptions,
    cgroup: Option<&Cgroup>,
    _spawned_at: Instant,
) -> Result<(i32, OwnedFd, Option<OwnedFd>), Error> {
    let io_err = |what: &'static str| move |source: io::Error| Error::Io { what, source };
    let (ours, theirs) = Channel::pair().map_err(io_err("creating the init socket"))?;

    let exe_path = opts
        .init_exe
        .clone()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    let exe = cstring(exe_path.as_os_str())?;
    let arg0 = cstring(OsStr::new("berth"))?;
    let arg1 = cstring(OsStr::new(INIT_ARG))?;
    let argv = vec![arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp = vec![std::ptr::null()];

    let stdin = stdio_fd(opts.stdin, 0).map_err(io_err("preparing stdin"))?;
    let stdout = stdio_fd(opts.stdout, 1).map_err(io_err("preparing stdout"))?;
    let stderr = stdio_fd(opts.stderr, 2).map_err(io_err("preparing stderr"))?;
    let chan = dup_high(theirs.as_fd()).map_err(io_err("preparing the init socket"))?;
    drop(theirs);
    let userns_sync = if spec.namespaces.user.is_some() {
        Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io {
                what: "creating the user namespace pipe",
                source: io::Error::from_raw_os_error(e as i32),
            })?,
        )
    } else {
        None
    };
    let prepared = Prepared {
        exe,
        argv,
        envp,
        fds: [
            stdin.as_raw_fd(),
            stdout.as_raw_fd(),
            stderr.as_raw_fd(),
            chan.as_raw_fd(),
        ],
        pdeathsig: opts.kill_with_parent,
        userns_sync: userns_sync.as_ref().map_or(-1, |(r, _)| r.as_raw_fd()),
    };

    let cgroup_dir = match cgroup.and_then(Cgroup::v2_dir) {
        Some(d) => Some(
            fs::OpenOptions::new()
                .read(true)
                .custom_flags_dir()
                .open(d)
                .map_err(io_err("opening the cgroup directory"))?,
        ),
        None => None,
    };

    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: clone_flags(spec).bits() as u64 | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    let mut joined_by_clone = false;
    if let Some(d) = &cgroup_dir {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = d.as_raw_fd() as u64;
        joined_by_clone = true;
    }

    let pid = {
        let _mask = MaskGuard::block_all();
        // SAFETY: clone3 without CLONE_VM is fork-like; the child runs only
        // child_exec, which is async-signal-safe.
        let mut r = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            // No clone3 (old kernel, or a seccomp profile that hides it): clone.
            let flags = clone_flags(spec).bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
            joined_by_clone = false;
            pidfd = -1;
            // SAFETY: as above; a NULL stack makes clone fork-like.
            r = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
        }
        if r == 0 {
            // SAFETY: we are the child.
            unsafe { child_exec(&prepared) }
        }
        r
    };
    if pid < 0 {
        return Err(Error::Io {
            what: "creating the container process (clone3)",
            source: io::Error::last_os_error(),
        });
    }
    let pid = pid as i32;
    drop((stdin, stdout, stderr, chan, cgroup_dir));
    let pidfd = if pidfd >= 0 {
        // SAFETY: the kernel gave us this descriptor.
        unsafe { OwnedFd::from_raw_fd(pidfd) }
    } else {
        pidfd_open(pid).map_err(io_err("pidfd_open"))?
    };
    // A guard that kills and reaps the child on any error below.
    let mut guard = ChildGuard { pidfd: Some(pidfd) };

    // v1: the init joins its cgroups itself (fast, see channel::Bootstrap),
    // unless a user namespace keeps it from writing to the host's cgroupfs.
    let mut cgroup_tasks = Vec::new();
    if let Some(cg) = cgroup
        && !joined_by_clone
    {
        if spec.namespaces.user.is_some() {
            cg.add(pid)?;
        } else {
            cgroup_tasks = cg.paths().iter().map(|p| p.join("tasks")).collect();
        }
    }
    if let Some(maps) = &spec.namespaces.user {
        write_id_map(pid, "uid_map", &maps.uid)?;
        write_id_map(pid, "gid_map", &maps.gid)?;
        if let Some((r, w)) = userns_sync {
            drop(r);
            nix::unistd::write(&w, &[1]).map_err(|e| Error::Io {
                what: "releasing the container process",
                source: io::Error::from_raw_os_error(e as i32),
            })?;
        }
    }
    let boot = Bootstrap {
        spec: spec.clone(),
        cgroup_tasks,
    };
    ours.send_json(&boot, &[])
        .map_err(io_err("sending the spec to the container init"))?;

    let mut tty = None;
    let mut announced = false;
    let mut failure: Option<(i32, String)> = None;
    loop {
        match ours.recv_json::<Message>() {
            Ok(None) => break,
            Ok(Some((Message::Tty, mut fds))) => tty = fds.pop(),
            Ok(Some((Message::Exec, _))) => announced = true,
            Ok(Some((Message::Error { code, message }, _))) => failure = Some((code, message)),
            Err(e) => {
                return Err(Error::Io {
                    what: "reading from the container init",
                    source: e,
                });
            }
        }
    }
    if let Some((code, message)) = failure {
        guard.reap();
        return Err(Error::Start { code, message });
    }
    if !announced {
        let status = guard.reap();
        return Err(Error::Start {
            code: 125,
            message: format!(
                "the container init exited before starting the process ({})",
                match status {
                    Some(ExitStatus::Exited(c)) => format!("exit code {c}"),
                    Some(ExitStatus::Signaled(s)) => format!("signal {s}"),
                    None => "status unknown".to_string(),
                }
            ),
        });
    }
    let pidfd = guard.pidfd.take().ok_or(Error::Io {
        what: "the container's pidfd",
        source: io::Error::from_raw_os_error(libc::EBADF),
    })?;
    Ok((pid, pidfd, tty))
}

trait DirOpen {
    fn custom_flags_dir(&mut self) -> &mut Self;
}

impl DirOpen for fs::OpenOptions {
    fn custom_flags_dir(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
    }
}

struct ChildGuard {
    pidfd: Option<OwnedFd>,
}

impl ChildGuard {
    /// Kills (if still running) and reaps the child.
    fn reap(&mut self) -> Option<ExitStatus> {
        let fd = self.pidfd.take()?;
        let _ = pidfd_signal(fd.as_fd(), libc::SIGKILL);
        wait_pidfd(fd.as_fd(), true).ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.reap();
    }
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open with a pid and no flags.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Sends `sig` to the process a pidfd refers to.
pub fn pidfd_signal(fd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        // ESRCH: it has exited already.
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// Reaps the process; None when `block` is false and it is still running.
fn wait_pidfd(fd: BorrowedFd<'_>, block: bool) -> io::Result<Option<ExitStatus>> {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let mut flags = libc::WEXITED;
        if !block {
            flags |= libc::WNOHANG;
        }
        // SAFETY: P_PIDFD with a valid pidfd.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                fd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        // SAFETY: reading the fields waitid filled.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => ExitStatus::Exited(status),
            _ => ExitStatus::Signaled(status),
        }));
    }
}

impl Container {
    /// The process's pid in the caller's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// The master end of the process's terminal (spec.process.terminal).
    pub fn take_tty(&mut self) -> Option<OwnedFd> {
        self.tty.take()
    }

    /// How long the start took (spawn call to execve).
    pub fn startup(&self) -> Duration {
        self.started_at.duration_since(self.spawned_at)
    }

    pub fn signal(&self, sig: i32) -> Result<(), Error> {
        pidfd_signal(self.pidfd.as_fd(), sig).map_err(|source| Error::Io {
            what: "signalling the container",
            source,
        })
    }

    /// Non-blocking: Some once the process has exited (and is reaped, cleaned up).
    pub fn try_wait(&mut self) -> Result<Option<Exit>, Error> {
        self.wait_inner(false)
    }

    /// Waits for the process, then removes its cgroup (killing anything left in it).
    pub fn wait(&mut self) -> Result<Exit, Error> {
        match self.wait_inner(true)? {
            Some(e) => Ok(e),
            None => Err(Error::Io {
                what: "waiting for the container",
                source: io::Error::from_raw_os_error(libc::ECHILD),
            }),
        }
    }

    fn wait_inner(&mut self, block: bool) -> Result<Option<Exit>, Error> {
        if self.reaped {
            return Err(Error::Io {
                what: "waiting for the container",
                source: io::Error::from_raw_os_error(libc::ECHILD),
            });
        }
        let status = wait_pidfd(self.pidfd.as_fd(), block).map_err(|source| Error::Io {
            what: "waiting for the container",
            source,
        })?;
        let Some(status) = status else {
            return Ok(None);
        };
        let ended = Instant::now();
        self.reaped = true;
        let oom_killed = self.cgroup.as_ref().is_some_and(Cgroup::oom_killed);
        if let Some(cg) = self.cgroup.take() {
            cg.remove()?;
        }
        Ok(Some(Exit {
            status,
            oom_killed,
            startup: self.startup(),
            running: ended.duration_since(self.started_at),
        }))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = pidfd_signal(self.pidfd.as_fd(), libc::SIGKILL);
            let _ = wait_pidfd(self.pidfd.as_fd(), true);
            self.reaped = true;
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.remove();
        }
    }
}

/// SIGKILLs every process in a container's cgroup (found by its directories).
pub fn kill_cgroup(paths: &[PathBuf]) {
    Cgroup::from_paths(paths.to_vec(), host_is_cgroup_v2()).kill_all();
}

/// Removes a cgroup left behind by a caller that was killed (its container
/// died with it): kills anything still inside, then the directories.
pub fn remove_stale_cgroup(paths: &[PathBuf]) -> Result<(), Error> {
    let v2 = host_is_cgroup_v2();
    let cg = Cgroup::from_paths(paths.to_vec(), v2);
    cg.kill_all();
    cg.remove()?;
    Ok(())
}
