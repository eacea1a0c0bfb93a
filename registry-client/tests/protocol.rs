//! The client against a scripted registry shaped like Docker Hub: bearer
//! tokens (GET with basic credentials, OAuth2 POST with a refresh token),
//! scopes merged for mounts, blob GETs redirected to another host that must
//! never see the registry's token, a 429 with rate-limit headers, a 500 and a
//! connection dropped mid-blob (resumed with Range).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use berth_oci::{Digest, Reference, Store};
use berth_registry_client::{
    Client, ClientOptions, CredentialStore, Error, Event, Progress, PullOptions, PushOptions,
};
use support::{Mock, PASSWORD, REFRESH_TOKEN, USER};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Progress for Recorder {
    fn event(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Puts a one-layer image into `repo:tag`; returns (manifest, layer) digests.
fn seed_image(mock: &Mock, repo: &str, tag: &str) -> (Digest, Digest) {
    let layer = noise(3 << 20);
    let layer_digest = mock.add_blob(repo, &layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
        "config": {}
    })
    .to_string();
    let config_digest = mock.add_blob(repo, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest.to_string(), "size": layer.len()}]
    })
    .to_string();
    mock.add_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes());
    (Digest::sha256_of(manifest.as_bytes()), layer_digest)
}

fn docker_config(dir: &std::path::Path, host: &str, entry: serde_json::Value) -> CredentialStore {
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        serde_json::json!({"auths": {host: entry}}).to_string(),
    )
    .unwrap();
    CredentialStore::with_docker_config(path)
}

fn client(mock: &Mock, credentials: CredentialStore, progress: Arc<dyn Progress>) -> Client {
    Client::new(ClientOptions {
        insecure_registries: vec![mock.host()],
        credentials,
        backoff: Duration::from_millis(10),
        progress,
        ..ClientOptions::default()
    })
    .unwrap()
}

fn basic_entry() -> serde_json::Value {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    serde_json::json!({ "auth": auth })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_push_copy_through_tokens_redirects_and_faults() {
    let mock = Mock::start().await;
    let host = mock.host();
    let (manifest_digest, layer_digest) = seed_image(&mock, "lib/app", "1");
    {
        let mut s = mock.state.lock().unwrap();
        s.faults.manifest_429 = 1;
        s.faults.retry_after = 1;
        s.faults.flaky_blob = Some(layer_digest.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let recorder = Arc::new(Recorder::default());
    let client = client(
        &mock,
        docker_config(dir.path(), &host, basic_entry()),
        recorder.clone(),
    );

    let reference = Reference::parse(&format!("{host}/lib/app:1")).unwrap();
    let pulled = client
        .pull(&store, &reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.descriptor.digest, manifest_digest);
    let layer = std::fs::read(store.blob_path(&layer_digest)).unwrap();
    assert_eq!(Digest::sha256_of(&layer), layer_digest);
    assert_eq!(
        store.resolve_tag(&reference).unwrap().unwrap().digest,
        manifest_digest
    );
    {
        let s = mock.state.lock().unwrap();
        let r = &s.recorded;
        assert_eq!(
            r.blob_host_authorized, 0,
            "the token leaked to the blob host"
        );
        assert_eq!(r.rate_limited, 1);
        let half = (3 << 20) / 2;
        assert!(
            r.ranges.contains(&format!("bytes={half}-")),
            "no Range resume: {:?}",
            r.ranges
        );
        assert!(
            r.token_scopes
                .contains(&vec!["repository:lib/app:pull".to_string()])
        );
    }
    let events = recorder.0.lock().unwrap().clone();
    assert!(
        events.iter().any(|e| matches!(e, Event::Retrying { error, .. }
            if error.contains("TOOMANYREQUESTS") && error.contains("ratelimit-remaining: 0;w=21600"))),
        "no rate-limit retry event: {events:?}"
    );

    // Push into another repository, mounting from the first: one token
    // covering both repositories.
    let destination = Reference::parse(&format!("{host}/lib/copy:2")).unwrap();
    let options = PushOptions {
        mount_from: Some("lib/app".to_string()),
        ..PushOptions::default()
    };
    let pushed = client
        .push(&store, &pulled.descriptor, &destination, &options)
        .await
        .unwrap();
    assert_eq!(pushed.digest, manifest_digest);
    {
        let s = mock.state.lock().unwrap();
        assert_eq!(s.recorded.mounts, 2, "config and layer mounted");
        let merged = s.recorded.token_scopes.iter().any(|scopes| {
            scopes.contains(&"repository:lib/copy:pull,push".to_string())
                && scopes.contains(&"repository:lib/app:pull".to_string())
        });
        assert!(merged, "scopes not merged: {:?}", s.recorded.token_scopes);
        assert!(
            s.manifests
                .contains_key(&("lib/copy".to_string(), "2".to_string()))
        );
    }

    // Copy registry to registry, and list tags.
    let copied = client
        .copy(
            &reference,
            &Reference::parse(&format!("{host}/other/x:3")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(copied.digest, manifest_digest);
    let repo = client.repository(&host, "other/x").await.unwrap();
    assert_eq!(repo.list_tags().await.unwrap(), vec!["3".to_string()]);

    // A pushed blob that needs uploading (not mountable) goes up and verifies.
    let fresh = noise(5000);
    let fresh_store_digest = store.write_blob(&fresh, None).unwrap();
    let desc = berth_oci::Descriptor::new(
        "application/octet-stream",
        fresh_store_digest.clone(),
        fresh.len() as u64,
    );
    let push_repo = client
        .repository(&host, "lib/copy")
        .await
        .unwrap()
        .for_push();
    push_repo
        .push_blob_from_store(&store, &desc, None)
        .await
        .unwrap();
    let back = push_repo.fetch_blob_to(&desc, Vec::new()).await.unwrap();
    assert_eq!(back, fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_rate_limit_fails_with_the_headers_in_the_message() {
    let mock = Mock::start().await;
    let host = mock.host();
    seed_image(&mock, "lib/app", "1");
    {
        let mut s = mock.state.lock().unwrap();
        s.faults.manifest_429 = 100;
        s.faults.retry_after = 3600;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let client = client(
        &mock,
        docker_config(dir.path(), &host, basic_entry()),
        Arc::new(berth_registry_client::NoProgress),
    );
    let reference = Reference::parse(&format!("{host}/lib/app:1")).unwrap();
    let err = client
        .pull(&store, &reference, &PullOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::RateLimited { .. }), "{text}");
    for want in [
        "TOOMANYREQUESTS",
        "retry after 3600s",
        "ratelimit-limit: 100;w=21600",
        "ratelimit-remaining: 0;w=21600",
    ] {
        assert!(text.contains(want), "{want:?} missing from {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_goes_through_the_oauth2_post() {
    let mock = Mock::start().await;
    let host = mock.host();
    let (manifest_digest, _) = seed_image(&mock, "lib/app", "1");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let client = client(
        &mock,
        docker_config(
            dir.path(),
            &host,
            serde_json::json!({"auth": "", "identitytoken": REFRESH_TOKEN}),
        ),
        Arc::new(berth_registry_client::NoProgress),
    );
    let reference = Reference::parse(&format!("{host}/lib/app:1")).unwrap();
    let pulled = client
        .pull(&store, &reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.descriptor.digest, manifest_digest);
    assert!(mock.state.lock().unwrap().recorded.oauth_posts >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_registry_code() {
    let mock = Mock::start().await;
    let host = mock.host();
    seed_image(&mock, "lib/app", "1");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let client = client(
        &mock,
        docker_config(dir.path(), &host, basic_entry()),
        Arc::new(berth_registry_client::NoProgress),
    );
    let missing = Reference::parse(&format!("{host}/lib/app:nope")).unwrap();
    let err = client
        .pull(&store, &missing, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ManifestUnknown { .. }), "{err}");

    let bad = berth_registry_client::Credential::Basic {
        username: USER.to_string(),
        password: "wrong".to_string(),
    };
    let err = client.verify_login(&host, &bad).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    let good = berth_registry_client::Credential::Basic {
        username: USER.to_string(),
        password: PASSWORD.to_string(),
    };
    client.verify_login(&host, &good).await.unwrap();

    // Anonymous: the token service refuses, the error says how to log in.
    let anonymous = Client::new(ClientOptions {
        insecure_registries: vec![host.clone()],
        credentials: CredentialStore::anonymous(),
        backoff: Duration::from_millis(10),
        ..ClientOptions::default()
    })
    .unwrap();
    let err = anonymous
        .pull(
            &store,
            &Reference::parse(&format!("{host}/lib/app:1")).unwrap(),
            &PullOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("berth login"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_resumes_from_the_server_offset() {
    let mock = Mock::start().await;
    let host = mock.host();
    mock.state.lock().unwrap().faults.cut_first_patch = true;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let client = Client::new(ClientOptions {
        insecure_registries: vec![host.clone()],
        credentials: docker_config(dir.path(), &host, basic_entry()),
        backoff: Duration::from_millis(10),
        monolithic_upload_max: 1 << 20,
        upload_chunk_size: 1 << 20,
        ..ClientOptions::default()
    })
    .unwrap();
    let data = noise((3 << 20) + 12345);
    let digest = store.write_blob(&data, None).unwrap();
    let desc = berth_oci::Descriptor::new("application/octet-stream", digest, data.len() as u64);
    let repo = client
        .repository(&host, "up/load")
        .await
        .unwrap()
        .for_push();
    repo.push_blob_from_store(&store, &desc, None)
        .await
        .unwrap();
    let s = mock.state.lock().unwrap();
    assert_eq!(
        s.recorded.upload_status_checks, 1,
        "{:?}",
        s.recorded.patches
    );
    let half = (1 << 20) / 2;
    assert_eq!(
        s.recorded.patches[..2],
        [
            "0-1048575".to_string(),
            format!("{half}-{}", half + (1 << 20) - 1)
        ],
        "{:?}",
        s.recorded.patches
    );
    assert_eq!(
        s.blobs.get(&desc.digest.to_string()).map(|b| b.len()),
        Some(data.len())
    );
}
