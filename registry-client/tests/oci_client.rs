//! Cross-check with an independent client: an image pushed with this crate
//! to Debian's docker-registry (distribution) is pulled by `oci-client`, and
//! the manifest digest and every blob agree.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_oci::{Descriptor, Digest, Reference, Store};
use berth_registry_client::{Client, ClientOptions, CredentialStore, PushOptions};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1" | "yes"))
}

fn start_registry() -> Option<Registry> {
    let binary = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(binary) = binary else {
        assert!(!in_ci(), "docker-registry is not installed (CI=true)");
        eprintln!("SKIP: docker-registry is not installed");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(binary)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let registry = Registry {
        child,
        _dir: dir,
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(registry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pulls_what_berth_pushed() {
    let Some(registry) = start_registry() else {
        return;
    };
    let host = format!("127.0.0.1:{}", registry.port);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();

    // Two layers (one above the monolithic-upload limit, so it goes up in
    // PATCH chunks), a config and a manifest, written to the store.
    let small: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let large: Vec<u8> = (0..(70u32 << 20)).map(|i| (i % 253) as u8).collect();
    let mut layers = Vec::new();
    for bytes in [&small, &large] {
        let d = store.write_blob(bytes, None).unwrap();
        layers.push(Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar",
            d,
            bytes.len() as u64,
        ));
    }
    drop(large);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
        "config": {}
    })
    .to_string();
    let config_digest = store.write_blob(config.as_bytes(), None).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers,
    })
    .to_string();
    let manifest_digest = store.write_blob(manifest.as_bytes(), None).unwrap();
    let top = Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json",
        manifest_digest.clone(),
        manifest.len() as u64,
    );

    let client = Client::new(ClientOptions {
        insecure_registries: vec![host.clone()],
        credentials: CredentialStore::anonymous(),
        ..ClientOptions::default()
    })
    .unwrap();
    let destination = Reference::parse(&format!("{host}/cross/check:v1")).unwrap();
    client
        .push(&store, &top, &destination, &PushOptions::default())
        .await
        .unwrap();

    let oci = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let reference: oci_client::Reference = format!("{host}/cross/check:v1").parse().unwrap();
    let (raw, digest) = oci
        .pull_manifest_raw(
            &reference,
            &RegistryAuth::Anonymous,
            &["application/vnd.oci.image.manifest.v1+json"],
        )
        .await
        .unwrap();
    assert_eq!(digest, manifest_digest.to_string());
    assert_eq!(raw, manifest.as_bytes());
    let (parsed, _) = oci
        .pull_image_manifest(&reference, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(parsed.layers.len(), 2);
    for layer in &parsed.layers {
        let mut out = Vec::new();
        oci.pull_blob(&reference, layer, &mut out).await.unwrap();
        assert_eq!(Digest::sha256_of(&out).to_string(), layer.digest);
        assert_eq!(out.len() as i64, layer.size);
    }
}
