//! End-to-end tests of `berth pull|push|login|logout|manifest inspect|tags|copy`
//! against Debian's docker-registry (distribution), with skopeo and the
//! Docker engine as independent peers.

mod client_support;
mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use client_support::{DockerRegistry, PASSWORD, RegistryOptions, USER};
use common::*;
use serde_json::{Value, json};

/// base64("berth:s3cret-pass"), as docker writes it into config.json.
const AUTH_B64: &str = "YmVydGg6czNjcmV0LXBhc3M=";

fn peers_present() -> bool {
    require_tool("docker-registry") && require_tool("skopeo")
}

/// `berth` with extra environment and optional stdin.
fn berth(root: &Root, env: &[(&str, &OsStr)], stdin: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = root.cmd();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match stdin {
        None => cmd.output().expect("run berth"),
        Some(input) => {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("run berth");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().expect("wait berth")
        }
    }
}

fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected exit 1\n{}", show(out));
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line\n{}", show(out));
    lines[0].to_string()
}

fn skopeo_digest(args: &[&str]) -> String {
    skopeo_json(args)["Digest"].as_str().unwrap().to_string()
}

#[test]
fn push_pull_copy_tags_against_distribution_match_skopeo() {
    if !peers_present() {
        return;
    }
    let reg = DockerRegistry::start(RegistryOptions::default());
    let host = reg.host();
    let fx = fixture();
    let a = Root::new();
    a.load(&fx.archive);
    let dest = format!("{host}/test/busybox:v1");
    a.ok(&["tag", "busybox:latest", &dest]);
    let out = a.stdout(&["--insecure-registry", &host, "push", &dest]);
    assert!(out.contains(&fx.image.manifest_digest), "{out}");

    // skopeo sees the very manifest berth has locally.
    let docker_ref = format!("docker://{dest}");
    assert_eq!(
        skopeo_digest(&["inspect", "--tls-verify=false", &docker_ref]),
        fx.image.manifest_digest
    );

    // Raw manifest bytes: their digest is the manifest digest.
    let raw = a.ok(&["--insecure-registry", &host, "manifest", "inspect", &dest]);
    assert_eq!(sha256_bytes(&raw.stdout), fx.image.manifest_digest);

    // A second push has nothing to upload and gives the same digest.
    let again = a.stdout(&["--insecure-registry", &host, "push", "-q", &dest]);
    assert_eq!(again.trim(), fx.image.manifest_digest);

    // Pull into an empty store: same manifest, config and layers.
    let b = Root::new();
    let out = b.stdout(&["--insecure-registry", &host, "pull", &dest]);
    assert!(out.contains(&fx.image.manifest_digest), "{out}");
    assert_eq!(layout_tags(&b.path())[&dest], fx.image.manifest_digest);
    let pulled = Image::from_layout(&b.path(), Some(&dest));
    assert_eq!(pulled.config_digest, fx.image.config_digest);
    assert_eq!(pulled.layers, fx.image.layers);
    check_layout(&b.path());
    assert_eq!(b.inspect(&dest)["Id"], fx.image.config_digest.as_str());

    // skopeo pulls what berth pushed.
    let sk_layout = a.scratch("skopeo-layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &docker_ref,
        &format!("oci:{}:got", sk_layout.display()),
    ]);
    let sk = Image::from_layout(&sk_layout, Some("got"));
    assert_eq!(sk.manifest_digest, fx.image.manifest_digest);

    // berth pulls what skopeo pushed.
    let sk_ref = format!("{host}/from-skopeo/busybox:s1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", fx.archive.display()),
        &format!("docker://{sk_ref}"),
    ]);
    let want = skopeo_digest(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{sk_ref}"),
    ]);
    let c = Root::new();
    c.ok(&["--insecure-registry", &host, "pull", &sk_ref]);
    assert_eq!(layout_tags(&c.path())[&sk_ref], want);
    check_layout(&c.path());

    // Pull by digest: recorded untagged, same manifest.
    let by_digest = format!("{host}/test/busybox@{}", fx.image.manifest_digest);
    let d = Root::new();
    let q = d.stdout(&["--insecure-registry", &host, "pull", "-q", &by_digest]);
    assert_eq!(q.trim(), fx.image.manifest_digest);
    assert!(blob_path(&d.path(), &fx.image.manifest_digest).is_file());

    // Registry-to-registry copy (same registry: blobs mounted).
    let copied = format!("{host}/mirror/busybox:c1");
    let out = a.ok(&["--insecure-registry", &host, "copy", &dest, &copied]);
    assert!(stderr(&out).contains("mounted"), "{}", show(&out));
    assert_eq!(
        skopeo_digest(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{copied}")
        ]),
        fx.image.manifest_digest
    );

    // Tags, and push of every tag of a repository.
    a.ok(&["tag", &dest, &format!("{host}/test/busybox:v2")]);
    a.ok(&[
        "--insecure-registry",
        &host,
        "push",
        "--all-tags",
        &format!("{host}/test/busybox"),
    ]);
    let tags = a.stdout(&[
        "--insecure-registry",
        &host,
        "tags",
        &format!("{host}/test/busybox"),
    ]);
    assert_eq!(
        tags.lines()
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>(),
        set(&["v1", "v2"])
    );

    // One-line errors naming the registry's error code.
    let err = one_error_line(&a.run(&[
        "--insecure-registry",
        &host,
        "pull",
        &format!("{host}/test/busybox:nope"),
    ]));
    assert!(err.contains("MANIFEST_UNKNOWN"), "{err}");
    let err = one_error_line(&a.run(&[
        "--insecure-registry",
        &host,
        "tags",
        &format!("{host}/no/such"),
    ]));
    assert!(err.contains("NAME_UNKNOWN"), "{err}");
    // Plain HTTP without --insecure-registry: refused, with the fix named.
    let err = one_error_line(&a.run(&["pull", &dest]));
    assert!(err.contains(&host), "{err}");
}

/// Writes `bytes` as a blob of an OCI layout; returns its descriptor.
fn put_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let digest = sha256_bytes(bytes);
    fs::write(blob_path(layout, &digest), bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

#[test]
fn multi_platform_index_pull_one_or_all() {
    if !peers_present() {
        return;
    }
    let reg = DockerRegistry::start(RegistryOptions::default());
    let host = reg.host();
    let fx = fixture();
    let work = Root::new();

    // An index with the fixture as linux/amd64 and a relabelled copy as
    // linux/arm64 (same layers, another config).
    let layout = work.scratch("multi");
    extract(&fx.archive, &layout);
    let manifest = read_json(&blob_path(&layout, &fx.image.manifest_digest));
    let mut arm_config = fx.image.config.clone();
    arm_config["architecture"] = json!("arm64");
    let mut amd_config = fx.image.config.clone();
    amd_config["architecture"] = json!("amd64");
    let mut children = Vec::new();
    for (arch, config) in [("amd64", &amd_config), ("arm64", &arm_config)] {
        let cfg = put_blob(&layout, OCI_CONFIG, &serde_json::to_vec(config).unwrap());
        let mut m = manifest.clone();
        m["mediaType"] = json!(OCI_MANIFEST);
        m["config"] = cfg;
        let mut desc = put_blob(&layout, OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
        desc["platform"] = json!({"os": "linux", "architecture": arch});
        children.push(desc);
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children});
    let mut top = put_blob(&layout, OCI_INDEX, &serde_json::to_vec(&index).unwrap());
    top["annotations"] = json!({ REF_NAME: "multi" });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top.clone()]})).unwrap(),
    )
    .unwrap();
    let remote = format!("{host}/multi/busybox:m");
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{remote}"),
    ]);
    let index_digest = top["digest"].as_str().unwrap().to_string();
    let arm_digest = children[1]["digest"].as_str().unwrap().to_string();
    let amd_digest = children[0]["digest"].as_str().unwrap().to_string();

    let one = Root::new();
    one.ok(&[
        "--insecure-registry",
        &host,
        "pull",
        "--platform",
        "linux/arm64",
        &remote,
    ]);
    assert_eq!(layout_tags(&one.path())[&remote], arm_digest);
    assert!(!blob_path(&one.path(), &amd_digest).exists());
    assert_eq!(one.inspect(&remote)["Architecture"], "arm64");

    let all = Root::new();
    all.ok(&[
        "--insecure-registry",
        &host,
        "pull",
        "--all-platforms",
        &remote,
    ]);
    assert_eq!(layout_tags(&all.path())[&remote], index_digest);
    for d in [&arm_digest, &amd_digest] {
        assert!(blob_path(&all.path(), d).is_file(), "{d} missing");
    }
    check_layout(&all.path());

    // An index pushed by berth keeps its digest.
    let again = format!("{host}/multi/again:m");
    all.ok(&["tag", &remote, &again]);
    all.ok(&["--insecure-registry", &host, "push", &again]);
    let raw = all.ok(&["--insecure-registry", &host, "manifest", "inspect", &again]);
    assert_eq!(sha256_bytes(&raw.stdout), index_digest);

    let err = one_error_line(&all.run(&[
        "--insecure-registry",
        &host,
        "pull",
        "--platform",
        "linux/s390x",
        &remote,
    ]));
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
}

#[test]
fn tls_and_htpasswd_login_push_pull_logout() {
    if !peers_present() || !require_tool("htpasswd") || !require_tool("openssl") {
        return;
    }
    let reg = DockerRegistry::start(RegistryOptions {
        tls: true,
        htpasswd: true,
    });
    let host = reg.host();
    let ca = reg.ca();
    let ca = ca.to_str().unwrap();
    let fx = fixture();
    let a = Root::new();
    a.load(&fx.archive);
    let dest = format!("{host}/secure/busybox:t1");
    a.ok(&["tag", "busybox:latest", &dest]);

    let cfg_dir = a.scratch("docker-config");
    fs::create_dir_all(&cfg_dir).unwrap();
    let config = cfg_dir.join("config.json");
    fs::write(
        &config,
        r#"{"auths":{"other.example":{"auth":"eDp5"}},"psFormat":"table {{.ID}}","experimental":"enabled"}"#,
    )
    .unwrap();
    let env = [("DOCKER_CONFIG", cfg_dir.as_os_str())];

    // Unknown CA: the error names the host and both fixes.
    let err = one_error_line(&berth(&a, &env, None, &["push", &dest]));
    assert!(
        err.contains(&host) && err.contains("--tls-ca") && err.contains("--insecure-registry"),
        "{err}"
    );
    // Trusted CA but no login.
    let err = one_error_line(&berth(&a, &env, None, &["--tls-ca", ca, "push", &dest]));
    assert!(err.contains("UNAUTHORIZED"), "{err}");

    // A wrong password is refused and nothing is stored.
    let err = one_error_line(&berth(
        &a,
        &env,
        Some("wrong\n"),
        &[
            "--tls-ca",
            ca,
            "login",
            "-u",
            USER,
            "--password-stdin",
            &host,
        ],
    ));
    assert!(err.contains("UNAUTHORIZED"), "{err}");
    assert!(read_json(&config)["auths"].get(&host).is_none());

    let out = berth(
        &a,
        &env,
        Some(&format!("{PASSWORD}\n")),
        &[
            "--tls-ca",
            ca,
            "login",
            "-u",
            USER,
            "--password-stdin",
            &host,
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("Login Succeeded"));
    let written = read_json(&config);
    assert_eq!(written["auths"][&host]["auth"], AUTH_B64);
    assert_eq!(written["auths"]["other.example"]["auth"], "eDp5");
    assert_eq!(written["psFormat"], "table {{.ID}}");
    assert_eq!(written["experimental"], "enabled");

    let out = berth(&a, &env, None, &["--tls-ca", ca, "push", &dest]);
    assert!(out.status.success(), "{}", show(&out));
    let cert_dir = reg.cert_dir();
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(
        skopeo_digest(&[
            "inspect",
            "--cert-dir",
            cert_dir.to_str().unwrap(),
            "--creds",
            &creds,
            &format!("docker://{dest}")
        ]),
        fx.image.manifest_digest
    );
    let b = Root::new();
    let out = berth(&b, &env, None, &["--tls-ca", ca, "pull", &dest]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(layout_tags(&b.path())[&dest], fx.image.manifest_digest);
    let out = berth(
        &b,
        &env,
        None,
        &["--tls-ca", ca, "tags", &format!("{host}/secure/busybox")],
    );
    assert_eq!(stdout(&out).trim(), "t1", "{}", show(&out));

    // podman's REGISTRY_AUTH_FILE is honoured too.
    let auth_file = a.scratch("auth.json");
    fs::write(
        &auth_file,
        json!({"auths": {host.clone(): {"auth": AUTH_B64}}}).to_string(),
    )
    .unwrap();
    let empty_cfg = a.scratch("empty-docker-config");
    fs::create_dir_all(&empty_cfg).unwrap();
    let c = Root::new();
    let out = berth(
        &c,
        &[
            ("DOCKER_CONFIG", empty_cfg.as_os_str()),
            ("REGISTRY_AUTH_FILE", auth_file.as_os_str()),
        ],
        None,
        &["--tls-ca", ca, "pull", &dest],
    );
    assert!(out.status.success(), "{}", show(&out));

    let out = berth(&a, &env, None, &["logout", &host]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(read_json(&config)["auths"].get(&host).is_none());
    assert_eq!(read_json(&config)["psFormat"], "table {{.ID}}");
    let err = one_error_line(&berth(&b, &env, None, &["--tls-ca", ca, "pull", &dest]));
    assert!(err.contains("UNAUTHORIZED"), "{err}");
}

#[test]
fn credential_helper_get_store_erase() {
    if !peers_present() || !require_tool("htpasswd") {
        return;
    }
    let reg = DockerRegistry::start(RegistryOptions {
        tls: false,
        htpasswd: true,
    });
    let host = reg.host();
    let fx = fixture();
    let a = Root::new();
    a.load(&fx.archive);
    let dest = format!("{host}/helper/busybox:h1");
    a.ok(&["tag", "busybox:latest", &dest]);

    let bin = a.scratch("bin");
    fs::create_dir_all(&bin).unwrap();
    let calls = a.scratch("helper-calls");
    let stored = a.scratch("helper-stored");
    let script = bin.join("docker-credential-test");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nread -r input\necho \"$1 $input\" >> '{calls}'\ncase \"$1\" in\n\
             get) printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$input\" ;;\n\
             store) echo \"$input\" > '{stored}' ;;\n\
             erase) : ;;\n\
             *) exit 1 ;;\nesac\n",
            calls = calls.display(),
            stored = stored.display(),
        ),
    )
    .unwrap();
    run_ok(Command::new("chmod").arg("+x").arg(&script));
    let cfg_dir = a.scratch("docker-config");
    fs::create_dir_all(&cfg_dir).unwrap();
    fs::write(
        cfg_dir.join("config.json"),
        json!({"credHelpers": {host.clone(): "test"}}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("DOCKER_CONFIG", cfg_dir.as_os_str()),
        ("PATH", OsStr::new(&path)),
    ];
    let out = berth(
        &a,
        &env,
        None,
        &["--insecure-registry", &host, "push", &dest],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        fs::read_to_string(&calls)
            .unwrap()
            .contains(&format!("get {host}")),
        "the helper was not asked"
    );

    let out = berth(
        &a,
        &env,
        Some(&format!("{PASSWORD}\n")),
        &[
            "--insecure-registry",
            &host,
            "login",
            "-u",
            USER,
            "--password-stdin",
            &host,
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let saved: Value = serde_json::from_str(&fs::read_to_string(&stored).unwrap()).unwrap();
    assert_eq!(saved["ServerURL"], host.as_str());
    assert_eq!(saved["Username"], USER);
    assert_eq!(saved["Secret"], PASSWORD);
    // The secret went to the helper, not into config.json.
    let cfg = fs::read_to_string(cfg_dir.join("config.json")).unwrap();
    assert!(!cfg.contains(AUTH_B64), "{cfg}");

    let out = berth(&a, &env, None, &["logout", &host]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        fs::read_to_string(&calls)
            .unwrap()
            .contains(&format!("erase {host}"))
    );
}

#[test]
fn docker_engine_runs_what_berth_pushed() {
    if !peers_present() || !require_root() || !require_tool("dockerd") {
        return;
    }
    let reg = DockerRegistry::start(RegistryOptions::default());
    let host = reg.host();
    let fx = fixture();
    let a = Root::new();
    a.load(&fx.archive);
    let dest = format!("{host}/docker/busybox:d1");
    a.ok(&["tag", "busybox:latest", &dest]);
    a.ok(&["--insecure-registry", &host, "push", &dest]);
    let dockerd = common::dockerd::Dockerd::start();
    // 127.0.0.0/8 is an insecure registry for docker by default.
    dockerd.docker(&["pull", &dest]);
    let digests = dockerd.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &dest,
    ]);
    assert!(digests.contains(&fx.image.manifest_digest), "{digests}");
    let out = dockerd.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &dest,
        "sh",
        "-c",
        "echo pushed-by-berth",
    ]);
    assert_eq!(out.trim(), "pushed-by-berth");
}

#[test]
fn berth_server_in_token_mode() {
    if !require_tool("htpasswd") || !require_tool("skopeo") {
        return;
    }
    let server = client_support::BerthRegistry::start(TOKEN_MODE_CONFIG);
    let host = server.addr.clone();
    let fx = fixture();
    let a = Root::new();
    a.load(&fx.archive);
    let dest = format!("{host}/token/busybox:k1");
    a.ok(&["tag", "busybox:latest", &dest]);
    let cfg_dir = a.scratch("docker-config");
    fs::create_dir_all(&cfg_dir).unwrap();
    let env = [("DOCKER_CONFIG", cfg_dir.as_os_str())];
    let insecure = ["--insecure-registry", host.as_str()];
    let with = |args: &[&str]| -> Vec<String> {
        insecure.iter().chain(args).map(|s| s.to_string()).collect()
    };
    let run = |root: &Root, stdin: Option<&str>, args: &[&str]| {
        let args = with(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        berth(root, &env, stdin, &args)
    };

    let err = one_error_line(&run(&a, None, &["push", &dest]));
    assert!(err.contains("UNAUTHORIZED"), "{err}");
    let err = one_error_line(&run(
        &a,
        Some("nope\n"),
        &["login", "-u", USER, "--password-stdin", &host],
    ));
    assert!(err.contains("UNAUTHORIZED"), "{err}");
    let out = run(
        &a,
        Some(&format!("{PASSWORD}\n")),
        &["login", "-u", USER, "--password-stdin", &host],
    );
    assert!(out.status.success(), "{}", show(&out));

    let out = run(&a, None, &["push", &dest]);
    assert!(out.status.success(), "{}", show(&out));
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(
        skopeo_digest(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{dest}")
        ]),
        fx.image.manifest_digest
    );
    let b = Root::new();
    let out = run(&b, None, &["pull", &dest]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(layout_tags(&b.path())[&dest], fx.image.manifest_digest);

    // Copy within the server: one token for pull on the source and push on
    // the target, blobs mounted.
    let copied = format!("{host}/token/mirror:k2");
    let out = run(&a, None, &["copy", &dest, &copied]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("mounted"), "{}", show(&out));
    let out = run(&a, None, &["tags", &format!("{host}/token/mirror")]);
    assert_eq!(stdout(&out).trim(), "k2", "{}", show(&out));

    // Copy from another registry (distribution, anonymous): blobs streamed
    // from one to the other, digest unchanged.
    if !require_tool("docker-registry") {
        return;
    }
    let dist = DockerRegistry::start(RegistryOptions::default());
    let dist_host = dist.host();
    let src = format!("{dist_host}/plain/busybox:p1");
    a.ok(&["tag", "busybox:latest", &src]);
    a.ok(&["--insecure-registry", &dist_host, "push", &src]);
    let streamed = format!("{host}/token/streamed:p1");
    let out = run(
        &a,
        None,
        &["--insecure-registry", &dist_host, "copy", &src, &streamed],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stderr(&out).contains("mounted"), "{}", show(&out));
    assert_eq!(
        skopeo_digest(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{streamed}")
        ]),
        fx.image.manifest_digest
    );
}

const TOKEN_MODE_CONFIG: &str = "auth:\n  htpasswd: {dir}/htpasswd\n  token:\n    rules:\n      - repository: \"**\"\n        users: [berth]\n        actions: [\"*\"]\n";

/// Docker Hub's protocol: `docker.io/library/NAME` through a shim (set as
/// docker.io's endpoint in berth's settings file) in front of berth's server
/// in token mode, blob GETs redirected to a second host, with 429s, 500s and
/// dropped connections injected on the way.
#[test]
fn docker_hub_protocol_through_a_shim_and_a_blob_host() {
    if !require_tool("htpasswd") {
        return;
    }
    let server = client_support::BerthRegistry::start(TOKEN_MODE_CONFIG);
    let hub = client_support::hub::Hub::start(&server.addr);
    let fx = fixture();
    let a = Root::new();
    a.load(&fx.archive);
    let settings = a.scratch("berth-config.json");
    fs::write(
        &settings,
        json!({"registry-endpoints": {"docker.io": hub.url}}).to_string(),
    )
    .unwrap();
    let cfg_dir = a.scratch("docker-config");
    fs::create_dir_all(&cfg_dir).unwrap();
    let env = [
        ("BERTH_CONFIG", settings.as_os_str()),
        ("DOCKER_CONFIG", cfg_dir.as_os_str()),
    ];

    let out = berth(
        &a,
        &env,
        Some(&format!("{PASSWORD}\n")),
        &["login", "-u", USER, "--password-stdin"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let auths = read_json(&cfg_dir.join("config.json"))["auths"].clone();
    assert_eq!(
        auths["https://index.docker.io/v1/"]["auth"], AUTH_B64,
        "{auths}"
    );

    // Push: the first blob upload is cut off mid-body, the second answered
    // 500, the first manifest PUT 429 with Retry-After.
    let out = berth(&a, &env, None, &["push", "busybox:latest", "hubtest:h1"]);
    assert!(out.status.success(), "{}", show(&out));
    let faults = hub.log(|l| l.faults.clone());
    for fault in ["upload drop", "upload 500", "manifest put 429"] {
        assert!(
            faults.iter().any(|f| f == fault),
            "{fault} not injected: {faults:?}"
        );
    }
    if require_tool("skopeo") {
        let creds = format!("{USER}:{PASSWORD}");
        let upstream = format!("docker://{}/library/hubtest:h1", server.addr);
        let digest = skopeo_digest(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            &upstream,
        ]);
        assert_eq!(digest, fx.image.manifest_digest);
    }

    // Pull: blobs come from the blob host, the large one after a 429, a 500
    // and a connection dropped halfway (resumed with Range).
    let b = Root::new();
    let out = berth(&b, &env, None, &["pull", "hubtest:h1"]);
    assert!(out.status.success(), "{}", show(&out));
    let tags = layout_tags(&b.path());
    assert!(
        tags.values().any(|d| *d == fx.image.manifest_digest),
        "{tags:?}"
    );
    let (faults, requests, authorizations) = hub.log(|l| {
        (
            l.faults.clone(),
            l.blob_requests.clone(),
            l.blob_authorizations.clone(),
        )
    });
    for fault in ["blob 429", "blob 500", "blob drop"] {
        assert!(
            faults.iter().any(|f| f == fault),
            "{fault} not injected: {faults:?}"
        );
    }
    assert!(
        requests.iter().any(|(_, range)| range
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-")),
        "no resumed download: {requests:?}"
    );
    assert!(
        authorizations.is_empty(),
        "the registry token leaked to the blob host: {authorizations:?}"
    );

    // Rate limited for longer than the retries last: one clear line with
    // Docker Hub's rate-limit headers.
    hub.rate_limit_manifests();
    let c = Root::new();
    let err = one_error_line(&berth(&c, &env, None, &["pull", "hubtest:h1"]));
    assert!(err.contains("TOOMANYREQUESTS"), "{err}");
    assert!(err.contains("ratelimit-remaining: 0;w=21600"), "{err}");
    let limited = hub.log(|l| l.faults.iter().filter(|f| *f == "rate limit").count());
    assert!(limited > 1, "the 429 was not retried ({limited} sent)");
}

/// `insecure-registries` in berth's settings file ($BERTH_CONFIG) works like
/// `--insecure-registry`.
#[test]
fn insecure_registry_from_the_settings_file() {
    if !peers_present() {
        return;
    }
    let reg = DockerRegistry::start(RegistryOptions::default());
    let host = reg.host();
    let fx = fixture();
    let a = Root::new();
    a.load(&fx.archive);
    let dest = format!("{host}/settings/busybox:s1");
    a.ok(&["tag", "busybox:latest", &dest]);
    let settings = a.scratch("berth-config.json");
    fs::write(&settings, json!({"other": true}).to_string()).unwrap();
    let env = [("BERTH_CONFIG", settings.as_os_str())];
    let err = one_error_line(&berth(&a, &env, None, &["push", &dest]));
    assert!(err.contains("--insecure-registry"), "{err}");

    fs::write(
        &settings,
        json!({"insecure-registries": [host], "other": true}).to_string(),
    )
    .unwrap();
    let out = berth(&a, &env, None, &["push", &dest]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        skopeo_digest(&["inspect", "--tls-verify=false", &format!("docker://{dest}")]),
        fx.image.manifest_digest
    );
}

/// `berth push` to another repository of the same registry mounts the blobs
/// it knows are there (pushed or pulled earlier), as docker's push does; a
/// source on another registry, or one that lost the blob, means an upload.
#[test]
fn push_mounts_blobs_known_to_be_in_another_repository() {
    if !peers_present() {
        return;
    }
    let reg = DockerRegistry::start(RegistryOptions::default());
    let host = reg.host();
    let fx = fixture();
    let push = |root: &Root, dest: &str| -> String {
        let out = root.ok(&["--insecure-registry", &host, "push", dest]);
        assert_eq!(
            skopeo_digest(&["inspect", "--tls-verify=false", &format!("docker://{dest}")]),
            fx.image.manifest_digest
        );
        stderr(&out)
    };
    let blobs = fx.image.layers.len() + 1;
    let mounted = |log: &str| log.lines().filter(|l| l.ends_with(": mounted")).count();

    let a = Root::new();
    a.load(&fx.archive);
    let one = format!("{host}/one/busybox:1");
    a.ok(&["tag", "busybox:latest", &one]);
    let log = push(&a, &one);
    assert_eq!(mounted(&log), 0, "{log}");
    // Pushed to `one`: a push to `two` mounts every blob from there.
    let two = format!("{host}/two/busybox:1");
    a.ok(&["tag", "busybox:latest", &two]);
    let log = push(&a, &two);
    assert_eq!(mounted(&log), blobs, "{log}");

    // Pulled from `one` into an empty store: a push to `three` mounts too.
    let b = Root::new();
    b.ok(&["--insecure-registry", &host, "pull", &one]);
    let three = format!("{host}/three/busybox:1");
    b.ok(&["tag", &one, &three]);
    let log = push(&b, &three);
    assert_eq!(mounted(&log), blobs, "{log}");

    // Known only in a repository that does not have them: the registry
    // answers the mount with an upload session, and the push still works.
    let c = Root::new();
    c.load(&fx.archive);
    for digest in fx.image.layers.iter().chain([&fx.image.config_digest]) {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let record = c.path().join("sources/sha256").join(hex);
        fs::create_dir_all(record.parent().unwrap()).unwrap();
        fs::write(&record, format!("{host} never/pushed\n")).unwrap();
    }
    let four = format!("{host}/four/busybox:1");
    c.ok(&["tag", "busybox:latest", &four]);
    let log = push(&c, &four);
    assert_eq!(mounted(&log), 0, "{log}");

    // Another registry never mounts from this one.
    let other = DockerRegistry::start(RegistryOptions::default());
    let elsewhere = format!("{}/one/busybox:1", other.host());
    a.ok(&["tag", "busybox:latest", &elsewhere]);
    let out = a.ok(&["--insecure-registry", &other.host(), "push", &elsewhere]);
    assert_eq!(mounted(&stderr(&out)), 0, "{}", show(&out));
}
