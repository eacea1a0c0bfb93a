//! /etc/hosts, /etc/hostname and /etc/resolv.conf for a container, written to
//! a directory of the caller's and bind-mounted over the image's, as Docker
//! does: with the host's network the host's files are copied; with a private
//! network, hosts has loopback entries and the container's own name.

use std::fs;
use std::io;
use std::path::Path;

use crate::spec::{Mount, Network};

const LOCAL_HOSTS: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// The hosts file: the host's (host network) or loopback entries plus the hostname.
pub fn hosts(network: Network, hostname: &str, host_hosts: Option<&str>) -> String {
    match (network, host_hosts) {
        (Network::Host, Some(h)) => h.to_string(),
        _ => {
            let mut s = LOCAL_HOSTS.to_string();
            if !hostname.is_empty() && hostname != "localhost" {
                s.push_str(&format!("127.0.1.1\t{hostname}\n"));
            }
            s
        }
    }
}

/// resolv.conf: the host's, except that loopback name servers are useless in
/// a private network namespace, where Docker's fallback (Google's) is used.
pub fn resolv_conf(network: Network, host_resolv: &str) -> String {
    if network == Network::Host {
        return host_resolv.to_string();
    }
    let mut kept = Vec::new();
    let mut servers = 0;
    for line in host_resolv.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            if ns.starts_with("127.") || ns == "::1" {
                continue;
            }
            servers += 1;
        }
        kept.push(line);
    }
    let mut s = kept.join("\n");
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    if servers == 0 {
        s.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    s
}

/// Writes `hosts`, `hostname` and `resolv.conf` into `dir` and returns the
/// bind mounts that put them at /etc/hosts, /etc/hostname, /etc/resolv.conf.
pub fn write_files(dir: &Path, network: Network, hostname: &str) -> io::Result<Vec<Mount>> {
    let host_hosts = fs::read_to_string("/etc/hosts").ok();
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let files = [
        ("hosts", hosts(network, hostname, host_hosts.as_deref())),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv_conf(network, &host_resolv)),
    ];
    let mut mounts = Vec::new();
    for (name, content) in files {
        let p = dir.join(name);
        fs::write(&p, content)?;
        mounts.push(Mount::bind(&p, &Path::new("/etc").join(name), false));
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_network_hosts_has_loopback_and_name() {
        let h = hosts(Network::None, "box", Some("10.0.0.1 host\n"));
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("127.0.1.1\tbox\n"));
        assert!(!h.contains("10.0.0.1"));
        assert_eq!(hosts(Network::Host, "box", Some("x\n")), "x\n");
    }

    #[test]
    fn loopback_nameservers_dropped_in_private_network() {
        let r = resolv_conf(Network::None, "search lan\nnameserver 127.0.0.53\n");
        assert_eq!(r, "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        let r = resolv_conf(Network::None, "nameserver 10.1.1.1\n");
        assert_eq!(r, "nameserver 10.1.1.1\n");
        let r = resolv_conf(Network::Host, "nameserver 127.0.0.53\n");
        assert_eq!(r, "nameserver 127.0.0.53\n");
    }

    #[test]
    fn files_and_mounts() {
        let d = tempfile::tempdir().unwrap();
        let m = write_files(d.path(), Network::None, "c1").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].destination, Path::new("/etc/hostname"));
        assert_eq!(
            fs::read_to_string(d.path().join("hostname")).unwrap(),
            "c1\n"
        );
    }
}
