//! Several berth processes on one store at once: parallel loads of different
//! images (sharing a base layer), and prune racing a load. Afterwards the
//! store must be consistent: every tagged image complete, every blob named by
//! its content's digest, no temp files under blobs/, index.json valid.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use common::*;

/// Two images on top of the busybox fixture, each with its own ~4 MiB layer
/// (so writes take a while) and sharing the busybox layer (so both loads
/// write the same blob at the same time).
fn two_images(root: &Root) -> [(Image, PathBuf); 2] {
    let fx = fixture();
    let make = |n: u64, reference: &str| {
        let path = root.scratch(&format!("img{n}.oci.tar"));
        let content = noise(n, 4 << 20);
        let img = derive_image(
            &fx.archive,
            &path,
            reference,
            &[
                File::new("/data/blob.bin", content),
                File::new("/etc/which", format!("{reference}\n")),
            ],
            &[("org.example.n", &n.to_string())],
        );
        (img, path)
    };
    [make(1, "one/app:v1"), make(2, "two/app:v1")]
}

fn spawn(root: &Root, args: &[&std::ffi::OsStr]) -> Child {
    let mut cmd = root.cmd();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("spawn berth")
}

fn spawn_load(root: &Root, archive: &Path) -> Child {
    spawn(root, &["load".as_ref(), "-i".as_ref(), archive.as_os_str()])
}

fn finish(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().expect("wait for berth");
    assert!(out.status.success(), "{what} failed\n{}", show(&out));
    out
}

/// Every tagged image is complete and the store is a consistent OCI layout;
/// with skopeo installed, skopeo reads each image from the store too.
fn assert_consistent(root: &Root, expect: &[&Image]) {
    check_layout(&root.path());
    let tags = layout_tags(&root.path());
    let use_skopeo = find_tool("skopeo").is_some();
    for img in expect {
        assert_eq!(
            tags.get(&img.reference),
            Some(&img.manifest_digest),
            "index.json tags: {tags:?}"
        );
        let info = root.inspect(&img.reference);
        assert_eq!(info["Id"], img.config_digest.as_str(), "{info:#}");
        for d in img
            .layers
            .iter()
            .chain([&img.config_digest, &img.manifest_digest])
        {
            assert!(
                blob_path(&root.path(), d).is_file(),
                "{}: blob {d} missing",
                img.reference
            );
        }
        if use_skopeo {
            let s = skopeo_json(&[
                "inspect",
                &format!("oci:{}:{}", root.path().display(), img.reference),
            ]);
            assert_eq!(
                s["Digest"],
                img.manifest_digest.as_str(),
                "skopeo inspect {}: {s:#}",
                img.reference
            );
        }
    }
    // No leftovers of the ingest anywhere under blobs/ (check_layout checks
    // names) and nothing half-written beside index.json.
    for entry in std::fs::read_dir(root.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !(name.starts_with("index.json") && name != "index.json"),
            "leftover temp file beside index.json: {name}"
        );
    }
}

#[test]
fn parallel_loads_of_different_images() {
    if in_ci() {
        require_tool("skopeo");
    }
    let scratch = Root::new();
    let [(one, one_tar), (two, two_tar)] = two_images(&scratch);
    for round in 0..3 {
        let root = Root::new();
        let a = spawn_load(&root, &one_tar);
        let b = spawn_load(&root, &two_tar);
        let out_a = finish(a, &format!("round {round}: load one"));
        let out_b = finish(b, &format!("round {round}: load two"));
        assert!(
            stdout(&out_a).contains("Loaded image: one/app:v1"),
            "{}",
            show(&out_a)
        );
        assert!(
            stdout(&out_b).contains("Loaded image: two/app:v1"),
            "{}",
            show(&out_b)
        );
        assert_eq!(
            root.tags(),
            set(&["one/app:v1", "two/app:v1"]),
            "round {round}"
        );
        assert_consistent(&root, &[&one, &two]);
    }
}

#[test]
fn parallel_loads_into_a_store_with_the_base_image() {
    let fx = fixture();
    let scratch = Root::new();
    let [(one, one_tar), (two, two_tar)] = two_images(&scratch);
    let root = Root::new();
    root.load(&fx.archive);
    // Four processes at once: the two images, and the base twice more.
    let kids = [
        spawn_load(&root, &one_tar),
        spawn_load(&root, &fx.archive),
        spawn_load(&root, &two_tar),
        spawn_load(&root, &fx.archive),
    ];
    for (i, k) in kids.into_iter().enumerate() {
        finish(k, &format!("load #{i}"));
    }
    assert_eq!(
        root.tags(),
        set(&["busybox:latest", "one/app:v1", "two/app:v1"])
    );
    assert_consistent(&root, &[&one, &two, &fx.image]);
}

#[test]
fn parallel_tags_on_one_store() {
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let names: Vec<String> = (0..8).map(|i| format!("busybox:t{i}")).collect();
    let kids: Vec<Child> = names
        .iter()
        .map(|n| {
            spawn(
                &root,
                &["tag".as_ref(), "busybox:latest".as_ref(), n.as_ref()],
            )
        })
        .collect();
    for (k, n) in kids.into_iter().zip(&names) {
        finish(k, &format!("tag {n}"));
    }
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    want.push("busybox:latest");
    assert_eq!(
        root.tags(),
        set(&want),
        "no tag may be lost to a concurrent index.json update"
    );
    check_layout(&root.path());
}

/// `berth prune` beside `berth load`, repeatedly: each round the image being
/// loaded was just untagged, so its blobs are exactly what prune wants to
/// delete while load is (re)writing them.
#[test]
fn prune_beside_load_keeps_the_store_consistent() {
    let fx = fixture();
    let scratch = Root::new();
    let [(one, one_tar), (two, two_tar)] = two_images(&scratch);
    let root = Root::new();
    root.load(&fx.archive);
    for round in 0..5 {
        let (img, tar) = if round % 2 == 0 {
            (&one, &one_tar)
        } else {
            (&two, &two_tar)
        };
        let load = spawn_load(&root, tar);
        let prune = spawn(&root, &["prune".as_ref()]);
        let out = finish(prune, &format!("round {round}: prune"));
        assert!(
            stdout(&out).contains("Total reclaimed space"),
            "{}",
            show(&out)
        );
        finish(load, &format!("round {round}: load {}", img.reference));
        assert_consistent(&root, &[img, &fx.image]);
        // Untag it: its own blobs are garbage for the next round's prune.
        root.ok(&["rmi", &img.reference]);
        check_layout(&root.path());
    }
    root.ok(&["prune"]);
    assert_consistent(&root, &[&fx.image]);
    for img in [&one, &two] {
        for d in [
            &img.manifest_digest,
            &img.config_digest,
            img.layers.last().unwrap(),
        ] {
            assert!(
                !blob_path(&root.path(), d).exists(),
                "prune left {d} of untagged {}",
                img.reference
            );
        }
    }
}
