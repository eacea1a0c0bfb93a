#!/usr/bin/env bash
# `berth build` vs `buildah bud --layers` vs `docker build` (BuildKit, in
# Debian's dockerd) on the same reference build: a multi-stage Dockerfile of
# about ten steps over a context of 2,000 files, with RUN steps that write a
# few thousand files, on the busybox fixture as the base of every tool.
#
# usage: bench/build.sh [-n ROUNDS] [--keep]
#
# Per round and tool:
#   cold        empty build cache (a fresh berth root / buildah storage; for
#               docker: `docker builder prune -af` and the result removed)
#   cached      the same build again, nothing changed
#   one file    one context file's content changed, then built
# Then the peak RSS of `berth build` for a step writing a 1 GiB layer.
# Prints a markdown table of medians and ratios berth/peer. Needs root,
# buildah, runc, dockerd (Debian's docker.io) and /usr/bin/time.
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
        -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "build.sh: needs root" >&2; exit 1; }
for t in buildah runc dockerd /usr/bin/docker /usr/bin/time jq; do
    command -v "$t" >/dev/null || { echo "build.sh: $t is required" >&2; exit 1; }
done

berth=${BERTH:-}
if [[ -z $berth ]]; then
    (cd "$repo" && cargo build --release -q -p berth)
    berth=$repo/target/release/berth
fi

work=$(mktemp -d /tmp/berth-bench-build.XXXXXX)
dockerd_pid=
cleanup() {
    if [[ -n $dockerd_pid ]]; then
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
    fi
    for m in $(grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m" 2>/dev/null || true; done
    if [[ $keep -eq 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# ---- the reference build -------------------------------------------------------
bash "$repo/fixtures/busybox/make.sh" -o "$work/busybox.oci.tar" >/dev/null
ctx=$work/ctx
mkdir -p "$ctx"
for d in $(seq 1 20); do
    mkdir -p "$ctx/src/d$d"
    for f in $(seq 1 100); do echo "file $d/$f $(printf '%0200d' "$f")" >"$ctx/src/d$d/f$f.txt"; done
done
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox AS gen
WORKDIR /gen
RUN for i in $(seq 1 2000); do echo "generated $i" > f$i.txt; done
RUN tar cf /gen.tar -C /gen .

FROM busybox AS tools
RUN mkdir -p /tools && for i in $(seq 1 1000); do echo "$i" > /tools/t$i; done

FROM busybox
ENV APP=/app
WORKDIR /app
COPY --from=gen /gen.tar /app/gen.tar
COPY --from=tools /tools /tools
COPY src/ /app/src/
RUN find /app/src -type f | wc -l > /app/count && sha256sum /app/gen.tar > /app/sums
LABEL bench=build
CMD ["cat", "/app/count"]
DF
change_one() { echo "changed $1" >"$ctx/src/d7/f42.txt"; }

# ---- tools -------------------------------------------------------------------
berth_root() { echo "$work/berth-root-$1"; }
berth_prepare() { rm -rf "$(berth_root "$1")"; "$berth" --root "$(berth_root "$1")" load -q -i "$work/busybox.oci.tar" >/dev/null; }
berth_build() { "$berth" --root "$(berth_root "$1")" build -q -t bench:latest "$ctx" >/dev/null; }

bh() { buildah --root "$work/buildah-$1/root" --runroot "$work/buildah-$1/run" --storage-driver overlay "${@:2}"; }
buildah_prepare() {
    rm -rf "$work/buildah-$1"
    local id
    id=$(bh "$1" pull -q "oci-archive:$work/busybox.oci.tar" 2>/dev/null | tail -1)
    bh "$1" tag "$id" busybox:latest >/dev/null
}
buildah_build() { bh "$1" bud --layers --pull=never --runtime runc -q -t bench "$ctx" >/dev/null 2>&1; }

dk() { /usr/bin/docker -H "unix://$work/d.sock" "$@"; }
docker_start() {
    mkdir -p "$work/docker"
    echo '{}' >"$work/docker/daemon.json"
    dockerd --config-file "$work/docker/daemon.json" --iptables=false --ip-masq=false --bridge=none \
        --storage-driver=overlay2 --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
        --pidfile "$work/docker/d.pid" -H "unix://$work/d.sock" >"$work/docker/log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 120); do dk version >/dev/null 2>&1 && break; sleep 0.5; done
    dk version >/dev/null
    # Debian's dockerd 20.10 loads docker archives only.
    "$berth" --root "$work/conv" load -q -i "$work/busybox.oci.tar" >/dev/null
    "$berth" --root "$work/conv" save --format docker -o "$work/busybox.docker.tar" busybox:latest
    dk load -i "$work/busybox.docker.tar" >/dev/null
}
docker_prepare() { dk rmi -f bench >/dev/null 2>&1 || true; dk builder prune -af >/dev/null 2>&1; }
docker_build() { DOCKER_BUILDKIT=1 dk build --network none -q -t bench "$ctx" >/dev/null 2>&1; }

now() { echo "$EPOCHREALTIME"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f\n", (b - a) * 1000}'; }
timed() { # file command...
    local out=$1 t0 t1; shift
    t0=$(now); "$@" || { echo "build.sh: $* failed" >&2; exit 1; }; t1=$(now)
    ms "$t0" "$t1" >>"$work/$out"
}

docker_start
for ((r = 0; r < rounds; r++)); do
    for tool in berth buildah docker; do
        echo "file 7/42 $(printf '%0200d' 42)" >"$ctx/src/d7/f42.txt"
        "${tool}_prepare" "$r"
        timed "$tool.cold" "${tool}_build" "$r"
        timed "$tool.cached" "${tool}_build" "$r"
        change_one "$r-$tool"
        timed "$tool.onefile" "${tool}_build" "$r"
    done
    # Rounds' roots are removed at exit, not here: this disk's ext4 has no
    # journal, and ext4 then rescans inodes freed in the last 30 s for every
    # file it makes, so a mass delete here would slow whichever tool ran next
    # (berth, the next round's first).
done

median() { sort -n "$1" | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "rounds: $rounds; times in ms (median); ratio = berth / peer"
echo
echo "| build | berth | buildah | docker BuildKit | berth/buildah | berth/BuildKit |"
echo "|---|---|---|---|---|---|"
for what in cold cached onefile; do
    b=$(median "$work/berth.$what"); h=$(median "$work/buildah.$what"); d=$(median "$work/docker.$what")
    rb=$(awk -v a="$b" -v c="$h" 'BEGIN {printf "%.2f", a / c}')
    rd=$(awk -v a="$b" -v c="$d" 'BEGIN {printf "%.2f", a / c}')
    label=$what; [[ $what == onefile ]] && label="one file changed"
    echo "| $label | $b | $h | $d | $rb | $rd |"
done

# ---- peak memory for a 1 GiB layer -------------------------------------------
mem=$work/mem
mkdir -p "$mem"
printf 'FROM busybox\nRUN head -c 1073741824 /dev/urandom > /big\n' >"$mem/Dockerfile"
berth_prepare mem
/usr/bin/time -f '%M' -o "$work/rss" "$berth" --root "$(berth_root mem)" build -q "$mem" >/dev/null
echo
echo "peak RSS of berth build writing a 1 GiB layer: $(( $(cat "$work/rss") / 1024 )) MiB"
