#!/usr/bin/env bash
# A CI runner starts empty: how long does a build take that finds its cache
# in a registry (`--cache-from`), against a cold build of the same
# Dockerfile, for berth and for `buildah bud --layers --cache-from`?
#
# usage: bench/ci.sh [-n ROUNDS] [--keep]
#
# Setup (not timed): Debian's docker-registry on 127.0.0.1, the busybox
# fixture pushed there as the base, and the reference build of
# bench/build.sh (multi-stage, ~10 steps, 2,000-file context). A first
# runner exports its cache (berth: --cache-to ...,mode=max; buildah:
# --cache-to REPO). Each round then times, on an empty root/storage:
#   cold        the build with no cache
#   cache hit   the build with --cache-from the registry
# Target (issue 8): berth's cache-hit build <= 0.2x its cold build.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
rounds=3
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) rounds=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "ci.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "ci.sh: needs root" >&2; exit 1; }
for t in buildah runc docker-registry; do
    command -v "$t" >/dev/null || { echo "ci.sh: $t is required" >&2; exit 1; }
done

berth=${BERTH:-}
if [[ -z $berth ]]; then
    (cd "$repo" && cargo build --release -q -p berth)
    berth=$repo/target/release/berth
fi

work=$(mktemp -d /tmp/berth-bench-ci.XXXXXX)
reg_pid=
cleanup() {
    [[ -n $reg_pid ]] && kill "$reg_pid" 2>/dev/null || true
    for m in $(grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m" 2>/dev/null || true; done
    if [[ $keep -eq 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
cat >"$work/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $reg
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

bash "$repo/fixtures/busybox/make.sh" -o "$work/busybox.oci.tar" >/dev/null
"$berth" --root "$work/seed" load -q -i "$work/busybox.oci.tar" >/dev/null
"$berth" --root "$work/seed" tag busybox:latest "$reg/base/busybox:1"
"$berth" --root "$work/seed" --insecure-registry "$reg" push -q "$reg/base/busybox:1" >/dev/null

ctx=$work/ctx
mkdir -p "$ctx"
for d in $(seq 1 20); do
    mkdir -p "$ctx/src/d$d"
    for f in $(seq 1 100); do echo "file $d/$f $(printf '%0200d' "$f")" >"$ctx/src/d$d/f$f.txt"; done
done
cat >"$ctx/Dockerfile" <<DF
FROM $reg/base/busybox:1 AS gen
WORKDIR /gen
RUN for i in \$(seq 1 2000); do echo "generated \$i" > f\$i.txt; done
RUN tar cf /gen.tar -C /gen .

FROM $reg/base/busybox:1 AS tools
RUN mkdir -p /tools && for i in \$(seq 1 1000); do echo "\$i" > /tools/t\$i; done

FROM $reg/base/busybox:1
ENV APP=/app
WORKDIR /app
COPY --from=gen /gen.tar /app/gen.tar
COPY --from=tools /tools /tools
COPY src/ /app/src/
RUN find /app/src -type f | wc -l > /app/count && sha256sum /app/gen.tar > /app/sums
LABEL bench=ci
CMD ["cat", "/app/count"]
DF

b() { "$berth" --root "$work/berth-$1" --insecure-registry "$reg" build -q "${@:2}" "$ctx" >/dev/null; }
bh() { buildah --root "$work/buildah-$1/root" --runroot "$work/buildah-$1/run" --storage-driver overlay "${@:2}"; }
bhb() { bh "$1" bud --layers --runtime runc --tls-verify=false -q "${@:2}" "$ctx" >/dev/null 2>&1; }

# The runner that fills the caches.
b seed-a --cache-to "type=registry,ref=$reg/cache/berth:buildcache,mode=max"
bhb seed-a --cache-to "$reg/cache/buildah"

now() { echo "$EPOCHREALTIME"; }
timed() { local out=$1 t0 t1; shift; t0=$(now); "$@" || { echo "ci.sh: $* failed" >&2; exit 1; }; t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f\n", (b - a) * 1000}' >>"$work/$out"; }
for ((r = 0; r < rounds; r++)); do
    rm -rf "$work/berth-cold$r" "$work/berth-hit$r" "$work/buildah-cold$r" "$work/buildah-hit$r"
    timed berth.cold b "cold$r"
    timed berth.hit b "hit$r" --cache-from "type=registry,ref=$reg/cache/berth:buildcache"
    timed buildah.cold bhb "cold$r"
    timed buildah.hit bhb "hit$r" --cache-from "$reg/cache/buildah"
    rm -rf "$work/berth-cold$r" "$work/berth-hit$r" "$work/buildah-cold$r" "$work/buildah-hit$r" 2>/dev/null || true
done

median() { sort -n "$1" | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
bc=$(median "$work/berth.cold"); bhit=$(median "$work/berth.hit")
hc=$(median "$work/buildah.cold"); hhit=$(median "$work/buildah.hit")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo
echo "rounds: $rounds; empty root each time; times in ms (median)"
echo
echo "| build on an empty runner | berth | buildah | berth/buildah |"
echo "|---|---|---|---|"
echo "| cold | $bc | $hc | $(ratio "$bc" "$hc") |"
echo "| --cache-from registry | $bhit | $hhit | $(ratio "$bhit" "$hhit") |"
echo "| cache hit / cold | $(ratio "$bhit" "$bc") | $(ratio "$hhit" "$hc") | |"
