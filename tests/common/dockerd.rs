//! A private Docker engine for tests: Debian's dockerd with its own data
//! root, exec root and socket (no iptables, no bridge), stopped when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{find_tool, show, stdout, wait_for};

/// A dockerd of our own: private data root, exec root, socket and config,
/// so that it neither meets nor is blocked by any other docker daemon. It is
/// stopped (and its containerd with it) when dropped.
pub struct Dockerd {
    child: Child,
    dir: TempDir,
    docker: PathBuf,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("berth-dockerd.")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        fs::write(d.join("daemon.json"), "{}").unwrap();
        fs::create_dir_all(d.join("cfg")).unwrap();
        let log = fs::File::create(d.join("dockerd.log")).unwrap();
        let child = Command::new(find_tool("dockerd").expect("dockerd"))
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .args(["--log-level=warn", "--data-root"])
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("d.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("d.sock").display()))
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let docker = if Path::new("/usr/bin/docker").is_file() {
            PathBuf::from("/usr/bin/docker")
        } else {
            find_tool("docker").expect("docker client")
        };
        let mut daemon = Dockerd { child, dir, docker };
        let sock = daemon.dir.path().join("d.sock");
        let mut exited = None;
        let ready = wait_for(Duration::from_secs(90), || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                exited = Some(status);
                return true;
            }
            sock.exists()
                && daemon
                    .docker_cmd()
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        });
        if let Some(status) = exited {
            panic!("dockerd exited early ({status}):\n{}", daemon.log());
        }
        assert!(
            ready,
            "dockerd did not answer on {} within 90 s:\n{}",
            sock.display(),
            daemon.log()
        );
        daemon
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    pub fn docker_cmd(&self) -> Command {
        let mut c = Command::new(&self.docker);
        c.arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("d.sock").display()
            ))
            .env_remove("DOCKER_HOST")
            .env("DOCKER_CONFIG", self.dir.path().join("cfg"))
            .stdin(Stdio::null());
        c
    }

    pub fn docker(&self, args: &[&str]) -> String {
        let mut c = self.docker_cmd();
        c.args(args);
        let out = c.output().expect("run docker");
        assert!(
            out.status.success(),
            "docker {args:?} failed\n{}\n--- dockerd log ---\n{}",
            show(&out),
            self.log()
        );
        stdout(&out)
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let containerd = fs::read_to_string(self.dir.path().join("exec/containerd/containerd.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let pid = self.child.id();
        signal(pid, "-TERM");
        let child = &mut self.child;
        if !wait_for(Duration::from_secs(30), || {
            matches!(child.try_wait(), Ok(Some(_)))
        }) {
            signal(pid, "-KILL");
            let _ = child.wait();
        }
        if let Some(c) = containerd
            && alive(c)
        {
            signal(c, "-TERM");
            if !wait_for(Duration::from_secs(10), || !alive(c)) {
                signal(c, "-KILL");
            }
        }
        // Anything dockerd left mounted under its dirs would stop the temp dir
        // from being removed.
        let me = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&me))
            .collect();
        mounts.sort();
        for m in mounts.iter().rev() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(m)
                .stderr(Stdio::null())
                .status();
        }
    }
}
