//! Helpers shared by the end-to-end tests: temp berth roots, running the
//! `berth` binary, requiring peers (skopeo, umoci, ...), the busybox fixture,
//! derived test images, and store consistency checks.
//!
//! Every test binary includes this module with `mod common;`; not every
//! binary uses every helper.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod dockerd;

use serde_json::{Value, json};
use tempfile::TempDir;

/// The `berth` binary cargo built for these tests.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The repository's top-level directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// True when running in CI (CI=true): missing peers are then failures.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Ok("true" | "1" | "yes")
    )
}

fn skip(what: &str) -> bool {
    if in_ci() {
        panic!("{what}; .ci/run must install it (CI=true makes this fatal)");
    }
    eprintln!("SKIP: {what} (set CI=true to make this fatal)");
    false
}

/// Finds an executable by name on $PATH and in the sbin/bin directories
/// (dockerd lives in /usr/sbin, which a non-login PATH may lack).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Returns true when `name` is installed. When it is not: panics under
/// CI=true, else prints a skip message to stderr and returns false.
pub fn require_tool(name: &str) -> bool {
    find_tool(name).is_some() || skip(&format!("{name} not installed"))
}

/// True when running as (effective) root.
pub fn is_root() -> bool {
    // /proc/self belongs to the effective uid of the process looking at it.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Returns true when running as root. Otherwise panics under CI=true, else
/// prints a skip message and returns false.
pub fn require_root() -> bool {
    is_root() || skip("this test needs root")
}

// ---------------------------------------------------------------------------
// Running commands

/// Formats an Output for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command to completion (stdin closed) and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command and asserts that it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed\n{}", show(&out));
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs skopeo with the given args, asserts success and returns stdout.
pub fn skopeo(args: &[&str]) -> String {
    let mut cmd = Command::new(find_tool("skopeo").expect("skopeo"));
    cmd.args(args);
    stdout(&run_ok(&mut cmd))
}

/// `skopeo ARGS...` (an inspect) with its stdout parsed as JSON.
pub fn skopeo_json(args: &[&str]) -> Value {
    let text = skopeo(args);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("skopeo {args:?}: bad JSON ({e}): {text}"))
}

// ---------------------------------------------------------------------------
// berth

/// A berth store in a fresh temp directory, removed when dropped.
pub struct Root {
    dir: TempDir,
}

impl Default for Root {
    fn default() -> Self {
        Self::new()
    }
}

impl Root {
    pub fn new() -> Root {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-root.")
            .tempdir()
            .expect("temp root");
        Root { dir }
    }

    /// The store directory (`--root`); berth creates its contents.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A scratch directory beside the store, for archives and the like.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    /// A `berth --root ROOT` command (BERTH_ROOT cleared, stdin closed).
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BERTH);
        cmd.env_remove("BERTH_ROOT")
            .env("NO_COLOR", "1")
            .arg("--root")
            .arg(self.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs berth and returns its output, whatever the exit status.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let mut cmd = self.cmd();
        cmd.args(args);
        cmd.output().expect("run berth")
    }

    /// Runs berth and asserts success.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {:?} failed\n{}",
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            show(&out)
        );
        out
    }

    /// Runs berth, asserts success, returns stdout.
    pub fn stdout<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        stdout(&self.ok(args))
    }

    /// Runs berth, asserts it fails the way the CLI contract says: exit code
    /// 1 and exactly one non-empty line on stderr. Returns that line.
    pub fn fails<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        let shown = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        assert_eq!(
            out.status.code(),
            Some(1),
            "berth {shown:?} should exit 1\n{}",
            show(&out)
        );
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "berth {shown:?}: expected one line on stderr\n{}",
            show(&out)
        );
        lines[0].to_string()
    }

    /// `berth load -i FILE`; returns stdout.
    pub fn load(&self, archive: &Path) -> String {
        self.stdout(&[OsStr::new("load"), OsStr::new("-i"), archive.as_os_str()])
    }

    /// `berth inspect REF` → the single JSON object.
    pub fn inspect(&self, reference: &str) -> Value {
        let text = self.stdout(&["inspect", reference]);
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("berth inspect {reference}: bad JSON ({e}):\n{text}"));
        let arr = v
            .as_array()
            .unwrap_or_else(|| panic!("berth inspect: not an array: {v}"));
        assert_eq!(
            arr.len(),
            1,
            "berth inspect {reference}: one element expected: {v}"
        );
        arr[0].clone()
    }

    /// `berth images --format json` → one object per line.
    pub fn images(&self) -> Vec<Value> {
        let text = self.stdout(&["images", "--format", "json"]);
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("images line not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// The familiar "repo:tag" names `berth images` lists.
    pub fn tags(&self) -> BTreeSet<String> {
        self.images()
            .iter()
            .filter(|i| i["Tag"].as_str() != Some("<none>"))
            .map(|i| {
                format!(
                    "{}:{}",
                    i["Repository"].as_str().unwrap(),
                    i["Tag"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// `berth save -o FILE [--format F] REFS...`; returns the archive path.
    pub fn save(&self, format: Option<&str>, out: &Path, refs: &[&str]) -> PathBuf {
        let mut args: Vec<&OsStr> = vec![OsStr::new("save"), OsStr::new("-o"), out.as_os_str()];
        if let Some(f) = format {
            args.push(OsStr::new("--format"));
            args.push(OsStr::new(f));
        }
        args.extend(refs.iter().map(OsStr::new));
        self.ok(&args);
        assert!(out.is_file(), "berth save did not write {}", out.display());
        out.to_path_buf()
    }

    /// The store's index.json (must exist and be valid JSON).
    pub fn index(&self) -> Value {
        read_json(&self.path().join("index.json"))
    }
}

// ---------------------------------------------------------------------------
// JSON, hashing, tar

pub fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} is not valid JSON ({e}): {}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// sha256 of files, via coreutils' sha256sum (one process for all files).
/// Returns "sha256:<hex>" per file, in order.
pub fn sha256_files(files: &[PathBuf]) -> Vec<String> {
    if files.is_empty() {
        return Vec::new();
    }
    let out = run_ok(Command::new("sha256sum").arg("--").args(files));
    let text = stdout(&out);
    let sums: Vec<String> = text
        .lines()
        .map(|l| {
            format!(
                "sha256:{}",
                l.split_whitespace()
                    .next()
                    .unwrap()
                    .trim_start_matches('\\')
            )
        })
        .collect();
    assert_eq!(sums.len(), files.len(), "sha256sum output: {text}");
    sums
}

pub fn sha256_file(file: &Path) -> String {
    sha256_files(&[file.to_path_buf()]).remove(0)
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    format!("sha256:{}", stdout(&out).split_whitespace().next().unwrap())
}

/// The path of a blob in an OCI layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("bad digest {digest}"));
    layout.join("blobs").join(alg).join(hex)
}

/// Extracts a (possibly compressed) tar into a new directory `dir`.
pub fn extract(archive: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(dir)
            .arg("--no-same-owner"),
    );
}

/// The member names of a tar archive.
pub fn tar_list(archive: &Path) -> Vec<String> {
    stdout(&run_ok(Command::new("tar").arg("-tf").arg(archive)))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Deterministic tar of `names` (relative to `dir`), like fixtures/busybox/make.sh.
pub fn dtar(dir: &Path, out: &Path, names: &[&str]) {
    run_ok(
        Command::new("tar")
            .env("LC_ALL", "C")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--format=posix",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                "-C",
            ])
            .arg(dir)
            .arg("-cf")
            .arg(out)
            .args(names),
    );
}

// ---------------------------------------------------------------------------
// Images in OCI layouts and archives

/// The digests that identify one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The familiar reference it is tagged with ("busybox:latest").
    pub reference: String,
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
    /// Compressed layer digests, as in the manifest.
    pub layers: Vec<String>,
    pub layer_sizes: Vec<u64>,
    /// Uncompressed layer digests, as in the config.
    pub diff_ids: Vec<String>,
    pub config: Value,
}

impl Image {
    /// Reads the image `reference` (by ref.name annotation; None = the only
    /// image) from an OCI layout directory.
    pub fn from_layout(layout: &Path, reference: Option<&str>) -> Image {
        let index = read_json(&layout.join("index.json"));
        let entries = index["manifests"].as_array().expect("index.manifests");
        let entry = match reference {
            Some(r) => entries
                .iter()
                .find(|e| e["annotations"][REF_NAME].as_str() == Some(r))
                .unwrap_or_else(|| panic!("no {r} in {}: {index}", layout.display())),
            None => {
                assert_eq!(
                    entries.len(),
                    1,
                    "one image expected in {}: {index}",
                    layout.display()
                );
                &entries[0]
            }
        };
        let manifest_digest = entry["digest"].as_str().unwrap().to_string();
        let manifest = read_json(&blob_path(layout, &manifest_digest));
        let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
        let config = read_json(&blob_path(layout, &config_digest));
        let layers_json = manifest["layers"].as_array().unwrap();
        Image {
            reference: entry["annotations"][REF_NAME]
                .as_str()
                .unwrap_or("")
                .to_string(),
            manifest_digest,
            manifest_size: entry["size"].as_u64().unwrap(),
            config_digest,
            layers: layers_json
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string())
                .collect(),
            layer_sizes: layers_json
                .iter()
                .map(|l| l["size"].as_u64().unwrap())
                .collect(),
            diff_ids: config["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_string())
                .collect(),
            config,
        }
    }

    /// Reads an image from an oci-archive (extracted into a temp dir).
    pub fn from_oci_archive(archive: &Path, reference: Option<&str>) -> Image {
        let tmp = TempDir::new().unwrap();
        extract(archive, tmp.path());
        Image::from_layout(tmp.path(), reference)
    }

    /// "sha256:<hex of config>", the image ID docker/podman/berth show.
    pub fn id(&self) -> &str {
        &self.config_digest
    }

    pub fn size(&self) -> u64 {
        self.layer_sizes.iter().sum()
    }
}

/// The busybox fixture, made once per test binary by fixtures/busybox/make.sh.
pub struct Fixture {
    /// The oci-archive, tagged busybox:latest.
    pub archive: PathBuf,
    pub image: Image,
}

/// Makes (once per test binary) the busybox fixture image. It is written to a
/// fixed path under cargo's target tmp dir; make.sh renames it into place
/// atomically and its output is deterministic, so concurrent test binaries
/// can share it.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-fixtures");
        fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("busybox.oci.tar");
        let script = repo_root().join("fixtures/busybox/make.sh");
        let out = run(Command::new("bash")
            .arg(&script)
            .arg("-o")
            .arg(&archive)
            .env_remove("BERTH")
            .env_remove("BERTH_ROOT"));
        assert!(
            out.status.success(),
            "{} failed\n{}",
            script.display(),
            show(&out)
        );
        let printed = stdout(&out).trim().to_string();
        let image = Image::from_oci_archive(&archive, Some("busybox:latest"));
        assert_eq!(
            printed, image.manifest_digest,
            "make.sh must print the manifest digest"
        );
        Fixture { archive, image }
    })
}

/// A file to put in a derived image's new layer.
pub struct File<'a> {
    pub path: &'a str,
    pub content: Vec<u8>,
    pub mode: u32,
}

impl<'a> File<'a> {
    pub fn new(path: &'a str, content: impl Into<Vec<u8>>) -> File<'a> {
        File {
            path,
            content: content.into(),
            mode: 0o644,
        }
    }
}

/// `len` bytes of deterministic, incompressible-looking data.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Makes a new oci-archive at `out`: the image of `base` (an oci-archive
/// with one image) plus one gzip layer holding `files`, with `labels` added to
/// the config, tagged `reference` (ref.name annotation). Deterministic.
pub fn derive_image(
    base: &Path,
    out: &Path,
    reference: &str,
    files: &[File],
    labels: &[(&str, &str)],
) -> Image {
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    extract(base, &layout);
    let baseimg = Image::from_layout(&layout, None);
    let blobs = layout.join("blobs/sha256");

    let put = |path: &Path| -> (String, u64) {
        let digest = sha256_file(path);
        let size = fs::metadata(path).unwrap().len();
        fs::rename(path, blob_path(&layout, &digest)).unwrap();
        (digest, size)
    };

    // The new layer.
    let rootfs = tmp.path().join("rootfs");
    let mut top: BTreeSet<String> = BTreeSet::new();
    for f in files {
        let rel = f.path.trim_start_matches('/');
        let p = rootfs.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, &f.content).unwrap();
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(f.mode)).unwrap();
        top.insert(rel.split('/').next().unwrap().to_string());
    }
    run_ok(
        Command::new("find")
            .arg(&rootfs)
            .args(["-type", "d", "-exec", "chmod", "0755", "{}", "+"]),
    );
    let layer_tar = tmp.path().join("layer.tar");
    let names: Vec<&str> = top.iter().map(String::as_str).collect();
    dtar(&rootfs, &layer_tar, &names);
    let diff_id = sha256_file(&layer_tar);
    let gz = blobs.join("layer.tmp");
    let gz_file = fs::File::create(&gz).unwrap();
    run_ok(
        Command::new("gzip")
            .args(["-n", "-1", "-c"])
            .arg(&layer_tar)
            .stdout(gz_file),
    );
    let (layer_digest, layer_size) = put(&gz);

    // The config.
    let mut config = baseimg.config.clone();
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(diff_id));
    if config["history"].is_null() {
        config["history"] = json!([]);
    }
    config["history"]
        .as_array_mut()
        .unwrap()
        .push(json!({"created": "1970-01-01T00:00:00Z", "created_by": format!("berth tests: derive {reference}")}));
    if !labels.is_empty() {
        if !config["config"]["Labels"].is_object() {
            config["config"]["Labels"] = json!({});
        }
        for (k, v) in labels {
            config["config"]["Labels"][*k] = json!(v);
        }
    }
    let cfg_path = blobs.join("config.tmp");
    fs::write(&cfg_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let (config_digest, config_size) = put(&cfg_path);

    // The manifest.
    let mut manifest = read_json(&blob_path(&layout, &baseimg.manifest_digest));
    manifest["config"] =
        json!({"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size});
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer_size}));
    let man_path = blobs.join("manifest.tmp");
    fs::write(&man_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (manifest_digest, manifest_size) = put(&man_path);

    // Drop the base's manifest and config blobs: only what the image uses.
    for d in [&baseimg.manifest_digest, &baseimg.config_digest] {
        fs::remove_file(blob_path(&layout, d)).unwrap();
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {REF_NAME: reference},
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    dtar(&layout, out, &["oci-layout", "index.json", "blobs"]);
    Image::from_oci_archive(out, Some(reference))
}

// ---------------------------------------------------------------------------
// Store checks

/// Checks that an OCI layout (berth's root or an extracted archive) is
/// consistent: oci-layout is right, index.json is valid, every blob any
/// index entry reaches exists with the right size, every file under blobs/ is
/// named by the sha256 of its content, and there are no temp files or stray
/// directories under blobs/. Returns the number of blobs.
pub fn check_layout(layout: &Path) -> usize {
    let oci_layout = read_json(&layout.join("oci-layout"));
    assert_eq!(
        oci_layout["imageLayoutVersion"],
        "1.0.0",
        "{}/oci-layout",
        layout.display()
    );
    let index = read_json(&layout.join("index.json"));
    assert_eq!(index["schemaVersion"], 2, "index.json: {index}");
    let entries = index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("index.json has no manifests array: {index}"));

    // Every file under blobs/ is a regular file named by its digest.
    let blobs_dir = layout.join("blobs");
    let mut files = Vec::new();
    let mut names = Vec::new();
    if blobs_dir.exists() {
        for alg in fs::read_dir(&blobs_dir).unwrap() {
            let alg = alg.unwrap();
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            assert!(
                alg.file_type().unwrap().is_dir() && alg_name == "sha256",
                "stray entry under blobs/: {}",
                alg.path().display()
            );
            for blob in fs::read_dir(alg.path()).unwrap() {
                let blob = blob.unwrap();
                let name = blob.file_name().to_string_lossy().into_owned();
                assert!(
                    name.len() == 64
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                    "temp or stray file under blobs/sha256: {}",
                    blob.path().display()
                );
                assert!(
                    blob.file_type().unwrap().is_file(),
                    "not a regular file: {}",
                    blob.path().display()
                );
                names.push(format!("sha256:{name}"));
                files.push(blob.path());
            }
        }
    }
    let sums = sha256_files(&files);
    for (name, sum) in names.iter().zip(&sums) {
        assert_eq!(name, sum, "blob content does not match its name");
    }

    // Everything reachable from index.json exists with the right size.
    let mut seen = BTreeSet::new();
    for e in entries {
        check_descriptor(layout, e, &mut seen);
    }
    files.len()
}

fn check_descriptor(layout: &Path, desc: &Value, seen: &mut BTreeSet<String>) {
    let digest = desc["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("descriptor without digest: {desc}"));
    let size = desc["size"]
        .as_u64()
        .unwrap_or_else(|| panic!("descriptor without size: {desc}"));
    let path = blob_path(layout, digest);
    let meta =
        fs::metadata(&path).unwrap_or_else(|e| panic!("missing blob {digest} ({e}) for {desc}"));
    assert_eq!(meta.len(), size, "blob {digest} has the wrong size");
    if !seen.insert(digest.to_string()) {
        return;
    }
    let media = desc["mediaType"].as_str().unwrap_or("");
    if media.contains("manifest") || media.contains("index") || media.contains("manifest.list") {
        let doc = read_json(&path);
        if let Some(children) = doc["manifests"].as_array() {
            for c in children {
                check_descriptor(layout, c, seen);
            }
        }
        if doc["config"].is_object() {
            check_descriptor(layout, &doc["config"], seen);
        }
        if let Some(layers) = doc["layers"].as_array() {
            for l in layers {
                check_descriptor(layout, l, seen);
            }
        }
    }
}

/// The ref.name → manifest digest map of a layout's index.json.
pub fn layout_tags(layout: &Path) -> BTreeMap<String, String> {
    let index = read_json(&layout.join("index.json"));
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["annotations"][REF_NAME].as_str()?.to_string(),
                e["digest"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// A set of strings, for comparing tag lists.
pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Waiting

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
