//! RUN: one process in a container over the step's snapshot, through
//! `berth-runtime`, with its output streamed to the progress view.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use berth_runtime::spec::{Mount, Network, Spec};
use berth_runtime::supervise::{Attach, attach};
use berth_runtime::{SpawnOptions, Stdio};

use super::BuildError;

/// Everything RUN needs to start its process.
pub struct RunProcess {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub cwd: String,
    pub network: Network,
    pub privileged: bool,
    /// An existing host directory the root filesystem is mounted on (inside
    /// the container's own mount namespace).
    pub root_dir: PathBuf,
    /// The overlay mount of the step's snapshot.
    pub root_mount: Mount,
    pub mounts: Vec<Mount>,
}

/// The last lines a failed step printed, for the error message.
pub struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl Tail {
    const KEEP: usize = 10;

    pub fn new() -> Tail {
        Tail {
            lines: VecDeque::new(),
            partial: Vec::new(),
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.lines.push_back(line);
                if self.lines.len() > Self::KEEP {
                    self.lines.pop_front();
                }
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
    }

    pub fn lines(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.lines
                .push_back(String::from_utf8_lossy(&self.partial).into_owned());
        }
        self.lines.into_iter().collect()
    }
}

impl Default for Tail {
    fn default() -> Self {
        Tail::new()
    }
}

/// Runs the process to its end; returns its exit code.
pub fn run(p: RunProcess, output: &mut dyn FnMut(&[u8])) -> Result<i32, BuildError> {
    let mut spec = Spec::new(&p.root_dir, p.argv);
    spec.root.mount = Some(p.root_mount);
    spec.process.env = p.env;
    spec.process.cwd = PathBuf::from(if p.cwd.is_empty() { "/" } else { &p.cwd });
    spec.process.user.spec = p.user;
    spec.hostname = Some("buildkitsandbox".to_string());
    spec.namespaces.network = p.network;
    spec.mounts.extend(p.mounts);
    if p.privileged {
        spec.make_privileged();
    }
    let (out_r, out_w) = nix::unistd::pipe().map_err(|e| BuildError::Run(e.to_string()))?;
    let (err_r, err_w) = nix::unistd::pipe().map_err(|e| BuildError::Run(e.to_string()))?;
    let opts = SpawnOptions {
        stdin: Stdio::Null,
        stdout: Stdio::Fd(out_w),
        stderr: Stdio::Fd(err_w),
        ..SpawnOptions::default()
    };
    let mut container = berth_runtime::spawn(&spec, opts)
        .map_err(|e| BuildError::Run(berth_runtime::error_chain(&e)))?;
    let att = Attach {
        signals: None,
        tty: None,
        stdin_to_tty: false,
        stdout: Some(out_r),
        stderr: Some(err_r),
        stop_timeout: Duration::from_secs(10),
    };
    let exit = attach(&mut container, att, &mut |_stream, data| output(data))
        .map_err(|e| BuildError::Run(berth_runtime::error_chain(&e)))?;
    Ok(exit.code())
}
