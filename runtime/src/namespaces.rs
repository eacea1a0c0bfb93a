//! Which namespaces a spec asks for, and the part of entering them that
//! happens inside: the cgroup namespace is unshared by the init only after
//! the caller has moved it into its cgroup (so the container sees that cgroup
//! as its root); the hostname is set; loopback is brought up in a new network
//! namespace. The other namespaces are made by clone3 in the caller
//! ([`crate::process`]).

use std::io;

use nix::sched::CloneFlags;

use crate::spec::{Network, Spec};
use crate::syscall::Syscall;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("{what}")]
    Kernel {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The flags clone3 creates the init with (everything but the cgroup namespace).
pub fn clone_flags(spec: &Spec) -> CloneFlags {
    let ns = &spec.namespaces;
    let mut f = CloneFlags::CLONE_NEWNS;
    for (on, flag) in [
        (ns.pid, CloneFlags::CLONE_NEWPID),
        (ns.uts, CloneFlags::CLONE_NEWUTS),
        (ns.ipc, CloneFlags::CLONE_NEWIPC),
        (ns.network == Network::None, CloneFlags::CLONE_NEWNET),
        (ns.user.is_some(), CloneFlags::CLONE_NEWUSER),
    ] {
        if on {
            f |= flag;
        }
    }
    f
}

/// Runs in the init, before the rootfs is set up.
pub fn enter(spec: &Spec, sys: &dyn Syscall) -> Result<(), NamespaceError> {
    let ns = &spec.namespaces;
    if ns.cgroup {
        sys.unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|source| NamespaceError::Kernel {
                what: "creating the cgroup namespace",
                source,
            })?;
    }
    if ns.uts
        && let Some(h) = &spec.hostname
    {
        sys.sethostname(h)
            .map_err(|source| NamespaceError::Kernel {
                what: "setting the hostname",
                source,
            })?;
    }
    if ns.network == Network::None {
        sys.loopback_up().map_err(|source| NamespaceError::Kernel {
            what: "bringing up lo",
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{IdMap, IdMappings};
    use crate::syscall::test::{Call, Recorder};
    use std::path::Path;

    #[test]
    fn defaults_make_dockers_namespaces() {
        let s = Spec::new(Path::new("/r"), vec!["sh".into()]);
        let f = clone_flags(&s);
        for want in [
            CloneFlags::CLONE_NEWNS,
            CloneFlags::CLONE_NEWPID,
            CloneFlags::CLONE_NEWUTS,
            CloneFlags::CLONE_NEWIPC,
            CloneFlags::CLONE_NEWNET,
        ] {
            assert!(f.contains(want), "{want:?}");
        }
        assert!(!f.contains(CloneFlags::CLONE_NEWUSER));
        assert!(
            !f.contains(CloneFlags::CLONE_NEWCGROUP),
            "the init unshares it after joining its cgroup"
        );
    }

    #[test]
    fn host_network_and_user_namespace() {
        let mut s = Spec::new(Path::new("/r"), vec!["sh".into()]);
        s.namespaces.network = Network::Host;
        s.namespaces.user = Some(IdMappings {
            uid: vec![IdMap {
                container: 0,
                host: 100000,
                size: 65536,
            }],
            gid: vec![],
        });
        let f = clone_flags(&s);
        assert!(!f.contains(CloneFlags::CLONE_NEWNET));
        assert!(f.contains(CloneFlags::CLONE_NEWUSER));
    }

    #[test]
    fn enter_sequence() {
        let mut s = Spec::new(Path::new("/r"), vec!["sh".into()]);
        s.hostname = Some("box".into());
        let r = Recorder::new();
        enter(&s, &r).unwrap();
        assert_eq!(
            r.calls(),
            vec![
                Call::Unshare(CloneFlags::CLONE_NEWCGROUP),
                Call::Sethostname("box".into()),
                Call::LoopbackUp,
            ]
        );
        s.namespaces.network = Network::Host;
        s.namespaces.cgroup = false;
        let r = Recorder::new();
        enter(&s, &r).unwrap();
        assert_eq!(r.calls(), vec![Call::Sethostname("box".into())]);
    }
}
