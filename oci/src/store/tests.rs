use std::io::Write;

use super::*;
use crate::manifest::Descriptor;
use crate::reference::Reference;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn new_root_is_an_oci_layout() {
    let (dir, _store) = store();
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert!(index["manifests"].as_array().unwrap().is_empty());
}

#[test]
fn ingest_commits_only_on_match_and_resumes() {
    let (_dir, store) = store();
    let data = b"hello world".repeat(1000);
    let digest = Digest::sha256_of(&data);

    let mut ingest = store.ingest("test-ref", Algorithm::Sha256).unwrap();
    ingest.write_all(&data[..5000]).unwrap();
    drop(ingest); // interrupted
    assert!(!store.has_blob(&digest));

    let mut ingest = store.ingest("test-ref", Algorithm::Sha256).unwrap();
    assert_eq!(ingest.offset(), 5000);
    ingest.write_all(&data[5000..]).unwrap();
    let got = ingest
        .commit(Some(data.len() as u64), Some(&digest))
        .unwrap();
    assert_eq!(got, digest);
    assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), data);

    let wrong = Digest::sha256_of(b"other");
    let mut ingest = store.ingest("bad", Algorithm::Sha256).unwrap();
    ingest.write_all(b"something").unwrap();
    match ingest.commit(None, Some(&wrong)) {
        Err(StoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::sha256_of(b"something"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.has_blob(&Digest::sha256_of(b"something")));
    // The failed ingest is gone: a new one with the same ref starts empty.
    assert_eq!(store.ingest("bad", Algorithm::Sha256).unwrap().offset(), 0);

    let mut ingest = store.ingest("short", Algorithm::Sha256).unwrap();
    ingest.write_all(b"abc").unwrap();
    assert!(matches!(
        ingest.commit(Some(4), None),
        Err(StoreError::SizeMismatch { .. })
    ));
}

#[test]
fn sha512_blobs_live_under_their_algorithm() {
    let (_dir, store) = store();
    let d = Digest::of_bytes(Algorithm::Sha512, b"x");
    store.write_blob(b"x", Some(&d)).unwrap();
    assert!(
        store
            .blob_path(&d)
            .to_string_lossy()
            .contains("blobs/sha512/")
    );
    assert_eq!(store.read_document(&d, "test").unwrap(), b"x");
}

#[test]
fn tags_are_set_moved_and_removed() {
    let (_dir, store) = store();
    let a = store.write_blob(b"{\"a\":1}", None).unwrap();
    let b = store.write_blob(b"{\"b\":1}", None).unwrap();
    let da = Descriptor::new(crate::media_types::OCI_MANIFEST, a.clone(), 7);
    let db = Descriptor::new(crate::media_types::OCI_MANIFEST, b.clone(), 7);
    let r = Reference::parse("busybox").unwrap();
    store.set_tag(&r, &da).unwrap();
    assert_eq!(store.resolve_tag(&r).unwrap().unwrap().digest, a);
    store.set_tag(&r, &db).unwrap();
    assert_eq!(store.resolve_tag(&r).unwrap().unwrap().digest, b);
    assert_eq!(store.entries().unwrap().len(), 1);
    let e = &store.entries().unwrap()[0];
    assert_eq!(
        e.descriptor
            .annotation(crate::media_types::ANNOTATION_REF_NAME),
        Some("busybox:latest")
    );
    assert_eq!(
        e.descriptor
            .annotation(crate::media_types::ANNOTATION_CONTAINERD_NAME),
        Some("docker.io/library/busybox:latest")
    );
    assert_eq!(store.remove_tag(&r).unwrap().unwrap().digest, b);
    assert!(store.resolve_tag(&r).unwrap().is_none());
}

#[test]
fn prune_keeps_what_tags_reach() {
    let (_dir, store) = store();
    let layer = store.write_blob(b"layer-bytes", None).unwrap();
    let config = store.write_blob(b"{}", None).unwrap();
    let orphan = store.write_blob(b"orphan", None).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":2}},"layers":[{{"mediaType":"{}","digest":"{layer}","size":11}}]}}"#,
        crate::media_types::OCI_MANIFEST,
        crate::media_types::OCI_CONFIG,
        crate::media_types::OCI_LAYER
    );
    let m = store.write_blob(manifest.as_bytes(), None).unwrap();
    let desc = Descriptor::new(
        crate::media_types::OCI_MANIFEST,
        m.clone(),
        manifest.len() as u64,
    );
    store
        .set_tag(&Reference::parse("x").unwrap(), &desc)
        .unwrap();
    let report = store.prune(true, &[]).unwrap();
    assert_eq!(report.blobs_removed, vec![orphan.clone()]);
    assert_eq!(report.bytes_reclaimed, 6);
    for d in [&layer, &config, &m] {
        assert!(store.has_blob(d));
    }
    store.remove_tag(&Reference::parse("x").unwrap()).unwrap();
    let report = store.prune(true, &[]).unwrap();
    assert_eq!(report.blobs_removed.len(), 3);
}
