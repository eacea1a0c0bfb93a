//! End-to-end tests of `berth build` as root on the busybox fixture: every
//! instruction and flag with Docker/BuildKit's meaning (checked in the image
//! config, the history and by running the image), RUN mounts (cache, bind,
//! tmpfs, secret), COPY/ADD semantics and symlink-escape attempts, failing
//! builds, multi-stage DAGs and `--target`, the build cache, reproducible
//! output across roots, and interop with Docker and buildah.
//!
//! Without root each test prints a skip message (CI=true makes that fatal).

mod build_support;
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use build_support::*;
use common::{Root, find_tool, fixture, require_tool, run_ok, show, stdout};
use serde_json::{Value, json};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// A name no other test or run uses, for paths on the host.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Appends a user `app` (uid 1234, primary group `appgrp` 4321) to the
/// image's passwd and group files: busybox has no adduser.
const ADD_APP_USER: &str = "RUN echo 'app:x:1234:4321::/home/app:/bin/sh' >> /etc/passwd \
     && echo 'appgrp:x:4321:' >> /etc/group && mkdir -p /home/app && chown 1234:4321 /home/app";

// ---------------------------------------------------------------------------
// Metadata instructions

#[test]
fn env_arg_label_expose_volume_stopsignal_maintainer_go_into_the_config() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        r#"FROM busybox
ARG DEFAULTED=dflt
ARG GIVEN=unset
ENV abc=hello
ENV abc=bye def=$abc
ENV ghi=$abc a=1 b=$a
LABEL one=1 "two words"="x y" from.arg=$GIVEN
EXPOSE 80 53/udp 8080/TCP
VOLUME /data /cache
VOLUME ["/logs"]
STOPSIGNAL SIGQUIT
MAINTAINER Some One <some@one.example>
RUN echo "$DEFAULTED $GIVEN $def $ghi [$b]" > /args
"#,
    );
    let built = build(
        &root,
        ctx.path(),
        &[
            "-t",
            "meta:1",
            "--build-arg",
            "GIVEN=given",
            "--label",
            "extra=yes",
        ],
    );
    let inspect = root.inspect("meta:1");
    assert_eq!(inspect["Id"], built.id, "inspect Id is the --iidfile ID");
    let cfg = &inspect["Config"];
    let env = strings(&cfg["Env"]);
    // Docker: within one ENV, $x is the value from before the instruction.
    for want in ["abc=bye", "def=hello", "ghi=bye", "a=1", "b="] {
        assert!(env.contains(&want.to_string()), "Env lacks {want}: {env:?}");
    }
    assert!(
        env.iter().any(|e| e.starts_with("PATH=")),
        "PATH kept: {env:?}"
    );
    assert!(
        !env.iter()
            .any(|e| e.starts_with("DEFAULTED") || e.starts_with("GIVEN")),
        "build args must not become image env: {env:?}"
    );
    assert_eq!(
        cfg["Labels"],
        json!({"one": "1", "two words": "x y", "from.arg": "given", "extra": "yes"})
    );
    assert_eq!(
        keys(&cfg["ExposedPorts"]),
        ["53/udp", "80/tcp", "8080/tcp"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        keys(&cfg["Volumes"]),
        ["/cache", "/data", "/logs"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(cfg["StopSignal"], "SIGQUIT");
    assert_eq!(inspect["Author"], "Some One <some@one.example>");
    assert_eq!(
        sh(&root, "meta:1", "cat /args"),
        "dflt given hello bye []\n"
    );

    // One history entry per instruction after FROM; only RUN has a layer.
    let history = root.stdout(&["history", "--no-trunc", "meta:1"]);
    for needle in [
        "ENV abc=bye def=hello",
        "LABEL one=1",
        "EXPOSE",
        "VOLUME",
        "STOPSIGNAL SIGQUIT",
        "MAINTAINER Some One",
        "RUN /bin/sh -c echo",
    ] {
        assert!(
            history.contains(needle),
            "history lacks {needle:?}:\n{history}"
        );
    }
    let layers = inspect["RootFS"]["Layers"].as_array().unwrap().len();
    assert_eq!(
        layers,
        fixture().image.diff_ids.len() + 1,
        "only RUN adds a layer: {inspect}"
    );
}

#[test]
fn healthcheck_cmd_shell_and_none() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        "FROM busybox\nHEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=4 CMD [\"true\", \"x\"]\n",
    );
    build(&root, ctx.path(), &["-t", "hc:exec"]);
    let hc = &config(&root, "hc:exec")["Healthcheck"];
    assert_eq!(hc["Test"], json!(["CMD", "true", "x"]), "{hc}");
    assert_eq!(hc["Interval"], json!(5_000_000_000u64), "{hc}");
    assert_eq!(hc["Timeout"], json!(3_000_000_000u64), "{hc}");
    assert_eq!(hc["StartPeriod"], json!(2_000_000_000u64), "{hc}");
    assert_eq!(hc["Retries"], json!(4), "{hc}");

    ctx.dockerfile("FROM hc:exec\nHEALTHCHECK CMD wget -q localhost || exit 1\n");
    build(&root, ctx.path(), &["-t", "hc:shell"]);
    assert_eq!(
        config(&root, "hc:shell")["Healthcheck"]["Test"],
        json!(["CMD-SHELL", "wget -q localhost || exit 1"])
    );

    ctx.dockerfile("FROM hc:exec\nHEALTHCHECK NONE\n");
    build(&root, ctx.path(), &["-t", "hc:none"]);
    assert_eq!(
        config(&root, "hc:none")["Healthcheck"]["Test"],
        json!(["NONE"])
    );
}

#[test]
fn entrypoint_cmd_and_shell_forms() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nCMD echo from-cmd\n");
    build(&root, ctx.path(), &["-t", "ep:cmd"]);
    let cfg = config(&root, "ep:cmd");
    assert_eq!(cfg["Cmd"], json!(["/bin/sh", "-c", "echo from-cmd"]));
    assert_eq!(run_image(&root, "ep:cmd", &[]), "from-cmd\n");

    // ENTRYPOINT resets a CMD inherited from the base.
    ctx.dockerfile("FROM ep:cmd\nENTRYPOINT [\"echo\", \"ep\"]\n");
    build(&root, ctx.path(), &["-t", "ep:exec"]);
    let cfg = config(&root, "ep:exec");
    assert_eq!(cfg["Entrypoint"], json!(["echo", "ep"]));
    assert!(
        cfg["Cmd"].is_null() || cfg["Cmd"] == json!([]),
        "inherited CMD must be reset: {cfg}"
    );
    assert_eq!(run_image(&root, "ep:exec", &[]), "ep\n");

    // A CMD of the same stage survives a later ENTRYPOINT.
    ctx.dockerfile("FROM ep:cmd\nCMD [\"kept\"]\nENTRYPOINT [\"echo\"]\n");
    build(&root, ctx.path(), &["-t", "ep:both"]);
    assert_eq!(config(&root, "ep:both")["Cmd"], json!(["kept"]));
    assert_eq!(run_image(&root, "ep:both", &[]), "kept\n");

    // Shell form ENTRYPOINT; SHELL changes shell forms and RUN.
    ctx.dockerfile(
        r#"FROM busybox
ENTRYPOINT echo shell-ep
SHELL ["/bin/sh", "-c", "echo \"$0\" > /shell-used"]
RUN via-custom-shell
SHELL ["/bin/sh", "-ec"]
CMD echo later
"#,
    );
    build(&root, ctx.path(), &["-t", "ep:shell"]);
    let cfg = config(&root, "ep:shell");
    assert_eq!(cfg["Entrypoint"], json!(["/bin/sh", "-c", "echo shell-ep"]));
    assert_eq!(cfg["Cmd"], json!(["/bin/sh", "-ec", "echo later"]));
    assert_eq!(cfg["Shell"], json!(["/bin/sh", "-ec"]));
    assert_eq!(
        root.stdout(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "cat",
            "ep:shell",
            "/shell-used"
        ]),
        "via-custom-shell\n"
    );
}

#[test]
fn user_and_workdir_apply_to_run_and_config() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(&format!(
        r#"FROM busybox
{ADD_APP_USER}
ENV BASEDIR=/srv
WORKDIR $BASEDIR
WORKDIR app/sub
RUN pwd > /pwd-root
USER app
RUN id -u > /home/app/uid && id -g > /home/app/gid && pwd > /home/app/pwd
USER 0
WORKDIR rel
USER app:appgrp
"#
    ));
    build(&root, ctx.path(), &["-t", "uw"]);
    let cfg = config(&root, "uw");
    assert_eq!(cfg["User"], "app:appgrp");
    assert_eq!(cfg["WorkingDir"], "/srv/app/sub/rel");
    let out = sh(
        &root,
        "uw",
        "cat /pwd-root /home/app/uid /home/app/gid /home/app/pwd; stat -c '%u:%g' /home/app/uid; \
         test -d /srv/app/sub/rel && echo dir-made",
    );
    assert_eq!(
        out,
        "/srv/app/sub\n1234\n4321\n/srv/app/sub\n1234:4321\ndir-made\n"
    );
    // The container runs as the image's user, in its working directory.
    assert_eq!(
        run_image(&root, "uw", &["sh", "-c", "id -u; pwd"]),
        "1234\n/srv/app/sub/rel\n"
    );
}

#[test]
fn workdir_made_under_a_user_belongs_to_that_user() {
    let Some(root) = busybox_root() else { return };
    // BuildKit makes WORKDIR's directories as the current USER.
    let ctx = Ctx::new(&format!(
        "FROM busybox\n{ADD_APP_USER}\nUSER app\nWORKDIR /data/sub\nRUN touch made-by-app\n"
    ));
    build(&root, ctx.path(), &["-t", "wdu"]);
    assert_eq!(
        sh(
            &root,
            "wdu",
            "stat -c '%n %u:%g' /data/sub /data/sub/made-by-app"
        ),
        "/data/sub 1234:4321\n/data/sub/made-by-app 1234:4321\n"
    );
}

#[test]
fn onbuild_triggers_run_in_the_child_and_are_not_inherited() {
    let Some(root) = busybox_root() else { return };
    let base = Ctx::new(
        "FROM busybox\nONBUILD RUN echo triggered > /trigger\nONBUILD COPY marker /marker\n",
    );
    build(&root, base.path(), &["-t", "onb:base"]);
    let cfg = config(&root, "onb:base");
    assert_eq!(
        cfg["OnBuild"],
        json!(["RUN echo triggered > /trigger", "COPY marker /marker"])
    );
    assert_eq!(
        sh(&root, "onb:base", "test -e /trigger && echo yes || echo no"),
        "no\n",
        "triggers must not run in the image that declares them"
    );

    let child = Ctx::new("FROM onb:base\nRUN cat /trigger /marker > /both\n");
    child.write("marker", "from-child-context\n");
    build(&root, child.path(), &["-t", "onb:child"]);
    assert_eq!(
        sh(&root, "onb:child", "cat /both"),
        "triggered\nfrom-child-context\n"
    );
    let cfg = config(&root, "onb:child");
    assert!(
        cfg["OnBuild"].is_null() || cfg["OnBuild"] == json!([]),
        "triggers are not inherited by the child: {cfg}"
    );
}

// ---------------------------------------------------------------------------
// RUN

#[test]
fn run_exec_heredoc_and_shebang_forms() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        r#"FROM busybox
ENV WHO=world
RUN ["/bin/sh", "-c", "echo exec-form > /exec"]
RUN <<EOF
echo lone > /lone
echo second-line >> /lone
EOF
RUN <<EOF
#!/bin/awk -f
BEGIN { print "awk-ran" > "/shebang" }
EOF
RUN cat <<EOF > /inline
hello $WHO
EOF
RUN cat <<'EOF' > /quoted
hello $WHO
EOF
"#,
    );
    build(&root, ctx.path(), &["-t", "runforms"]);
    assert_eq!(
        sh(
            &root,
            "runforms",
            "cat /exec /lone /shebang /inline /quoted"
        ),
        "exec-form\nlone\nsecond-line\nawk-ran\nhello world\nhello $WHO\n"
    );
}

#[test]
fn run_deletions_become_whiteouts() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        "FROM busybox\nRUN mkdir -p /data/old && echo o > /data/old/f && echo k > /data/keep\n\
         RUN rm /bin/vi && rm -rf /data && mkdir /data && echo new > /data/only\n",
    );
    build(&root, ctx.path(), &["-t", "wh"]);
    assert_eq!(
        sh(
            &root,
            "wh",
            "test -e /bin/vi && echo vi-still-there; cd /data && find . | sort"
        ),
        ".\n./only\n"
    );
    let archive = root.scratch("wh.oci.tar");
    root.save(Some("oci"), &archive, &["wh"]);
    let image = common::Image::from_oci_archive(&archive, None);
    let dir = tempfile::tempdir().unwrap();
    let blob = extract_blob(&archive, image.layers.last().unwrap(), dir.path());
    let listing = stdout(&run_ok(Command::new("tar").arg("-tzf").arg(&blob)));
    assert!(
        listing.lines().any(|l| l == "bin/.wh.vi"),
        "whiteout for /bin/vi:\n{listing}"
    );
}

#[test]
fn run_network_none_by_flag_and_by_build_option() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nRUN --network=none ls /sys/class/net > /nets\n");
    build(&root, ctx.path(), &["-t", "net:flag"]);
    assert_eq!(sh(&root, "net:flag", "cat /nets"), "lo\n");

    ctx.dockerfile("FROM busybox\nRUN ls /sys/class/net > /nets2\n");
    build(&root, ctx.path(), &["-t", "net:opt", "--network", "none"]);
    assert_eq!(sh(&root, "net:opt", "cat /nets2"), "lo\n");
}

#[test]
fn run_mount_cache_persists_between_builds_and_stays_out_of_the_layer() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        "FROM busybox\nRUN --mount=type=cache,target=/var/cache/app \
         echo run >> /var/cache/app/count && cat /var/cache/app/count > /seen\n",
    );
    build(&root, ctx.path(), &["-t", "cm"]);
    assert_eq!(sh(&root, "cm", "cat /seen"), "run\n");
    build(&root, ctx.path(), &["-t", "cm", "--no-cache"]);
    assert_eq!(
        sh(&root, "cm", "cat /seen"),
        "run\nrun\n",
        "the second build sees what the first wrote in the cache mount"
    );
    assert_eq!(
        sh(
            &root,
            "cm",
            "test -e /var/cache/app/count && echo leaked || echo absent"
        ),
        "absent\n"
    );
}

#[test]
fn run_mount_bind_from_context_and_stage_tmpfs() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        r#"FROM busybox AS maker
RUN mkdir /out && echo from-stage > /out/x
FROM busybox
RUN --mount=type=bind,source=data,target=/mnt/ctx cat /mnt/ctx/file > /from-ctx
RUN --mount=type=bind,source=data,target=/mnt/ctx sh -c 'touch /mnt/ctx/new 2>/dev/null && echo writable || echo readonly' > /bind-ro
RUN --mount=type=bind,source=data,target=/mnt/ctx,rw sh -c 'echo w > /mnt/ctx/new && cat /mnt/ctx/new' > /bind-rw
RUN --mount=type=bind,from=maker,source=/out,target=/mnt/st cat /mnt/st/x > /from-stage
RUN --mount=type=tmpfs,target=/scratch sh -c 'grep " /scratch " /proc/mounts | cut -d" " -f3 > /tmpfs-type; echo x > /scratch/f'
"#,
    );
    ctx.write("data/file", "from-context\n");
    build(&root, ctx.path(), &["-t", "mounts"]);
    assert_eq!(
        sh(
            &root,
            "mounts",
            "cat /from-ctx /bind-ro /bind-rw /from-stage /tmpfs-type; \
             ls /mnt/ctx /scratch 2>/dev/null | grep -c . || true"
        ),
        "from-context\nreadonly\nw\nfrom-stage\ntmpfs\n0\n"
    );
    assert!(
        !ctx.path().join("data/new").exists(),
        "a rw bind mount must not write into the context"
    );
}

#[test]
fn run_mount_relative_targets_resolve_against_workdir() {
    let Some(root) = busybox_root() else { return };
    // BuildKit joins a relative mount target to the working directory.
    let ctx = Ctx::new(
        "FROM busybox\nWORKDIR /w\n\
         RUN --mount=type=tmpfs,target=scratch grep -c ' /w/scratch ' /proc/mounts > /count\n\
         RUN --mount=type=bind,source=data,target=in cat in/file > /bound\n",
    );
    ctx.write("data/file", "bound\n");
    build(&root, ctx.path(), &["-t", "relmount"]);
    assert_eq!(sh(&root, "relmount", "cat /count /bound"), "1\nbound\n");
}

#[test]
fn run_mount_secret_is_readable_and_leaves_no_trace() {
    let Some(root) = busybox_root() else { return };
    let secret = unique("s3cr3t-XYZZY");
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    fs::write(secret_file.path(), &secret).unwrap();
    let ctx = Ctx::new(
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /secret-len\n\
         RUN --mount=type=secret,id=tok,env=TOK sh -c 'echo ${#TOK}' > /env-len\n\
         RUN --mount=type=secret,id=tok,target=/opt/tok cat /opt/tok | wc -c > /target-len\n",
    );
    let spec = format!("id=tok,src={}", secret_file.path().display());
    build(&root, ctx.path(), &["-t", "sec", "--secret", &spec]);
    let len = secret.len().to_string();
    assert_eq!(
        sh(&root, "sec", "cat /secret-len /env-len /target-len"),
        format!("{len}\n{len}\n{len}\n")
    );
    assert_eq!(
        sh(
            &root,
            "sec",
            "ls /run/secrets /opt/tok 2>/dev/null | grep -c . || true"
        ),
        "0\n",
        "no secret mount point is left in the image"
    );
    let blobs = blobs_containing(&root, secret.as_bytes());
    assert!(blobs.is_empty(), "secret found in blobs {blobs:?}");
    let cache = files_containing(&root.path().join("buildcache"), secret.as_bytes());
    assert!(
        cache.is_empty(),
        "secret found in build cache files {cache:?}"
    );
    let history = root.stdout(&["history", "--no-trunc", "sec"]);
    assert!(!history.contains(&secret), "secret in history:\n{history}");

    // A different secret value does not change the cache key.
    fs::write(secret_file.path(), "another-value").unwrap();
    let again = build(&root, ctx.path(), &["--secret", &spec]);
    let (_, ran) = again.cached_and_ran();
    assert!(
        ran.is_empty(),
        "secret content must not be in the key: {ran:?}"
    );
}

#[test]
fn run_security_insecure_has_all_capabilities() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        "FROM busybox\n\
         RUN grep CapEff /proc/self/status | cut -f2 > /caps-default\n\
         RUN --security=insecure grep CapEff /proc/self/status | cut -f2 > /caps-insecure\n",
    );
    build(&root, ctx.path(), &["-t", "insecure"]);
    let out = sh(&root, "insecure", "cat /caps-default /caps-insecure");
    let caps: Vec<u64> = out
        .lines()
        .map(|l| u64::from_str_radix(l.trim(), 16).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    assert_eq!(
        caps[0] & CAP_SYS_ADMIN,
        0,
        "default RUN lacks CAP_SYS_ADMIN: {out}"
    );
    assert_ne!(
        caps[1] & CAP_SYS_ADMIN,
        0,
        "insecure RUN has CAP_SYS_ADMIN: {out}"
    );
}

#[test]
fn missing_sources_bases_and_targets_fail_clearly() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nCOPY nothere.txt /x\n");
    let err = build_fails(&root, ctx.path(), &["-t", "broken"]);
    assert!(
        err.contains("nothere.txt") && err.contains("Dockerfile:2"),
        "{err}"
    );

    ctx.dockerfile("FROM no-such-image:1.0\nRUN true\n");
    let err = build_fails(&root, ctx.path(), &["-t", "broken"]);
    assert!(err.contains("no-such-image"), "{err}");

    ctx.dockerfile("FROM busybox AS one\nRUN true\n");
    let err = build_fails(&root, ctx.path(), &["--target", "two"]);
    assert!(err.contains("two"), "{err}");

    ctx.dockerfile("FROM busybox\nFROBNICATE now\n");
    let err = build_fails(&root, ctx.path(), &[]);
    assert!(err.to_ascii_lowercase().contains("frobnicate"), "{err}");
    assert!(
        !root.tags().iter().any(|t| t.starts_with("broken")),
        "{}",
        images_text(&root)
    );
}

#[test]
fn a_run_that_changes_nothing_adds_no_layer() {
    let Some(root) = busybox_root() else { return };
    // BuildKit drops empty layers and marks their history entries
    // empty_layer; mount points the runtime made must not count as changes.
    let ctx = Ctx::new(
        "FROM busybox\nRUN true\nRUN --mount=type=tmpfs,target=/scratch touch /scratch/x\nRUN echo x > /x\n",
    );
    build(&root, ctx.path(), &["-t", "noop"]);
    let archive = root.scratch("noop.oci.tar");
    root.save(Some("oci"), &archive, &["noop"]);
    let image = common::Image::from_oci_archive(&archive, None);
    let base_layers = fixture().image.layers.len();
    assert_eq!(
        image.layers.len(),
        base_layers + 1,
        "only RUN echo adds a layer: {}",
        image.config
    );
    let history = image.config["history"].as_array().unwrap();
    let with_layers = history
        .iter()
        .filter(|h| h["empty_layer"] != json!(true))
        .count();
    assert_eq!(with_layers, image.layers.len(), "{}", image.config);
    let last = &history[history.len() - 2..];
    assert_eq!(last[0]["empty_layer"], json!(true), "{}", image.config);
    // And the one layer holds /x only, not the runtime's /etc stubs.
    let blob = tempfile::tempdir().unwrap();
    let listing = stdout(&run_ok(Command::new("tar").arg("-tzf").arg(extract_blob(
        &archive,
        image.layers.last().unwrap(),
        blob.path(),
    ))));
    assert_eq!(listing, "x\n");
}

/// Extracts one blob of an oci-archive into `dir`; returns its path.
fn extract_blob(archive: &Path, digest: &str, dir: &Path) -> std::path::PathBuf {
    let member = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(dir)
            .arg(&member),
    );
    dir.join(member)
}

#[test]
fn failing_run_exits_1_names_the_line_and_leaves_no_tag() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nRUN echo good > /good\n");
    let good = build(&root, ctx.path(), &["-t", "app:latest"]);
    let before = root.images().len();

    ctx.dockerfile(
        "FROM busybox\nRUN echo before\nRUN echo some-output-line && exit 3\nRUN echo after\n",
    );
    let err = build_fails(&root, ctx.path(), &["-t", "app:latest", "-t", "newname:1"]);
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(
        err.contains("Dockerfile:3"),
        "the failing line is named: {err}"
    );
    assert!(
        err.contains("some-output-line"),
        "the step output is shown: {err}"
    );
    let tags = root.tags();
    assert!(
        !tags.iter().any(|t| t.starts_with("newname")),
        "no tag for a failed build: {tags:?}"
    );
    assert_eq!(
        root.inspect("app:latest")["Id"],
        good.id,
        "the old tag still names the old image"
    );
    assert_eq!(root.images().len(), before, "{}", images_text(&root));
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root_path = root.path().display().to_string();
    assert!(
        !mounts.contains(&root_path),
        "a failed build leaves mounts under the root:\n{mounts}"
    );
    let work = root.path().join("buildcache/work");
    let left: Vec<_> = fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}

// ---------------------------------------------------------------------------
// COPY and ADD

/// A tar archive of `files` (path, content) made with tar(1), gzipped when
/// `gzip`; written at `out`.
fn make_tar(out: &Path, files: &[(&str, &str)], gzip: bool) {
    make_tar_with(out, files, if gzip { Some("-z") } else { None });
}

/// Like [`make_tar`], compressed with tar's `flag` (`-z`, `-j`, `-J`,
/// `--zstd`) when given.
fn make_tar_with(out: &Path, files: &[(&str, &str)], flag: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    for (p, content) in files {
        let f = tmp.path().join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, content).unwrap();
    }
    let names: Vec<&str> = files
        .iter()
        .map(|(p, _)| p.split('/').next().unwrap())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    run_ok(
        Command::new("tar")
            .args(flag)
            .arg("-cf")
            .arg(out)
            .arg("-C")
            .arg(tmp.path())
            .args(names),
    );
}

#[test]
fn copy_directory_trailing_slash_glob_parents_link_heredoc() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        r#"FROM busybox
COPY dir /d1
COPY dir /d2/
COPY one.txt /f1
COPY one.txt /f2/
COPY one.txt two.txt /f3/
COPY *.txt /g/
COPY exec.sh /x/
COPY --parents p/q/r.txt p/s /par/
COPY --link one.txt /linked/
COPY <<EOF /etc/heredoc-file
hello heredoc
EOF
COPY one.txt rel/
WORKDIR /w
COPY one.txt rel/
"#,
    );
    ctx.write("dir/a.txt", "a\n");
    ctx.write("dir/sub/b.txt", "b\n");
    ctx.write("one.txt", "one\n");
    ctx.write("two.txt", "two\n");
    ctx.write("x.md", "md\n");
    ctx.write("exec.sh", "#!/bin/sh\n");
    ctx.chmod("exec.sh", 0o755);
    ctx.write("p/q/r.txt", "r\n");
    ctx.write("p/s/t.txt", "t\n");
    build(&root, ctx.path(), &["-t", "cp"]);
    let listing = sh(
        &root,
        "cp",
        "cd / && find d1 d2 f1 f2 f3 g x par linked rel w | sort; \
         for f in f1 x/exec.sh d1/a.txt; do stat -c \"%n %u:%g %a\" $f; done; \
         stat -c '%F' /f1; cat /etc/heredoc-file",
    );
    let expected = "\
d1
d1/a.txt
d1/sub
d1/sub/b.txt
d2
d2/a.txt
d2/sub
d2/sub/b.txt
f1
f2
f2/one.txt
f3
f3/one.txt
f3/two.txt
g
g/one.txt
g/two.txt
linked
linked/one.txt
par
par/p
par/p/q
par/p/q/r.txt
par/p/s
par/p/s/t.txt
rel
rel/one.txt
w
w/rel
w/rel/one.txt
x
x/exec.sh
f1 0:0 644
x/exec.sh 0:0 755
d1/a.txt 0:0 644
regular file
hello heredoc
";
    assert_eq!(listing, expected);
}

#[test]
fn copy_chown_by_name_and_number_and_chmod() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(&format!(
        r#"FROM busybox
{ADD_APP_USER}
COPY --chown=app one.txt /own/name
COPY --chown=app:appgrp dir /own/dir
COPY --chown=1234:55 one.txt /own/num
COPY --chown=app:0 one.txt /own/mixed
COPY --chmod=0750 one.txt /mode/octal
COPY --chmod=u=rwx,g=rx,o= one.txt /mode/sym
COPY --chmod=go-r one.txt /mode/sym2
COPY --chmod=640 dir /mode/dir/
ADD --chown=app --chmod=600 one.txt /mode/add
"#
    ));
    ctx.write("one.txt", "one\n");
    ctx.write("dir/a.txt", "a\n");
    build(&root, ctx.path(), &["-t", "own"]);
    let out = sh(
        &root,
        "own",
        "cd / && for f in own/name own/dir own/dir/a.txt own/num own/mixed \
         mode/octal mode/sym mode/sym2 mode/dir/a.txt mode/add; do \
         stat -c '%n %u:%g %a' $f; done",
    );
    assert_eq!(
        out,
        "\
own/name 1234:4321 644
own/dir 1234:4321 755
own/dir/a.txt 1234:4321 644
own/num 1234:55 644
own/mixed 1234:0 644
mode/octal 0:0 750
mode/sym 0:0 750
mode/sym2 0:0 600
mode/dir/a.txt 0:0 640
mode/add 1234:4321 600
"
    );
}

#[test]
fn copy_chown_owns_the_parent_directories_it_creates() {
    let Some(root) = busybox_root() else { return };
    // BuildKit (fsutil's MkdirAll) gives the directories COPY creates for
    // the destination to the --chown owner.
    let ctx = Ctx::new(&format!(
        "FROM busybox\n{ADD_APP_USER}\nCOPY --chown=app one.txt /new/deep/one.txt\n"
    ));
    ctx.write("one.txt", "one\n");
    build(&root, ctx.path(), &["-t", "chownparents"]);
    assert_eq!(
        sh(
            &root,
            "chownparents",
            "stat -c '%n %u:%g' /new /new/deep /new/deep/one.txt"
        ),
        "/new 1234:4321\n/new/deep 1234:4321\n/new/deep/one.txt 1234:4321\n"
    );
}

#[test]
fn copy_from_stage_and_image() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        r#"FROM busybox AS builder
RUN mkdir -p /out/sub && echo built > /out/sub/artifact && echo top > /out/top
FROM busybox
COPY --from=builder /out /copied
COPY --from=builder /out/sub/artifact /single
COPY --from=0 /out/top /by-index
COPY --from=busybox /bin/busybox /from-image/busybox
"#,
    );
    build(&root, ctx.path(), &["-t", "cpfrom"]);
    assert_eq!(
        sh(
            &root,
            "cpfrom",
            "cat /copied/sub/artifact /copied/top /single /by-index; \
             cmp /bin/busybox /from-image/busybox && echo same"
        ),
        "built\ntop\nbuilt\ntop\nsame\n"
    );
}

#[test]
fn copy_from_a_stage_keeps_ownership_and_modes() {
    let Some(root) = busybox_root() else { return };
    // Docker (moby#38599) and BuildKit keep the owners of files copied
    // from a stage or image; only --chown changes them.
    let ctx = Ctx::new(
        r#"FROM busybox AS b
RUN mkdir -p /out/d && echo x > /out/d/f && chown -R 1234:4321 /out \
 && chmod 4755 /out/d/f && ln -s f /out/d/l
FROM busybox
COPY --from=b /out /o
COPY --from=b /out/d/f /single
COPY --from=b --chown=7:8 /out/d/f /chowned
"#,
    );
    build(&root, ctx.path(), &["-t", "keepown"]);
    assert_eq!(
        sh(
            &root,
            "keepown",
            "stat -c '%n %u:%g %a' /o/d /o/d/f /single /chowned; readlink /o/d/l"
        ),
        "/o/d 1234:4321 755\n/o/d/f 1234:4321 4755\n/single 1234:4321 4755\n/chowned 7:8 4755\nf\n"
    );
}

#[test]
fn add_extracts_local_tars_and_copies_other_files() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        r#"FROM busybox
ADD arch.tar /arch/
ADD arch.tar.gz /archgz
ADD one.txt /addplain
ADD arch.tar.gz /
"#,
    );
    make_tar(
        &ctx.path().join("arch.tar"),
        &[("t/inner.txt", "inner\n")],
        false,
    );
    make_tar(
        &ctx.path().join("arch.tar.gz"),
        &[("g/inner.txt", "gz-inner\n")],
        true,
    );
    ctx.write("one.txt", "one\n");
    build(&root, ctx.path(), &["-t", "add"]);
    assert_eq!(
        sh(
            &root,
            "add",
            "cat /arch/t/inner.txt /archgz/g/inner.txt /g/inner.txt /addplain; \
             test -f /arch/arch.tar || echo no-tar-file"
        ),
        "inner\ngz-inner\ngz-inner\none\nno-tar-file\n"
    );
}

#[test]
fn add_extracts_bzip2_xz_and_zstd_tars() {
    let Some(root) = busybox_root() else { return };
    let ctx =
        Ctx::new("FROM busybox\nADD a.tar.bz2 /bz/\nADD a.tar.xz /xz/\nADD a.tar.zst /zst/\n");
    for (name, flag) in [
        ("a.tar.bz2", "-j"),
        ("a.tar.xz", "-J"),
        ("a.tar.zst", "--zstd"),
    ] {
        make_tar_with(&ctx.path().join(name), &[("in/file", name)], Some(flag));
    }
    build(&root, ctx.path(), &["-t", "addz"]);
    assert_eq!(
        sh(&root, "addz", "cat /bz/in/file /xz/in/file /zst/in/file"),
        "a.tar.bz2a.tar.xza.tar.zst"
    );
}

#[test]
fn add_never_treats_archive_entries_as_whiteouts() {
    let Some(root) = busybox_root() else { return };
    // An archive ADD unpacks is not a layer: its `.wh.*` entries must not
    // delete anything. Such a name cannot be carried in a layer either (a
    // reader would take it for a whiteout), so the build refuses it clearly
    // instead of shipping an image that means something else elsewhere.
    let ctx = Ctx::new("FROM busybox\nRUN mkdir /d && echo keep > /d/victim\nADD wh.tar /\n");
    make_tar(
        &ctx.path().join("wh.tar"),
        &[("d/.wh.victim", "plain file\n")],
        false,
    );
    let err = build_fails(&root, ctx.path(), &["-t", "addwh"]);
    assert!(
        err.contains("Dockerfile:3") && err.contains(".wh.victim") && err.contains("reserved"),
        "{err}"
    );
    assert!(!root.tags().iter().any(|t| t.contains("addwh")));
}

#[test]
fn add_chown_applies_to_extracted_archives() {
    let Some(root) = busybox_root() else { return };
    // BuildKit's unpack hands the --chown user to the archive extraction.
    let ctx = Ctx::new("FROM busybox\nADD --chown=1234:4321 a.tar /x/\nADD a.tar /y/\n");
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("t")).unwrap();
    fs::write(src.path().join("t/inner"), "i\n").unwrap();
    run_ok(
        Command::new("tar")
            .args(["--owner=5", "--group=6", "-C"])
            .arg(src.path())
            .arg("-cf")
            .arg(ctx.path().join("a.tar"))
            .arg("t"),
    );
    build(&root, ctx.path(), &["-t", "addown"]);
    assert_eq!(
        sh(&root, "addown", "stat -c '%n %u:%g' /x/t/inner /y/t/inner"),
        "/x/t/inner 1234:4321\n/y/t/inner 5:6\n"
    );
}

#[test]
fn add_of_a_gzip_file_that_is_not_a_tar_copies_it() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nADD plain.gz /plain/\n");
    let plain = ctx.write("plain", "not a tar\n");
    run_ok(Command::new("gzip").arg("-n").arg(&plain));
    build(&root, ctx.path(), &["-t", "addgz"]);
    assert_eq!(sh(&root, "addgz", "zcat /plain/plain.gz"), "not a tar\n");
}

#[test]
fn copy_exclude_patterns_apply_inside_directory_sources() {
    let Some(root) = busybox_root() else { return };
    // BuildKit matches --exclude against paths below each source.
    let ctx = Ctx::new(
        "FROM busybox\nCOPY --exclude=*.log ex /ex/\nCOPY --exclude=*.md --exclude=sub top/ /top/\n",
    );
    ctx.write("ex/keep.txt", "keep\n");
    ctx.write("ex/drop.log", "drop\n");
    ctx.write("top/a.txt", "a\n");
    ctx.write("top/b.md", "b\n");
    ctx.write("top/sub/c.txt", "c\n");
    build(&root, ctx.path(), &["-t", "excl"]);
    assert_eq!(
        sh(&root, "excl", "cd / && find ex top | sort"),
        "ex\nex/keep.txt\ntop\ntop/a.txt\n"
    );
}

/// Symlinks the next test plants in the image: each points outside the
/// image root when resolved on the host, at a path unique to this run.
struct EscapeLinks {
    rel: String,
    abs: String,
    file: String,
    add: String,
    wd: String,
}

impl EscapeLinks {
    fn new() -> EscapeLinks {
        EscapeLinks {
            rel: format!("/tmp/{}", unique("berth-escape-rel")),
            abs: format!("/tmp/{}", unique("berth-escape-abs")),
            file: format!("/tmp/{}", unique("berth-escape-file")),
            add: format!("/tmp/{}", unique("berth-escape-add")),
            wd: format!("/tmp/{}", unique("berth-escape-wd")),
        }
    }

    fn context(&self) -> Ctx {
        let ctx = Ctx::new(&format!(
            r#"FROM busybox
RUN ln -s /../../../../..{rel} /rel-escape \
 && ln -s {abs} /abs-escape \
 && ln -s {file} /file-escape \
 && ln -s ../../../../..{add} /add-escape \
 && ln -s {wd} /wd-escape
COPY one.txt /rel-escape/
COPY one.txt /abs-escape/
COPY one.txt /file-escape
ADD arch.tar /add-escape/
WORKDIR /wd-escape/inner
"#,
            rel = self.rel,
            abs = self.abs,
            file = self.file,
            add = self.add,
            wd = self.wd
        ));
        ctx.write("one.txt", "one\n");
        make_tar(
            &ctx.path().join("arch.tar"),
            &[("t/inner.txt", "inner\n")],
            false,
        );
        ctx
    }

    fn host_paths(&self) -> [&String; 5] {
        [&self.rel, &self.abs, &self.file, &self.add, &self.wd]
    }
}

#[test]
fn copy_through_symlinks_in_the_image_never_writes_on_the_host() {
    let Some(root) = busybox_root() else { return };
    let links = EscapeLinks::new();
    let ctx = links.context();
    let out = build_raw(&root, ctx.path(), &["-t", "esc"]);
    for host in links.host_paths() {
        assert!(
            fs::symlink_metadata(host).is_err(),
            "the build wrote {host} on the host\n{}",
            show(&out)
        );
    }
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{}",
        show(&out)
    );
}

#[test]
fn copy_follows_symlinks_in_the_image_inside_its_root() {
    let Some(root) = busybox_root() else { return };
    // BuildKit resolves the destination inside the rootfs: an absolute or
    // `..`-laden link leads to the same path inside the image, and the
    // link itself stays (think of merged-/usr images where /bin -> usr/bin).
    let ctx = Ctx::new(
        "FROM busybox\nRUN mkdir -p /usr/tools && ln -s usr/tools /tools\nCOPY one.txt /tools/\n",
    );
    ctx.write("one.txt", "one\n");
    build(&root, ctx.path(), &["-t", "follow"]);
    assert_eq!(
        sh(&root, "follow", "readlink /tools; cat /usr/tools/one.txt"),
        "usr/tools\none\n"
    );

    let links = EscapeLinks::new();
    let ctx = links.context();
    build(&root, ctx.path(), &["-t", "esc"]);
    let listing = sh(
        &root,
        "esc",
        &format!(
            "cat {}/one.txt {}/one.txt {} {}/t/inner.txt; test -d {}/inner && echo wd; \
             for l in rel abs file add wd; do test -L /$l-escape && echo link; done",
            links.rel, links.abs, links.file, links.add, links.wd
        ),
    );
    assert_eq!(
        listing,
        "one\none\none\ninner\nwd\nlink\nlink\nlink\nlink\nlink\n"
    );
}

#[test]
fn copy_follows_symlinked_directories_inside_the_context() {
    let Some(root) = busybox_root() else { return };
    // BuildKit follows links in source paths, within the context.
    let ctx = Ctx::new(
        "FROM busybox\nCOPY current /cur/\nCOPY current/app.txt /app.txt\nCOPY loop/loop/top.txt /top.txt\n",
    );
    ctx.write("releases/v2/app.txt", "v2\n");
    ctx.write("top.txt", "top\n");
    ctx.symlink("releases/v2", "current");
    ctx.symlink(".", "loop");
    build(&root, ctx.path(), &["-t", "ctxlinks"]);
    assert_eq!(
        sh(&root, "ctxlinks", "cat /cur/app.txt /app.txt /top.txt"),
        "v2\nv2\ntop\n"
    );
}

#[test]
fn copy_of_a_context_symlink_to_the_host_does_not_leak_host_files() {
    let Some(root) = busybox_root() else { return };
    let host_dir = tempfile::tempdir().unwrap();
    let marker = unique("HOST-ONLY-DATA");
    fs::write(host_dir.path().join("file"), &marker).unwrap();
    let ctx = Ctx::new("FROM busybox\nCOPY hostlink/file /leak\nCOPY hostlink /leakdir/\n");
    ctx.symlink(host_dir.path().to_str().unwrap(), "hostlink");
    let out = build_raw(&root, ctx.path(), &["-t", "leak"]);
    let hits = blobs_containing(&root, marker.as_bytes());
    assert!(
        hits.is_empty(),
        "a host file outside the context reached blobs {hits:?}\n{}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------
// Context, Dockerfile location, FROM forms

#[test]
fn dockerignore_filters_the_context() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nCOPY . /ctx/\n");
    ctx.write(".dockerignore", "*.log\n!keep.log\nsecret.txt\nbuild/\n");
    ctx.write("app.txt", "app\n");
    ctx.write("drop.log", "drop\n");
    ctx.write("keep.log", "keep\n");
    ctx.write("secret.txt", "nope\n");
    ctx.write("build/out", "out\n");
    build(&root, ctx.path(), &["-t", "ign"]);
    assert_eq!(
        sh(&root, "ign", "cd /ctx && find . -type f | sort"),
        "./.dockerignore\n./Dockerfile\n./app.txt\n./keep.log\n"
    );
    // A file the context ignores cannot be copied by name either.
    ctx.dockerfile("FROM busybox\nCOPY secret.txt /s\n");
    let err = build_fails(&root, ctx.path(), &[]);
    assert!(err.contains("secret.txt"), "{err}");
}

#[test]
fn dockerfile_from_another_path_and_from_stdin() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nRUN echo default > /which\n");
    ctx.write(
        "sub/Custom.dockerfile",
        "FROM busybox\nCOPY f /f\nRUN echo custom > /which\n",
    );
    ctx.write("f", "f\n");
    let file = ctx.path().join("sub/Custom.dockerfile");
    build(
        &root,
        ctx.path(),
        &["-t", "df", "-f", file.to_str().unwrap()],
    );
    assert_eq!(sh(&root, "df", "cat /which /f"), "custom\nf\n");

    // A Dockerfile-specific ignore file replaces the context's one.
    ctx.write(".dockerignore", "ignored-by-root\n");
    ctx.write("sub/Other.dockerfile", "FROM busybox\nCOPY . /all/\n");
    ctx.write("sub/Other.dockerfile.dockerignore", "ignored-by-custom\n");
    ctx.write("ignored-by-root", "r\n");
    ctx.write("ignored-by-custom", "c\n");
    let other = ctx.path().join("sub/Other.dockerfile");
    build(
        &root,
        ctx.path(),
        &["-t", "df2", "-f", other.to_str().unwrap()],
    );
    assert_eq!(
        sh(&root, "df2", "cd /all && ls -A | sort | grep -v sub"),
        ".dockerignore\nDockerfile\nf\nignored-by-root\n"
    );

    // `-` as the context: the Dockerfile comes from stdin, no context.
    let mut cmd = root.cmd();
    cmd.args(["build", "--progress", "plain", "-t", "stdin", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(b"FROM busybox\nRUN echo from-stdin > /which\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(sh(&root, "stdin", "cat /which"), "from-stdin\n");
}

#[test]
fn from_scratch_global_args_and_stage_bases() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        r#"ARG BASE=busybox
ARG TAG=latest
FROM ${BASE}:${TAG} AS tools
ARG TAG
RUN echo "tag=$TAG" > /tag
FROM scratch AS minimal
COPY --from=tools /bin/busybox /bin/busybox
COPY --from=tools /tag /tag
ENTRYPOINT ["/bin/busybox"]
FROM minimal AS final
CMD ["cat", "/tag"]
"#,
    );
    build(&root, ctx.path(), &["-t", "scratchy"]);
    let inspect = root.inspect("scratchy");
    assert_eq!(
        inspect["RootFS"]["Layers"].as_array().unwrap().len(),
        2,
        "FROM scratch: only the two COPY layers: {inspect}"
    );
    assert_eq!(run_image(&root, "scratchy", &[]), "tag=latest\n");
}

#[test]
fn args_are_scoped_to_their_stage_and_platform_args_are_predefined() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        r#"ARG GLOBAL=g
FROM busybox AS first
ARG LOCAL=l
RUN echo "first [$GLOBAL] [$LOCAL]" > /first
FROM busybox
ARG GLOBAL
ARG TARGETARCH
ARG TARGETOS
ARG FROMENV
COPY --from=first /first /first
RUN echo "second [$GLOBAL] [$LOCAL] [$TARGETOS/$TARGETARCH] [$FROMENV]" > /second
"#,
    );
    let mut cmd = root.cmd();
    cmd.env("FROMENV", "from-environment").args([
        "build",
        "-q",
        "-t",
        "args",
        "--build-arg",
        "FROMENV",
    ]);
    cmd.arg(ctx.path());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(
        sh(&root, "args", "cat /first /second"),
        format!("first [] [l]\nsecond [g] [] [linux/{arch}] [from-environment]\n")
    );
}

#[test]
fn plain_progress_shows_steps_output_and_the_cache() {
    let Some(root) = busybox_root() else { return };
    let ctx =
        Ctx::new("FROM busybox\nRUN echo progress-line-1 && echo progress-line-2\nCOPY f /f\n");
    ctx.write("f", "f\n");
    let first = build(&root, ctx.path(), &[]);
    let steps = first.steps();
    assert_eq!(
        steps.iter().map(|s| s.title.as_str()).collect::<Vec<_>>(),
        vec![
            "[stage-0 1/3] FROM busybox",
            "[stage-0 2/3] RUN echo progress-line-1 && echo progress-line-2",
            "[stage-0 3/3] COPY f /f",
        ],
        "{}",
        first.log
    );
    assert!(steps.iter().all(|s| s.done), "{}", first.log);
    let run = first.step("RUN echo");
    assert_eq!(
        run.output,
        vec!["progress-line-1", "progress-line-2"],
        "{}",
        first.log
    );
    let second = build(&root, ctx.path(), &[]);
    assert!(second.step("RUN echo").cached, "{}", second.log);
    assert!(second.step("COPY f").cached, "{}", second.log);
    assert!(second.step("RUN echo").output.is_empty(), "{}", second.log);
}

#[test]
fn no_cache_filter_reruns_only_the_named_stage() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new(
        "FROM busybox AS deps\nRUN echo deps > /deps\nFROM busybox AS app\nCOPY --from=deps /deps /deps\nRUN echo app > /app\n",
    );
    build(&root, ctx.path(), &[]);
    let again = build(&root, ctx.path(), &["--no-cache-filter", "app"]);
    assert!(again.step("RUN echo deps").cached, "{}", again.log);
    assert!(!again.step("RUN echo app").cached, "{}", again.log);
    assert!(!again.step("COPY --from=deps").cached, "{}", again.log);
}

// ---------------------------------------------------------------------------
// Multi-stage

#[test]
fn multi_stage_runs_independent_stages_in_parallel_and_target_skips_unneeded() {
    let Some(root) = busybox_root() else { return };
    // Stages a and b wait (bounded) for each other through a shared cache
    // mount: the build only succeeds when they run at the same time.
    let rendezvous = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/rv,sharing=shared \
             touch /rv/{me} && i=0 && while [ ! -e /rv/{other} ] && [ $i -lt 300 ]; \
             do sleep 0.1; i=$((i+1)); done && test -e /rv/{other} && echo {me} > /{me}"
        )
    };
    let ctx = Ctx::new(&format!(
        r#"FROM busybox AS a
{}
FROM busybox AS b
{}
FROM busybox AS broken
RUN exit 7
FROM busybox AS final
COPY --from=a /a /a
COPY --from=b /b /b
RUN cat /a /b > /ab
FROM final AS extra
RUN echo extra > /extra
"#,
        rendezvous("a", "b"),
        rendezvous("b", "a")
    ));
    let built = build(&root, ctx.path(), &["-t", "ms:final", "--target", "final"]);
    let titles: Vec<String> = built.steps().iter().map(|s| s.title.clone()).collect();
    assert!(
        !titles
            .iter()
            .any(|t| t.starts_with("[broken") || t.starts_with("[extra")),
        "stages --target does not need are not built: {titles:#?}"
    );
    assert_eq!(sh(&root, "ms:final", "cat /ab"), "a\nb\n");
    assert_eq!(
        sh(
            &root,
            "ms:final",
            "test -e /extra && echo built-extra || echo no-extra"
        ),
        "no-extra\n"
    );

    // Without --target the last stage is built; the broken one still is not.
    let built = build(&root, ctx.path(), &["-t", "ms:extra"]);
    assert!(
        !built.log.contains("[broken"),
        "unneeded stage built:\n{}",
        built.log
    );
    assert_eq!(sh(&root, "ms:extra", "cat /ab /extra"), "a\nb\nextra\n");

    let err = build_fails(&root, ctx.path(), &["--target", "broken"]);
    assert!(err.contains("exit code: 7"), "{err}");
}

#[test]
fn locked_cache_mounts_are_used_by_one_step_at_a_time() {
    let Some(root) = busybox_root() else { return };
    let step = |name: &str| {
        format!(
            "RUN --mount=type=cache,id=shared,target=/c,sharing=locked \
             test ! -e /c/busy && touch /c/busy && sleep 0.5 && rm /c/busy \
             && echo {name} >> /c/log && echo {name} > /{name}"
        )
    };
    let ctx = Ctx::new(&format!(
        "FROM busybox AS a\n{}\nFROM busybox AS b\n{}\nFROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        step("a"),
        step("b")
    ));
    build(&root, ctx.path(), &["-t", "locked"]);
    assert_eq!(sh(&root, "locked", "cat /a /b"), "a\nb\n");
}

// ---------------------------------------------------------------------------
// Cache

const CACHE_DOCKERFILE: &str = r#"FROM busybox
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /a.copy
COPY b.txt /b.txt
RUN cat /b.txt > /b.copy
ARG V=1
COPY a.txt /a2.txt
RUN echo "v=$V" > /v
RUN echo after > /after
"#;

fn cache_ctx() -> Ctx {
    let ctx = Ctx::new(CACHE_DOCKERFILE);
    ctx.write("a.txt", "a\n");
    ctx.write("b.txt", "b\n");
    ctx
}

#[test]
fn rebuild_unchanged_and_touched_is_fully_cached_with_the_same_id() {
    let Some(root) = busybox_root() else { return };
    let ctx = cache_ctx();
    let first = build(&root, ctx.path(), &["-t", "c"]);
    let (cached, ran) = first.cached_and_ran();
    assert!(cached.is_empty(), "a fresh root has no cache: {cached:?}");
    assert_eq!(ran.len(), 8, "{}", first.log);

    let second = build(&root, ctx.path(), &["-t", "c"]);
    let (cached, ran) = second.cached_and_ran();
    assert!(ran.is_empty(), "nothing changed, nothing runs: {ran:?}");
    assert_eq!(cached.len(), 8, "{}", second.log);
    assert_eq!(second.id, first.id);

    // New mtimes, same content: still cached.
    for f in ["a.txt", "b.txt", "Dockerfile"] {
        run_ok(
            Command::new("touch")
                .args(["-d", "@1234567890"])
                .arg(ctx.path().join(f)),
        );
    }
    let third = build(&root, ctx.path(), &["-t", "c"]);
    let (_, ran) = third.cached_and_ran();
    assert!(
        ran.is_empty(),
        "mtime-only changes must hit the cache: {ran:?}"
    );
    assert_eq!(third.id, first.id);
}

#[test]
fn changing_one_file_reruns_from_the_first_copy_that_includes_it() {
    let Some(root) = busybox_root() else { return };
    let ctx = cache_ctx();
    let first = build(&root, ctx.path(), &["-t", "c"]);
    ctx.write("b.txt", "B changed\n");
    let second = build(&root, ctx.path(), &["-t", "c"]);
    let (cached, ran) = second.cached_and_ran();
    assert_eq!(
        cached,
        vec![
            "[stage-0 2/10] RUN echo one > /one",
            "[stage-0 3/10] COPY a.txt /a.txt",
            "[stage-0 4/10] RUN cat /a.txt > /a.copy",
        ],
        "{}",
        second.log
    );
    assert_eq!(ran.len(), 5, "{}", second.log);
    assert_ne!(second.id, first.id);
    assert_eq!(sh(&root, "c", "cat /b.copy"), "B changed\n");

    // Back to the old content: everything comes from the cache again.
    ctx.write("b.txt", "b\n");
    let third = build(&root, ctx.path(), &["-t", "c"]);
    let (_, ran) = third.cached_and_ran();
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(third.id, first.id);
}

#[test]
fn changing_a_build_arg_reruns_only_from_its_first_use() {
    let Some(root) = busybox_root() else { return };
    let ctx = cache_ctx();
    build(&root, ctx.path(), &["-t", "c"]);
    let second = build(&root, ctx.path(), &["-t", "c", "--build-arg", "V=2"]);
    let (cached, ran) = second.cached_and_ran();
    assert_eq!(
        ran,
        vec![
            "[stage-0 9/10] RUN echo \"v=$V\" > /v",
            "[stage-0 10/10] RUN echo after > /after",
        ],
        "{}",
        second.log
    );
    assert_eq!(cached.len(), 6, "{}", second.log);
    assert_eq!(sh(&root, "c", "cat /v"), "v=2\n");

    // A build arg the Dockerfile does not declare changes nothing.
    let third = build(
        &root,
        ctx.path(),
        &["--build-arg", "V=2", "--build-arg", "UNDECLARED=x"],
    );
    let (_, ran) = third.cached_and_ran();
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(third.id, second.id);
}

#[test]
fn no_cache_and_builder_prune_rerun_everything_and_reproduce_the_image() {
    let Some(root) = busybox_root() else { return };
    let ctx = cache_ctx();
    let first = build(&root, ctx.path(), &["-t", "c"]);
    let again = build(&root, ctx.path(), &["-t", "c", "--no-cache"]);
    let (cached, ran) = again.cached_and_ran();
    assert!(cached.is_empty(), "--no-cache uses no cache: {cached:?}");
    assert_eq!(ran.len(), 8);
    assert_eq!(again.id, first.id, "a rerun reproduces the same image");

    root.ok(&["builder", "prune"]);
    let after = build(&root, ctx.path(), &["-t", "c"]);
    let (cached, _) = after.cached_and_ran();
    assert!(cached.is_empty(), "prune empties the cache: {cached:?}");
    assert_eq!(after.id, first.id);
}

#[test]
fn cache_entries_survive_rmi_and_prune() {
    let Some(root) = busybox_root() else { return };
    let ctx = cache_ctx();
    let first = build(&root, ctx.path(), &["-t", "c"]);
    root.ok(&["rmi", "c"]);
    root.ok(&["prune"]);
    common::check_layout(&root.path());
    let again = build(&root, ctx.path(), &["-t", "c"]);
    let (_, ran) = again.cached_and_ran();
    assert!(ran.is_empty(), "cache entries are GC roots: {ran:?}");
    assert_eq!(again.id, first.id);
    assert_eq!(sh(&root, "c", "cat /b.copy"), "b\n");
}

#[test]
fn context_mode_changes_bust_the_cache() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nCOPY tool /tool\nRUN stat -c %a /tool > /mode\n");
    ctx.write("tool", "#!/bin/sh\n");
    build(&root, ctx.path(), &["-t", "m"]);
    ctx.chmod("tool", 0o755);
    let again = build(&root, ctx.path(), &["-t", "m"]);
    let (cached, _) = again.cached_and_ran();
    assert!(
        cached.is_empty(),
        "a mode change is a content change: {cached:?}"
    );
    assert_eq!(sh(&root, "m", "cat /mode"), "755\n");
}

#[test]
fn bind_mounted_context_files_are_part_of_the_run_key() {
    let Some(root) = busybox_root() else { return };
    let ctx =
        Ctx::new("FROM busybox\nRUN --mount=type=bind,source=input,target=/in cat /in > /out\n");
    ctx.write("input", "v1\n");
    build(&root, ctx.path(), &["-t", "bindkey"]);
    ctx.write("input", "v2\n");
    let again = build(&root, ctx.path(), &["-t", "bindkey"]);
    let (cached, _) = again.cached_and_ran();
    assert!(cached.is_empty(), "{cached:?}");
    assert_eq!(sh(&root, "bindkey", "cat /out"), "v2\n");
}

#[test]
fn copy_link_layers_do_not_hide_a_changed_base() {
    let Some(root) = busybox_root() else { return };
    // Two stages that differ only below a COPY --link (the second waits for
    // the first): the steps after it must see their own stage's files, not
    // a cache hit from the other stage.
    let ctx = Ctx::new(
        r#"FROM busybox AS one
RUN echo first > /base
COPY --link f /f
RUN cat /base > /seen
FROM busybox AS two
COPY --from=one /seen /after-one
RUN echo second > /base
COPY --link f /f
RUN cat /base > /seen
FROM busybox
COPY --from=one /seen /one
COPY --from=two /seen /two
"#,
    );
    ctx.write("f", "f\n");
    build(&root, ctx.path(), &["-t", "link"]);
    assert_eq!(sh(&root, "link", "cat /one /two"), "first\nsecond\n");

    // The --link layer itself is the same on both bases: that is its point.
    build(&root, ctx.path(), &["-t", "link:one", "--target", "one"]);
    build(&root, ctx.path(), &["-t", "link:two", "--target", "two"]);
    let one = root.inspect("link:one")["RootFS"]["Layers"].clone();
    let two = root.inspect("link:two")["RootFS"]["Layers"].clone();
    let base = fixture().image.diff_ids.len();
    assert_eq!(one[base + 1], two[base + 2], "{one} {two}");
}

#[test]
fn concurrent_builds_on_one_root_agree_and_leave_nothing_mounted() {
    let Some(root) = busybox_root() else { return };
    let ctx =
        Ctx::new("FROM busybox\nCOPY . /ctx/\nRUN ls /ctx | wc -l > /n\nRUN echo done > /d\n");
    for i in 0..20 {
        ctx.write(&format!("f{i}"), format!("{i}\n"));
    }
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut cmd = root.cmd();
            cmd.args(["build", "-q", "-t", &format!("conc{i}")])
                .arg(ctx.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let ids: BTreeSet<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", show(&out));
            stdout(&out).trim().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(sh(&root, "conc2", "cat /n /d"), "21\ndone\n");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&root.path().display().to_string()),
        "{mounts}"
    );
}

// ---------------------------------------------------------------------------
// Reproducibility and output

#[test]
fn the_same_build_in_two_fresh_roots_gives_the_same_digests() {
    let Some(first_root) = busybox_root() else {
        return;
    };
    let second_root = Root::new();
    second_root.load(&fixture().archive);
    let dockerfile = format!(
        r#"FROM busybox AS build
RUN mkdir -p /out && echo built > /out/file && ln -s file /out/link
FROM busybox
{ADD_APP_USER}
ENV A=1
WORKDIR /app
COPY --chown=app src/ ./src/
COPY --from=build /out /out
ADD arch.tar.gz /arch/
RUN touch /app/made-at-build-time && mkdir /app/dir
CMD ["cat", "/app/src/hello"]
"#
    );
    let mut results = Vec::new();
    for (i, root) in [&first_root, &second_root].into_iter().enumerate() {
        let ctx = Ctx::new(&dockerfile);
        ctx.write("src/hello", "hello\n");
        ctx.write("src/deep/x", "x\n");
        make_tar(
            &ctx.path().join("arch.tar.gz"),
            &[("g/inner.txt", "gz\n")],
            true,
        );
        if i == 1 {
            // Different context times and modes of directories must not matter.
            run_ok(
                Command::new("touch")
                    .args(["-d", "@999999"])
                    .arg(ctx.path().join("src/hello")),
            );
        }
        let built = build(root, ctx.path(), &["-t", "repro"]);
        let inspect = root.inspect("repro");
        results.push((
            built.id,
            inspect["Descriptor"]["digest"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    assert_eq!(results[0], results[1], "image ID and manifest digest");
    assert_eq!(run_image(&second_root, "repro", &[]), "hello\n");
}

#[test]
fn containers_see_the_clamped_times_the_layers_hold() {
    let Some(root) = busybox_root() else { return };
    // The layer blob clamps mtimes to SOURCE_DATE_EPOCH (0); running the
    // image from this store must show the same files the blob holds.
    let ctx = Ctx::new("FROM busybox\nCOPY f /f\nRUN mkdir /made && echo x > /made/file\n");
    ctx.write("f", "f\n");
    build(&root, ctx.path(), &["-t", "times"]);
    assert_eq!(
        sh(&root, "times", "stat -c '%n %Y' /f /made /made/file"),
        "/f 0\n/made 0\n/made/file 0\n"
    );
}

#[test]
fn source_date_epoch_sets_created_and_layer_times() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nCOPY f /f\nRUN echo x > /x\n");
    ctx.write("f", "f\n");
    let mut cmd = root.cmd();
    cmd.env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "-t", "sde"])
        .arg(ctx.path());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(root.inspect("sde")["Created"], "2023-11-14T22:13:20Z");
    let archive = root.scratch("sde.oci.tar");
    root.save(Some("oci"), &archive, &["sde"]);
    let image = common::Image::from_oci_archive(&archive, None);
    let dir = tempfile::tempdir().unwrap();
    let mut run_file_seen = false;
    for layer in &image.layers[fixture().image.layers.len()..] {
        let blob = extract_blob(&archive, layer, dir.path());
        let listing = stdout(&run_ok(
            Command::new("tar")
                .args(["--full-time", "-tvzf"])
                .arg(&blob)
                .env("TZ", "UTC"),
        ));
        for line in listing.lines() {
            // Clamped: never later than the epoch; files RUN made (now) are
            // exactly the epoch.
            let when = line.split_whitespace().nth(3).unwrap_or("");
            assert!(
                when <= "2023-11-14",
                "layer entry later than SOURCE_DATE_EPOCH: {line}"
            );
            if line.ends_with(" x") {
                assert!(line.contains("2023-11-14 22:13:20"), "{line}");
                run_file_seen = true;
            }
        }
    }
    assert!(run_file_seen, "the RUN layer holds /x");
    for h in image.config["history"].as_array().unwrap().iter().skip(1) {
        assert_eq!(h["created"], "2023-11-14T22:13:20Z", "{h}");
    }
}

#[test]
fn zstd_compression_makes_zstd_layers_that_run() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nRUN echo zstd-layer > /z\n");
    build(&root, ctx.path(), &["-t", "zst", "--compression", "zstd"]);
    let archive = root.scratch("zst.oci.tar");
    root.save(Some("oci"), &archive, &["zst"]);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    common::extract(&archive, &layout);
    let image = common::Image::from_layout(&layout, None);
    let manifest = common::read_json(&common::blob_path(&layout, &image.manifest_digest));
    assert_eq!(
        manifest["layers"].as_array().unwrap().last().unwrap()["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "{manifest}"
    );
    assert_eq!(sh(&root, "zst", "cat /z"), "zstd-layer\n");
}

#[test]
fn quiet_prints_the_image_id_and_outputs_are_written() {
    let Some(root) = busybox_root() else { return };
    let ctx = Ctx::new("FROM busybox\nCOPY f /f\n");
    ctx.write("f", "content\n");
    let out = root.ok(&[
        "build".as_ref(),
        "-q".as_ref(),
        "-t".as_ref(),
        "quiet".as_ref(),
        ctx.path().as_os_str(),
    ]);
    let id = stdout(&out).trim().to_string();
    assert_eq!(id, root.inspect("quiet")["Id"], "{}", show(&out));
    assert!(
        common::stderr(&out).trim().is_empty(),
        "-q prints nothing else: {}",
        show(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let oci = dir.path().join("img.oci.tar");
    build(
        &root,
        ctx.path(),
        &[
            "-t",
            "outs",
            "--output",
            &format!("type=local,dest={}", local.display()),
            "--output",
            &format!("type=oci,dest={}", oci.display()),
        ],
    );
    assert_eq!(fs::read_to_string(local.join("f")).unwrap(), "content\n");
    assert!(local.join("bin/busybox").is_file());
    let image = common::Image::from_oci_archive(&oci, None);
    assert_eq!(image.id(), root.inspect("outs")["Id"].as_str().unwrap());

    let flat = dir.path().join("fs.tar");
    let docker = dir.path().join("img.docker.tar");
    build(
        &root,
        ctx.path(),
        &[
            "--output",
            &format!("type=tar,dest={}", flat.display()),
            "--output",
            &format!("type=docker,dest={}", docker.display()),
        ],
    );
    let names = common::tar_list(&flat);
    assert!(
        names.iter().any(|n| n.trim_start_matches("./") == "f"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "bin/busybox"),
        "{names:?}"
    );
    let names = common::tar_list(&docker);
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
}

// ---------------------------------------------------------------------------
// Interop

#[test]
fn a_berth_image_saved_for_docker_runs_under_dockerd() {
    if !common::require_root() || !require_tool("dockerd") {
        return;
    }
    let root = Root::new();
    root.load(&fixture().archive);
    let ctx = Ctx::new(
        "FROM busybox\nCOPY msg /msg\nRUN echo built-by-berth >> /msg\nCMD [\"cat\", \"/msg\"]\n",
    );
    ctx.write("msg", "hello docker\n");
    build(&root, ctx.path(), &["-t", "berth-built:v1"]);
    let archive = root.scratch("docker.tar");
    root.save(Some("docker"), &archive, &["berth-built:v1"]);

    let daemon = common::dockerd::Dockerd::start();
    daemon.docker(&["load", "-i", archive.to_str().unwrap()]);
    let out = daemon.docker(&["run", "--rm", "--network", "none", "berth-built:v1"]);
    assert_eq!(out, "hello docker\nbuilt-by-berth\n");
}

#[test]
fn a_buildah_image_serves_as_a_from_base() {
    if !common::require_root() || !require_tool("buildah") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("storage");
    let runroot = tmp.path().join("run");
    let buildah = |args: &[&str]| {
        let mut cmd = Command::new(find_tool("buildah").unwrap());
        cmd.arg("--root")
            .arg(&storage)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot");
        run_ok(&mut cmd)
    };
    let fixture_ref = format!("oci-archive:{}:busybox:latest", fixture().archive.display());
    buildah(&["pull", "-q", &fixture_ref]);
    let bctx = Ctx::new(
        "FROM busybox:latest\nRUN echo from-buildah > /buildah-file\nENV MADE_BY=buildah\n",
    );
    buildah(&[
        "bud",
        "--runtime",
        "runc",
        "--isolation",
        "chroot",
        "-t",
        "localhost/bbase:1",
        bctx.path().to_str().unwrap(),
    ]);
    let archive = tmp.path().join("bbase.oci.tar");
    buildah(&[
        "push",
        "localhost/bbase:1",
        &format!("oci-archive:{}:bbase:1", archive.display()),
    ]);

    let root = Root::new();
    root.load(&archive);
    let ctx = Ctx::new("FROM bbase:1\nRUN cat /buildah-file > /copy && echo $MADE_BY >> /copy\n");
    build(&root, ctx.path(), &["-t", "on-buildah"]);
    assert_eq!(
        sh(&root, "on-buildah", "cat /copy"),
        "from-buildah\nbuildah\n"
    );
}

/// A static file server on 127.0.0.1 (Python's http.server), stopped when
/// dropped.
struct FileServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl FileServer {
    fn start(files: &[(&str, &[u8])]) -> FileServer {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            fs::write(dir.path().join(name), body).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        assert!(
            common::wait_for(std::time::Duration::from_secs(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "the file server did not listen"
        );
        FileServer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_downloads_urls_and_checks_their_checksum() {
    let Some(root) = busybox_root() else { return };
    if !require_tool("python3") {
        return;
    }
    let body = b"downloaded content\n";
    let server = FileServer::start(&[("tool.txt", body)]);
    let url = format!("http://127.0.0.1:{}/tool.txt", server.port);
    let sum = common::sha256_bytes(body);
    // Into a directory (named after the URL) and to a file name, with mode
    // 0600 as BuildKit gives downloads.
    let ctx = Ctx::new(&format!(
        "FROM busybox\nADD --checksum={sum} {url} /dl/\nADD {url} /renamed.txt\n"
    ));
    build(&root, ctx.path(), &["-t", "addurl"]);
    assert_eq!(
        sh(
            &root,
            "addurl",
            "cat /dl/tool.txt /renamed.txt; stat -c %a /dl/tool.txt"
        ),
        "downloaded content\ndownloaded content\n600\n"
    );
    // A wrong checksum fails the step, naming both digests.
    let bad = Ctx::new(&format!(
        "FROM busybox\nADD --checksum=sha256:{} {url} /dl/\n",
        "0".repeat(64)
    ));
    let err = build_fails(&root, bad.path(), &["-t", "addurl-bad"]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("checksum mismatch") && err.contains(&sum),
        "{err}"
    );
}
