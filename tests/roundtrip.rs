//! berth against itself: load → save → load → save keeps every digest (and
//! the archives' bytes); tag/rmi/images/inspect/history/prune behave like
//! docker's; errors are one line on stderr and exit code 1.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};

/// Every digest of an image as berth reports it.
fn digests(root: &Root, reference: &str) -> (String, String, Value) {
    let info = root.inspect(reference);
    (
        info["Descriptor"]["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no Descriptor.digest: {info:#}"))
            .to_string(),
        info["Id"].as_str().unwrap().to_string(),
        info["RootFS"]["Layers"].clone(),
    )
}

fn blob_files(layout: &std::path::Path) -> BTreeSet<String> {
    let dir = layout.join("blobs/sha256");
    match fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

#[test]
fn oci_roundtrip_keeps_digests_and_bytes() {
    let fx = fixture();
    let a = Root::new();
    let out = a.load(&fx.archive);
    assert!(
        out.contains("Loaded image: busybox:latest"),
        "berth load output: {out}"
    );
    let first = a.save(Some("oci"), &a.scratch("a.oci.tar"), &["busybox:latest"]);
    let img_a = Image::from_oci_archive(&first, Some("busybox:latest"));
    assert_eq!(
        img_a.manifest_digest, fx.image.manifest_digest,
        "berth save must keep the manifest"
    );
    assert_eq!(img_a.config_digest, fx.image.config_digest);
    assert_eq!(img_a.layers, fx.image.layers);
    assert_eq!(img_a.diff_ids, fx.image.diff_ids);

    let b = Root::new();
    let out = b.load(&first);
    assert!(
        out.contains("Loaded image: busybox:latest"),
        "berth load output: {out}"
    );
    let second = b.save(Some("oci"), &b.scratch("b.oci.tar"), &["busybox:latest"]);
    let img_b = Image::from_oci_archive(&second, Some("busybox:latest"));
    assert_eq!(img_a, img_b);
    assert_eq!(digests(&a, "busybox:latest"), digests(&b, "busybox:latest"));
    assert_eq!(
        (
            digests(&b, "busybox:latest").0,
            digests(&b, "busybox:latest").1
        ),
        (
            fx.image.manifest_digest.clone(),
            fx.image.config_digest.clone()
        )
    );
    assert_eq!(
        sha256_file(&first),
        sha256_file(&second),
        "the same image saved twice must give the same bytes"
    );
    check_layout(&a.path());
    check_layout(&b.path());
}

#[test]
fn docker_roundtrip_keeps_digests_and_bytes() {
    let fx = fixture();
    let a = Root::new();
    a.load(&fx.archive);
    let first = a.save(
        Some("docker"),
        &a.scratch("a.docker.tar"),
        &["busybox:latest"],
    );
    let default = a.save(None, &a.scratch("default.tar"), &["busybox:latest"]);
    assert_eq!(
        sha256_file(&first),
        sha256_file(&default),
        "docker must be the default format"
    );

    let b = Root::new();
    let out = b.load(&first);
    assert!(
        out.contains("Loaded image: busybox:latest"),
        "berth load output: {out}"
    );
    let (manifest, id, layers) = digests(&b, "busybox:latest");
    assert_eq!(id, fx.image.config_digest, "config digest");
    assert_eq!(layers, json!(fx.image.diff_ids), "diffIDs");
    assert_eq!(
        manifest, fx.image.manifest_digest,
        "berth keeps the original manifest in the hybrid archive"
    );
    let second = b.save(None, &b.scratch("b.docker.tar"), &["busybox:latest"]);
    assert_eq!(
        sha256_file(&first),
        sha256_file(&second),
        "the same image saved twice must give the same bytes"
    );
    assert_eq!(
        blob_files(&a.path()),
        blob_files(&b.path()),
        "same blobs in both stores"
    );
    check_layout(&b.path());
}

#[test]
fn save_and_load_several_images_in_one_archive() {
    let fx = fixture();
    let a = Root::new();
    a.load(&fx.archive);
    let other = derive_image(
        &fx.archive,
        &a.scratch("other.oci.tar"),
        "example/other:1.0",
        &[File::new("/srv/other.txt", "other\n")],
        &[("org.example.kind", "other")],
    );
    a.load(&a.scratch("other.oci.tar"));
    a.ok(&["tag", "busybox:latest", "busybox:1.35"]);
    for format in ["docker", "oci"] {
        let archive = a.save(
            Some(format),
            &a.scratch(&format!("all.{format}.tar")),
            &["busybox:latest", "busybox:1.35", "example/other:1.0"],
        );
        let b = Root::new();
        let out = b.load(&archive);
        let mut loaded: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Loaded image: "))
            .collect();
        loaded.sort();
        assert_eq!(
            loaded,
            ["busybox:1.35", "busybox:latest", "example/other:1.0"],
            "{format}: load output:\n{out}"
        );
        assert_eq!(
            b.tags(),
            set(&["busybox:1.35", "busybox:latest", "example/other:1.0"]),
            "{format}"
        );
        assert_eq!(
            digests(&b, "example/other:1.0").0,
            other.manifest_digest,
            "{format}"
        );
        assert_eq!(
            digests(&b, "busybox:1.35").1,
            fx.image.config_digest,
            "{format}"
        );
        check_layout(&b.path());
    }
}

#[test]
fn tag_rmi_images_and_prune() {
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let id12 = &fx.image.config_digest[7..19];

    root.ok(&["tag", "busybox:latest", "user/app:v1"]);
    root.ok(&["tag", "busybox", "localhost:5000/a/b:t"]);
    root.ok(&["tag", id12, "busybox:by-id"]);
    let tags = root.tags();
    let want = set(&[
        "busybox:by-id",
        "busybox:latest",
        "localhost:5000/a/b:t",
        "user/app:v1",
    ]);
    assert_eq!(tags, want);
    for img in root.images() {
        assert_eq!(img["ID"], id12, "{img}");
        assert_eq!(img["Digest"], fx.image.manifest_digest.as_str(), "{img}");
    }
    let info = root.inspect("user/app:v1");
    let mut repo_tags: Vec<String> = info["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    repo_tags.sort();
    assert_eq!(
        repo_tags,
        want.iter().cloned().collect::<Vec<_>>(),
        "{info:#}"
    );

    // Re-tagging an existing tag to the same image is fine.
    root.ok(&["tag", "busybox:latest", "user/app:v1"]);
    assert_eq!(root.tags(), want);

    let out = root.stdout(&["rmi", "user/app:v1"]);
    assert!(
        out.lines().any(|l| l.trim() == "Untagged: user/app:v1"),
        "rmi output:\n{out}"
    );
    assert!(!root.tags().contains("user/app:v1"));
    assert_eq!(
        root.inspect("busybox:latest")["Id"],
        fx.image.config_digest.as_str()
    );
    root.fails(&["inspect", "user/app:v1"]);
    check_layout(&root.path());

    let out = root.stdout(&["rmi", "busybox:by-id", "localhost:5000/a/b:t"]);
    assert!(
        out.contains("Untagged: busybox:by-id"),
        "rmi output:\n{out}"
    );
    assert!(
        out.contains("Untagged: localhost:5000/a/b:t"),
        "rmi output:\n{out}"
    );
    assert_eq!(root.tags(), set(&["busybox:latest"]));

    // prune with a tagged image keeps everything the image needs
    let out = root.stdout(&["prune"]);
    assert!(
        out.contains("Total reclaimed space"),
        "prune output:\n{out}"
    );
    check_layout(&root.path());
    for d in fx
        .image
        .layers
        .iter()
        .chain([&fx.image.config_digest, &fx.image.manifest_digest])
    {
        assert!(
            blob_path(&root.path(), d).is_file(),
            "prune removed {d} of a tagged image"
        );
    }

    let out = root.stdout(&["rmi", "busybox:latest"]);
    assert!(
        out.contains("Untagged: busybox:latest"),
        "rmi output:\n{out}"
    );
    assert!(root.tags().is_empty(), "{:?}", root.tags());
    let out = root.stdout(&["prune"]);
    assert!(
        out.contains("Total reclaimed space"),
        "prune output:\n{out}"
    );
    assert_eq!(
        blob_files(&root.path()),
        BTreeSet::new(),
        "prune must remove every unreferenced blob"
    );
    assert!(root.images().is_empty());
    check_layout(&root.path());
}

#[test]
fn retagging_leaves_the_old_image_to_prune() {
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let newer = derive_image(
        &fx.archive,
        &root.scratch("newer.oci.tar"),
        "busybox:latest",
        &[File::new("/etc/motd", "newer\n")],
        &[],
    );
    root.load(&root.scratch("newer.oci.tar"));
    assert_eq!(
        digests(&root, "busybox:latest").0,
        newer.manifest_digest,
        "the tag moves to the newly loaded image"
    );
    root.stdout(&["prune"]);
    check_layout(&root.path());
    let blobs = blob_files(&root.path());
    for d in newer
        .layers
        .iter()
        .chain([&newer.config_digest, &newer.manifest_digest])
    {
        assert!(blobs.contains(d), "prune removed {d} of the tagged image");
    }
    for d in [&fx.image.config_digest, &fx.image.manifest_digest] {
        assert!(
            !blobs.contains(d),
            "prune kept {d} of the untagged old image"
        );
    }
}

#[test]
fn load_twice_is_idempotent() {
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let tags1 = layout_tags(&root.path());
    let entries1 = root.index()["manifests"].as_array().unwrap().len();
    let blobs1 = blob_files(&root.path());
    let out = root.load(&fx.archive);
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    assert_eq!(layout_tags(&root.path()), tags1);
    assert_eq!(
        root.index()["manifests"].as_array().unwrap().len(),
        entries1,
        "loading the same archive again must not add index.json entries"
    );
    assert_eq!(blob_files(&root.path()), blobs1);
    assert_eq!(root.images().len(), 1);
}

#[test]
fn images_table_and_json() {
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let table = root.stdout(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let mut pos = 0;
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        let at = header[pos..]
            .find(col)
            .unwrap_or_else(|| panic!("no column {col} in order in header {header:?}"));
        pos += at + col.len();
    }
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(row.len() >= 4, "images table:\n{table}");
    assert_eq!(
        &row[..3],
        ["busybox", "latest", &fx.image.config_digest[7..19]],
        "images table:\n{table}"
    );
    assert_eq!(
        lines.filter(|l| !l.trim().is_empty()).count(),
        0,
        "one image expected:\n{table}"
    );

    let images = root.images();
    assert_eq!(images.len(), 1, "{images:?}");
    let img = &images[0];
    assert_eq!(img["Repository"], "busybox", "{img}");
    assert_eq!(img["Tag"], "latest", "{img}");
    assert_eq!(img["ID"], &fx.image.config_digest[7..19], "{img}");
    assert_eq!(img["Digest"], fx.image.manifest_digest.as_str(), "{img}");
    for key in ["CreatedAt", "CreatedSince", "Size"] {
        assert!(
            !img[key].is_null(),
            "images --format json lacks {key}: {img}"
        );
    }

    let empty = Root::new();
    assert!(empty.images().is_empty());
    let table = empty.stdout(&["images"]);
    assert!(
        table.starts_with("REPOSITORY"),
        "empty store: header only:\n{table}"
    );
}

#[test]
fn inspect_fields_and_references() {
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let info = root.inspect("busybox:latest");
    assert_eq!(info["Id"], fx.image.config_digest.as_str(), "{info:#}");
    assert_eq!(info["RepoTags"], json!(["busybox:latest"]), "{info:#}");
    assert!(info["RepoDigests"].is_array(), "{info:#}");
    assert_eq!(info["Created"], "1970-01-01T00:00:00Z", "{info:#}");
    assert_eq!(info["Config"]["Cmd"], json!(["sh"]), "{info:#}");
    assert_eq!(
        info["Config"]["Env"], fx.image.config["config"]["Env"],
        "{info:#}"
    );
    assert_eq!(
        info["RootFS"],
        json!({"Type": "layers", "Layers": fx.image.diff_ids}),
        "{info:#}"
    );
    assert_eq!(
        info["Architecture"], fx.image.config["architecture"],
        "{info:#}"
    );
    assert_eq!(info["Os"], "linux", "{info:#}");
    assert_eq!(info["Size"], fx.image.size(), "{info:#}");
    assert_eq!(
        info["Descriptor"],
        json!({"mediaType": OCI_MANIFEST, "digest": fx.image.manifest_digest, "size": fx.image.manifest_size}),
        "{info:#}"
    );

    // The same image by other names.
    let id = fx.image.config_digest.as_str();
    for name in [
        "busybox",
        "docker.io/library/busybox:latest",
        "library/busybox:latest",
        id,
        &id[7..],
        &id[7..19],
    ] {
        assert_eq!(root.inspect(name)["Id"], id, "berth inspect {name}");
    }
    // Several at once.
    root.ok(&["tag", "busybox:latest", "user/app:v1"]);
    let text = root.stdout(&["inspect", "busybox:latest", "user/app:v1"]);
    let many: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(many.as_array().map(Vec::len), Some(2), "{text}");
}

#[test]
fn history_shows_the_config_history() {
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let derived = derive_image(
        &fx.archive,
        &root.scratch("d.oci.tar"),
        "example/derived:1",
        &[File::new("/x", "x")],
        &[],
    );
    root.load(&root.scratch("d.oci.tar"));
    let out = root.stdout(&["history", "example/derived:1"]);
    assert!(
        out.lines()
            .next()
            .unwrap_or_default()
            .contains("CREATED BY"),
        "history header:\n{out}"
    );
    let rows: Vec<&str> = out
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "one row per history entry:\n{out}");
    // newest first, like docker
    assert!(rows[0].contains("berth tests: derive"), "history:\n{out}");
    assert!(
        rows[1].contains("berth fixtures: busybox-static"),
        "history:\n{out}"
    );
    assert!(
        rows[0].contains(&derived.config_digest[7..19]),
        "the newest row shows the image ID:\n{out}"
    );
}

#[test]
fn errors_are_one_line_and_exit_1() {
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let index = fs::read(root.path().join("index.json")).unwrap();

    let line = root.fails(&["inspect", "nosuchimage:latest"]);
    assert!(line.contains("nosuchimage"), "{line}");
    root.fails(&["rmi", "nosuchimage:latest"]);
    root.fails(&["tag", "nosuchimage:latest", "x:y"]);
    root.fails(&["history", "nosuchimage:latest"]);
    let out = root.scratch("never.tar");
    root.fails(&[
        std::ffi::OsStr::new("save"),
        "-o".as_ref(),
        out.as_os_str(),
        "nosuchimage:latest".as_ref(),
    ]);

    // Not found, whether it parses or not: the error names it.
    for name in ["UPPER/case", "upper/CASE"] {
        let line = root.fails(&["inspect", name]);
        assert!(
            line.contains(name),
            "the error must name the reference: {line}"
        );
    }
    // Invalid references. (Note "UPPER/case" is valid in docker's grammar:
    // an upper-case first component is a registry host.)
    for bad in [
        "upper/CASE",
        "UPPERCASE:v1",
        "busybox:bad:tag",
        "a//b",
        "busybox:",
    ] {
        let line = root.fails(&["tag", "busybox:latest", bad]);
        assert!(
            line.contains(bad),
            "the error must name the bad reference: {line}"
        );
    }
    root.fails(&["tag", "busybox:latest", "bad tag with spaces"]);

    let missing = root.scratch("missing.tar");
    root.fails(&[
        std::ffi::OsStr::new("load"),
        "-i".as_ref(),
        missing.as_os_str(),
    ]);
    let garbage: PathBuf = root.scratch("garbage.tar");
    fs::write(&garbage, noise(7, 10_000)).unwrap();
    root.fails(&[
        std::ffi::OsStr::new("load"),
        "-i".as_ref(),
        garbage.as_os_str(),
    ]);
    // A tar that is no image archive.
    let notimage = root.scratch("notimage.tar");
    let d = root.scratch("notimage");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hello.txt"), "hi").unwrap();
    dtar(&d, &notimage, &["hello.txt"]);
    root.fails(&[
        std::ffi::OsStr::new("load"),
        "-i".as_ref(),
        notimage.as_os_str(),
    ]);

    assert_eq!(
        fs::read(root.path().join("index.json")).unwrap(),
        index,
        "failed commands must not change the store"
    );
    check_layout(&root.path());
    assert_eq!(root.tags(), set(&["busybox:latest"]));
}

/// A corrupted archive (a blob that does not match its digest) is refused
/// and nothing of it becomes visible in the store.
#[test]
fn corrupt_archive_is_refused() {
    let fx = fixture();
    let root = Root::new();
    let dir = root.scratch("corrupt");
    extract(&fx.archive, &dir);
    let layer = blob_path(&dir, &fx.image.layers[0]);
    let mut bytes = fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&layer, bytes).unwrap();
    let archive = root.scratch("corrupt.oci.tar");
    dtar(&dir, &archive, &["oci-layout", "index.json", "blobs"]);
    root.fails(&[
        std::ffi::OsStr::new("load"),
        "-i".as_ref(),
        archive.as_os_str(),
    ]);
    assert!(
        root.fails(&["inspect", "busybox:latest"])
            .contains("busybox")
    );
    if root.path().join("index.json").exists() {
        check_layout(&root.path());
        assert!(!blob_path(&root.path(), &fx.image.layers[0]).exists());
    }
}
