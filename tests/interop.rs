//! End-to-end interoperability: berth against skopeo, umoci, buildah, podman
//! and dockerd. Archives the peers write must load into berth with the same
//! digests and config; archives berth writes must load into the peers; and
//! the peers must read berth's store directly as an OCI image layout.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::dockerd::Dockerd;
use common::*;
use serde_json::Value;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// helpers

/// null, "", [] and {} all mean "not set" in docker's inspect output.
fn norm(v: &Value) -> Value {
    match v {
        Value::String(s) if s.is_empty() => Value::Null,
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        other => other.clone(),
    }
}

/// Checks `berth inspect`'s output against the image's real config JSON (as
/// a peer reports it) and its config digest and diffIDs.
fn assert_inspect_matches(info: &Value, config: &Value, config_digest: &str, what: &str) {
    assert_eq!(
        info["Id"], config_digest,
        "{what}: Id must be the config digest\n{info:#}"
    );
    let diff_ids = &config["rootfs"]["diff_ids"];
    assert_eq!(
        info["RootFS"]["Type"], "layers",
        "{what}: RootFS.Type\n{info:#}"
    );
    assert_eq!(
        &info["RootFS"]["Layers"], diff_ids,
        "{what}: RootFS.Layers must be the diffIDs\n{info:#}"
    );
    assert_eq!(
        info["Architecture"], config["architecture"],
        "{what}: Architecture\n{info:#}"
    );
    assert_eq!(info["Os"], config["os"], "{what}: Os\n{info:#}");
    for key in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "Labels",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
    ] {
        assert_eq!(
            norm(&info["Config"][key]),
            norm(&config["config"][key]),
            "{what}: Config.{key} differs\nberth: {info:#}\npeer config: {config:#}"
        );
    }
}

/// The config digest of an image a skopeo transport names, from the raw
/// config bytes skopeo hands out.
fn skopeo_config(target: &str) -> (Value, String) {
    let raw = skopeo(&["inspect", "--config", "--raw", target]);
    let digest = sha256_bytes(raw.as_bytes());
    (serde_json::from_str(&raw).expect("config JSON"), digest)
}

/// docker's familiar form of a normalised reference.
fn familiar(name: &str) -> String {
    let short = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    short.to_string()
}

fn load_output_names(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Loaded image: "))
        .map(|s| s.trim().to_string())
        .collect()
}

/// buildah with its storage in a private temp dir.
struct Buildah {
    dir: TempDir,
}

impl Buildah {
    fn new() -> Buildah {
        Buildah {
            dir: tempfile::Builder::new()
                .prefix("berth-buildah.")
                .tempdir()
                .unwrap(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(find_tool("buildah").unwrap());
        c.arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .env("BUILDAH_ISOLATION", "chroot");
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let mut c = self.cmd();
        c.args(args);
        stdout(&run_ok(&mut c)).trim().to_string()
    }
}

/// podman with its storage in a private temp dir.
struct Podman {
    dir: TempDir,
}

impl Podman {
    fn new() -> Podman {
        Podman {
            dir: tempfile::Builder::new()
                .prefix("berth-podman.")
                .tempdir()
                .unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new(find_tool("podman").unwrap());
        c.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--tmpdir")
            .arg(self.dir.path().join("tmp"))
            .arg("--events-backend")
            .arg("none")
            .args(args);
        run_ok(&mut c)
    }
}

// ---------------------------------------------------------------------------
// (a) archives made by the peers load into berth

/// buildah builds an image on top of the busybox fixture (new layer, every
/// kind of config field), pushes it as an oci-archive and a docker-archive;
/// both load into berth, and `berth inspect` agrees with skopeo about the
/// config, its digest and the diffIDs.
#[test]
fn buildah_archives_load_with_their_config_and_diff_ids() {
    if !(require_root() && require_tool("buildah") && require_tool("skopeo")) {
        return;
    }
    let fx = fixture();
    let b = Buildah::new();
    let ctx = b.dir.path().join("ctx");
    fs::create_dir_all(ctx.join("etc")).unwrap();
    fs::write(ctx.join("hello.txt"), "hello from buildah\n").unwrap();
    fs::write(ctx.join("etc/app.conf"), "answer = 42\n").unwrap();

    let ctr = b.run(&[
        "from",
        "--quiet",
        &format!("oci-archive:{}", fx.archive.display()),
    ]);
    b.run(&[
        "copy",
        &ctr,
        ctx.join("hello.txt").to_str().unwrap(),
        "/srv/hello.txt",
    ]);
    b.run(&[
        "copy",
        &ctr,
        ctx.join("etc/app.conf").to_str().unwrap(),
        "/etc/app.conf",
    ]);
    b.run(&[
        "config",
        "--env",
        "GREETING=hello world",
        "--entrypoint",
        r#"["/bin/sh","-c"]"#,
        "--cmd",
        "cat /srv/hello.txt",
        "--workingdir",
        "/srv",
        "--user",
        "65534:65534",
        "--label",
        "org.example.answer=42",
        "--port",
        "8080/tcp",
        "--volume",
        "/data",
        "--stop-signal",
        "SIGINT",
        &ctr,
    ]);
    b.run(&[
        "commit",
        "--quiet",
        "--format",
        "oci",
        &ctr,
        "example/app:v1",
    ]);
    let scratch = b.dir.path().join("out");
    fs::create_dir_all(&scratch).unwrap();
    let oci = scratch.join("app.oci.tar");
    let dkr = scratch.join("app.docker.tar");
    b.run(&[
        "push",
        "--quiet",
        "example/app:v1",
        &format!("oci-archive:{}:example/app:v1", oci.display()),
    ]);
    b.run(&[
        "push",
        "--quiet",
        "example/app:v1",
        &format!("docker-archive:{}:example/app:v1", dkr.display()),
    ]);

    // oci-archive
    let root = Root::new();
    let out = root.load(&oci);
    assert_eq!(
        load_output_names(&out),
        ["example/app:v1"],
        "berth load output:\n{out}"
    );
    let target = format!("oci-archive:{}", oci.display());
    let (config, config_digest) = skopeo_config(&target);
    let raw_manifest = skopeo(&["inspect", "--raw", &target]);
    let manifest: Value = serde_json::from_str(&raw_manifest).unwrap();
    assert_eq!(manifest["config"]["digest"], config_digest.as_str());
    let info = root.inspect("example/app:v1");
    assert_inspect_matches(&info, &config, &config_digest, "buildah oci-archive");
    assert_eq!(
        info["Descriptor"]["digest"],
        sha256_bytes(raw_manifest.as_bytes()),
        "{info:#}"
    );
    assert_eq!(info["Descriptor"]["size"], raw_manifest.len(), "{info:#}");
    assert_eq!(info["Descriptor"]["mediaType"], OCI_MANIFEST, "{info:#}");
    assert_eq!(
        info["RepoTags"],
        serde_json::json!(["example/app:v1"]),
        "{info:#}"
    );
    let size: u64 = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert_eq!(
        info["Size"], size,
        "Size = sum of the compressed layer sizes\n{info:#}"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        2,
        "busybox + one buildah layer"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        fx.image.diff_ids[0].as_str()
    );
    assert_eq!(info["Config"]["Labels"]["org.example.answer"], "42");
    check_layout(&root.path());

    // docker-archive: buildah lists two names in manifest.json's RepoTags
    // (docker.io/example/app:v1 and localhost/example/app:v1); berth loads
    // both, shown in their familiar form like docker does.
    let root = Root::new();
    let out = root.load(&dkr);
    let listed = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&dkr)
            .arg("manifest.json"),
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let mut want: Vec<String> = listed[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| familiar(t.as_str().unwrap()))
        .collect();
    want.sort();
    assert!(
        want.contains(&"example/app:v1".to_string()),
        "manifest.json: {listed}"
    );
    let mut loaded = load_output_names(&out);
    loaded.sort();
    assert_eq!(loaded, want, "berth load output:\n{out}");
    let (dconfig, dconfig_digest) = skopeo_config(&format!("docker-archive:{}", dkr.display()));
    let info = root.inspect("example/app:v1");
    assert_inspect_matches(&info, &dconfig, &dconfig_digest, "buildah docker-archive");
    let mut repo_tags: Vec<String> = info["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    repo_tags.sort();
    assert_eq!(repo_tags, want, "{info:#}");
    check_layout(&root.path());
}

/// skopeo copies of the fixture (docker-archive with uncompressed layers,
/// gzip-compressed archives, stdin) load with the fixture's config digest
/// and diffIDs.
#[test]
fn skopeo_archives_of_the_fixture_load() {
    if !(require_tool("skopeo") && require_tool("gzip")) {
        return;
    }
    let fx = fixture();
    let root = Root::new();
    let dkr = root.scratch("busybox.docker.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci-archive:{}:busybox:latest", fx.archive.display()),
        &format!("docker-archive:{}:busybox:latest", dkr.display()),
    ]);
    let out = root.load(&dkr);
    assert_eq!(
        load_output_names(&out),
        ["busybox:latest"],
        "berth load output:\n{out}"
    );
    let info = root.inspect("busybox:latest");
    assert_inspect_matches(
        &info,
        &fx.image.config,
        &fx.image.config_digest,
        "skopeo docker-archive",
    );
    assert_eq!(
        info["RepoTags"],
        serde_json::json!(["busybox:latest"]),
        "{info:#}"
    );
    check_layout(&root.path());

    // gzip-compressed archives, both kinds
    for (src, name) in [(&fx.archive, "oci"), (&dkr, "docker")] {
        let root = Root::new();
        let gz = root.scratch(&format!("busybox.{name}.tar.gz"));
        run_ok(
            Command::new("gzip")
                .arg("-c")
                .arg(src)
                .stdout(fs::File::create(&gz).unwrap()),
        );
        let out = root.load(&gz);
        assert_eq!(
            load_output_names(&out),
            ["busybox:latest"],
            "{name}.tar.gz: berth load output:\n{out}"
        );
        let info = root.inspect("busybox:latest");
        assert_inspect_matches(&info, &fx.image.config, &fx.image.config_digest, name);
        if name == "oci" {
            assert_eq!(
                info["Descriptor"]["digest"],
                fx.image.manifest_digest.as_str(),
                "{info:#}"
            );
        }
    }

    // stdin
    let root = Root::new();
    let out = root
        .cmd()
        .arg("load")
        .stdin(fs::File::open(&fx.archive).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "berth load < archive\n{}", show(&out));
    assert_eq!(
        load_output_names(&stdout(&out)),
        ["busybox:latest"],
        "{}",
        show(&out)
    );
    assert_eq!(
        root.inspect("busybox:latest")["Descriptor"]["digest"],
        fx.image.manifest_digest.as_str()
    );
}

// ---------------------------------------------------------------------------
// (b) berth save --format oci → skopeo, umoci

#[test]
fn saved_oci_archive_reads_with_skopeo_and_unpacks_with_umoci() {
    if !(require_root() && require_tool("skopeo") && require_tool("umoci")) {
        return;
    }
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let info = root.inspect("busybox:latest");
    let archive = root.save(
        Some("oci"),
        &root.scratch("saved.oci.tar"),
        &["busybox:latest"],
    );

    for target in [
        format!("oci-archive:{}:busybox:latest", archive.display()),
        format!("oci-archive:{}", archive.display()),
    ] {
        let s = skopeo_json(&["inspect", &target]);
        assert_eq!(s["Digest"], info["Descriptor"]["digest"], "{target}: {s:#}");
        assert_eq!(
            s["Digest"],
            fx.image.manifest_digest.as_str(),
            "{target}: {s:#}"
        );
        let layers: Vec<&str> = s["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(layers, fx.image.layers, "{target}");
        let (config, config_digest) = skopeo_config(&target);
        assert_eq!(config_digest, fx.image.config_digest);
        assert_inspect_matches(&info, &config, &config_digest, &target);
    }

    let layout = root.scratch("layout");
    extract(&archive, &layout);
    check_layout(&layout);
    let tags = layout_tags(&layout);
    assert_eq!(
        tags.get("busybox:latest"),
        Some(&fx.image.manifest_digest),
        "index.json ref.name annotations: {tags:?}"
    );

    let bundle = root.scratch("bundle");
    run_ok(
        Command::new(find_tool("umoci").unwrap())
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:busybox:latest", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "umoci unpack: no bin/busybox"
    );
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(
        fs::read_to_string(rootfs.join("etc/passwd"))
            .unwrap()
            .starts_with("root:x:0:0:")
    );
}

// ---------------------------------------------------------------------------
// (c) berth save --format docker → skopeo, podman, docker

/// Saves the fixture (default format = docker) and checks the archive's
/// Docker 25+ hybrid layout and what skopeo reads from it.
fn save_docker(root: &Root) -> PathBuf {
    let fx = fixture();
    root.load(&fx.archive);
    let archive = root.save(None, &root.scratch("saved.docker.tar"), &["busybox:latest"]);
    let members = tar_list(&archive);
    for m in ["manifest.json", "repositories", "oci-layout", "index.json"] {
        assert!(
            members.iter().any(|x| x == m),
            "docker archive lacks {m}: {members:?}"
        );
    }
    archive
}

#[test]
fn saved_docker_archive_reads_with_skopeo() {
    if !require_tool("skopeo") {
        return;
    }
    let fx = fixture();
    let root = Root::new();
    let archive = save_docker(&root);
    let info = root.inspect("busybox:latest");

    let dir = root.scratch("x");
    extract(&archive, &dir);
    let manifest = read_json(&dir.join("manifest.json"));
    assert_eq!(
        manifest.as_array().map(Vec::len),
        Some(1),
        "manifest.json: {manifest}"
    );
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest"]),
        "manifest.json: {manifest}"
    );
    let config_path = dir.join(manifest[0]["Config"].as_str().unwrap());
    assert_eq!(
        sha256_file(&config_path),
        fx.image.config_digest,
        "manifest.json Config must be the config blob"
    );
    let repositories = read_json(&dir.join("repositories"));
    assert!(
        repositories["busybox"]["latest"].is_string(),
        "repositories: {repositories}"
    );
    check_layout(&dir);

    for target in [
        format!("docker-archive:{}", archive.display()),
        format!("docker-archive:{}:busybox:latest", archive.display()),
    ] {
        let s = skopeo_json(&["inspect", &target]);
        let layers: Vec<&str> = s["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(
            layers, fx.image.diff_ids,
            "{target}: docker-archive layers are the diffIDs\n{s:#}"
        );
        let (config, config_digest) = skopeo_config(&target);
        assert_eq!(config_digest, fx.image.config_digest, "{target}");
        assert_inspect_matches(&info, &config, &config_digest, &target);
    }
}

#[test]
fn saved_docker_archive_loads_into_podman() {
    if !(require_root() && require_tool("podman")) {
        return;
    }
    let fx = fixture();
    let root = Root::new();
    let archive = save_docker(&root);
    let podman = Podman::new();
    let out = stdout(&podman.run(&["load", "-i", archive.to_str().unwrap()]));
    assert!(out.contains("busybox:latest"), "podman load output: {out}");
    let inspect: Value = serde_json::from_str(&stdout(&podman.run(&[
        "image",
        "inspect",
        "busybox:latest",
    ])))
    .unwrap();
    let id = inspect[0]["Id"].as_str().unwrap();
    assert_eq!(
        format!("sha256:{}", id.trim_start_matches("sha256:")),
        fx.image.config_digest,
        "{inspect:#}"
    );
    assert_eq!(
        inspect[0]["RootFS"]["Layers"],
        serde_json::json!(fx.image.diff_ids),
        "{inspect:#}"
    );
    assert_eq!(
        inspect[0]["Config"]["Cmd"],
        serde_json::json!(["sh"]),
        "{inspect:#}"
    );
}

#[test]
fn saved_docker_archive_loads_into_dockerd_and_back() {
    if !(require_root() && require_tool("dockerd") && require_tool("docker")) {
        return;
    }
    let fx = fixture();
    let root = Root::new();
    let archive = save_docker(&root);
    let berth_id = root.inspect("busybox:latest")["Id"]
        .as_str()
        .unwrap()
        .to_string();

    let daemon = Dockerd::start();
    let out = daemon.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: busybox:latest"),
        "docker load output: {out}"
    );
    let inspect: Value =
        serde_json::from_str(&daemon.docker(&["image", "inspect", "busybox:latest"])).unwrap();
    assert_eq!(
        inspect[0]["Id"],
        berth_id.as_str(),
        "docker image inspect: {inspect:#}"
    );
    assert_eq!(inspect[0]["Id"], fx.image.config_digest.as_str());
    assert_eq!(
        inspect[0]["RootFS"]["Layers"],
        serde_json::json!(fx.image.diff_ids),
        "{inspect:#}"
    );
    assert_eq!(
        inspect[0]["RepoTags"],
        serde_json::json!(["busybox:latest"]),
        "{inspect:#}"
    );

    // And back: what `docker save` writes loads into berth as the same image.
    daemon.docker(&["tag", "busybox:latest", "example/from-docker:v2"]);
    let saved = root.scratch("from-docker.tar");
    daemon.docker(&[
        "save",
        "-o",
        saved.to_str().unwrap(),
        "example/from-docker:v2",
    ]);
    let fresh = Root::new();
    let out = fresh.load(&saved);
    assert_eq!(
        load_output_names(&out),
        ["example/from-docker:v2"],
        "berth load output:\n{out}"
    );
    let info = fresh.inspect("example/from-docker:v2");
    assert_inspect_matches(
        &info,
        &fx.image.config,
        &fx.image.config_digest,
        "docker save",
    );
    check_layout(&fresh.path());
    drop(daemon);
}

// ---------------------------------------------------------------------------
// (d) the store is an OCI layout the peers read directly

#[test]
fn store_reads_with_skopeo_oci_transport() {
    if !require_tool("skopeo") {
        return;
    }
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    root.ok(&["tag", "busybox:latest", "user/app:v1"]);
    root.ok(&["tag", "busybox:latest", "localhost:5000/a/b:t"]);
    let info = root.inspect("busybox:latest");
    let store = root.path();
    check_layout(&store);

    assert_eq!(
        read_json(&store.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = root.index();
    for (familiar, full) in [
        ("busybox:latest", "docker.io/library/busybox:latest"),
        ("user/app:v1", "docker.io/user/app:v1"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ] {
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["annotations"][REF_NAME] == familiar)
            .unwrap_or_else(|| panic!("no index.json entry with ref.name {familiar}: {index:#}"));
        assert_eq!(entry["annotations"][CONTAINERD_NAME], full, "{entry}");
        assert_eq!(
            entry["digest"],
            fx.image.manifest_digest.as_str(),
            "{entry}"
        );
        assert_eq!(entry["mediaType"], OCI_MANIFEST, "{entry}");

        let target = format!("oci:{}:{familiar}", store.display());
        let s = skopeo_json(&["inspect", &target]);
        assert_eq!(s["Digest"], info["Descriptor"]["digest"], "{target}: {s:#}");
        assert_eq!(s["Digest"], fx.image.manifest_digest.as_str(), "{target}");
        let (_, config_digest) = skopeo_config(&target);
        assert_eq!(info["Id"], config_digest.as_str(), "{target}");
    }

    // skopeo can copy out of the store.
    let copy = root.scratch("copy.oci.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:busybox:latest", store.display()),
        &format!("oci-archive:{}:busybox:latest", copy.display()),
    ]);
    assert_eq!(
        Image::from_oci_archive(&copy, None).manifest_digest,
        fx.image.manifest_digest
    );
}

#[test]
fn store_unpacks_with_umoci() {
    if !(require_root() && require_tool("umoci")) {
        return;
    }
    let fx = fixture();
    let root = Root::new();
    root.load(&fx.archive);
    let before = fs::read(root.path().join("index.json")).unwrap();
    let bundle = root.scratch("bundle");
    run_ok(
        Command::new(find_tool("umoci").unwrap())
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:busybox:latest", root.path().display()))
            .arg(&bundle),
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert!(
        bundle.join("config.json").is_file(),
        "umoci writes a runtime config"
    );
    assert_eq!(
        fs::read(root.path().join("index.json")).unwrap(),
        before,
        "umoci unpack must not change the store"
    );
    // berth still reads its store afterwards.
    assert_eq!(
        root.inspect("busybox:latest")["Id"],
        fx.image.config_digest.as_str()
    );
    check_layout(&root.path());
}

// ---------------------------------------------------------------------------
// the fixtures themselves

/// make.sh is reproducible, its archive is a valid OCI layout that skopeo
/// reads, and derived test images are valid too.
#[test]
fn fixtures_are_valid_and_reproducible() {
    let fx = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let again = tmp.path().join("again.tar");
    let out = run_ok(
        Command::new("bash")
            .arg(repo_root().join("fixtures/busybox/make.sh"))
            .arg("--output")
            .arg(&again)
            .env_remove("BERTH"),
    );
    assert_eq!(stdout(&out).trim(), fx.image.manifest_digest);
    assert_eq!(
        sha256_file(&again),
        sha256_file(&fx.archive),
        "make.sh must be reproducible"
    );
    assert!(
        stderr(&out).is_empty(),
        "make.sh must be quiet:\n{}",
        show(&out)
    );

    let layout = tmp.path().join("layout");
    extract(&fx.archive, &layout);
    assert_eq!(check_layout(&layout), 3);
    assert_eq!(fx.image.reference, "busybox:latest");
    assert_eq!(fx.image.config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(fx.image.config["os"], "linux");
    let members = tar_list(&blob_path(&layout, &fx.image.layers[0]));
    for m in [
        "bin/busybox",
        "bin/sh",
        "etc/passwd",
        "etc/group",
        "tmp/",
        "root/",
        "proc/",
    ] {
        assert!(members.iter().any(|x| x == m), "busybox layer lacks {m}");
    }

    let derived_tar = tmp.path().join("derived.tar");
    let derived = derive_image(
        &fx.archive,
        &derived_tar,
        "example/derived:1",
        &[
            File::new("/data/x.bin", noise(3, 1000)),
            File::new("/etc/motd", "hi\n"),
        ],
        &[("k", "v")],
    );
    assert_eq!(derived.layers.len(), 2);
    assert_eq!(derived.layers[0], fx.image.layers[0]);
    assert_eq!(derived.diff_ids[0], fx.image.diff_ids[0]);
    assert_eq!(derived.config["config"]["Labels"]["k"], "v");
    let dl = tmp.path().join("derived");
    extract(&derived_tar, &dl);
    assert_eq!(check_layout(&dl), 4);
    if find_tool("skopeo").is_some() {
        let s = skopeo_json(&[
            "inspect",
            &format!("oci-archive:{}:busybox:latest", fx.archive.display()),
        ]);
        assert_eq!(s["Digest"], fx.image.manifest_digest.as_str());
        let s = skopeo_json(&[
            "inspect",
            &format!("oci-archive:{}:example/derived:1", derived_tar.display()),
        ]);
        assert_eq!(s["Digest"], derived.manifest_digest.as_str());
        let (_, config_digest) = skopeo_config(&format!("oci-archive:{}", derived_tar.display()));
        assert_eq!(config_digest, derived.config_digest);
    }
}
