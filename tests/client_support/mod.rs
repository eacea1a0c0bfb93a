//! Test support for the registry client: Debian's `docker-registry`
//! (distribution) on 127.0.0.1, optionally with htpasswd auth and TLS from a
//! CA made here with the openssl CLI.

pub mod hub;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::common::{find_tool, run_ok, wait_for};

pub const USER: &str = "berth";
pub const PASSWORD: &str = "s3cret-pass";

#[derive(Default)]
pub struct RegistryOptions {
    pub tls: bool,
    pub htpasswd: bool,
}

/// A distribution registry in a temp dir, killed when dropped.
pub struct DockerRegistry {
    child: Child,
    dir: TempDir,
    pub port: u16,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn openssl(dir: &Path, args: &[&str]) {
    run_ok(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

impl DockerRegistry {
    pub fn start(options: RegistryOptions) -> DockerRegistry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry.")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            d.join("data").display()
        );
        if options.tls {
            make_certs(d);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.crt").display(),
                d.join("server.key").display()
            ));
        }
        if options.htpasswd {
            let out = run_ok(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
            fs::write(d.join("htpasswd"), &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                d.join("htpasswd").display()
            ));
        }
        fs::write(d.join("config.yml"), config).unwrap();
        let log = fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new(find_tool("docker-registry").expect("docker-registry"))
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = DockerRegistry { child, dir, port };
        assert!(
            wait_for(Duration::from_secs(20), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "docker-registry did not listen on {port}\n{}",
            registry.log()
        );
        registry
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A directory skopeo takes as --cert-dir (it trusts the *.crt in it).
    pub fn cert_dir(&self) -> PathBuf {
        let p = self.dir.path().join("certs.d");
        fs::create_dir_all(&p).unwrap();
        fs::copy(self.ca(), p.join("ca.crt")).unwrap();
        p
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `berth registry serve` (issue 6's server) on 127.0.0.1:0 with the given
/// YAML config, killed when dropped.
pub struct BerthRegistry {
    child: Child,
    _dir: TempDir,
    pub addr: String,
}

impl BerthRegistry {
    /// `config` may use `{dir}` for the server's temp dir.
    pub fn start(config: &str) -> BerthRegistry {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::Builder::new()
            .prefix("berth-server.")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let htpasswd = run_ok(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
        fs::write(d.join("htpasswd"), &htpasswd.stdout).unwrap();
        let config = config.replace("{dir}", &d.display().to_string());
        fs::write(d.join("config.yml"), config).unwrap();
        let mut child = Command::new(crate::common::BERTH)
            .arg("--root")
            .arg(d.join("storage"))
            .args(["registry", "serve", "--addr", "127.0.0.1:0", "--config"])
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(d.join("server.log")).unwrap())
            .spawn()
            .expect("start berth registry serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "berth registry serve printed {first:?}\n{}",
                    fs::read_to_string(d.join("server.log")).unwrap_or_default()
                )
            })
            .trim()
            .to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        BerthRegistry {
            child,
            _dir: dir,
            addr,
        }
    }
}

impl Drop for BerthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
