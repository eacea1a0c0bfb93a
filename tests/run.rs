//! End-to-end tests of `berth run` (and ps/logs/rm) on the busybox fixture,
//! as root: isolation defaults (PID 1, hostname, users, capabilities,
//! no_new_privs, seccomp, masked and read-only paths, network none), mounts,
//! exit codes, cgroup limits (memory, pids), signals, the terminal, and that
//! nothing is left behind: no mounts, cgroups or processes after 100 runs,
//! a signal, an OOM kill, or berth itself being killed.
//!
//! Without root each test prints a skip message (CI=true makes that fatal).

mod common;
mod run_support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Root, wait_for};
use run_support::*;

#[test]
fn process_is_pid_1_with_dockers_defaults() {
    let Some(root) = busybox_root() else { return };
    let out = berth_ok(
        &root,
        &[
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo pid=$$; cat /proc/self/status; echo ulimit=$(ulimit -n)",
        ],
    );
    assert!(out.contains("pid=1\n"), "{out}");
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            status_field(&out, key).as_deref(),
            Some(DOCKER_CAP_MASK),
            "{key}: {out}"
        );
    }
    assert_eq!(
        status_field(&out, "CapInh").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(
        status_field(&out, "CapAmb").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(status_field(&out, "NoNewPrivs").as_deref(), Some("1"));
    assert_eq!(
        status_field(&out, "Seccomp").as_deref(),
        Some("2"),
        "filter mode"
    );
    // No rlimit is raised (or set) unless asked: the host's soft limit stays.
    let host_soft = String::from_utf8_lossy(
        &Command::new("sh")
            .args(["-c", "ulimit -n"])
            .output()
            .expect("sh")
            .stdout,
    )
    .trim()
    .to_string();
    assert!(out.contains(&format!("ulimit={host_soft}\n")), "{out}");
}

#[test]
fn seccomp_and_capabilities_refuse_privileged_calls() {
    let Some(root) = busybox_root() else { return };
    // unshare(2) needs CAP_SYS_ADMIN and Docker's profile blocks it without.
    let (code, _, err) = berth_run3(&root, &["--rm", "busybox", "unshare", "-m", "true"]);
    assert_ne!(code, 0, "unshare must fail: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    // chroot is allowed (CAP_SYS_CHROOT is a default, and so is the syscall).
    berth_ok(&root, &["--rm", "busybox", "chroot", "/", "true"]);
    // --privileged lifts seccomp and gives every capability.
    let out = berth_ok(
        &root,
        &[
            "--rm",
            "--privileged",
            "busybox",
            "cat",
            "/proc/self/status",
        ],
    );
    assert_eq!(status_field(&out, "Seccomp").as_deref(), Some("0"));
    assert_eq!(status_field(&out, "NoNewPrivs").as_deref(), Some("0"));
    assert_ne!(
        status_field(&out, "CapEff").as_deref(),
        Some(DOCKER_CAP_MASK)
    );
    // --cap-drop/--cap-add adjust the set.
    let out = berth_ok(
        &root,
        &[
            "--rm",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "KILL",
            "busybox",
            "cat",
            "/proc/self/status",
        ],
    );
    assert_eq!(
        status_field(&out, "CapEff").as_deref(),
        Some("0000000000000020")
    );
}

#[test]
fn hostname_user_env_and_workdir() {
    let Some(root) = busybox_root() else { return };
    assert_eq!(
        berth_ok(&root, &["--rm", "--hostname", "box", "busybox", "hostname"]),
        "box\n"
    );
    // Private network: the short container ID, as Docker does.
    let cid = root.scratch("cid");
    let out = berth_ok(
        &root,
        &[
            "--rm",
            "--network",
            "none",
            "--cidfile",
            cid.to_str().unwrap(),
            "busybox",
            "hostname",
        ],
    );
    let id = fs::read_to_string(&cid).unwrap();
    assert_eq!(out.trim(), &id[..12]);

    assert_eq!(
        berth_ok(&root, &["--rm", "-u", "nobody", "busybox", "id"]),
        "uid=65534(nobody) gid=65534(nogroup)\n"
    );
    assert_eq!(
        berth_ok(&root, &["--rm", "-u", "65534", "busybox", "id"]),
        "uid=65534(nobody) gid=65534(nogroup)\n"
    );
    assert_eq!(
        berth_ok(
            &root,
            &[
                "--rm",
                "-u",
                "1234:5",
                "--group-add",
                "nogroup",
                "busybox",
                "id"
            ]
        ),
        "uid=1234 gid=5 groups=65534(nogroup)\n"
    );
    let (code, _, err) = berth_run3(&root, &["--rm", "-u", "ghost", "busybox", "id"]);
    assert_eq!(code, 125);
    assert!(err.contains("unable to find user ghost"), "{err}");
    // A non-root user has no capabilities left after exec.
    let out = berth_ok(
        &root,
        &[
            "--rm",
            "-u",
            "nobody",
            "busybox",
            "cat",
            "/proc/self/status",
        ],
    );
    assert_eq!(
        status_field(&out, "CapEff").as_deref(),
        Some("0000000000000000")
    );

    let out = berth_ok(
        &root,
        &[
            "--rm",
            "-e",
            "FOO=bar",
            "-w",
            "/new/dir",
            "busybox",
            "sh",
            "-c",
            "echo $FOO; pwd; echo $HOME; echo $PATH",
        ],
    );
    assert_eq!(
        out,
        "bar\n/new/dir\n/root\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    let out = berth_ok(
        &root,
        &["--rm", "-u", "nobody", "busybox", "sh", "-c", "echo $HOME"],
    );
    assert_eq!(out, "/nonexistent\n");
}

#[test]
fn masked_and_readonly_paths() {
    let Some(root) = busybox_root() else { return };
    let script = "\
        for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
          [ -e $f ] && echo \"$f:$(head -c 16 $f | wc -c)\"; done; \
        echo firmware:$(ls -A /sys/firmware | wc -l); \
        echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq:writable || echo sysrq:refused; \
        echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys:writable || echo sys:refused; \
        grep -E ' /proc/(sys|bus|fs|irq) ' /proc/self/mountinfo | grep -c ' ro,'; \
        touch /sys/x 2>/dev/null && echo sysfs:writable || echo sysfs:refused";
    let out = berth_ok(&root, &["--rm", "busybox", "sh", "-c", script]);
    for l in out.lines().filter(|l| l.starts_with("/proc/")) {
        assert!(l.ends_with(":0"), "masked file readable: {l}\n{out}");
    }
    assert!(out.contains("firmware:0\n"), "{out}");
    assert!(!out.contains("writable"), "{out}");
    assert!(out.contains("\n4\n"), "four read-only /proc mounts:\n{out}");
}

#[test]
fn network_none_has_only_loopback_up() {
    let Some(root) = busybox_root() else { return };
    let out = berth_ok(
        &root,
        &["--rm", "--network", "none", "busybox", "ip", "-o", "link"],
    );
    let links: Vec<&str> = out.lines().collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(
        links[0].starts_with("1: lo: <LOOPBACK,UP,LOWER_UP>"),
        "{out}"
    );
    let hosts = berth_ok(
        &root,
        &["--rm", "--network", "none", "busybox", "cat", "/etc/hosts"],
    );
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
}

#[test]
fn dev_holds_dockers_nodes_and_mounts() {
    let Some(root) = busybox_root() else { return };
    let out = berth_ok(
        &root,
        &[
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ls -A /dev | sort | tr '\\n' ' '; echo; df -k /dev/shm | tail -1",
        ],
    );
    let mut lines = out.lines();
    let names = lines.next().unwrap_or_default();
    for n in [
        "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    ] {
        assert!(names.split(' ').any(|x| x == n), "/dev lacks {n}: {names}");
    }
    let shm = lines.next().unwrap_or_default();
    assert!(
        shm.split_whitespace().nth(1) == Some("65536"),
        "/dev/shm is 64 MiB: {shm}"
    );
}

#[test]
fn binds_tmpfs_volumes_and_read_only_root() {
    let Some(root) = busybox_root() else { return };
    let host = root.scratch("host-dir");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("f"), "from host\n").unwrap();
    let ro = format!("{}:/data:ro", host.display());
    let (code, out, err) = berth_run3(
        &root,
        &[
            "--rm",
            "-v",
            &ro,
            "busybox",
            "sh",
            "-c",
            "cat /data/f; echo x > /data/g",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "from host\n");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!host.join("g").exists());

    let rw = format!("{}:/data", host.display());
    berth_ok(
        &root,
        &[
            "--rm",
            "-v",
            &rw,
            "busybox",
            "sh",
            "-c",
            "echo new > /data/g",
        ],
    );
    assert_eq!(fs::read_to_string(host.join("g")).unwrap(), "new\n");

    // A named volume outlives the container.
    berth_ok(
        &root,
        &[
            "--rm",
            "-v",
            "vol1:/v",
            "busybox",
            "sh",
            "-c",
            "echo kept > /v/k",
        ],
    );
    assert_eq!(
        berth_ok(&root, &["--rm", "-v", "vol1:/v", "busybox", "cat", "/v/k"]),
        "kept\n"
    );

    let out = berth_ok(
        &root,
        &[
            "--rm",
            "--read-only",
            "--tmpfs",
            "/scratch",
            "busybox",
            "sh",
            "-c",
            "touch /x 2>/dev/null && echo root:writable || echo root:refused; \
           touch /scratch/y && echo tmpfs:ok; grep ' /scratch ' /proc/self/mountinfo | cut -d' ' -f9",
        ],
    );
    assert_eq!(out, "root:refused\ntmpfs:ok\ntmpfs\n");
}

#[test]
fn exit_codes_are_dockers() {
    let Some(root) = busybox_root() else { return };
    let code = |args: &[&str]| berth_run3(&root, args);
    assert_eq!(code(&["--rm", "busybox", "true"]).0, 0);
    assert_eq!(code(&["--rm", "busybox", "false"]).0, 1);
    assert_eq!(code(&["--rm", "busybox", "sh", "-c", "exit 42"]).0, 42);
    let (c, _, err) = code(&["--rm", "busybox", "/etc/passwd"]);
    assert_eq!(c, 126, "{err}");
    assert!(err.contains("permission denied"), "{err}");
    let (c, _, err) = code(&["--rm", "busybox", "no-such-command"]);
    assert_eq!(c, 127, "{err}");
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    assert_eq!(code(&["--rm", "busybox", "/no/such/file"]).0, 127);
    // Killed by a signal: 128 + 9, with --init forwarding it as tini does.
    assert_eq!(
        code(&["--rm", "--init", "busybox", "sh", "-c", "kill -9 $$"]).0,
        137
    );
    // berth's own failures.
    assert_eq!(code(&["--rm", "no-such-image", "true"]).0, 125);
    assert_eq!(
        code(&["--rm", "--network", "bridge", "busybox", "true"]).0,
        125
    );
}

#[test]
fn init_reaps_and_is_pid_1() {
    let Some(root) = busybox_root() else { return };
    let out = berth_ok(
        &root,
        &[
            "--rm",
            "--init",
            "busybox",
            "sh",
            "-c",
            "echo $$; (sleep 0 &); sleep 0.1; ps -o stat | grep -c Z || true",
        ],
    );
    let mut l = out.lines();
    assert_eq!(
        l.next(),
        Some("2"),
        "the program is PID 2 under --init: {out}"
    );
    assert_eq!(l.next(), Some("0"), "no zombies: {out}");
}

#[test]
fn ulimit_only_when_asked_and_refusal_is_clear() {
    let Some(root) = busybox_root() else { return };
    assert_eq!(
        berth_ok(
            &root,
            &[
                "--rm",
                "--ulimit",
                "nofile=512:1024",
                "busybox",
                "sh",
                "-c",
                "ulimit -n; ulimit -Hn"
            ]
        ),
        "512\n1024\n"
    );
    let (code, _, err) = berth_run3(
        &root,
        &[
            "--rm",
            "--ulimit",
            "nofile=4000000:4000000",
            "busybox",
            "true",
        ],
    );
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("cannot set ulimit nofile=4000000:4000000"),
        "{err}"
    );
}

#[test]
fn memory_hog_is_oom_killed_with_137() {
    let Some(root) = busybox_root() else { return };
    let cid = root.scratch("oom-cid");
    let (code, _, err) = berth_run3(
        &root,
        &[
            "--rm",
            "--memory",
            "32m",
            "--cidfile",
            cid.to_str().unwrap(),
            "busybox",
            "tail",
            "/dev/zero",
        ],
    );
    assert_eq!(code, 137, "{err}");
    assert!(err.contains("out of memory"), "{err}");
    // Its cgroup is gone.
    let id = fs::read_to_string(&cid).unwrap();
    for d in cgroup_parent_dirs("berth") {
        assert!(!d.join(format!("berth-{id}")).exists(), "{}", d.display());
    }
}

#[test]
fn fork_bomb_is_contained_by_pids_limit() {
    let Some(root) = busybox_root() else { return };
    // PID 1 starts a fork bomb, then becomes `sleep` (an exec, no fork needed);
    // when it exits, the kernel kills what is left of the bomb.
    let (code, _, err) = berth_run3(
        &root,
        &[
            "--rm",
            "--pids-limit",
            "50",
            "busybox",
            "sh",
            "-c",
            "f(){ f | f & }; f; exec sleep 2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("can't fork"), "the limit was hit: {err}");
    assert!(
        wait_for(Duration::from_secs(10), || processes_with("f(){ f | f & }")
            .is_empty()),
        "bomb processes survived"
    );
}

#[test]
fn no_mounts_or_cgroups_left_after_100_runs() {
    let Some(root) = busybox_root() else { return };
    let parent = format!("berth-test-{}", std::process::id());
    let dirs = cgroup_parent_dirs(&parent);
    let mounts_before = host_mounts_mentioning(&root.path()).len();
    for i in 0..100 {
        let args = [
            "--rm",
            "--cgroup-parent",
            &parent,
            "--memory",
            "64m",
            "busybox",
            "true",
        ];
        let (code, out, err) = berth_run3(&root, &args);
        assert_eq!(code, 0, "run {i}: {out}{err}");
    }
    // Failed starts clean up too.
    for bad in [&["no-such-cmd"][..], &["/etc/passwd"][..]] {
        let mut args = vec!["--rm", "--cgroup-parent", &parent, "busybox"];
        args.extend_from_slice(bad);
        assert_ne!(berth_run3(&root, &args).0, 0);
    }
    assert_eq!(count_child_cgroups(&dirs), 0, "cgroups left under {dirs:?}");
    assert_eq!(
        host_mounts_mentioning(&root.path()).len(),
        mounts_before,
        "mounts left"
    );
    assert_eq!(host_mounts_mentioning(&root.path()).len(), 0);
    let left: Vec<_> = fs::read_dir(root.path().join("containers"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "container directories left: {left:?}");
    remove_cgroup_dirs(&dirs);
}

/// A background `berth run`, killed (with its container) if the test panics
/// before it is finished.
struct Running(Option<std::process::Child>);

impl Running {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, |c| c.id())
    }

    /// Waits (bounded) for it to end.
    fn finish(mut self, what: &str) -> std::process::Output {
        let child = self.0.take().expect("running child");
        wait_bounded(child, what)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `berth run` in the background with stdout piped; returns once the
/// container printed "ready".
fn start_until_ready(root: &Root, args: &[&str]) -> Running {
    let mut cmd = root.cmd();
    cmd.arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut running = Running(Some(cmd.spawn().expect("spawn berth")));
    let mut stdout = running
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    // read() returns when the container writes; bounded by its own sleep loop.
    while !String::from_utf8_lossy(&seen).contains("ready") {
        use std::io::Read;
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => panic!(
                "container ended before ready: {}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    if let Some(c) = running.0.as_mut() {
        c.stdout = Some(stdout);
    }
    running
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill with a pid of our own child.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[test]
fn signals_are_forwarded_and_stop_timeout_kills() {
    let Some(root) = busybox_root() else { return };
    let child = start_until_ready(
        &root,
        &[
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    );
    kill(child.id(), libc::SIGTERM);
    let out = child.finish("trap TERM");
    assert_eq!(out.status.code(), Some(3), "{}", common::show(&out));
    assert!(common::stdout(&out).contains("got TERM"));

    // sleep as PID 1 has no handler: SIGTERM does nothing, SIGKILL follows.
    let child = start_until_ready(
        &root,
        &[
            "--rm",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "echo ready; exec sleep 1000",
        ],
    );
    kill(child.id(), libc::SIGTERM);
    let out = child.finish("stop timeout");
    assert_eq!(out.status.code(), Some(137), "{}", common::show(&out));
}

#[test]
fn killing_berth_leaves_no_container_behind() {
    let Some(root) = busybox_root() else { return };
    let parent = format!("berth-test-kill-{}", std::process::id());
    let dirs = cgroup_parent_dirs(&parent);
    let marker = format!("sleep 4242{}", std::process::id() % 1000);
    let child = start_until_ready(
        &root,
        &[
            "--name",
            "victim",
            "--cgroup-parent",
            &parent,
            "busybox",
            "sh",
            "-c",
            &format!("echo ready; exec {marker}"),
        ],
    );
    // "ready" is printed just before the exec, so wait for the process itself.
    let running = wait_for(Duration::from_secs(10), || {
        processes_running(&marker).len() == 1
    });
    kill(child.id(), libc::SIGKILL);
    let _ = child.finish("killed berth");
    assert!(running, "the container was running");
    assert!(
        wait_for(Duration::from_secs(10), || processes_running(&marker)
            .is_empty()),
        "the container outlived berth"
    );
    assert!(host_mounts_mentioning(&root.path()).is_empty());
    // The next berth command notices and cleans up the cgroup.
    let ps = root.stdout(&["ps", "-a", "--format", "json"]);
    assert!(ps.contains("\"Names\":\"victim\""), "{ps}");
    assert!(ps.contains("Exited (137)"), "{ps}");
    assert_eq!(count_child_cgroups(&dirs), 0, "cgroup left: {dirs:?}");
    root.ok(&["rm", "victim"]);
    remove_cgroup_dirs(&dirs);
}

#[test]
fn detached_containers_ps_logs_and_rm() {
    let Some(root) = busybox_root() else { return };
    let out = berth_ok(
        &root,
        &[
            "-d",
            "--name",
            "bg",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; echo ready > /tmp/r; exec sleep 1000",
        ],
    );
    let id = out.trim().to_string();
    assert_eq!(id.len(), 64, "{out}");
    let ps = root.stdout(&["ps"]);
    assert!(
        ps.contains(&id[..12]) && ps.contains("bg") && ps.contains("Up "),
        "{ps}"
    );
    // Not removable while running without -f.
    let out = root.run(&["rm", "bg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        wait_for(Duration::from_secs(10), || {
            root.stdout(&["logs", "bg"]).contains("out")
        }),
        "logs never showed the output"
    );
    let logs = root.run(&["logs", "bg"]);
    assert_eq!(common::stdout(&logs), "out\n");
    assert_eq!(common::stderr(&logs), "err\n");
    root.ok(&["rm", "-f", "bg"]);
    assert!(!root.stdout(&["ps", "-a"]).contains("bg"));

    // A finished container stays for ps -a and logs until rm.
    let (code, out, _) = berth_run3(
        &root,
        &["--name", "done", "busybox", "sh", "-c", "echo hi; exit 3"],
    );
    assert_eq!((code, out.as_str()), (3, "hi\n"));
    let ps = root.stdout(&["ps", "-a"]);
    assert!(ps.contains("Exited (3)") && ps.contains("done"), "{ps}");
    assert_eq!(root.stdout(&["logs", "done"]), "hi\n");
    root.ok(&["rm", "done"]);
}

#[test]
fn terminal_under_tmux_has_the_window_size() {
    let Some(root) = busybox_root() else { return };
    if !common::require_tool("tmux") {
        return;
    }
    let out_file = root.scratch("tty-out");
    let socket = root.scratch("tmux.sock");
    let berth_cmd = format!(
        "{} --root {} run --rm -it busybox sh -c 'tty; stty size; read x; echo got:$x' > {} 2>&1; echo rc=$? >> {}",
        common::BERTH,
        root.path().display(),
        out_file.display(),
        out_file.display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux")
    };
    let o = tmux(&["new-session", "-d", "-x", "100", "-y", "30", &berth_cmd]);
    assert!(o.status.success(), "{}", common::show(&o));
    // Type once the shell inside is waiting in `read`.
    assert!(
        wait_for(Duration::from_secs(20), || {
            fs::read_to_string(&out_file).is_ok_and(|s| s.contains("30 100"))
        }),
        "no stty output: {:?}",
        fs::read_to_string(&out_file)
    );
    tmux(&["send-keys", "hello", "Enter"]);
    assert!(
        wait_for(Duration::from_secs(20), || {
            fs::read_to_string(&out_file).is_ok_and(|s| s.contains("rc="))
        }),
        "berth did not finish: {:?}",
        fs::read_to_string(&out_file)
    );
    let _ = tmux(&["kill-server"]);
    let text = fs::read_to_string(&out_file).unwrap().replace('\r', "");
    assert!(text.starts_with("/dev/pts/0\n30 100\n"), "{text}");
    assert!(text.contains("got:hello\n"), "{text}");
    assert!(text.ends_with("rc=0\n"), "{text}");
}

#[test]
fn entrypoint_override_and_rootfs_directories() {
    let Some(root) = busybox_root() else { return };
    // --entrypoint resets the image's CMD (busybox's is ["sh"]).
    assert_eq!(
        berth_ok(
            &root,
            &["--rm", "--entrypoint", "echo", "busybox", "a", "b"]
        ),
        "a b\n"
    );
    assert_eq!(
        berth_ok(&root, &["--rm", "--entrypoint", "pwd", "busybox"]),
        "/\n"
    );
    // --rootfs runs a directory (an OCI bundle's rootfs) without an image.
    let bundle = busybox_bundle();
    let rootfs = bundle.rootfs();
    assert_eq!(
        berth_ok(
            &root,
            &[
                "--rm",
                "--rootfs",
                rootfs.to_str().unwrap(),
                "/bin/sh",
                "-c",
                "echo $$"
            ]
        ),
        "1\n"
    );
    assert!(host_mounts_mentioning(Path::new(rootfs.to_str().unwrap())).is_empty());
}

#[test]
fn stdin_with_i_and_rm_f_of_a_running_rm_container() {
    let Some(root) = busybox_root() else { return };
    let mut cmd = root.cmd();
    cmd.args(["run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"hello\n").unwrap();
    }
    let out = wait_bounded(child, "berth run -i");
    assert_eq!(common::stdout(&out), "HELLO\n", "{}", common::show(&out));

    // `rm -f` kills a running --rm container (found by its cgroup) and the
    // berth supervising it removes it.
    let child = start_until_ready(
        &root,
        &[
            "--rm",
            "--name",
            "doomed",
            "busybox",
            "sh",
            "-c",
            "echo ready; exec sleep 1000",
        ],
    );
    root.ok(&["rm", "-f", "doomed"]);
    let out = child.finish("killed by rm -f");
    assert_eq!(out.status.code(), Some(137), "{}", common::show(&out));
    assert!(!root.stdout(&["ps", "-a"]).contains("doomed"));
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_id() {
    let Some(root) = busybox_root() else { return };
    let bundle = busybox_bundle();
    let rootfs = bundle.rootfs();
    common::run_ok(
        Command::new("chown")
            .arg("-R")
            .arg("200000:200000")
            .arg(&rootfs),
    );
    let out = berth_ok(
        &root,
        &[
            "--rm",
            "--uidmap",
            "0:200000:65536",
            "--gidmap",
            "0:200000:65536",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "/bin/sh",
            "-c",
            "id; cat /proc/self/uid_map; touch /made-inside; grep CapEff /proc/self/status",
        ],
    );
    assert!(out.starts_with("uid=0(root) gid=0(root)\n"), "{out}");
    assert!(out.contains("0     200000      65536"), "{out}");
    assert!(out.contains(DOCKER_CAP_MASK), "{out}");
    let meta = fs::metadata(rootfs.join("made-inside")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.gid()),
        (200000, 200000),
        "root inside is 200000 outside"
    );
    // Images are not id-mapped yet: a clear refusal.
    let (code, _, err) = berth_run3(
        &root,
        &["--rm", "--uidmap", "0:200000:65536", "busybox", "true"],
    );
    assert_eq!(code, 125);
    assert!(err.contains("need --rootfs"), "{err}");
}
