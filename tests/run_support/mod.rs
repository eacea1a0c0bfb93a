//! Helpers for the container tests (tests/run.rs, tests/runtime_compare.rs):
//! a berth root with the busybox fixture loaded, running commands with a time
//! bound, cgroup and mount accounting, and an OCI bundle of the fixture for
//! runc and crun.
//!
//! Include with `mod common; mod run_support;` (it uses `crate::common`).
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{self, Root};

/// How long any one container command may take before the test fails.
pub const BOUND: Duration = Duration::from_secs(60);

/// Docker's default capability set (moby oci/caps/defaults.go).
pub const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];
/// Their mask as /proc/PID/status prints it.
pub const DOCKER_CAP_MASK: &str = "00000000a80425fb";

/// A berth root with busybox:latest loaded; None (after a skip message) when
/// not root, which CI=true turns into a failure.
pub fn busybox_root() -> Option<Root> {
    if !common::require_root() {
        return None;
    }
    let root = Root::new();
    root.load(&common::fixture().archive);
    Some(root)
}

/// Waits for `child` with a bound; kills it and panics when the bound passes.
pub fn wait_bounded(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + BOUND;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: did not finish within {BOUND:?}");
            }
        }
    };
    if let Ok(b) = t_out.join() {
        out = b;
    }
    if let Ok(b) = t_err.join() {
        err = b;
    }
    Output {
        status,
        stdout: out,
        stderr: err,
    }
}

/// `berth --root R run ARGS...` with stdin closed, bounded.
pub fn berth_run(root: &Root, args: &[&str]) -> Output {
    let mut cmd = root.cmd();
    cmd.arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn berth run");
    wait_bounded(child, &format!("berth run {args:?}"))
}

/// Runs and returns (exit code, stdout, stderr).
pub fn berth_run3(root: &Root, args: &[&str]) -> (i32, String, String) {
    let out = berth_run(root, args);
    (
        out.status.code().unwrap_or(-1),
        common::stdout(&out),
        common::stderr(&out),
    )
}

/// Runs and asserts exit 0; returns stdout.
pub fn berth_ok(root: &Root, args: &[&str]) -> String {
    let out = berth_run(root, args);
    assert!(
        out.status.success(),
        "berth run {args:?} failed\n{}",
        common::show(&out)
    );
    common::stdout(&out)
}

/// A field of /proc/self/status-style text ("CapEff" -> "00000000a80425fb").
pub fn status_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

/// The directories a `--cgroup-parent PARENT` container cgroup would be in,
/// one per hierarchy (computed the way berth-runtime does).
pub fn cgroup_parent_dirs(parent: &str) -> Vec<PathBuf> {
    use berth_runtime::cgroups::Layout;
    use berth_runtime::spec::CgroupSpec;
    let layout = Layout::detect().expect("cgroup layout");
    layout
        .paths_for(&CgroupSpec {
            name: "x".into(),
            parent: Some(PathBuf::from(parent)),
            resources: Default::default(),
        })
        .expect("cgroup paths")
        .into_iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect()
}

/// Child cgroups under each directory (0 when the directory does not exist).
pub fn count_child_cgroups(dirs: &[PathBuf]) -> usize {
    dirs.iter()
        .map(|d| {
            fs::read_dir(d)
                .map(|it| it.flatten().filter(|e| e.path().is_dir()).count())
                .unwrap_or(0)
        })
        .sum()
}

/// Removes (empty) parent cgroup directories a test made.
pub fn remove_cgroup_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = fs::remove_dir(d);
    }
}

/// Lines of the host's mount table that mention `needle`.
pub fn host_mounts_mentioning(needle: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let n = needle.display().to_string();
    text.lines()
        .filter(|l| l.contains(&n))
        .map(String::from)
        .collect()
}

/// Processes whose command line (arguments joined by spaces) is `cmdline`.
pub fn processes_running(cmdline: &str) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(cmd) = fs::read(e.path().join("cmdline"))
                && String::from_utf8_lossy(&cmd).replace('\0', " ").trim_end() == cmdline
            {
                out.push(pid);
            }
        }
    }
    out
}

/// Processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(cmd) = fs::read(e.path().join("cmdline"))
                && String::from_utf8_lossy(&cmd)
                    .replace('\0', " ")
                    .contains(needle)
            {
                out.push(pid);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// OCI bundles for runc and crun

/// A bundle directory whose rootfs is the busybox fixture's layer, extracted.
pub struct Bundle {
    pub dir: tempfile::TempDir,
}

impl Bundle {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Extracts the fixture's layers into a new bundle's rootfs.
pub fn busybox_bundle() -> Bundle {
    let dir = tempfile::Builder::new()
        .prefix("berth-bundle.")
        .tempdir()
        .expect("bundle dir");
    let fx = common::fixture();
    let layout = dir.path().join("layout");
    common::extract(&fx.archive, &layout);
    let rootfs = dir.path().join("rootfs");
    fs::create_dir(&rootfs).expect("rootfs dir");
    for layer in &fx.image.layers {
        common::run_ok(
            Command::new("tar")
                .arg("-xzf")
                .arg(common::blob_path(&layout, layer))
                .arg("-C")
                .arg(&rootfs),
        );
    }
    let _ = fs::remove_dir_all(&layout);
    Bundle { dir }
}

/// config.json for `args`: `runc spec`'s default edited to Docker's settings
/// (capabilities, masked/read-only paths, no rlimits, a cgroup namespace),
/// network namespace with loopback only, hostname `cmp`.
pub fn write_config(bundle: &Bundle, args: &[&str]) {
    let runc = common::find_tool("runc").expect("runc");
    let cfg_path = bundle.path().join("config.json");
    let _ = fs::remove_file(&cfg_path);
    common::run_ok(Command::new(runc).arg("spec").current_dir(bundle.path()));
    let mut c: Value = common::read_json(&cfg_path);
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(args);
    c["process"]["cwd"] = json!("/");
    c["process"]["env"] = json!([
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root"
    ]);
    c["process"]["noNewPrivileges"] = json!(true);
    c["process"]["capabilities"] = json!({
        "bounding": DOCKER_CAPS, "effective": DOCKER_CAPS, "permitted": DOCKER_CAPS,
        "inheritable": [], "ambient": [],
    });
    if let Some(p) = c["process"].as_object_mut() {
        p.remove("rlimits");
    }
    c["root"] = json!({"path": "rootfs", "readonly": false});
    c["hostname"] = json!("cmp");
    c["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
        {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
    ]);
    c["linux"]["maskedPaths"] = json!(berth_runtime::spec::DOCKER_MASKED_PATHS);
    c["linux"]["readonlyPaths"] = json!(berth_runtime::spec::DOCKER_READONLY_PATHS);
    // berth mounts no cgroupfs on a v1 host (see the report); compare like with like.
    if let Some(ms) = c["mounts"].as_array_mut() {
        ms.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for m in ms.iter_mut() {
            // Docker's /proc options (runc spec's default has none).
            if m["destination"] == "/proc" {
                m["options"] = json!(["nosuid", "noexec", "nodev"]);
            }
            if m["destination"] == "/dev/shm" {
                m["options"] = json!(["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]);
            }
        }
    }
    fs::write(&cfg_path, serde_json::to_vec_pretty(&c).expect("json")).expect("config.json");
}

/// Which OCI runtime runs a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Runc,
    /// crun 1.8 refuses this host's hybrid cgroup layout: it runs inside
    /// `unshare -m` with the unified hierarchy unmounted there.
    Crun,
}

/// Runs the bundle's config with a peer runtime; (exit code, stdout, stderr).
pub fn peer_run(peer: Peer, bundle: &Bundle, id: &str) -> (i32, String, String) {
    let mut cmd = match peer {
        Peer::Runc => {
            let mut c = Command::new(common::find_tool("runc").expect("runc"));
            c.args(["run", "-b"]).arg(bundle.path()).arg(id);
            c
        }
        Peer::Crun => {
            let crun = common::find_tool("crun").expect("crun");
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c"])
                .arg(format!(
                    "umount /sys/fs/cgroup/unified 2>/dev/null; exec {} run -b \"$0\" \"$1\"",
                    crun.display()
                ))
                .arg(bundle.path())
                .arg(id);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = wait_bounded(cmd.spawn().expect("spawn peer"), &format!("{peer:?} run"));
    (
        out.status.code().unwrap_or(-1),
        common::stdout(&out),
        common::stderr(&out),
    )
}
