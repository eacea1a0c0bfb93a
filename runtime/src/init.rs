//! The container side: the berth binary re-executed as `berth __berth-init`
//! inside the new namespaces. It is a fresh single-threaded process, so it may
//! allocate, parse JSON and read files freely before it execs the user's
//! program. In order:
//!
//! 1. unblock signals; read the spec from fd 3 (it arrives once the caller has
//!    put this process into its cgroup and written any id maps);
//! 2. cgroup namespace, hostname, loopback ([`crate::namespaces::enter`]);
//! 3. mounts, /dev, pivot_root, masked and read-only paths ([`crate::rootfs`]);
//! 4. rlimits (only those asked for); the user from the container's
//!    /etc/passwd and /etc/group; HOME; the working directory;
//! 5. the terminal (its master goes back over fd 3);
//! 6. bounding set, groups, gid, uid, capabilities, no_new_privs, seccomp;
//! 7. signal dispositions reset, fds >= 3 close-on-exec, `Exec` sent, execve.
//!
//! A failure anywhere is sent back as `Error{code,message}` (126/127 for
//! execve's "not executable"/"not found", 125 for the rest) and the init exits
//! with that code. With `spec.init`, step 7 forks: the child execs, and this
//! process stays as PID 1, reaping zombies and forwarding signals to it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::capabilities;
use crate::channel::{Bootstrap, Channel, Message};
use crate::namespaces;
use crate::rootfs::{self, Context};
use crate::seccomp;
use crate::spec::{DEFAULT_PATH, Rlimit, Seccomp, Spec};
use crate::syscall::Syscall;
use crate::syscall::linux::Linux;
use crate::tty;
use crate::user::{self, ExecUser};

/// argv[1] that selects init mode.
pub const INIT_ARG: &str = "__berth-init";
/// The descriptor the spec socket arrives on.
const CHANNEL_FD: i32 = 3;

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct InitError {
    pub code: i32,
    pub message: String,
}

impl InitError {
    fn setup(message: impl std::fmt::Display) -> InitError {
        InitError {
            code: 125,
            message: message.to_string(),
        }
    }

    /// A module error with its whole cause chain in the message.
    fn from_err<E: std::error::Error + 'static>(e: E) -> InitError {
        InitError::setup(crate::error_chain(&e))
    }
}

/// Call first thing in `main` of every binary that starts containers: when
/// the process was started as a container init, this runs it and never
/// returns; otherwise it returns at once.
pub fn main_if_init() {
    let mut args = std::env::args_os();
    let _ = args.next();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(INIT_ARG)) {
        return;
    }
    let code = run();
    std::process::exit(code);
}

fn unblock_all_signals() {
    // SAFETY: sigset_t is plain data; an empty mask is always valid.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

fn run() -> i32 {
    // The caller blocked every signal around the clone; the mask survived execve.
    unblock_all_signals();
    // SAFETY: fd 3 is the socket the caller dup2'd there for us.
    let chan = unsafe { Channel::from_raw(CHANNEL_FD) };
    let boot: Bootstrap = match chan.recv_json() {
        Ok(Some((b, _))) => b,
        // The caller went away before sending anything: nothing to report to.
        Ok(None) => return 125,
        Err(e) => {
            let _ = chan.send_json(
                &Message::Error {
                    code: 125,
                    message: format!("reading the spec: {e}"),
                },
                &[],
            );
            return 125;
        }
    };
    // Join the cgroups first, before anything can fork or allocate much.
    for tasks in &boot.cgroup_tasks {
        if let Err(e) = std::fs::write(tasks, "0") {
            let _ = chan.send_json(
                &Message::Error {
                    code: 125,
                    message: format!("joining cgroup {}: {e}", tasks.display()),
                },
                &[],
            );
            return 125;
        }
    }
    let spec = boot.spec;
    match setup_and_exec(&spec, &chan) {
        Ok(code) => code,
        Err(e) => {
            let _ = chan.send_json(
                &Message::Error {
                    code: e.code,
                    message: e.message,
                },
                &[],
            );
            e.code
        }
    }
}

/// Only returns on failure (or, with spec.init, with the child's exit code).
fn setup_and_exec(spec: &Spec, chan: &Channel) -> Result<i32, InitError> {
    let sys = Linux;
    let ctx = Context {
        netns: spec.namespaces.network == crate::spec::Network::None,
        userns: spec.namespaces.user.is_some(),
        cgroup_v2: cgroup2_at("/sys/fs/cgroup"),
    };
    namespaces::enter(spec, &sys).map_err(InitError::from_err)?;
    rootfs::prepare(spec, &ctx, &sys).map_err(InitError::from_err)?;
    sys.pivot_root(&spec.root.path)
        .map_err(|e| InitError::setup(format!("pivot_root: {e}")))?;
    rootfs::finish(spec, &ctx, &sys).map_err(InitError::from_err)?;

    for r in &spec.process.rlimits {
        set_rlimit(r)?;
    }
    let user = user::resolve_in(
        Path::new("/"),
        &spec.process.user.spec,
        &spec.process.user.additional_groups,
    )
    .map_err(InitError::from_err)?;
    let env = environment(&spec.process.env, &user);

    let cwd = &spec.process.cwd;
    sys.mkdir_all(cwd, 0o755)
        .and_then(|()| std::env::set_current_dir(cwd))
        .map_err(|e| InitError::setup(format!("working directory {}: {e}", cwd.display())))?;

    if spec.process.terminal {
        setup_terminal(spec, chan, &user, &sys)?;
    }

    let program = find_program(&spec.process.args[0], &env)?;
    let argv: Vec<CString> = spec
        .process
        .args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| InitError::setup("an argument contains a NUL byte"))?;
    let envp: Vec<CString> = env
        .iter()
        .filter_map(|e| CString::new(e.as_bytes()).ok())
        .collect();

    let filters = match spec.seccomp {
        Seccomp::Unconfined => None,
        Seccomp::DockerDefault => {
            Some(seccomp::build(&spec.process.capabilities).map_err(InitError::from_err)?)
        }
    };
    if !spec.process.no_new_privileges
        && let Some(f) = &filters
    {
        // Without no_new_privs installing a filter needs CAP_SYS_ADMIN: do it
        // while we still have it.
        f.install().map_err(InitError::from_err)?;
    }
    drop_privileges(spec, &user)?;
    // Changing credentials cleared the parent-death signal: set it again, and
    // make sure the caller did not die in between.
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    if chan.peer_gone() {
        return Err(InitError::setup("the caller went away"));
    }
    if spec.process.no_new_privileges
        && let Some(f) = &filters
    {
        f.install().map_err(InitError::from_err)?;
    }

    // Every descriptor but 0-2 closes on exec, the socket included: its EOF
    // tells the caller the exec happened.
    // SAFETY: close_range with a flag; no memory involved.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    let _ = chan.send_json(&Message::Exec, &[]);
    if spec.init {
        return mini_init(chan, &program, &argv, &envp);
    }
    reset_signals();
    Err(exec(&program, &argv, &envp))
}

fn cgroup2_at(path: &str) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// The process environment: the spec's, plus HOME from passwd when unset.
fn environment(env: &[String], user: &ExecUser) -> Vec<String> {
    let mut out: Vec<String> = env.to_vec();
    if !out.iter().any(|e| e.starts_with("HOME=")) {
        out.push(format!("HOME={}", user.home));
    }
    out
}

fn set_ids(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    let gids: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: setgroups reads gids.len() entries.
    if unsafe { libc::setgroups(gids.len(), gids.as_ptr()) } != 0 {
        let e = io::Error::last_os_error();
        // A user namespace with setgroups denied: fine when there are none to set.
        if !(gids.is_empty() && e.raw_os_error() == Some(libc::EPERM)) {
            return Err(e);
        }
    }
    // SAFETY: plain id arguments.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain id arguments.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn drop_privileges(spec: &Spec, user: &ExecUser) -> Result<(), InitError> {
    let caps = &spec.process.capabilities;
    capabilities::drop_bounding(caps).map_err(InitError::from_err)?;
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
    }
    set_ids(user.uid, user.gid, &user.groups).map_err(|e| {
        InitError::setup(format!("changing to user {}:{}: {e}", user.uid, user.gid))
    })?;
    // SAFETY: as above.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    capabilities::apply(caps).map_err(InitError::from_err)?;
    if spec.process.no_new_privileges {
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(InitError::setup(format!(
                "no_new_privs: {}",
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    let n = name.to_ascii_lowercase();
    let n = n.strip_prefix("rlimit_").unwrap_or(&n);
    Some(match n {
        "as" => libc::RLIMIT_AS,
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

fn set_rlimit(r: &Rlimit) -> Result<(), InitError> {
    let res = rlimit_resource(&r.name)
        .ok_or_else(|| InitError::setup(format!("unknown ulimit {:?}", r.name)))?;
    let lim = libc::rlimit {
        rlim_cur: r.soft,
        rlim_max: r.hard,
    };
    // SAFETY: setrlimit reads one rlimit.
    if unsafe { libc::setrlimit(res, &lim) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills one rlimit.
    unsafe { libc::getrlimit(res, &mut cur) };
    let why = if e.raw_os_error() == Some(libc::EPERM) && r.hard > cur.rlim_max {
        format!(
            "raising the hard limit above {} needs CAP_SYS_RESOURCE, which this host does not grant",
            cur.rlim_max
        )
    } else {
        e.to_string()
    };
    Err(InitError::setup(format!(
        "cannot set ulimit {}={}:{}: {why}",
        r.name, r.soft, r.hard
    )))
}

fn setup_terminal(
    spec: &Spec,
    chan: &Channel,
    user: &ExecUser,
    sys: &dyn Syscall,
) -> Result<(), InitError> {
    let (master, slave, path) = tty::open_pty("/dev/pts/ptmx")
        .or_else(|_| tty::open_pty("/dev/ptmx"))
        .map_err(|e| InitError::setup(format!("allocating a terminal: {e}")))?;
    if let Some(size) = spec.process.console_size {
        let _ = tty::set_winsize(std::os::fd::AsFd::as_fd(&slave), size);
    }
    // The user must be able to reopen its own terminal.
    // SAFETY: fchown on a descriptor we own.
    unsafe {
        libc::fchown(slave.as_raw_fd(), user.uid, u32::MAX);
    }
    // /dev/console is the terminal, as runc does it.
    let console = Path::new("/dev/console");
    if sys.create_file(console).is_ok() {
        let _ = sys.mount(
            Some(&path),
            console,
            None,
            nix::mount::MsFlags::MS_BIND,
            None,
        );
    }
    chan.send_json(&Message::Tty, &[master.as_raw_fd()])
        .map_err(|e| InitError::setup(format!("passing the terminal: {e}")))?;
    drop(master);
    tty::make_controlling(&slave).map_err(|e| InitError::setup(format!("terminal: {e}")))?;
    if slave.as_raw_fd() <= 2 {
        std::mem::forget::<OwnedFd>(slave);
    }
    Ok(())
}

/// The PATH of the process's environment (Docker's default when it has none).
fn search_path(env: &[String]) -> String {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string()
}

/// Looks `name` up like Go's exec.LookPath: as is when it has a `/`, else
/// the first executable regular file in $PATH.
fn find_program(name: &str, env: &[String]) -> Result<CString, InitError> {
    use std::os::unix::fs::PermissionsExt;
    let not_found = || InitError {
        code: 127,
        message: format!("exec: \"{name}\": executable file not found in $PATH"),
    };
    if name.contains('/') {
        return CString::new(name).map_err(|_| not_found());
    }
    for dir in search_path(env).split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = PathBuf::from(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return CString::new(candidate.as_os_str().as_bytes()).map_err(|_| not_found());
        }
    }
    Err(not_found())
}

/// execve; returns only on failure, with Docker's exit code for it.
fn exec(program: &CString, argv: &[CString], envp: &[CString]) -> InitError {
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the call.
    unsafe {
        libc::execve(program.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
    }
    let e = io::Error::last_os_error();
    let shown = program.to_string_lossy();
    match e.raw_os_error() {
        Some(libc::ENOENT) => InitError {
            code: 127,
            message: format!("exec: \"{shown}\": no such file or directory"),
        },
        _ => InitError {
            code: 126,
            message: format!("exec: \"{shown}\": {}", strip_os_error(&e)),
        },
    }
}

/// "permission denied" rather than "Permission denied (os error 13)".
fn strip_os_error(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// Every signal back to its default action (what we ignored, like SIGPIPE,
/// would otherwise stay ignored across execve), none blocked.
fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting the default disposition; invalid numbers just fail.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    unblock_all_signals();
}

/// `--init`: fork the program and stay as PID 1, reaping every child and
/// passing signals on to the program; exit as it exits (128+N for a signal,
/// like tini).
fn mini_init(
    chan: &Channel,
    program: &CString,
    argv: &[CString],
    envp: &[CString],
) -> Result<i32, InitError> {
    // SAFETY: sigset_t is plain data.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    // SAFETY: fork in a single-threaded process.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(InitError::setup(format!(
            "fork: {}",
            io::Error::last_os_error()
        )));
    }
    if child == 0 {
        reset_signals();
        let e = exec(program, argv, envp);
        let _ = chan.send_json(
            &Message::Error {
                code: e.code,
                message: e.message,
            },
            &[],
        );
        // SAFETY: leaving the forked child without running destructors.
        unsafe { libc::_exit(e.code) }
    }
    // Our copy of the socket must go, so the caller sees EOF at the child's
    // exec: put /dev/null in its place (`chan` keeps owning fd 3).
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 onto fd 3, which `chan` owns and no longer uses.
        unsafe {
            libc::dup2(null.as_raw_fd(), CHANNEL_FD);
        }
    }
    loop {
        // SAFETY: siginfo_t is plain data; sigwaitinfo fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for any signal in the full mask.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: reaping any child without blocking.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    if libc::WIFEXITED(status) {
                        return Ok(libc::WEXITSTATUS(status));
                    }
                    if libc::WIFSIGNALED(status) {
                        return Ok(128 + libc::WTERMSIG(status));
                    }
                }
            }
        } else {
            // SAFETY: forwarding a signal to our child.
            unsafe {
                libc::kill(child, sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> ExecUser {
        ExecUser {
            uid: 1000,
            gid: 1000,
            groups: vec![],
            home: "/home/app".into(),
        }
    }

    #[test]
    fn home_comes_from_passwd_unless_set() {
        let env = environment(&["PATH=/bin".into()], &user());
        assert_eq!(env, vec!["PATH=/bin".to_string(), "HOME=/home/app".into()]);
        let env = environment(&["HOME=/x".into()], &user());
        assert_eq!(env, vec!["HOME=/x".to_string()]);
    }

    #[test]
    fn lookup_follows_path_and_reports_127() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let sh = find_program("sh", &env).unwrap();
        assert!(sh.to_str().unwrap().ends_with("/sh"));
        let e = find_program("surely-not-a-program", &env).unwrap_err();
        assert_eq!(e.code, 127);
        assert_eq!(
            e.message,
            "exec: \"surely-not-a-program\": executable file not found in $PATH"
        );
        assert_eq!(find_program("./x", &env).unwrap().to_str().unwrap(), "./x");
    }

    #[test]
    fn default_path_when_env_has_none() {
        assert_eq!(search_path(&[]), DEFAULT_PATH);
        assert_eq!(search_path(&["PATH=/a".into(), "PATH=/b".into()]), "/b");
    }

    #[test]
    fn rlimit_names() {
        assert_eq!(rlimit_resource("nofile"), Some(libc::RLIMIT_NOFILE));
        assert_eq!(rlimit_resource("RLIMIT_NPROC"), Some(libc::RLIMIT_NPROC));
        assert_eq!(rlimit_resource("bogus"), None);
    }

    #[test]
    fn exec_failures_map_to_dockers_codes() {
        let missing = CString::new("/definitely/not/here").unwrap();
        let e = exec(&missing, std::slice::from_ref(&missing), &[]);
        assert_eq!(e.code, 127);
        let dir = CString::new("/").unwrap();
        let e = exec(&dir, std::slice::from_ref(&dir), &[]);
        assert_eq!(e.code, 126);
        assert!(e.message.ends_with("permission denied"), "{}", e.message);
    }
}
