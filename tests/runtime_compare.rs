//! The same checks run by berth and by real OCI runtimes on the same root
//! filesystem: an OCI bundle made from the busybox fixture (its layer
//! extracted, config.json from `runc spec` edited to Docker's settings), run
//! by `runc run` and by `crun run` (inside `unshare -m`, since crun 1.8 refuses
//! this host's hybrid cgroup layout), and by `berth run --rootfs` on the
//! bundle's rootfs. Where the answers should agree, they must.
//!
//! Known, deliberate differences are not compared: runc and crun start the
//! process without a seccomp filter here (the bundle has none) and without
//! Docker's /etc/hosts, /etc/hostname and /etc/resolv.conf bind mounts.

mod common;
mod run_support;

use std::collections::BTreeSet;

use run_support::*;

/// A check's output from each runtime, which must be equal.
struct Compared {
    berth: (i32, String),
    peers: Vec<(Peer, (i32, String))>,
}

fn peers() -> Vec<Peer> {
    let mut v = Vec::new();
    if common::require_tool("runc") {
        v.push(Peer::Runc);
    }
    if common::require_tool("crun") {
        v.push(Peer::Crun);
    }
    v
}

/// Runs `script` (sh -c) under berth (network none, hostname cmp, the
/// bundle's rootfs) and every peer; `normalize` turns stdout into what is compared.
fn compare(
    root: &common::Root,
    bundle: &Bundle,
    script: &str,
    normalize: &dyn Fn(&str) -> String,
) -> Compared {
    let rootfs = bundle.rootfs();
    let (code, out, err) = berth_run3(
        root,
        &[
            "--rm",
            "--network",
            "none",
            "--hostname",
            "cmp",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "/bin/sh",
            "-c",
            script,
        ],
    );
    assert!(code != 125, "berth failed to run {script:?}: {err}");
    let berth = (code, normalize(&out));
    write_config(bundle, &["/bin/sh", "-c", script]);
    let mut results = Vec::new();
    for (i, p) in peers().into_iter().enumerate() {
        let id = format!("berth-cmp-{}-{i}", std::process::id());
        let (code, out, err) = peer_run(p, bundle, &id);
        assert!(
            !err.contains("error") || code != 1 || !out.is_empty(),
            "{p:?} failed on {script:?}: {err}"
        );
        results.push((p, (code, normalize(&out))));
    }
    Compared {
        berth,
        peers: results,
    }
}

fn assert_same(what: &str, c: &Compared) {
    for (p, r) in &c.peers {
        assert_eq!(&c.berth, r, "{what}: berth (left) and {p:?} (right) differ");
    }
}

fn identity(s: &str) -> String {
    s.to_string()
}

#[test]
fn berth_matches_runc_and_crun() {
    let Some(root) = busybox_root() else { return };
    if peers().is_empty() {
        return;
    }
    let bundle = busybox_bundle();

    // PID 1, hostname, user.
    let c = compare(&root, &bundle, "echo $$; hostname; id", &identity);
    assert_eq!(c.berth.1, "1\ncmp\nuid=0(root) gid=0(root)\n");
    assert_same("pid/hostname/id", &c);

    // Capabilities and no_new_privs (seccomp differs by design: see above).
    let c = compare(
        &root,
        &bundle,
        "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status",
        &identity,
    );
    assert!(c.berth.1.contains(DOCKER_CAP_MASK), "{}", c.berth.1);
    assert_same("capabilities", &c);

    // Exit codes of the process itself.
    for code in [0, 1, 42] {
        let c = compare(&root, &bundle, &format!("exit {code}"), &identity);
        assert_eq!(c.berth.0, code);
        assert_same(&format!("exit {code}"), &c);
    }

    // The network namespace: only lo, up.
    let c = compare(&root, &bundle, "ip -o link | cut -d' ' -f2,3", &identity);
    assert_eq!(c.berth.1, "lo: <LOOPBACK,UP,LOWER_UP>\n");
    assert_same("ip link", &c);

    // /dev: the same nodes and links (crun always adds /dev/core; runc and
    // berth only when the host has /proc/kcore, which this one does not).
    let c = compare(
        &root,
        &bundle,
        "ls -A /dev | grep -vx core | sort",
        &identity,
    );
    assert_same("/dev", &c);

    // Masked files read empty; read-only paths refuse writes.
    let script = "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/acpi /sys/firmware; do \
                    [ -e $f ] && echo \"$f $(cat $f 2>/dev/null | head -c 1 | wc -c) $(ls -A $f 2>/dev/null | wc -l)\"; done; \
                  for f in /proc/sys/kernel/ns_last_pid /proc/sysrq-trigger; do \
                    (echo 1 > $f) 2>/dev/null && echo \"$f writable\" || echo \"$f refused\"; done";
    let c = compare(&root, &bundle, script, &identity);
    assert!(!c.berth.1.contains("writable"), "{}", c.berth.1);
    assert_same("masked/readonly paths", &c);

    // The mount table: mount points, types and the flags that matter, with
    // Docker's /etc file binds (berth only) left out.
    let mounts = |s: &str| -> String {
        let set: BTreeSet<String> = s
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let f: Vec<&str> = left.split(' ').collect();
                let r: Vec<&str> = right.split(' ').collect();
                let point = *f.get(4)?;
                if point.starts_with("/etc/") || point == "/" {
                    return None;
                }
                let flags: Vec<&str> = f
                    .get(5)?
                    .split(',')
                    .filter(|o| matches!(*o, "ro" | "rw" | "nosuid" | "nodev" | "noexec"))
                    .collect();
                Some(format!("{point} {} {}", r.first()?, flags.join(",")))
            })
            .collect();
        set.into_iter().collect::<Vec<_>>().join("\n")
    };
    let c = compare(&root, &bundle, "cat /proc/self/mountinfo", &mounts);
    assert!(
        c.berth.1.contains("/proc proc rw,nosuid,nodev,noexec"),
        "{}",
        c.berth.1
    );
    // Exactly runc's table. crun masks with the host's /dev/null (devtmpfs)
    // and drops nosuid/nodev/noexec when it remounts read-only paths: compare
    // only where its mounts are.
    let points = |s: &str| -> String {
        s.lines()
            .filter_map(|l| l.split(' ').next())
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (p, r) in &c.peers {
        match p {
            Peer::Runc => assert_eq!(&c.berth, r, "mounts: berth (left) and runc (right) differ"),
            Peer::Crun => assert_eq!(
                (c.berth.0, points(&c.berth.1)),
                (r.0, points(&r.1)),
                "mount points: berth (left) and crun (right) differ"
            ),
        }
    }

    // No rlimit is set when none is asked for (the bundle has none either).
    let c = compare(&root, &bundle, "ulimit -n; ulimit -Hn", &identity);
    assert_same("rlimits", &c);
}
