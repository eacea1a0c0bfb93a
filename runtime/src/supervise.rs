//! Staying attached to a running container: one poll loop over the
//! container's pidfd, a signalfd of the signals to forward, its terminal or
//! output pipes, and the caller's stdin. SIGINT/SIGTERM/SIGQUIT are passed on
//! and start the stop timeout, after which the container gets SIGKILL;
//! SIGWINCH resizes the container's terminal.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::Error;
use crate::process::{Container, Exit};
use crate::tty;

/// Signals passed on to the container.
const FORWARDED: [i32; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];
/// Signals that ask the container to stop (and start the stop timeout).
const STOPPING: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT];
/// How long output is still read after the process has exited.
const DRAIN: Duration = Duration::from_secs(2);

/// The forwarded signals, blocked in the calling thread and readable from a
/// signalfd. Create it before starting threads (they inherit the mask) and
/// before [`crate::spawn`], so that no signal is lost in between.
pub struct Signals {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl Signals {
    pub fn block() -> io::Result<Signals> {
        // SAFETY: sigset_t is plain data; the calls fill and apply masks.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARDED {
                libc::sigaddset(&mut set, s);
            }
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                let e = io::Error::last_os_error();
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                return Err(e);
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
                old,
            })
        }
    }

    /// The next pending signal, if any.
    fn next(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reading one struct from the signalfd.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        (n == size as isize).then_some(info.ssi_signo as i32)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // Anything still pending would hit berth's default actions on unblock.
        while self.next().is_some() {}
        // SAFETY: restores the mask saved in block().
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What to attach to.
pub struct Attach<'a> {
    pub signals: Option<&'a Signals>,
    /// The container's terminal (its master end).
    pub tty: Option<OwnedFd>,
    /// Copy the caller's stdin into the terminal.
    pub stdin_to_tty: bool,
    /// Read ends of the process's stdout/stderr pipes, when output is captured.
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// Time between the first stopping signal and SIGKILL.
    pub stop_timeout: Duration,
}

fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // A File view of a descriptor we only borrow.
    let mut f = std::mem::ManuallyDrop::new(
        // SAFETY: the descriptor stays open; ManuallyDrop keeps File from closing it.
        unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) },
    );
    f.read(buf)
}

fn write_all(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    let mut f = std::mem::ManuallyDrop::new(
        // SAFETY: as in read_some.
        unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) },
    );
    f.write_all(data)
}

/// Runs the loop until the process has exited and its output is drained;
/// `output` gets everything the process writes (terminal output as Stdout).
pub fn attach(
    container: &mut Container,
    mut a: Attach<'_>,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Exit, Error> {
    let mut exit: Option<Exit> = None;
    let mut drain_until: Option<Instant> = None;
    let mut kill_at: Option<Instant> = None;
    let mut stdin_open = a.stdin_to_tty && a.tty.is_some();
    let mut buf = vec![0u8; 64 * 1024];
    if let (Some(t), true) = (&a.tty, a.stdin_to_tty) {
        if let Some(size) = tty::get_winsize(io::stdin().as_fd()) {
            let _ = tty::set_winsize(t.as_fd(), size);
        }
    }
    loop {
        let outputs_open = a.tty.is_some() || a.stdout.is_some() || a.stderr.is_some();
        if exit.is_some() && !outputs_open {
            break;
        }
        let now = Instant::now();
        if let Some(d) = drain_until
            && now >= d
        {
            break;
        }
        if let Some(k) = kill_at
            && now >= k
        {
            container.signal(libc::SIGKILL)?;
            kill_at = None;
        }

        // Poll set: (fd, which).
        #[derive(Clone, Copy, PartialEq)]
        enum Src {
            Pid,
            Sig,
            Tty,
            Stdin,
            Out,
            Err,
        }
        let mut srcs: Vec<(i32, Src)> = Vec::with_capacity(6);
        if exit.is_none() {
            srcs.push((container.pidfd().as_raw_fd(), Src::Pid));
        }
        if let Some(s) = a.signals {
            srcs.push((s.fd.as_raw_fd(), Src::Sig));
        }
        if let Some(t) = &a.tty {
            srcs.push((t.as_raw_fd(), Src::Tty));
        }
        if stdin_open && exit.is_none() {
            srcs.push((0, Src::Stdin));
        }
        if let Some(o) = &a.stdout {
            srcs.push((o.as_raw_fd(), Src::Out));
        }
        if let Some(e) = &a.stderr {
            srcs.push((e.as_raw_fd(), Src::Err));
        }
        let mut pfds: Vec<libc::pollfd> = srcs
            .iter()
            .map(|(fd, _)| libc::pollfd {
                fd: *fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let deadline = [drain_until, kill_at].into_iter().flatten().min();
        let timeout = match deadline {
            Some(d) => {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32
                    + 1
            }
            None => -1,
        };
        // SAFETY: pfds is a valid array of pollfd.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::Io {
                what: "waiting for the container",
                source: e,
            });
        }
        for (p, (_, src)) in pfds.iter().zip(srcs.iter()) {
            if p.revents == 0 {
                continue;
            }
            match src {
                Src::Pid => {
                    exit = container.try_wait()?;
                    if exit.is_some() {
                        drain_until = Some(Instant::now() + DRAIN);
                        kill_at = None;
                    }
                }
                Src::Sig => {
                    while let Some(sig) = a.signals.and_then(Signals::next) {
                        if exit.is_some() {
                            continue;
                        }
                        if sig == libc::SIGWINCH {
                            if let (Some(t), Some(size)) =
                                (&a.tty, tty::get_winsize(io::stdin().as_fd()))
                            {
                                let _ = tty::set_winsize(t.as_fd(), size);
                            }
                            continue;
                        }
                        container.signal(sig)?;
                        if STOPPING.contains(&sig) && kill_at.is_none() {
                            kill_at = Some(Instant::now() + a.stop_timeout);
                        }
                    }
                }
                Src::Tty => {
                    let done = match a.tty.as_ref().map(|t| read_some(t.as_fd(), &mut buf)) {
                        Some(Ok(0)) | Some(Err(_)) | None => true,
                        Some(Ok(n)) => {
                            output(Stream::Stdout, &buf[..n]);
                            false
                        }
                    };
                    if done {
                        a.tty = None;
                    }
                }
                Src::Stdin => match read_some(io::stdin().as_fd(), &mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(n) => {
                        if let Some(t) = &a.tty
                            && write_all(t.as_fd(), &buf[..n]).is_err()
                        {
                            stdin_open = false;
                        }
                    }
                },
                Src::Out | Src::Err => {
                    let (slot, stream) = if *src == Src::Out {
                        (&mut a.stdout, Stream::Stdout)
                    } else {
                        (&mut a.stderr, Stream::Stderr)
                    };
                    let done = match slot.as_ref().map(|f| read_some(f.as_fd(), &mut buf)) {
                        Some(Ok(0)) | Some(Err(_)) | None => true,
                        Some(Ok(n)) => {
                            output(stream, &buf[..n]);
                            false
                        }
                    };
                    if done {
                        *slot = None;
                    }
                }
            }
        }
    }
    match exit {
        Some(e) => Ok(e),
        None => container.wait(),
    }
}
