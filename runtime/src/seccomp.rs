//! The default seccomp filter: the equivalent of Docker's default profile
//! (moby's profiles/seccomp/default.json) for the process's capability set,
//! compiled to classic BPF here, without libseccomp:
//!
//! - Docker's allowlist of ordinary system calls (ptrace and process_vm_*
//!   included, as Docker allows them on kernels >= 4.8); anything else fails
//!   with EPERM;
//! - `personality` only with the values Docker allows (0, 8, 0x20000,
//!   0x20008, 0xffffffff); `socket` for every family but AF_VSOCK;
//! - `clone` only without namespace flags, and `clone3` failing with ENOSYS
//!   so that libcs fall back to `clone` (Docker's rules without CAP_SYS_ADMIN);
//! - the system calls Docker's profile unlocks per capability (chroot with
//!   CAP_SYS_CHROOT, mount/unshare/setns/... with CAP_SYS_ADMIN, ...) when the
//!   process's capability set has them;
//! - x32 system calls are refused (EPERM) and other architectures' (i386) kill
//!   the process, where Docker's profile allows their equivalents.
//!
//! Why not `seccompiler`'s rule compiler: it emits a linear chain of four
//! instructions per system call (1,525 for this profile), which the kernel
//! takes 1.2 ms to check and JIT at every container start, and its installer
//! always sets no_new_privs. Here the allowlist becomes a binary search over
//! ranges of system call numbers ([`compile`]: about 200 instructions, a dozen
//! executed per call); the unit tests run every program through a BPF
//! interpreter and compare it with [`Policy::decide`].
//!
//! The filter is built for x86_64 only; elsewhere [`build`] returns
//! [`SeccompError::Unsupported`] and the caller runs unconfined, with a warning.

use std::collections::BTreeSet;
use std::io;

use crate::capabilities::Capability;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("installing the seccomp filter")]
    Install(#[source] io::Error),
    #[error("the seccomp filter has {0} instructions, more than the kernel takes")]
    TooLarge(usize),
    #[error("the default seccomp filter is not available on this architecture")]
    Unsupported,
}

#[cfg(target_arch = "x86_64")]
const ALLOWED: &[(&str, i64)] = &[
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
    ("access", libc::SYS_access),
    ("adjtimex", libc::SYS_adjtimex),
    ("alarm", libc::SYS_alarm),
    ("bind", libc::SYS_bind),
    ("brk", libc::SYS_brk),
    ("capget", libc::SYS_capget),
    ("capset", libc::SYS_capset),
    ("chdir", libc::SYS_chdir),
    ("chmod", libc::SYS_chmod),
    ("chown", libc::SYS_chown),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_getres", libc::SYS_clock_getres),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("close", libc::SYS_close),
    ("close_range", libc::SYS_close_range),
    ("connect", libc::SYS_connect),
    ("copy_file_range", libc::SYS_copy_file_range),
    ("creat", libc::SYS_creat),
    ("dup", libc::SYS_dup),
    ("dup2", libc::SYS_dup2),
    ("dup3", libc::SYS_dup3),
    ("epoll_create", libc::SYS_epoll_create),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_ctl_old", libc::SYS_epoll_ctl_old),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("epoll_wait_old", libc::SYS_epoll_wait_old),
    ("eventfd", libc::SYS_eventfd),
    ("eventfd2", libc::SYS_eventfd2),
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("fadvise64", libc::SYS_fadvise64),
    ("fallocate", libc::SYS_fallocate),
    ("fanotify_mark", libc::SYS_fanotify_mark),
    ("fchdir", libc::SYS_fchdir),
    ("fchmod", libc::SYS_fchmod),
    ("fchmodat", libc::SYS_fchmodat),
    ("fchown", libc::SYS_fchown),
    ("fchownat", libc::SYS_fchownat),
    ("fcntl", libc::SYS_fcntl),
    ("fdatasync", libc::SYS_fdatasync),
    ("fgetxattr", libc::SYS_fgetxattr),
    ("flistxattr", libc::SYS_flistxattr),
    ("flock", libc::SYS_flock),
    ("fork", libc::SYS_fork),
    ("fremovexattr", libc::SYS_fremovexattr),
    ("fsetxattr", libc::SYS_fsetxattr),
    ("fstat", libc::SYS_fstat),
    ("fstatfs", libc::SYS_fstatfs),
    ("fsync", libc::SYS_fsync),
    ("ftruncate", libc::SYS_ftruncate),
    ("futex", libc::SYS_futex),
    ("futex_waitv", libc::SYS_futex_waitv),
    ("futimesat", libc::SYS_futimesat),
    ("getcpu", libc::SYS_getcpu),
    ("getcwd", libc::SYS_getcwd),
    ("getdents", libc::SYS_getdents),
    ("getdents64", libc::SYS_getdents64),
    ("getegid", libc::SYS_getegid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getgroups", libc::SYS_getgroups),
    ("getitimer", libc::SYS_getitimer),
    ("getpeername", libc::SYS_getpeername),
    ("getpgid", libc::SYS_getpgid),
    ("getpgrp", libc::SYS_getpgrp),
    ("getpid", libc::SYS_getpid),
    ("getppid", libc::SYS_getppid),
    ("getpriority", libc::SYS_getpriority),
    ("getrandom", libc::SYS_getrandom),
    ("getresgid", libc::SYS_getresgid),
    ("getresuid", libc::SYS_getresuid),
    ("getrlimit", libc::SYS_getrlimit),
    ("get_robust_list", libc::SYS_get_robust_list),
    ("getrusage", libc::SYS_getrusage),
    ("getsid", libc::SYS_getsid),
    ("getsockname", libc::SYS_getsockname),
    ("getsockopt", libc::SYS_getsockopt),
    ("get_thread_area", libc::SYS_get_thread_area),
    ("gettid", libc::SYS_gettid),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getuid", libc::SYS_getuid),
    ("getxattr", libc::SYS_getxattr),
    ("inotify_add_watch", libc::SYS_inotify_add_watch),
    ("inotify_init", libc::SYS_inotify_init),
    ("inotify_init1", libc::SYS_inotify_init1),
    ("inotify_rm_watch", libc::SYS_inotify_rm_watch),
    ("io_cancel", libc::SYS_io_cancel),
    ("ioctl", libc::SYS_ioctl),
    ("io_destroy", libc::SYS_io_destroy),
    ("io_getevents", libc::SYS_io_getevents),
    ("ioprio_get", libc::SYS_ioprio_get),
    ("ioprio_set", libc::SYS_ioprio_set),
    ("io_setup", libc::SYS_io_setup),
    ("io_submit", libc::SYS_io_submit),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("kill", libc::SYS_kill),
    ("landlock_add_rule", libc::SYS_landlock_add_rule),
    ("landlock_create_ruleset", libc::SYS_landlock_create_ruleset),
    ("landlock_restrict_self", libc::SYS_landlock_restrict_self),
    ("lchown", libc::SYS_lchown),
    ("lgetxattr", libc::SYS_lgetxattr),
    ("link", libc::SYS_link),
    ("linkat", libc::SYS_linkat),
    ("listen", libc::SYS_listen),
    ("listxattr", libc::SYS_listxattr),
    ("llistxattr", libc::SYS_llistxattr),
    ("lremovexattr", libc::SYS_lremovexattr),
    ("lseek", libc::SYS_lseek),
    ("lsetxattr", libc::SYS_lsetxattr),
    ("lstat", libc::SYS_lstat),
    ("madvise", libc::SYS_madvise),
    ("membarrier", libc::SYS_membarrier),
    ("memfd_create", libc::SYS_memfd_create),
    ("memfd_secret", libc::SYS_memfd_secret),
    ("mincore", libc::SYS_mincore),
    ("mkdir", libc::SYS_mkdir),
    ("mkdirat", libc::SYS_mkdirat),
    ("mknod", libc::SYS_mknod),
    ("mknodat", libc::SYS_mknodat),
    ("mlock", libc::SYS_mlock),
    ("mlock2", libc::SYS_mlock2),
    ("mlockall", libc::SYS_mlockall),
    ("mmap", libc::SYS_mmap),
    ("mprotect", libc::SYS_mprotect),
    ("mq_getsetattr", libc::SYS_mq_getsetattr),
    ("mq_notify", libc::SYS_mq_notify),
    ("mq_open", libc::SYS_mq_open),
    ("mq_timedreceive", libc::SYS_mq_timedreceive),
    ("mq_timedsend", libc::SYS_mq_timedsend),
    ("mq_unlink", libc::SYS_mq_unlink),
    ("mremap", libc::SYS_mremap),
    ("msgctl", libc::SYS_msgctl),
    ("msgget", libc::SYS_msgget),
    ("msgrcv", libc::SYS_msgrcv),
    ("msgsnd", libc::SYS_msgsnd),
    ("msync", libc::SYS_msync),
    ("munlock", libc::SYS_munlock),
    ("munlockall", libc::SYS_munlockall),
    ("munmap", libc::SYS_munmap),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nanosleep", libc::SYS_nanosleep),
    ("newfstatat", libc::SYS_newfstatat),
    ("open", libc::SYS_open),
    ("openat", libc::SYS_openat),
    ("openat2", libc::SYS_openat2),
    ("pause", libc::SYS_pause),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
    ("pipe", libc::SYS_pipe),
    ("pipe2", libc::SYS_pipe2),
    ("pkey_alloc", libc::SYS_pkey_alloc),
    ("pkey_free", libc::SYS_pkey_free),
    ("pkey_mprotect", libc::SYS_pkey_mprotect),
    ("poll", libc::SYS_poll),
    ("ppoll", libc::SYS_ppoll),
    ("prctl", libc::SYS_prctl),
    ("pread64", libc::SYS_pread64),
    ("preadv", libc::SYS_preadv),
    ("preadv2", libc::SYS_preadv2),
    ("prlimit64", libc::SYS_prlimit64),
    ("process_mrelease", libc::SYS_process_mrelease),
    ("pselect6", libc::SYS_pselect6),
    ("pwrite64", libc::SYS_pwrite64),
    ("pwritev", libc::SYS_pwritev),
    ("pwritev2", libc::SYS_pwritev2),
    ("read", libc::SYS_read),
    ("readahead", libc::SYS_readahead),
    ("readlink", libc::SYS_readlink),
    ("readlinkat", libc::SYS_readlinkat),
    ("readv", libc::SYS_readv),
    ("recvfrom", libc::SYS_recvfrom),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("remap_file_pages", libc::SYS_remap_file_pages),
    ("removexattr", libc::SYS_removexattr),
    ("rename", libc::SYS_rename),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("rmdir", libc::SYS_rmdir),
    ("rseq", libc::SYS_rseq),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigpending", libc::SYS_rt_sigpending),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("rt_sigsuspend", libc::SYS_rt_sigsuspend),
    ("rt_sigtimedwait", libc::SYS_rt_sigtimedwait),
    ("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("sched_getattr", libc::SYS_sched_getattr),
    ("sched_getparam", libc::SYS_sched_getparam),
    ("sched_get_priority_max", libc::SYS_sched_get_priority_max),
    ("sched_get_priority_min", libc::SYS_sched_get_priority_min),
    ("sched_getscheduler", libc::SYS_sched_getscheduler),
    ("sched_rr_get_interval", libc::SYS_sched_rr_get_interval),
    ("sched_setaffinity", libc::SYS_sched_setaffinity),
    ("sched_setattr", libc::SYS_sched_setattr),
    ("sched_setparam", libc::SYS_sched_setparam),
    ("sched_setscheduler", libc::SYS_sched_setscheduler),
    ("sched_yield", libc::SYS_sched_yield),
    ("seccomp", libc::SYS_seccomp),
    ("select", libc::SYS_select),
    ("semctl", libc::SYS_semctl),
    ("semget", libc::SYS_semget),
    ("semop", libc::SYS_semop),
    ("semtimedop", libc::SYS_semtimedop),
    ("sendfile", libc::SYS_sendfile),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("sendmsg", libc::SYS_sendmsg),
    ("sendto", libc::SYS_sendto),
    ("setfsgid", libc::SYS_setfsgid),
    ("setfsuid", libc::SYS_setfsuid),
    ("setgid", libc::SYS_setgid),
    ("setgroups", libc::SYS_setgroups),
    ("setitimer", libc::SYS_setitimer),
    ("setpgid", libc::SYS_setpgid),
    ("setpriority", libc::SYS_setpriority),
    ("setregid", libc::SYS_setregid),
    ("setresgid", libc::SYS_setresgid),
    ("setresuid", libc::SYS_setresuid),
    ("setreuid", libc::SYS_setreuid),
    ("setrlimit", libc::SYS_setrlimit),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("setsid", libc::SYS_setsid),
    ("setsockopt", libc::SYS_setsockopt),
    ("set_thread_area", libc::SYS_set_thread_area),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("setuid", libc::SYS_setuid),
    ("setxattr", libc::SYS_setxattr),
    ("shmat", libc::SYS_shmat),
    ("shmctl", libc::SYS_shmctl),
    ("shmdt", libc::SYS_shmdt),
    ("shmget", libc::SYS_shmget),
    ("shutdown", libc::SYS_shutdown),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("signalfd", libc::SYS_signalfd),
    ("signalfd4", libc::SYS_signalfd4),
    ("socketpair", libc::SYS_socketpair),
    ("splice", libc::SYS_splice),
    ("stat", libc::SYS_stat),
    ("statfs", libc::SYS_statfs),
    ("statx", libc::SYS_statx),
    ("symlink", libc::SYS_symlink),
    ("symlinkat", libc::SYS_symlinkat),
    ("sync", libc::SYS_sync),
    ("sync_file_range", libc::SYS_sync_file_range),
    ("syncfs", libc::SYS_syncfs),
    ("sysinfo", libc::SYS_sysinfo),
    ("tee", libc::SYS_tee),
    ("tgkill", libc::SYS_tgkill),
    ("time", libc::SYS_time),
    ("timer_create", libc::SYS_timer_create),
    ("timer_delete", libc::SYS_timer_delete),
    ("timer_getoverrun", libc::SYS_timer_getoverrun),
    ("timer_gettime", libc::SYS_timer_gettime),
    ("timer_settime", libc::SYS_timer_settime),
    ("timerfd_create", libc::SYS_timerfd_create),
    ("timerfd_gettime", libc::SYS_timerfd_gettime),
    ("timerfd_settime", libc::SYS_timerfd_settime),
    ("times", libc::SYS_times),
    ("tkill", libc::SYS_tkill),
    ("truncate", libc::SYS_truncate),
    ("umask", libc::SYS_umask),
    ("uname", libc::SYS_uname),
    ("unlink", libc::SYS_unlink),
    ("unlinkat", libc::SYS_unlinkat),
    ("utime", libc::SYS_utime),
    ("utimensat", libc::SYS_utimensat),
    ("utimes", libc::SYS_utimes),
    ("vfork", libc::SYS_vfork),
    ("vmsplice", libc::SYS_vmsplice),
    ("wait4", libc::SYS_wait4),
    ("waitid", libc::SYS_waitid),
    ("write", libc::SYS_write),
    ("writev", libc::SYS_writev),
    ("arch_prctl", libc::SYS_arch_prctl),
    ("modify_ldt", libc::SYS_modify_ldt),
    // Missing from the libc crate's table.
    ("io_pgetevents", 333),
];

/// System calls Docker's profile allows only with a capability.
#[cfg(target_arch = "x86_64")]
const BY_CAPABILITY: &[(&str, &[i64])] = &[
    ("DAC_READ_SEARCH", &[libc::SYS_open_by_handle_at]),
    (
        "SYS_ADMIN",
        &[
            libc::SYS_bpf,
            libc::SYS_fanotify_init,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fsopen,
            libc::SYS_fspick,
            libc::SYS_lookup_dcookie,
            libc::SYS_mount,
            libc::SYS_mount_setattr,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_perf_event_open,
            libc::SYS_quotactl,
            libc::SYS_quotactl_fd,
            libc::SYS_setdomainname,
            libc::SYS_sethostname,
            libc::SYS_setns,
            libc::SYS_syslog,
            libc::SYS_umount2,
            libc::SYS_unshare,
        ],
    ),
    ("SYS_BOOT", &[libc::SYS_reboot]),
    ("SYS_CHROOT", &[libc::SYS_chroot]),
    (
        "SYS_MODULE",
        &[
            libc::SYS_delete_module,
            libc::SYS_init_module,
            libc::SYS_finit_module,
        ],
    ),
    ("SYS_PACCT", &[libc::SYS_acct]),
    (
        "SYS_PTRACE",
        &[
            libc::SYS_kcmp,
            libc::SYS_pidfd_getfd,
            libc::SYS_process_madvise,
        ],
    ),
    ("SYS_RAWIO", &[libc::SYS_iopl, libc::SYS_ioperm]),
    (
        "SYS_TIME",
        &[libc::SYS_settimeofday, libc::SYS_clock_settime],
    ),
    ("SYS_TTY_CONFIG", &[libc::SYS_vhangup]),
    (
        "SYS_NICE",
        &[
            libc::SYS_get_mempolicy,
            libc::SYS_mbind,
            libc::SYS_set_mempolicy,
            libc::SYS_set_mempolicy_home_node,
        ],
    ),
    ("SYSLOG", &[libc::SYS_syslog]),
    ("BPF", &[libc::SYS_bpf]),
    ("PERFMON", &[libc::SYS_perf_event_open]),
];

/// Namespace flags `clone` may not carry without CAP_SYS_ADMIN
/// (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET).
const CLONE_NAMESPACE_FLAGS: u32 = 0x7E02_0000;
const AF_VSOCK: u32 = 40;
const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
/// System call numbers with this bit set are the x32 ABI's.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// The kernel's limit on a filter's length.
const BPF_MAXINSNS: usize = 4096;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;

/// What the filter does with one system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u32),
    KillProcess,
}

impl Action {
    fn ret(self) -> u32 {
        match self {
            Action::Allow => RET_ALLOW,
            Action::Errno(e) => RET_ERRNO | (e & 0xffff),
            Action::KillProcess => RET_KILL_PROCESS,
        }
    }
}

/// The profile as data: what [`compile`] turns into BPF and
/// [`Policy::decide`] evaluates directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub arch: u32,
    /// Allowed whatever their arguments.
    pub allow: BTreeSet<u32>,
    pub personality: Option<(u32, Vec<u32>)>,
    pub socket: Option<(u32, u32)>,
    /// clone's number and the flags it may not carry.
    pub clone: Option<(u32, u32)>,
    /// clone3's number, answered with ENOSYS.
    pub clone3_enosys: Option<u32>,
}

fn nr(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Policy {
    /// Docker's default profile for a process with capabilities `caps`.
    #[cfg(target_arch = "x86_64")]
    pub fn docker_default(caps: &[Capability]) -> Policy {
        let has = |name: &str| {
            Capability::parse(name)
                .map(|c| caps.contains(&c))
                .unwrap_or(false)
        };
        let mut allow: BTreeSet<u32> = ALLOWED.iter().map(|(_, n)| nr(*n)).collect();
        for n in [
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
        ] {
            allow.insert(nr(n));
        }
        for (cap, calls) in BY_CAPABILITY {
            if has(cap) {
                allow.extend(calls.iter().map(|n| nr(*n)));
            }
        }
        let admin = has("SYS_ADMIN");
        if admin {
            allow.insert(nr(libc::SYS_clone));
            allow.insert(nr(libc::SYS_clone3));
        }
        Policy {
            arch: AUDIT_ARCH_X86_64,
            allow,
            personality: Some((nr(libc::SYS_personality), PERSONALITIES.to_vec())),
            socket: Some((nr(libc::SYS_socket), AF_VSOCK)),
            clone: (!admin).then_some((nr(libc::SYS_clone), CLONE_NAMESPACE_FLAGS)),
            clone3_enosys: (!admin).then_some(nr(libc::SYS_clone3)),
        }
    }

    /// What the filter must answer for a call (the reference for tests).
    pub fn decide(&self, arch: u32, nr: u32, arg0: u32) -> Action {
        let eperm = Action::Errno(libc::EPERM as u32);
        if arch != self.arch {
            return Action::KillProcess;
        }
        if nr & X32_SYSCALL_BIT != 0 {
            return eperm;
        }
        if let Some((n, values)) = &self.personality
            && nr == *n
        {
            return if values.contains(&arg0) {
                Action::Allow
            } else {
                eperm
            };
        }
        if let Some((n, family)) = self.socket
            && nr == n
        {
            return if arg0 == family { eperm } else { Action::Allow };
        }
        if let Some((n, mask)) = self.clone
            && nr == n
        {
            return if arg0 & mask == 0 {
                Action::Allow
            } else {
                eperm
            };
        }
        if self.clone3_enosys == Some(nr) {
            return Action::Errno(libc::ENOSYS as u32);
        }
        if self.allow.contains(&nr) {
            Action::Allow
        } else {
            eperm
        }
    }
}

// Classic BPF opcodes.
/// BPF_LD | BPF_W | BPF_ABS.
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const JMP_JGE_K: u16 = 0x05 | 0x30;
const JMP_JSET_K: u16 = 0x05 | 0x40;
const RET_K: u16 = 0x06;
/// Offsets in struct seccomp_data.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The low 32 bits of args[0] (little endian).
const DATA_ARG0_LO: u32 = 16;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A special-cased system call's block: `jeq nr` skipping the block when
/// it is another call. Every block ends in a return.
fn guarded(prog: &mut Vec<libc::sock_filter>, nr: u32, block: Vec<libc::sock_filter>) {
    // Blocks are a handful of instructions: the 8-bit offset always fits.
    let skip = u8::try_from(block.len()).unwrap_or(u8::MAX);
    prog.push(jump(JMP_JEQ_K, nr, 0, skip));
    prog.extend(block);
}

/// Ranges of system call numbers with one outcome: (first number, allowed),
/// starting at 0 and ascending.
fn intervals(allow: &BTreeSet<u32>) -> Vec<(u32, bool)> {
    fn set(out: &mut Vec<(u32, bool)>, start: u32, allowed: bool) {
        match out.last_mut() {
            Some(last) if last.0 == start => last.1 = allowed,
            _ => out.push((start, allowed)),
        }
    }
    let mut out: Vec<(u32, bool)> = vec![(0, false)];
    for &n in allow.iter().filter(|n| **n < X32_SYSCALL_BIT) {
        if n == 0 || !allow.contains(&(n - 1)) {
            set(&mut out, n, true);
        }
        if !allow.contains(&(n + 1)) {
            set(&mut out, n + 1, false);
        }
    }
    out.dedup_by(|b, a| a.1 == b.1);
    out
}

/// Emits a binary search over `iv[lo..=hi]` (A holds the number).
fn tree(prog: &mut Vec<libc::sock_filter>, iv: &[(u32, bool)], lo: usize, hi: usize, deny: u32) {
    if lo == hi {
        prog.push(stmt(RET_K, if iv[lo].1 { RET_ALLOW } else { deny }));
        return;
    }
    let mid = (lo + hi).div_ceil(2);
    // A >= start(mid): the `ja` to the right half; else skip it into the left half.
    prog.push(jump(JMP_JGE_K, iv[mid].0, 0, 1));
    let ja_at = prog.len();
    prog.push(stmt(JMP_JA, 0));
    let left_start = prog.len();
    tree(prog, iv, lo, mid - 1, deny);
    prog[ja_at].k = u32::try_from(prog.len() - left_start).unwrap_or(u32::MAX);
    tree(prog, iv, mid, hi, deny);
}

/// Compiles a policy to a seccomp BPF program.
pub fn compile(p: &Policy) -> Vec<libc::sock_filter> {
    let eperm = Action::Errno(libc::EPERM as u32).ret();
    let mut prog = vec![
        stmt(LD_W_ABS, DATA_ARCH),
        jump(JMP_JEQ_K, p.arch, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, DATA_NR),
        jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, eperm),
    ];
    if let Some((n, values)) = &p.personality {
        let m = values.len();
        let mut block = vec![stmt(LD_W_ABS, DATA_ARG0_LO)];
        for (i, v) in values.iter().enumerate() {
            // Equal: jump over the remaining tests and the EPERM to ALLOW.
            let jt = u8::try_from(m - i).unwrap_or(u8::MAX);
            block.push(jump(JMP_JEQ_K, *v, jt, 0));
        }
        block.push(stmt(RET_K, eperm));
        block.push(stmt(RET_K, RET_ALLOW));
        guarded(&mut prog, *n, block);
    }
    if let Some((n, family)) = p.socket {
        guarded(
            &mut prog,
            n,
            vec![
                stmt(LD_W_ABS, DATA_ARG0_LO),
                jump(JMP_JEQ_K, family, 0, 1),
                stmt(RET_K, eperm),
                stmt(RET_K, RET_ALLOW),
            ],
        );
    }
    if let Some((n, mask)) = p.clone {
        guarded(
            &mut prog,
            n,
            vec![
                stmt(LD_W_ABS, DATA_ARG0_LO),
                jump(JMP_JSET_K, mask, 0, 1),
                stmt(RET_K, eperm),
                stmt(RET_K, RET_ALLOW),
            ],
        );
    }
    if let Some(n) = p.clone3_enosys {
        guarded(
            &mut prog,
            n,
            vec![stmt(RET_K, Action::Errno(libc::ENOSYS as u32).ret())],
        );
    }
    let iv = intervals(&p.allow);
    tree(&mut prog, &iv, 0, iv.len() - 1, eperm);
    prog
}

/// A compiled filter, ready to install.
#[derive(Debug)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
}

impl Filter {
    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// Installs the filter on the calling thread. Needs no_new_privs or
    /// CAP_SYS_ADMIN (and sets neither).
    pub fn install(&self) -> Result<(), SeccompError> {
        let prog = libc::sock_fprog {
            len: u16::try_from(self.program.len())
                .map_err(|_| SeccompError::TooLarge(self.program.len()))?,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: the kernel copies the program; prog points at live memory.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(SeccompError::Install(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Docker's default filter for a process with capabilities `caps`.
#[cfg(target_arch = "x86_64")]
pub fn build(caps: &[Capability]) -> Result<Filter, SeccompError> {
    let program = compile(&Policy::docker_default(caps));
    if program.len() > BPF_MAXINSNS {
        return Err(SeccompError::TooLarge(program.len()));
    }
    Ok(Filter { program })
}

#[cfg(not(target_arch = "x86_64"))]
pub fn build(_caps: &[Capability]) -> Result<Filter, SeccompError> {
    Err(SeccompError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for what [`compile`] emits.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u32) -> u32 {
        let mut pc = 0usize;
        let mut a: u32 = 0;
        for _ in 0..10_000 {
            let i = prog[pc];
            match i.code {
                LD_W_ABS => {
                    a = match i.k {
                        DATA_NR => nr,
                        DATA_ARCH => arch,
                        DATA_ARG0_LO => arg0,
                        other => panic!("load of offset {other}"),
                    };
                    pc += 1;
                }
                JMP_JA => pc += 1 + i.k as usize,
                JMP_JEQ_K | JMP_JGE_K | JMP_JSET_K => {
                    let t = match i.code {
                        JMP_JEQ_K => a == i.k,
                        JMP_JGE_K => a >= i.k,
                        _ => a & i.k != 0,
                    };
                    pc += 1 + usize::from(if t { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
        panic!("no return")
    }

    fn check(p: &Policy) {
        let prog = compile(p);
        let args = [
            0,
            8,
            0x20000,
            40,
            41,
            0x11,
            0x1000_0000,
            0x0200_0000,
            0xffff_ffff,
        ];
        for nr in (0..1024).chain([X32_SYSCALL_BIT, X32_SYSCALL_BIT + 1, u32::MAX]) {
            for arg0 in args {
                assert_eq!(
                    run(&prog, p.arch, nr, arg0),
                    p.decide(p.arch, nr, arg0).ret(),
                    "nr {nr} arg0 {arg0:#x}"
                );
            }
        }
        assert_eq!(
            run(&prog, 0x4000_0003, 1, 0),
            RET_KILL_PROCESS,
            "i386 is killed"
        );
    }

    #[test]
    fn intervals_cover_runs() {
        let s: BTreeSet<u32> = [0, 1, 2, 5, 7, 8].into_iter().collect();
        assert_eq!(
            intervals(&s),
            vec![
                (0, true),
                (3, false),
                (5, true),
                (6, false),
                (7, true),
                (9, false)
            ]
        );
        let s: BTreeSet<u32> = [3].into_iter().collect();
        assert_eq!(intervals(&s), vec![(0, false), (3, true), (4, false)]);
        assert_eq!(intervals(&BTreeSet::new()), vec![(0, false)]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn program_matches_the_policy_for_every_call() {
        let default = Policy::docker_default(&crate::capabilities::docker_default_capabilities());
        check(&default);
        let mut caps = crate::capabilities::docker_default_capabilities();
        caps.push(Capability::parse("SYS_ADMIN").unwrap());
        check(&Policy::docker_default(&caps));
        check(&Policy::docker_default(&[]));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn dockers_rules() {
        let p = Policy::docker_default(&crate::capabilities::docker_default_capabilities());
        let eperm = Action::Errno(libc::EPERM as u32);
        let x = |n: i64, a: u32| p.decide(AUDIT_ARCH_X86_64, nr(n), a);
        assert_eq!(x(libc::SYS_read, 0), Action::Allow);
        assert_eq!(
            x(libc::SYS_chroot, 0),
            Action::Allow,
            "CAP_SYS_CHROOT is a default"
        );
        assert_eq!(x(libc::SYS_mount, 0), eperm);
        assert_eq!(x(libc::SYS_unshare, 0), eperm);
        assert_eq!(x(libc::SYS_kexec_load, 0), eperm);
        assert_eq!(x(libc::SYS_reboot, 0), eperm);
        assert_eq!(x(libc::SYS_clone3, 0), Action::Errno(libc::ENOSYS as u32));
        assert_eq!(x(libc::SYS_clone, libc::SIGCHLD as u32), Action::Allow);
        assert_eq!(x(libc::SYS_clone, libc::CLONE_NEWUSER as u32), eperm);
        assert_eq!(x(libc::SYS_personality, 8), Action::Allow);
        assert_eq!(x(libc::SYS_personality, 1), eperm);
        assert_eq!(x(libc::SYS_socket, 2), Action::Allow);
        assert_eq!(x(libc::SYS_socket, AF_VSOCK), eperm);
        assert!(ALLOWED.len() > 280, "{}", ALLOWED.len());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn program_is_small() {
        let f = build(&crate::capabilities::docker_default_capabilities()).unwrap();
        assert!(f.len() < 400, "{} instructions", f.len());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn installs_in_a_child() {
        let f = build(&crate::capabilities::docker_default_capabilities()).unwrap();
        // SAFETY: fork in a test; the child only makes system calls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let code = if f.install().is_err() {
                    1
                } else if libc::syscall(libc::SYS_unshare, 0) == 0 {
                    2
                } else if *libc::__errno_location() != libc::EPERM {
                    3
                } else if libc::getpid() <= 0 {
                    4
                } else {
                    0
                };
                libc::_exit(code);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "status {status}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
