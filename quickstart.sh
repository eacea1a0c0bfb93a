#!/usr/bin/env bash
# Quickstart: berth's main job end to end, in one command. Run as root on a
# fresh Debian 12 clone of this repo:
#
#     ./quickstart.sh
#
# It installs busybox-static and jq if missing (apt-get), builds berth
# (cargo build --release), makes the busybox base image from busybox-static
# (fixtures/busybox/make.sh), starts `berth registry serve` on 127.0.0.1 with an
# ephemeral port, builds fixtures/demo twice (cold, exporting its build cache
# to the registry with --cache-to; then from the local cache), rebuilds it on a
# second, empty store with --cache-from (a fresh CI runner), pushes it, pulls
# it into a fresh store, runs it, and prints the timings.
#
# Everything it creates lives in one temp dir; the registry process, container
# mounts and the temp dir are removed on any exit. No prompts, no TTY needed;
# every step has a time limit; the exit status is non-zero if any step fails.
#
# Environment:
#   BERTH_BIN=PATH        use this berth binary instead of building one
#   QUICKSTART_CARGO_TIMEOUT=SECS  limit for the release build (default 1200)
#   QUICKSTART_STEP_TIMEOUT=SECS   limit for every other step (default 300)
set -euo pipefail
export LC_ALL=C

case "${1:-}" in
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    '') ;;
    *) echo "quickstart: no arguments expected (see --help)" >&2; exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")"
repo=$(pwd)
cargo_timeout=${QUICKSTART_CARGO_TIMEOUT:-1200}
step_timeout=${QUICKSTART_STEP_TIMEOUT:-300}
# Settings the caller may have for their own store must not leak in: every
# command below names its store with --root.
unset BERTH BERTH_ROOT

if [[ -t 1 ]]; then
    bold=$'\033[1m' red=$'\033[31m' reset=$'\033[0m'
else
    bold='' red='' reset=''
fi
current_step="starting"
step() {
    current_step=$*
    printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"
}
die() {
    printf '%squickstart: %s%s\n' "$red" "$*" "$reset" >&2
    exit 1
}

# Wall-clock seconds (3 decimals) of a command, recorded under a label.
declare -A took=()
timed() {
    local label=$1 start end
    shift
    start=$EPOCHREALTIME
    "$@" || return
    end=$EPOCHREALTIME
    took[$label]=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')
    echo "($label: ${took[$label]}s)"
}
# Every berth command gets a time limit, so a hang fails the run instead of
# stalling a CI job.
# At a terminal, --foreground keeps Ctrl-C working (timeout otherwise moves the
# command to its own process group, which is what a CI job wants).
timeout_opts=(--kill-after=10)
[[ -t 0 ]] && timeout_opts+=(--foreground)
limit() { timeout "${timeout_opts[@]}" "$step_timeout" "$@"; }

[[ $(id -u) -eq 0 ]] ||
    die "run as root: builds and containers need namespaces and overlayfs"

# ---- tools --------------------------------------------------------------------
need=()
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v jq >/dev/null 2>&1 || need+=(jq)
if [[ ${#need[@]} -gt 0 ]]; then
    step "installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    timeout "$step_timeout" apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
        { timeout "$step_timeout" apt-get update -q >/dev/null &&
          timeout "$step_timeout" apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; } ||
        die "apt-get install ${need[*]} failed"
fi
for tool in timeout awk tar gzip sha256sum jq; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# ---- berth --------------------------------------------------------------------
if [[ -n ${BERTH_BIN:-} ]]; then
    berth=$BERTH_BIN
    [[ -x $berth ]] || die "BERTH_BIN=$berth is not an executable"
    step "using $berth (BERTH_BIN)"
else
    # rustup installs into ~/.cargo/bin, which a root shell often lacks in PATH.
    if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo is missing: install Rust >= 1.87 with rustup (https://rustup.rs; Debian's cargo is too old), or set BERTH_BIN"
    step "building berth ($(cargo --version); cargo build --release -p berth)"
    timed "release build" timeout "${timeout_opts[@]}" "$cargo_timeout" cargo build --release -p berth
    berth="$repo/target/release/berth"
fi
"$berth" --version

tmp=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
registry_pid=""
cleanup() {
    local rc=$? m i
    trap - EXIT INT TERM
    if [[ $rc -ne 0 ]]; then
        printf '\n%squickstart: FAILED (exit %s) at: %s%s\n' "$red" "$rc" "$current_step" "$reset" >&2
        if [[ -s $tmp/registry.log ]]; then
            echo "---- registry log (last 20 lines)" >&2
            tail -n 20 "$tmp/registry.log" >&2
        fi
    fi
    if [[ -n $registry_pid ]] && kill -0 "$registry_pid" 2>/dev/null; then
        kill "$registry_pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$registry_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    # Containers' overlays are mounted under the stores; deepest first.
    while IFS= read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v t="$tmp/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

builder_root="$tmp/runner-a"    # the machine that builds and pushes
fresh_root="$tmp/runner-b"      # an empty machine that pulls and runs
registry_root="$tmp/registry"   # the registry's storage

# ---- the base image -------------------------------------------------------------
step "making the busybox base image (fixtures/busybox/make.sh)"
digest=$(limit bash fixtures/busybox/make.sh -o "$tmp/busybox.oci.tar")
echo "busybox.oci.tar: manifest $digest"
limit "$berth" --root "$builder_root" load -i "$tmp/busybox.oci.tar"

# ---- the registry ----------------------------------------------------------------
step "starting berth registry serve on 127.0.0.1 (ephemeral port)"
: >"$tmp/registry.out"
"$berth" --root "$registry_root" registry serve --addr 127.0.0.1:0 \
    >"$tmp/registry.out" 2>"$tmp/registry.log" &
registry_pid=$!
addr=""
for ((i = 0; i < 300; i++)); do
    if read -r word1 word2 rest <"$tmp/registry.out" 2>/dev/null &&
        [[ "$word1 $word2" == "listening on" && -n $rest ]]; then
        addr=$rest
        break
    fi
    kill -0 "$registry_pid" 2>/dev/null || die "the registry exited: $(cat "$tmp/registry.log")"
    sleep 0.1
done
[[ -n $addr ]] || die "the registry did not print 'listening on ADDR' within 30s"
echo "registry at http://$addr (pid $registry_pid, storage $registry_root)"
reg=(--insecure-registry "$addr")
image="$addr/demo:latest"

# ---- build -------------------------------------------------------------------------
# With build cache export (issue 8), the cold build also exports its cache to
# the registry, as a CI job would, and an empty runner builds from it below.
cache_ref="$addr/demo:buildcache"
cache_to=()
if "$berth" build --help | grep -q -- '--cache-to'; then
    cache_to=(--cache-to "type=registry,ref=$cache_ref,mode=max")
fi
step "cold build: berth build -t $image ${cache_to[*]} fixtures/demo"
timed "cold build" limit "$berth" --root "$builder_root" "${reg[@]}" build --progress plain \
    --iidfile "$tmp/cold.iid" -t "$image" "${cache_to[@]}" fixtures/demo

step "cached rebuild: the same command again"
# Into a file, not through a pipe: `timed` must run in this shell to record.
timed "cached rebuild" limit "$berth" --root "$builder_root" build --progress plain \
    --iidfile "$tmp/cached.iid" -t "$image" fixtures/demo >"$tmp/rebuild.log" 2>&1 ||
    { cat "$tmp/rebuild.log"; exit 1; }
cat "$tmp/rebuild.log"
image_id=$(<"$tmp/cold.iid")
[[ $(<"$tmp/cached.iid") == "$image_id" ]] ||
    die "the rebuild made a different image: $(<"$tmp/cached.iid") != $image_id"
grep -q 'CACHED' "$tmp/rebuild.log" || die "the rebuild used no cached step"
if grep -Eq '^#[0-9]+ [0-9]+\.[0-9]+ ' "$tmp/rebuild.log"; then
    die "the rebuild ran a step (it printed step output)"
fi

step "berth images; berth history $image"
limit "$berth" --root "$builder_root" images
limit "$berth" --root "$builder_root" history "$image"

# ---- push ----------------------------------------------------------------------------
step "berth push $image"
timed "push" limit "$berth" --root "$builder_root" "${reg[@]}" push "$image"

if command -v skopeo >/dev/null 2>&1; then
    step "skopeo inspect docker://$image (a peer reads what berth serves)"
    limit skopeo inspect --tls-verify=false "docker://$image" | jq '{Digest, Labels, Layers}'
fi

if [[ ${#cache_to[@]} -gt 0 ]]; then
    ci_root="$tmp/runner-c"
    step "a second, empty CI runner: berth build --cache-from type=registry,ref=$cache_ref"
    limit "$berth" --root "$ci_root" load -i "$tmp/busybox.oci.tar"
    timed "cache-from build" limit "$berth" --root "$ci_root" "${reg[@]}" build --progress plain \
        --iidfile "$tmp/ci.iid" -t "$image" --cache-from "type=registry,ref=$cache_ref" \
        fixtures/demo >"$tmp/ci-build.log" 2>&1 || { cat "$tmp/ci-build.log"; exit 1; }
    cat "$tmp/ci-build.log"
    [[ $(<"$tmp/ci.iid") == "$(<"$tmp/cold.iid")" ]] ||
        die "the runner built a different image: $(<"$tmp/ci.iid") != $(<"$tmp/cold.iid")"
    if grep -Eq '^#[0-9]+ [0-9]+\.[0-9]+ ' "$tmp/ci-build.log"; then
        die "the runner ran a step that the registry cache should have covered"
    fi
fi

# ---- pull into an empty store and run ----------------------------------------------------
step "berth pull $image (into a fresh, empty store)"
timed "pull" limit "$berth" --root "$fresh_root" "${reg[@]}" pull "$image"
pulled_id=$(limit "$berth" --root "$fresh_root" inspect "$image" | jq -r '.[0].Id')
[[ $pulled_id == "$image_id" ]] || die "pulled image $pulled_id is not the built $image_id"

step "berth run --rm $image"
timed "run" limit "$berth" --root "$fresh_root" run --rm --network none "$image" >"$tmp/run.out" ||
    { cat "$tmp/run.out"; exit 1; }
cat "$tmp/run.out"
grep -q '^Hello from berth!$' "$tmp/run.out" || die "the demo did not print its greeting"

# ---- summary ----------------------------------------------------------------------------
step "timings"
printf '%-16s %10s\n' step seconds
for label in "release build" "cold build" "cached rebuild" "cache-from build" "push" "pull" "run"; do
    [[ -n ${took[$label]:-} ]] && printf '%-16s %10s\n' "$label" "${took[$label]}"
done
echo
echo "image $image_id built, cached, pushed to $addr, pulled and run: OK"
echo "removing $tmp"
