//! Support for the `berth build` end-to-end tests: build contexts in temp
//! directories, running `berth build --progress plain` and reading its step
//! lines, and looking inside built images with `berth run`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::common::{Root, fixture, require_root, show, stderr, stdout};

/// A root with the busybox fixture loaded (`busybox:latest`), or None when
/// not root (a skip; fatal under CI=true).
pub fn busybox_root() -> Option<Root> {
    if !require_root() {
        return None;
    }
    let root = Root::new();
    root.load(&fixture().archive);
    Some(root)
}

/// A build context in a temp directory.
pub struct Ctx {
    dir: TempDir,
}

impl Ctx {
    /// A context holding `dockerfile` as its Dockerfile.
    pub fn new(dockerfile: &str) -> Ctx {
        let dir = tempfile::Builder::new()
            .prefix("berth-build-ctx.")
            .tempdir()
            .expect("temp context");
        let ctx = Ctx { dir };
        ctx.dockerfile(dockerfile);
        ctx
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the Dockerfile.
    pub fn dockerfile(&self, text: &str) {
        self.write("Dockerfile", text);
    }

    /// Writes a file (parents created), mode 0644.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    pub fn chmod(&self, rel: &str, mode: u32) {
        fs::set_permissions(self.dir.path().join(rel), fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn mkdir(&self, rel: &str) {
        fs::create_dir_all(self.dir.path().join(rel)).unwrap();
    }

    pub fn symlink(&self, target: &str, rel: &str) {
        let p = self.dir.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }
}

/// `berth build --progress plain ARGS... CTX`, whatever the result.
pub fn build_raw(root: &Root, ctx: &Path, args: &[&str]) -> Output {
    let mut full: Vec<&OsStr> = vec![
        OsStr::new("build"),
        OsStr::new("--progress"),
        OsStr::new("plain"),
    ];
    full.extend(args.iter().map(OsStr::new));
    full.push(ctx.as_os_str());
    root.run(&full)
}

/// A successful build: its image ID and the step lines it printed.
pub struct Built {
    pub id: String,
    pub log: String,
}

impl Built {
    pub fn steps(&self) -> Vec<Step> {
        steps(&self.log)
    }

    /// The step whose title contains `needle` (exactly one must).
    pub fn step(&self, needle: &str) -> Step {
        let found: Vec<Step> = self
            .steps()
            .into_iter()
            .filter(|s| s.title.contains(needle))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one step titled like {needle:?} expected in:\n{}",
            self.log
        );
        found.into_iter().next().unwrap()
    }

    /// Titles of the layer steps (RUN, COPY, ADD, WORKDIR) that were
    /// served from the cache, and of those that ran.
    pub fn cached_and_ran(&self) -> (Vec<String>, Vec<String>) {
        let mut cached = Vec::new();
        let mut ran = Vec::new();
        for s in self.steps() {
            let instr = s.instruction();
            if ["RUN", "COPY", "ADD", "WORKDIR"].contains(&instr.as_str()) {
                if s.cached {
                    cached.push(s.title.clone());
                } else {
                    ran.push(s.title.clone());
                }
            }
        }
        (cached, ran)
    }
}

/// Builds with `--iidfile` and asserts success; the ID comes from the file.
pub fn build(root: &Root, ctx: &Path, args: &[&str]) -> Built {
    let iid = tempfile::NamedTempFile::new().unwrap();
    let iid_path = iid.path().to_str().unwrap().to_string();
    let mut all: Vec<&str> = vec!["--iidfile", &iid_path];
    all.extend_from_slice(args);
    let out = build_raw(root, ctx, &all);
    assert!(
        out.status.success(),
        "berth build {args:?} failed\n{}",
        show(&out)
    );
    let id = fs::read_to_string(iid.path()).unwrap().trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "--iidfile holds {id:?}"
    );
    Built {
        id,
        log: stderr(&out),
    }
}

/// A build that must fail: exit code 1. Returns stderr.
pub fn build_fails(root: &Root, ctx: &Path, args: &[&str]) -> String {
    let out = build_raw(root, ctx, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "berth build {args:?} should exit 1\n{}",
        show(&out)
    );
    stderr(&out)
}

/// One `#N [stage i/n] INSTRUCTION` step of a plain progress log.
#[derive(Debug, Clone)]
pub struct Step {
    pub number: usize,
    pub title: String,
    pub cached: bool,
    pub done: bool,
    /// The step's output lines (without the `#N t.ttt ` prefix).
    pub output: Vec<String>,
}

impl Step {
    /// The instruction keyword after the `[stage i/n]` prefix.
    pub fn instruction(&self) -> String {
        let rest = self
            .title
            .split_once("] ")
            .map_or(self.title.as_str(), |(_, r)| r);
        rest.split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
    }
}

/// Parses BuildKit-style plain progress.
pub fn steps(log: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((num, text)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(number) = num.parse::<usize>() else {
            continue;
        };
        if text.starts_with('[') {
            out.push(Step {
                number,
                title: text.to_string(),
                cached: false,
                done: false,
                output: Vec::new(),
            });
            continue;
        }
        let Some(step) = out.iter_mut().find(|s| s.number == number) else {
            continue;
        };
        if text == "CACHED" {
            step.cached = true;
        } else if text.starts_with("DONE") {
            step.done = true;
        } else if let Some((time, body)) = text.split_once(' ')
            && time.parse::<f64>().is_ok()
        {
            step.output.push(body.to_string());
        } else if text.parse::<f64>().is_ok() {
            step.output.push(String::new());
        }
    }
    out
}

/// `berth run --rm IMAGE sh -c SCRIPT`: asserts success, returns stdout.
pub fn sh(root: &Root, image: &str, script: &str) -> String {
    root.stdout(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        script,
    ])
}

/// `berth run --rm IMAGE ARGS...` (the image's entrypoint/cmd when ARGS is
/// empty): asserts success, returns stdout.
pub fn run_image(root: &Root, image: &str, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "--network", "none", image];
    all.extend_from_slice(args);
    root.stdout(&all)
}

/// The `Config` object of `berth inspect IMAGE`.
pub fn config(root: &Root, image: &str) -> serde_json::Value {
    root.inspect(image)["Config"].clone()
}

/// Every blob in the store, decompressed when gzip or zstd, searched for
/// `needle`; returns the digests of the blobs that contain it.
pub fn blobs_containing(root: &Root, needle: &[u8]) -> Vec<String> {
    let dir = root.path().join("blobs/sha256");
    let mut hits = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mut head = [0u8; 4];
        let n = fs::File::open(&path)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        let bytes = if n >= 2 && head[..2] == [0x1f, 0x8b] {
            stdout_bytes(Command::new("gzip").arg("-dc").arg(&path))
        } else if n == 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
            stdout_bytes(Command::new("zstd").arg("-dc").arg(&path))
        } else {
            fs::read(&path).unwrap()
        };
        if contains(&bytes, needle) {
            hits.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    hits
}

/// Files under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(listing) = fs::read_dir(dir) else {
        return hits;
    };
    for entry in listing.flatten() {
        let p = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if ft.is_file()
            && let Ok(bytes) = fs::read(&p)
            && contains(&bytes, needle)
        {
            hits.push(p);
        }
    }
    hits
}

fn stdout_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("decompressor");
    assert!(out.status.success(), "{cmd:?} failed\n{}", show(&out));
    out.stdout
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// stdout of `berth images --format json`, for messages.
pub fn images_text(root: &Root) -> String {
    stdout(&root.ok(&["images"]))
}
