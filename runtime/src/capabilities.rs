//! Linux capabilities: names and numbers, Docker's default set, `--cap-add`
//! and `--cap-drop`, and applying a set to the calling process (bounding set
//! first, then the permitted/effective/inheritable triple, ambient cleared).

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

/// A capability by number (`CAP_CHOWN` = 0, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(pub u8);

/// Names by number, as in linux/capability.h (0 ..= CAP_CHECKPOINT_RESTORE).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// moby's default capability set (oci/caps/defaults.go): the 14 a container gets.
pub const DOCKER_DEFAULTS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("unknown capability {0:?}")]
    Unknown(String),
    #[error("{what}")]
    Kernel {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Capability {
    /// Parses `CAP_NET_ADMIN`, `NET_ADMIN` or `net_admin`.
    pub fn parse(name: &str) -> Result<Capability, CapabilityError> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        NAMES
            .iter()
            .position(|n| *n == bare)
            .and_then(|i| u8::try_from(i).ok())
            .map(Capability)
            .ok_or_else(|| CapabilityError::Unknown(name.to_string()))
    }

    /// Every capability this crate knows by name.
    pub fn all() -> Vec<Capability> {
        (0..NAMES.len())
            .filter_map(|i| u8::try_from(i).ok())
            .map(Capability)
            .collect()
    }

    pub fn name(self) -> String {
        match NAMES.get(usize::from(self.0)) {
            Some(n) => format!("CAP_{n}"),
            None => format!("CAP_{}", self.0),
        }
    }

    fn bit(self) -> u64 {
        1u64 << self.0
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(n) = s.strip_prefix("CAP_").and_then(|n| n.parse::<u8>().ok()) {
            return Ok(Capability(n));
        }
        Capability::parse(&s).map_err(serde::de::Error::custom)
    }
}

pub fn docker_default_capabilities() -> Vec<Capability> {
    DOCKER_DEFAULTS
        .iter()
        .filter_map(|n| Capability::parse(n).ok())
        .collect()
}

/// Docker's rule for `--cap-add`/`--cap-drop` over the defaults: `ALL` in
/// drop empties the set before adds; `ALL` in add gives every capability.
pub fn adjust(
    base: &[Capability],
    add: &[String],
    drop: &[String],
) -> Result<Vec<Capability>, CapabilityError> {
    let is_all = |s: &String| s.eq_ignore_ascii_case("all");
    let mut set: Vec<Capability> = if add.iter().any(is_all) {
        Capability::all()
    } else if drop.iter().any(is_all) {
        Vec::new()
    } else {
        base.to_vec()
    };
    if !add.iter().any(is_all) {
        for name in add {
            let c = Capability::parse(name)?;
            if !set.contains(&c) {
                set.push(c);
            }
        }
    }
    for name in drop.iter().filter(|s| !is_all(s)) {
        let c = Capability::parse(name)?;
        set.retain(|x| *x != c);
    }
    set.sort();
    Ok(set)
}

/// The set as the bit mask /proc/PID/status shows (`CapEff: 00000000a80425fb`).
pub fn mask(set: &[Capability]) -> u64 {
    set.iter().fold(0, |m, c| m | c.bit())
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drops every capability not in `keep` from the bounding set. Needs
/// CAP_SETPCAP, so it runs before the process changes user.
pub fn drop_bounding(keep: &[Capability]) -> Result<(), CapabilityError> {
    let keep = mask(keep);
    for n in 0..=last_cap() {
        if keep & Capability(n).bit() != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(n), 0, 0, 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            // EINVAL: the kernel does not know this one.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(CapabilityError::Kernel {
                    what: "dropping from the bounding set",
                    source: e,
                });
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets permitted and effective to `set`, inheritable empty, and clears the
/// ambient set.
pub fn apply(set: &[Capability]) -> Result<(), CapabilityError> {
    // Only what we hold can be kept: a host that withholds some capability
    // (this project's CI machine has no CAP_SYS_RESOURCE) still runs
    // --privileged containers, with everything it has.
    let m = mask(set) & permitted()?;
    let low = (m & 0xffff_ffff) as u32;
    let high = (m >> 32) as u32;
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        CapData {
            effective: high,
            permitted: high,
            inheritable: 0,
        },
    ];
    // SAFETY: header and data are the layout capset(2) expects (version 3: two data structs).
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        return Err(CapabilityError::Kernel {
            what: "capset",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(CapabilityError::Kernel {
                what: "clearing the ambient set",
                source: e,
            });
        }
    }
    Ok(())
}

/// The calling thread's permitted set.
pub fn permitted() -> Result<u64, CapabilityError> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills two data structs for version 3.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if r != 0 {
        return Err(CapabilityError::Kernel {
            what: "capget",
            source: io::Error::last_os_error(),
        });
    }
    Ok(u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_mask_is_the_known_value() {
        // What `docker run busybox grep CapEff /proc/self/status` prints.
        assert_eq!(mask(&docker_default_capabilities()), 0xa80425fb);
    }

    #[test]
    fn parse_accepts_docker_spellings() {
        assert_eq!(Capability::parse("CAP_NET_ADMIN").unwrap(), Capability(12));
        assert_eq!(Capability::parse("net_admin").unwrap(), Capability(12));
        assert_eq!(
            Capability::parse("SYS_ADMIN").unwrap().name(),
            "CAP_SYS_ADMIN"
        );
        assert!(Capability::parse("NOPE").is_err());
    }

    #[test]
    fn add_and_drop_follow_docker() {
        let base = docker_default_capabilities();
        let s = adjust(&base, &["NET_ADMIN".into()], &["chown".into()]).unwrap();
        assert!(s.contains(&Capability(12)));
        assert!(!s.contains(&Capability(0)));
        assert_eq!(s.len(), 14);
        let only = adjust(&base, &["KILL".into()], &["ALL".into()]).unwrap();
        assert_eq!(only, vec![Capability(5)]);
        let all = adjust(&base, &["ALL".into()], &["MKNOD".into()]).unwrap();
        assert_eq!(all.len(), Capability::all().len() - 1);
    }

    #[test]
    fn serde_uses_names() {
        let v = serde_json::to_string(&vec![Capability(0), Capability(21)]).unwrap();
        assert_eq!(v, r#"["CAP_CHOWN","CAP_SYS_ADMIN"]"#);
        let back: Vec<Capability> = serde_json::from_str(&v).unwrap();
        assert_eq!(back, vec![Capability(0), Capability(21)]);
    }
}
