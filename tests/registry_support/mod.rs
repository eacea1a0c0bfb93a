//! Support for the registry server tests: a `berth registry serve` child on
//! an ephemeral port, and curl requests with status, headers, body and the
//! error code of the spec's envelope.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{BERTH, find_tool, show};

/// A running `berth --root DIR registry serve --addr 127.0.0.1:0`.
pub struct Server {
    pub dir: TempDir,
    child: Option<Child>,
    pub addr: String,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with("")
    }

    /// Starts with `yaml` as the config file (empty: no file).
    pub fn start_with(yaml: &str) -> Server {
        Server::start_env(yaml, &[])
    }

    pub fn start_env(yaml: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-test.")
            .tempdir()
            .unwrap();
        let config = (!yaml.is_empty()).then(|| {
            let p = dir.path().join("registry.yaml");
            fs::write(&p, yaml).unwrap();
            p
        });
        let mut s = Server {
            dir,
            child: None,
            addr: String::new(),
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// A path beside the storage for test files.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch");
        fs::create_dir_all(&p).unwrap();
        p.join(name)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(BERTH);
        cmd.env_remove("BERTH_ROOT")
            .arg("--root")
            .arg(self.root())
            .args(["registry", "serve", "--addr", "127.0.0.1:0"]);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let log = fs::File::create(self.dir.path().join("server.log")).unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn berth registry serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "first stdout line should be `listening on ADDR`, got {line:?}; log:\n{}",
                    self.log()
                )
            })
            .to_string();
        self.addr = addr;
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, then start again on the same storage (new port).
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let c = self.child.as_mut().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let status = c.wait().unwrap();
        self.child = None;
        status
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `/proc/PID/status` field in kB (VmHWM, VmRSS).
    pub fn proc_status_kb(&self, field: &str) -> u64 {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn req(&self, method: &str, path: &str) -> Req {
        Req::new(method, &self.url(path))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A response as curl saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The first error code of the spec's envelope.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }

    /// Asserts status and error code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "{self:?} / {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.code(), code, "{}", String::from_utf8_lossy(&self.body));
    }

    pub fn assert_status(&self, status: u16) -> &Resp {
        assert_eq!(
            self.status,
            status,
            "headers {:?}, body {}",
            self.headers,
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A curl request being built.
pub struct Req {
    method: String,
    url: String,
    headers: Vec<String>,
    body: Option<Vec<u8>>,
    body_file: Option<PathBuf>,
    extra: Vec<String>,
}

impl Req {
    pub fn new(method: &str, url: &str) -> Req {
        Req {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
            body_file: None,
            extra: Vec::new(),
        }
    }

    pub fn header(mut self, h: &str) -> Req {
        self.headers.push(h.to_string());
        self
    }

    pub fn body(mut self, b: &[u8]) -> Req {
        self.body = Some(b.to_vec());
        self
    }

    pub fn body_file(mut self, p: &Path) -> Req {
        self.body_file = Some(p.to_path_buf());
        self
    }

    pub fn arg(mut self, a: &str) -> Req {
        self.extra.push(a.to_string());
        self
    }

    pub fn send(self) -> Resp {
        let url = self.url.clone();
        self.try_send()
            .unwrap_or_else(|| panic!("curl could not complete a request to {url}"))
    }

    /// Like `send`, but `None` when curl fails (connection refused or reset).
    pub fn send_lenient(self) -> Option<Resp> {
        self.try_send()
    }

    fn try_send(self) -> Option<Resp> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = std::env::temp_dir().join(format!("berth-curl.{}.{n}", std::process::id()));
        fs::create_dir_all(&tmp).unwrap();
        let head = tmp.join("h");
        let out = tmp.join("b");
        let mut cmd = Command::new(find_tool("curl").expect("curl"));
        cmd.args(["-s", "-S", "--path-as-is", "-o"])
            .arg(&out)
            .arg("-D")
            .arg(&head)
            .args(["-w", "%{http_code}"]);
        if self.method == "HEAD" {
            cmd.arg("-I");
        } else {
            cmd.args(["-X", &self.method]);
        }
        for h in &self.headers {
            cmd.args(["-H", h]);
        }
        let data_path = tmp.join("d");
        if let Some(b) = &self.body {
            fs::File::create(&data_path).unwrap().write_all(b).unwrap();
            cmd.arg("--data-binary")
                .arg(format!("@{}", data_path.display()));
        } else if let Some(f) = &self.body_file {
            cmd.arg("--data-binary").arg(format!("@{}", f.display()));
        }
        if self.body.is_some() || self.body_file.is_some() {
            // curl would send form encoding otherwise.
            if !self
                .headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("content-type:"))
            {
                cmd.args(["-H", "Content-Type: application/octet-stream"]);
            }
        }
        cmd.args(&self.extra).arg(&self.url);
        let output = cmd.stdin(Stdio::null()).output().expect("run curl");
        let status: u16 = match String::from_utf8_lossy(&output.stdout).trim().parse() {
            Ok(s) if s != 0 && output.status.success() => s,
            _ => {
                eprintln!("curl failed: {}", show(&output));
                let _ = fs::remove_dir_all(&tmp);
                return None;
            }
        };
        let raw = fs::read_to_string(&head).unwrap_or_default();
        // Only the last response's headers (curl writes 100 Continue too).
        let block = raw
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .last()
            .unwrap_or("")
            .to_string();
        let headers = block
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        // With -I curl writes the headers where the body would go.
        let body = if self.method == "HEAD" {
            Vec::new()
        } else {
            fs::read(&out).unwrap_or_default()
        };
        let _ = fs::remove_dir_all(&tmp);
        Some(Resp {
            status,
            headers,
            body,
        })
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    // The tests avoid a hashing dependency: sha256sum is in coreutils.
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

pub fn sha512_digest_of(bytes: &[u8]) -> String {
    let mut child = Command::new("sha512sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "sha512:{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    )
}

/// Pseudo-random bytes (xorshift), distinct per seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Uploads a blob monolithically; asserts 201.
pub fn push_blob(s: &Server, repo: &str, data: &[u8]) -> String {
    let d = digest_of(data);
    s.req("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data)
        .send()
        .assert_status(201);
    d
}

/// Pushes a one-layer image (config + layer + manifest) under `tag`;
/// returns (manifest bytes, manifest digest, config digest, layer digest).
pub fn push_image(
    s: &Server,
    repo: &str,
    tag: &str,
    seed: u64,
) -> (Vec<u8>, String, String, String) {
    let config = format!(
        "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}},\"seed\":{seed}}}"
    );
    let layer = random_bytes(1000 + seed as usize % 500, seed);
    let cd = push_blob(s, repo, config.as_bytes());
    let ld = push_blob(s, repo, &layer);
    let manifest = image_manifest(&cd, config.len(), &[(&ld, layer.len())], None);
    let md = digest_of(&manifest);
    s.req("PUT", &format!("/v2/{repo}/manifests/{tag}"))
        .header("Content-Type: application/vnd.oci.image.manifest.v1+json")
        .body(&manifest)
        .send()
        .assert_status(201);
    (manifest, md, cd, ld)
}

pub fn image_manifest(
    config: &str,
    config_size: usize,
    layers: &[(&str, usize)],
    extra: Option<(&str, Value)>,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": config_size,
        },
        "layers": layers.iter().map(|(d, n)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d,
            "size": n,
        })).collect::<Vec<_>>(),
    });
    if let Some((k, v)) = extra {
        m[k] = v;
    }
    serde_json::to_vec(&m).unwrap()
}
