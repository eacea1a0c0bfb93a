//! The `oci-client` crate against the registry started in-process: push an
//! image, pull it back, list tags, fetch the manifest.

use berth_registry_server::{Config, Server};
use oci_client::client::{ClientConfig, ClientProtocol, Config as OciConfig, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

async fn start() -> (tempfile::TempDir, String, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        addr: "127.0.0.1:0".to_string(),
        root: dir.path().join("storage"),
        ..Config::default()
    };
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (dir, addr, stop)
}

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_pulls_and_lists() {
    let (_dir, addr, stop) = start().await;
    let client = client();
    let auth = RegistryAuth::Anonymous;
    let layers: Vec<ImageLayer> = (0..3u8)
        .map(|i| {
            ImageLayer::new(
                vec![i; 100_000 + usize::from(i)],
                "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
                None,
            )
        })
        .collect();
    let config = OciConfig::new(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
        "application/vnd.oci.image.config.v1+json".to_string(),
        None,
    );
    let reference: Reference = format!("{addr}/tools/app:1.0").parse().unwrap();
    let pushed = client
        .push(&reference, &layers, config.clone(), &auth, None)
        .await
        .unwrap();
    assert!(pushed.manifest_url.contains("/v2/tools/app/manifests/"));

    let pulled = client
        .pull(
            &reference,
            &auth,
            vec!["application/vnd.oci.image.layer.v1.tar+gzip"],
        )
        .await
        .unwrap();
    assert_eq!(pulled.layers.len(), 3);
    // oci-client fetches layers concurrently: compare in a fixed order.
    let mut got: Vec<&[u8]> = pulled.layers.iter().map(|l| &l.data[..]).collect();
    got.sort_by_key(|d| d.len());
    for (got, want) in got.iter().zip(&layers) {
        assert!(*got == &want.data[..], "layer content differs");
    }
    assert_eq!(pulled.config.data, config.data);

    // A second tag through the same content, then the tag list.
    let second: Reference = format!("{addr}/tools/app:2.0").parse().unwrap();
    client
        .push(&second, &layers, config, &auth, None)
        .await
        .unwrap();
    let tags = client
        .list_tags(&reference, &auth, None, None)
        .await
        .unwrap();
    assert_eq!(tags.tags, vec!["1.0".to_string(), "2.0".to_string()]);
    let page = client
        .list_tags(&reference, &auth, Some(1), None)
        .await
        .unwrap();
    assert_eq!(page.tags, vec!["1.0".to_string()]);

    let (manifest, digest) = client.pull_image_manifest(&reference, &auth).await.unwrap();
    assert_eq!(manifest.layers.len(), 3);
    assert!(digest.starts_with("sha256:"));
    let _ = stop.send(());
}
