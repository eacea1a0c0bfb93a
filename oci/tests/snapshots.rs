//! Snapshots end to end as root: unpack an image's layers, prepare a real
//! overlayfs mount over them, change files, commit the upper dir as a layer,
//! and the same through the copy fallback. CI runs as root; a non-root run
//! outside CI says so and returns, inside CI it fails.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use berth_oci::image::Image;
use berth_oci::layer::{self, Compression, CreateOptions};
use berth_oci::manifest::{ImageConfig, RootFs, to_canonical_json};
use berth_oci::media_types as mt;
use berth_oci::snapshot::{SnapshotMode, Snapshotter, chain_ids};
use berth_oci::{Algorithm, Descriptor, Digest, ImageManifest, Platform, Reference, Store};

fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("snapshot tests need root (overlayfs, mknod) and CI runs as root");
    }
    eprintln!("skipping: snapshot tests need root");
    false
}

/// Stores the tree at `dir` as a gzip layer; returns its descriptor and diff ID.
fn add_layer(store: &Store, dir: &Path) -> (Descriptor, Digest) {
    let mut ingest = store
        .ingest(&format!("test-{}", dir.display()), Algorithm::Sha256)
        .unwrap();
    ingest.truncate().unwrap();
    let opts = CreateOptions {
        compression: Compression::Gzip,
        ..CreateOptions::default()
    };
    // Trees holding overlay whiteouts (0/0 char devices) are written as upper dirs.
    let d = layer::write_upper_as_layer(dir, &opts, &mut ingest).unwrap();
    ingest.commit(Some(d.size), Some(&d.digest)).unwrap();
    (
        Descriptor::new(mt::OCI_LAYER_GZIP, d.digest, d.size),
        d.diff_id,
    )
}

fn make_image(store: &Store, layers: &[&Path]) -> Image {
    let (descs, diff_ids): (Vec<_>, Vec<_>) = layers.iter().map(|l| add_layer(store, l)).unzip();
    let config = ImageConfig {
        architecture: Platform::host().architecture,
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        ..Default::default()
    };
    let (cb, _) = to_canonical_json(&config).unwrap();
    let cd = store.write_blob(&cb, None).unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(mt::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(mt::OCI_CONFIG, cd, cb.len() as u64),
        layers: descs,
        subject: None,
        annotations: None,
        extra: Default::default(),
    };
    let (mb, md) = to_canonical_json(&manifest).unwrap();
    store.write_blob(&mb, Some(&md)).unwrap();
    let desc = Descriptor::new(mt::OCI_MANIFEST, md, mb.len() as u64);
    store
        .set_tag(&Reference::parse("snap/test").unwrap(), &desc)
        .unwrap();
    store.image(&desc, &Platform::host()).unwrap()
}

/// Entry names of a stored layer blob.
fn layer_entries(store: &Store, digest: &Digest) -> BTreeSet<String> {
    let blob = store.open_blob(digest).unwrap();
    let (_, reader) = layer::decompress(blob).unwrap();
    let mut archive = tar::Archive::new(reader);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

fn base_image(store: &Store, work: &Path) -> Image {
    let l1 = work.join("l1");
    fs::create_dir_all(l1.join("a")).unwrap();
    fs::create_dir_all(l1.join("b/deep")).unwrap();
    fs::create_dir_all(l1.join("opaque/old")).unwrap();
    fs::write(l1.join("a/f1"), "one").unwrap();
    fs::write(l1.join("b/deep/x"), "x").unwrap();
    fs::write(l1.join("keep"), "keep").unwrap();
    let l2 = work.join("l2");
    fs::create_dir_all(l2.join("a")).unwrap();
    fs::write(l2.join("a/f2"), "two").unwrap();
    nix::sys::stat::mknod(
        &l2.join("keep"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    make_image(store, &[&l1, &l2])
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

fn change_rootfs(rootfs: &Path) {
    fs::write(rootfs.join("new.txt"), "new").unwrap();
    fs::remove_file(rootfs.join("a/f1")).unwrap();
    fs::remove_dir_all(rootfs.join("b")).unwrap();
    fs::remove_dir_all(rootfs.join("opaque")).unwrap();
    fs::create_dir(rootfs.join("opaque")).unwrap();
    fs::write(rootfs.join("opaque/fresh"), "f").unwrap();
}

fn check_commit(store: &Store, snaps: &Snapshotter, digests: &layer::LayerDigests, chain: &Digest) {
    let names = layer_entries(store, &digests.digest);
    for want in ["new.txt", "a/.wh.f1", ".wh.b", "opaque/fresh"] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    assert!(
        names.contains("opaque/.wh..wh..opq") || names.contains("opaque/.wh.old"),
        "recreated dir must hide the old contents: {names:?}"
    );
    assert!(
        !names.contains("a/f2"),
        "unchanged files stay out of the layer: {names:?}"
    );
    assert!(snaps.exists(chain));
}

#[test]
fn overlay_prepare_mount_commit() {
    if !require_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("root")).unwrap();
    let image = base_image(&store, work.path());
    let snaps = Snapshotter::new(&store);
    let chain = snaps.unpack(&image).unwrap();
    assert_eq!(chain, chain_ids(&image.config.rootfs.diff_ids));
    // Unpacking again is a no-op.
    assert_eq!(snaps.unpack(&image).unwrap(), chain);

    let active = snaps
        .prepare("t1", chain.last(), SnapshotMode::Overlay)
        .unwrap();
    let rootfs = work.path().join("mnt");
    fs::create_dir(&rootfs).unwrap();
    active.mount(&rootfs).unwrap();
    assert_eq!(read(&rootfs.join("a/f1")), "one");
    assert_eq!(read(&rootfs.join("a/f2")), "two");
    assert!(
        !rootfs.join("keep").exists(),
        "whiteout in layer 2 hides keep"
    );
    change_rootfs(&rootfs);
    active.unmount(&rootfs).unwrap();
    let opts = CreateOptions {
        compression: Compression::Gzip,
        ..CreateOptions::default()
    };
    let (digests, new_chain) = snaps.commit(active, &opts).unwrap();
    check_commit(&store, &snaps, &digests, &new_chain);

    // The committed snapshot serves as a lower for the next step.
    let next = snaps
        .prepare("t2", Some(&new_chain), SnapshotMode::Overlay)
        .unwrap();
    next.mount(&rootfs).unwrap();
    assert_eq!(read(&rootfs.join("new.txt")), "new");
    assert!(!rootfs.join("a/f1").exists());
    assert!(!rootfs.join("b").exists());
    assert!(!rootfs.join("opaque/old").exists());
    assert!(rootfs.join("opaque/fresh").exists());
    next.unmount(&rootfs).unwrap();
    snaps.remove_active(next).unwrap();

    // Only the image's chain survives a prune.
    assert_eq!(snaps.prune(&chain).unwrap(), 1);
    assert!(!snaps.exists(&new_chain));
    assert!(snaps.exists(chain.last().unwrap()));
}

#[test]
fn copy_fallback_commits_the_same_changes() {
    if !require_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("root")).unwrap();
    let image = base_image(&store, work.path());
    let snaps = Snapshotter::new(&store);
    let chain = snaps.unpack(&image).unwrap();
    let active = snaps
        .prepare("c1", chain.last(), SnapshotMode::Copy)
        .unwrap();
    let rootfs = active.copy_rootfs().unwrap();
    assert_eq!(read(&rootfs.join("a/f1")), "one");
    assert!(!rootfs.join("keep").exists());
    change_rootfs(&rootfs);
    let opts = CreateOptions {
        compression: Compression::Zstd,
        ..CreateOptions::default()
    };
    let (digests, new_chain) = snaps.commit(active, &opts).unwrap();
    check_commit(&store, &snaps, &digests, &new_chain);
}

#[test]
fn a_layer_with_the_wrong_diff_id_is_refused() {
    if !require_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("root")).unwrap();
    let mut image = base_image(&store, work.path());
    image.config.rootfs.diff_ids.swap(0, 1);
    let err = Snapshotter::new(&store)
        .unpack(&image)
        .unwrap_err()
        .to_string();
    assert!(err.contains("diff ID"), "{err}");
}
