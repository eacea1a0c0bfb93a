//! Issue 8: the build cache between CI runners. Two empty berth roots play
//! two runners against one registry on 127.0.0.1: runner A builds and
//! exports its cache, runner B imports it and must find every step cached,
//! produce the same image, and download no layer it does not need.

// Shared with tests/registry_client.rs; this binary uses only the registries.
#[allow(dead_code)]
mod client_support;
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use client_support::{BerthRegistry, DockerRegistry, RegistryOptions};
use common::*;
use tempfile::TempDir;

/// A root with the busybox base pushed to the registry at `host` as
/// HOST/base/busybox:1 (so an empty runner can pull it), returning the base
/// reference.
fn seed_base(host: &str) -> String {
    let seeder = Root::new();
    seeder.load(&fixture().archive);
    let base = format!("{host}/base/busybox:1");
    seeder.ok(&["tag", "busybox:latest", &base]);
    seeder.ok(&["--insecure-registry", host, "push", "-q", &base]);
    base
}

/// The reference build: a build stage whose layers the final image does not
/// contain, and a runtime stage that copies one file from it.
fn reference_context(base: &str) -> TempDir {
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    fs::create_dir_all(c.join("src")).unwrap();
    for i in 0..20 {
        fs::write(c.join(format!("src/f{i}.txt")), format!("source {i}\n")).unwrap();
    }
    fs::write(
        c.join("Dockerfile"),
        format!(
            "FROM {base} AS build\n\
             WORKDIR /work\n\
             COPY src/ ./src/\n\
             RUN head -c 300000 /dev/urandom > big.bin && cat src/*.txt > out.txt\n\
             FROM {base}\n\
             COPY --from=build /work/out.txt /app/out.txt\n\
             RUN echo runtime > /app/r.txt\n\
             CMD [\"cat\", \"/app/out.txt\"]\n"
        ),
    )
    .unwrap();
    ctx
}

fn build(root: &Root, host: &str, args: &[&str], ctx: &Path) -> (String, String) {
    let mut all = vec!["--insecure-registry", host, "build", "--progress", "plain"];
    all.extend_from_slice(args);
    let ctx_s = ctx.display().to_string();
    all.push(&ctx_s);
    let out = root.run(&all);
    assert!(
        out.status.success(),
        "build {args:?} failed:\n{}",
        show(&out)
    );
    let stderr = stderr(&out);
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("writing image "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no image ID in:\n{stderr}"))
        .to_string();
    (id, stderr)
}

/// Layer steps (RUN/COPY/WORKDIR) that ran instead of coming from a cache.
fn uncached_layer_steps(log: &str) -> Vec<String> {
    let mut started: Vec<(String, String)> = Vec::new();
    let mut cached = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((n, text)) = rest.split_once(' ') else {
            continue;
        };
        if text == "CACHED" {
            cached.push(n.to_string());
        } else if text.starts_with('[') {
            started.push((n.to_string(), text.to_string()));
        }
    }
    started
        .into_iter()
        .filter(|(n, text)| {
            ["] RUN", "] COPY", "] WORKDIR", "] ADD"]
                .iter()
                .any(|k| text.contains(k))
                && !cached.contains(n)
        })
        .map(|(_, t)| t)
        .collect()
}

/// "fetched N cached layer(s), B bytes" → (N, B).
fn fetched(log: &str) -> (usize, u64) {
    let line = log
        .lines()
        .find(|l| l.starts_with("fetched "))
        .unwrap_or_else(|| panic!("no fetched line in:\n{log}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].parse().unwrap(), words[4].parse().unwrap())
}

fn layer_sizes(root: &Root, image: &str) -> Vec<u64> {
    let info = root.inspect(image);
    let manifest_digest = info["Descriptor"]["digest"].as_str().unwrap().to_string();
    let manifest = read_json(&blob_path(&root.path(), &manifest_digest));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .collect()
}

fn runners_share_the_cache_through(host: &str) {
    let base = seed_base(host);
    let ctx = reference_context(&base);
    let cache = format!("{}/cache/app:buildcache", host);
    let image = format!("{}/app/demo:1", host);

    let a = Root::new();
    let (id_a, log_a) = build(
        &a,
        host,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "--push",
            "-t",
            &image,
        ],
        ctx.path(),
    );
    assert!(log_a.contains("exported build cache"), "{log_a}");

    // The artifact is a plain OCI image manifest any client reads.
    let raw = skopeo_json(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{cache}"),
    ]);
    assert_eq!(raw["artifactType"], "application/vnd.berth.buildcache.v1");
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.berth.buildcache.config.v1+json"
    );
    // mode=max: the build stage's layers are in the cache too.
    let cached_layers = raw["layers"].as_array().unwrap().len();
    assert!(cached_layers >= 4, "{raw:#}");

    // Runner B, empty: every step cached, the same image, and only the
    // final image's own layers downloaded (not the build stage's).
    let b = Root::new();
    let (id_b, log_b) = build(
        &b,
        host,
        &[
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "-t",
            "demo:b",
        ],
        ctx.path(),
    );
    assert_eq!(id_b, id_a, "runner B must produce runner A's image");
    assert_eq!(
        uncached_layer_steps(&log_b),
        Vec::<String>::new(),
        "{log_b}"
    );
    let (n, bytes) = fetched(&log_b);
    let sizes = layer_sizes(&b, "demo:b");
    // The image = base layer (pulled with FROM) + the two steps of the
    // final stage; only those two come from the cache.
    let own: u64 = sizes[1..].iter().sum();
    assert_eq!(n, sizes.len() - 1, "{log_b}");
    assert_eq!(
        bytes, own,
        "bytes fetched must be the final stage's layers only"
    );
    assert!(
        bytes < 300_000,
        "the build stage's 300 kB layer must not be fetched"
    );
    assert_eq!(
        stdout(&b.run(&["run", "--rm", "demo:b"])).lines().count(),
        20
    );

    // Runner C pushes the cached result: no layer bytes at all, the
    // registry mounts them.
    let c = Root::new();
    let image2 = format!("{}/app/demo:2", host);
    let (id_c, log_c) = build(
        &c,
        host,
        &[
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "--push",
            "-t",
            &image2,
        ],
        ctx.path(),
    );
    assert_eq!(id_c, id_a);
    assert_eq!(fetched(&log_c), (0, 0), "{log_c}");
    let pushed = skopeo_json(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{image2}"),
    ]);
    let first = skopeo_json(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{image}"),
    ]);
    assert_eq!(pushed, first, "runner C pushed a different manifest");
}

#[test]
fn runners_share_the_cache_through_distribution() {
    if !require_root() || !require_tool("docker-registry") || !require_tool("skopeo") {
        return;
    }
    let reg = DockerRegistry::start(RegistryOptions::default());
    runners_share_the_cache_through(&reg.host());
}

#[test]
fn runners_share_the_cache_through_berths_server() {
    if !require_root() || !require_tool("skopeo") {
        return;
    }
    // Anonymous: an empty configuration.
    let reg = BerthRegistry::start("{}\n");
    runners_share_the_cache_through(&reg.addr);
}

#[test]
fn local_and_inline_caches_between_roots() {
    if !require_root() || !require_tool("docker-registry") {
        return;
    }
    let reg = DockerRegistry::start(RegistryOptions::default());
    let host = reg.host();
    let base = seed_base(&host);
    let ctx = reference_context(&base);
    let dir = tempfile::tempdir().unwrap();
    let cache_dir: PathBuf = dir.path().join("cache");

    // type=local: an OCI layout directory, as a CI cache directory holds it.
    let a = Root::new();
    let (id_a, _) = build(
        &a,
        &host,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache_dir.display()),
        ],
        ctx.path(),
    );
    check_layout(&cache_dir);
    let b = Root::new();
    let (id_b, log_b) = build(
        &b,
        &host,
        &[
            "--cache-from",
            &format!("type=local,src={}", cache_dir.display()),
        ],
        ctx.path(),
    );
    assert_eq!(id_b, id_a);
    assert_eq!(
        uncached_layer_steps(&log_b),
        Vec::<String>::new(),
        "{log_b}"
    );

    // A cache that does not exist yet (the first CI run) is no error.
    let empty = Root::new();
    let (id_e, _) = build(
        &empty,
        &host,
        &[
            "--cache-from",
            &format!("type=local,src={}", dir.path().join("none").display()),
        ],
        ctx.path(),
    );
    assert_eq!(id_e, id_a);

    // type=inline: the pushed image carries its own cache (mode=min: the
    // final stage's steps).
    let image = format!("{}/app/inline:1", host);
    let c = Root::new();
    build(
        &c,
        &host,
        &["--cache-to", "type=inline", "--push", "-t", &image],
        ctx.path(),
    );
    let d = Root::new();
    let (_, log_d) = build(
        &d,
        &host,
        &["--cache-from", &format!("type=registry,ref={image}")],
        ctx.path(),
    );
    let uncached = uncached_layer_steps(&log_d);
    assert!(
        uncached.iter().all(|s| s.starts_with("[build ")),
        "only the build stage (not in an inline cache) may run: {uncached:?}"
    );
    assert!(
        log_d.contains("[stage-1 2/4] COPY") && log_d.matches("CACHED").count() >= 2,
        "{log_d}"
    );
}
