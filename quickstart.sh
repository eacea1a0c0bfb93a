#!/usr/bin/env bash
# Quickstart: build berth, make a busybox image from Debian's busybox-static,
# load it into a throw-away store and look at it. Run as root on Debian 12:
#
#     ./quickstart.sh
#
# Everything it creates lives in a temp dir that is removed on any exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
repo=$(pwd)

if [[ -t 1 ]]; then
    step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
    step() { printf '\n==> %s\n' "$*"; }
fi

if [[ ! -x /bin/busybox ]] || ! command -v jq >/dev/null 2>&1; then
    step "installing busybox-static and jq (apt-get)"
    if [[ $(id -u) -ne 0 ]]; then
        echo "quickstart: busybox-static and jq are needed; run as root or install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends busybox-static jq >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends busybox-static jq >/dev/null; }
fi

step "building berth (cargo build --release -p berth)"
cargo build --release -p berth
berth="$repo/target/release/berth"

tmp=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
# A container's overlay is mounted under the store; unmount anything left
# there before removing the temp dir.
cleanup() {
    local m
    for m in $(awk -v t="$tmp" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
root="$tmp/root"
export BERTH_ROOT="$root"

step "making the busybox fixture image"
digest=$(bash fixtures/busybox/make.sh -o "$tmp/busybox.oci.tar")
echo "fixtures/busybox/make.sh -> $tmp/busybox.oci.tar (manifest $digest)"

step "berth --root $root load -i busybox.oci.tar"
"$berth" --root "$root" load -i "$tmp/busybox.oci.tar"

step "berth images"
"$berth" --root "$root" images

step "berth inspect busybox:latest"
"$berth" --root "$root" inspect busybox:latest

step "berth history busybox:latest"
"$berth" --root "$root" history busybox:latest

if [[ $(id -u) -eq 0 ]]; then
    step "berth run --rm busybox:latest (a container with Docker's defaults)"
    "$berth" --root "$root" run --rm --network none busybox:latest \
        sh -c 'echo "hello from $(hostname), pid $$, as $(id -un)"'
else
    echo
    echo "(not root: skipping berth run, which needs namespaces and overlayfs)"
fi

step "berth save -o busybox.docker.tar busybox:latest (docker format)"
"$berth" --root "$root" save -o "$tmp/busybox.docker.tar" busybox:latest
ls -l "$tmp/busybox.docker.tar"

step "berth save --format oci -o busybox.saved.oci.tar busybox:latest"
"$berth" --root "$root" save --format oci -o "$tmp/busybox.saved.oci.tar" busybox:latest
ls -l "$tmp/busybox.saved.oci.tar"

if command -v skopeo >/dev/null 2>&1; then
    step "skopeo inspect docker-archive:busybox.docker.tar"
    skopeo inspect "docker-archive:$tmp/busybox.docker.tar"
    step "skopeo inspect oci:\$BERTH_ROOT:busybox:latest (the store is an OCI layout)"
    skopeo inspect "oci:$root:busybox:latest"
else
    echo
    echo "(skopeo is not installed: apt-get install skopeo to check the archives with it)"
fi

step "done; removing $tmp"
