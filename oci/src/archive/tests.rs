use super::*;
use crate::digest::Digest;
use crate::manifest::{Descriptor, ImageConfig, ImageManifest, RootFs, to_canonical_json};
use crate::media_types as mt;
use crate::reference::Reference;
use crate::store::Store;

/// A one-layer image with an uncompressed layer, written straight into a store.
fn make_image(store: &Store, name: &str, payload: &[u8]) -> Descriptor {
    let mut layer = Vec::new();
    {
        let mut b = tar::Builder::new(&mut layer);
        let mut h = tar::Header::new_ustar();
        h.set_size(payload.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "hello.txt", payload).unwrap();
        b.finish().unwrap();
    }
    let layer_digest = store.write_blob(&layer, None).unwrap();
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer_digest.clone()],
        },
        ..Default::default()
    };
    let (config_bytes, _) = to_canonical_json(&config).unwrap();
    let config_digest = store.write_blob(&config_bytes, None).unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(mt::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(mt::OCI_CONFIG, config_digest, config_bytes.len() as u64),
        layers: vec![Descriptor::new(
            mt::OCI_LAYER,
            layer_digest,
            layer.len() as u64,
        )],
        subject: None,
        annotations: None,
        extra: Default::default(),
    };
    let (bytes, digest) = to_canonical_json(&manifest).unwrap();
    store.write_blob(&bytes, Some(&digest)).unwrap();
    let d = Descriptor::new(mt::OCI_MANIFEST, digest, bytes.len() as u64);
    store.set_tag(&Reference::parse(name).unwrap(), &d).unwrap();
    d
}

fn roundtrip(format: ArchiveFormat) {
    let a = tempfile::tempdir().unwrap();
    let store_a = Store::open(a.path()).unwrap();
    let d = make_image(&store_a, "demo/app:v1", b"hello");
    let r = Reference::parse("demo/app:v1").unwrap();
    let mut archive = Vec::new();
    save(
        &store_a,
        &[(d.clone(), Some(r.clone()))],
        format,
        &mut archive,
    )
    .unwrap();
    let mut again = Vec::new();
    save(
        &store_a,
        &[(d.clone(), Some(r.clone()))],
        format,
        &mut again,
    )
    .unwrap();
    assert_eq!(archive, again, "save is deterministic");

    let b = tempfile::tempdir().unwrap();
    let store_b = Store::open(b.path()).unwrap();
    let loaded = load(&store_b, std::io::Cursor::new(archive.clone())).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].reference.as_ref(), Some(&r));
    assert_eq!(loaded[0].descriptor.digest, d.digest);
    assert_eq!(store_b.resolve_tag(&r).unwrap().unwrap().digest, d.digest);
    let mut third = Vec::new();
    save(&store_b, &[(d.clone(), Some(r))], format, &mut third).unwrap();
    assert_eq!(archive, third, "load then save gives the same bytes");
}

#[test]
fn oci_archive_roundtrip() {
    roundtrip(ArchiveFormat::Oci);
}

#[test]
fn docker_archive_roundtrip() {
    roundtrip(ArchiveFormat::Docker);
}

#[test]
fn legacy_docker_archive_loads() {
    let a = tempfile::tempdir().unwrap();
    let store_a = Store::open(a.path()).unwrap();
    let d = make_image(&store_a, "legacy:1", b"legacy");
    let image = store_a
        .image(&d, &crate::manifest::Platform::host())
        .unwrap();
    let layer_digest = &image.manifest.layers[0].digest;
    let mut tarball = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tarball);
        let add = |b: &mut tar::Builder<&mut Vec<u8>>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        };
        let layer = std::fs::read(store_a.blob_path(layer_digest)).unwrap();
        add(&mut b, "abc/layer.tar", &layer);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "def/layer.tar", "../abc/layer.tar")
            .unwrap();
        add(
            &mut b,
            &format!("{}.json", image.id().hex()),
            &image.config_bytes,
        );
        let manifest = format!(
            r#"[{{"Config":"{}.json","RepoTags":["legacy:1"],"Layers":["def/layer.tar"]}}]"#,
            image.id().hex()
        );
        add(&mut b, "manifest.json", manifest.as_bytes());
        b.finish().unwrap();
    }
    let b = tempfile::tempdir().unwrap();
    let store_b = Store::open(b.path()).unwrap();
    let loaded = load(&store_b, std::io::Cursor::new(tarball)).unwrap();
    let got = store_b
        .image(&loaded[0].descriptor, &crate::manifest::Platform::host())
        .unwrap();
    assert_eq!(got.id(), image.id());
    assert_eq!(got.manifest.layers[0].digest, *layer_digest);
}

#[test]
fn corrupt_blob_is_rejected_and_not_stored() {
    let mut tarball = Vec::new();
    let fake = Digest::sha256_of(b"expected");
    {
        let mut b = tar::Builder::new(&mut tarball);
        let mut h = tar::Header::new_ustar();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(
            &mut h,
            format!("blobs/sha256/{}", fake.hex()),
            &b"wrong"[..],
        )
        .unwrap();
        b.finish().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = load(&store, std::io::Cursor::new(tarball))
        .unwrap_err()
        .to_string();
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(!store.has_blob(&fake));
    assert!(!store.has_blob(&Digest::sha256_of(b"wrong")));
}

#[test]
fn garbage_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(
        load(
            &store,
            std::io::Cursor::new(b"not a tar at all".repeat(100))
        )
        .is_err()
    );
    assert!(matches!(
        load(&store, std::io::Cursor::new(Vec::new())),
        Err(ArchiveError::UnknownFormat)
    ));
}
