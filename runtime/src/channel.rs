//! The socket between the caller and the container's init: length-prefixed
//! JSON frames, optionally carrying file descriptors (SCM_RIGHTS).
//!
//! ```text
//! caller -> init   Bootstrap{spec, cgroup_tasks} (after the id maps are written)
//! init -> caller   Message::Tty + master fd     (with a terminal)
//! init -> caller   Message::Exec                (right before execve)
//! init -> caller   Message::Error{code,message} (setup or execve failed)
//! EOF                                           (execve closed the CLOEXEC socket)
//! ```

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};

/// Frames larger than this are refused (a spec is a few KiB).
const MAX_FRAME: usize = 16 << 20;

/// What the caller sends the init: the spec, and the cgroup v1 `tasks` files
/// the init joins itself by writing "0" (a thread moving itself skips the
/// cgroup_threadgroup_rwsem write lock, whose RCU grace period costs 10-20 ms
/// when the caller writes the pid to cgroup.procs instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub spec: crate::spec::Spec,
    #[serde(default)]
    pub cgroup_tasks: Vec<std::path::PathBuf>,
}

/// What the init tells the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The pseudo-terminal's master end is attached to this frame.
    Tty,
    /// Everything is set up; execve comes next.
    Exec,
    /// Setup or execve failed; the init exits with `code`.
    Error { code: i32, message: String },
}

#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Channel {
    /// A connected pair, both ends close-on-exec.
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(nix_io)?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Takes ownership of an inherited descriptor.
    ///
    /// # Safety
    /// `fd` must be an open socket that nothing else owns.
    pub unsafe fn from_raw(fd: RawFd) -> Channel {
        // SAFETY: guaranteed by the caller.
        Channel {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    pub fn send_json<T: Serialize>(&self, value: &T, fds: &[RawFd]) -> io::Result<()> {
        let body = serde_json::to_vec(value).map_err(io::Error::other)?;
        self.send(&body, fds)
    }

    /// Sends one frame; `fds` ride along with its first bytes.
    pub fn send(&self, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let len = u32::try_from(body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let header = len.to_le_bytes();
        let iov = [IoSlice::new(&header), IoSlice::new(body)];
        let cmsgs = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsgs };
        let sent = loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => break n,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(nix_io(e)),
            }
        };
        let mut whole = Vec::with_capacity(4 + body.len());
        whole.extend_from_slice(&header);
        whole.extend_from_slice(body);
        if sent < whole.len() {
            (&self.fd_file()).write_all(&whole[sent..])?;
        }
        Ok(())
    }

    fn fd_file(&self) -> std::fs::File {
        // A File view of the socket for read/write loops; the dup keeps
        // ownership with self.fd.
        match self.fd.try_clone() {
            Ok(fd) => std::fs::File::from(fd),
            // SAFETY: -1 is never a valid descriptor; reads and writes fail with EBADF.
            Err(_) => unsafe { std::fs::File::from_raw_fd(-1) },
        }
    }

    /// Receives one frame; None at a clean end of stream.
    pub fn recv(&self) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        let mut header = [0u8; 4];
        let mut fds = Vec::new();
        let mut got = 0;
        while got < header.len() {
            let mut cmsg = nix::cmsg_space!([RawFd; 4]);
            let mut iov = [IoSliceMut::new(&mut header[got..])];
            let msg = match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(nix_io(e)),
            };
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        for fd in raw {
                            // SAFETY: the kernel just installed this descriptor for us.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
            }
            let n = msg.bytes;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "channel closed mid-frame",
                ));
            }
            got += n;
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes"),
            ));
        }
        let mut body = vec![0u8; len];
        (&self.fd_file()).read_exact(&mut body)?;
        Ok(Some((body, fds)))
    }

    pub fn recv_json<T: for<'de> Deserialize<'de>>(&self) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
        match self.recv()? {
            None => Ok(None),
            Some((body, fds)) => {
                let v = serde_json::from_slice(&body).map_err(io::Error::other)?;
                Ok(Some((v, fds)))
            }
        }
    }

    /// True when the other end has gone away (without blocking).
    pub fn peer_gone(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        r > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_fds_cross() {
        let (a, b) = Channel::pair().unwrap();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        a.send_json(&Message::Tty, &[devnull.as_raw_fd()]).unwrap();
        a.send_json(
            &Message::Error {
                code: 127,
                message: "x".repeat(100_000),
            },
            &[],
        )
        .unwrap();
        drop(a);
        let (m, fds) = b.recv_json::<Message>().unwrap().unwrap();
        assert_eq!(m, Message::Tty);
        assert_eq!(fds.len(), 1);
        let (m, fds) = b.recv_json::<Message>().unwrap().unwrap();
        assert!(matches!(m, Message::Error { code: 127, ref message } if message.len() == 100_000));
        assert!(fds.is_empty());
        assert!(b.recv().unwrap().is_none());
        assert!(b.peer_gone());
    }
}
