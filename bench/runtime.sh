#!/usr/bin/env bash
# Start-to-exit latency of /bin/true in the busybox image: berth vs crun vs
# runc on the same root filesystem, and the floor (unshare + chroot).
#
# usage: bench/runtime.sh [-n RUNS] [--keep]
#
#   -n RUNS   runs per command (default 50, at least 30)
#   --keep    keep the temp directory (printed at the end)
#
# Environment: BERTH = the berth binary (default: builds target/release/berth).
#
# What is measured, each with the same namespaces (pid, net, ipc, uts, mount,
# cgroup) and Docker's defaults where the runtime has them:
#
#   berth run (image)     `berth run --rm --network none busybox /bin/true`:
#                         resolve the image, overlay of its unpacked layers,
#                         container directory, runtime, cleanup
#   berth run --rootfs    `berth run --rm --network none --rootfs R /bin/true`:
#                         the runtime part on the bundle's rootfs (no image,
#                         no overlay), as runc and crun get it
#   crun run, runc run    an OCI bundle (rootfs = the image's layer, config
#                         from `runc spec` with Docker's capabilities)
#   floor                 unshare -m -u -i -n -p -f chroot R /bin/true
#
# crun 1.8 refuses this kind of host's hybrid cgroup layout, so the whole
# benchmark runs inside `unshare -m` with /sys/fs/cgroup/unified unmounted
# there (every command sees the same thing; no per-run wrapper). Image and
# rootfs preparation (loading, unpacking the layer once) happen before timing;
# `berth --timings` splits berth's own runs into phases (printed at the end).
# Needs root, bash 5, jq, runc and crun.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
runs=50
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) runs=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "runtime.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $runs -ge 30 ]] || { echo "runtime.sh: at least 30 runs" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "runtime.sh: needs root" >&2; exit 1; }
for t in jq runc crun unshare; do
    command -v "$t" >/dev/null || { echo "runtime.sh: $t is required" >&2; exit 1; }
done

# Everything below runs in a private mount namespace (see above).
if [[ -z ${BERTH_BENCH_INNER:-} ]]; then
    exec env BERTH_BENCH_INNER=1 unshare -m --propagation private "$0" -n "$runs" $([[ $keep -eq 1 ]] && echo --keep)
fi
if grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then
    umount /sys/fs/cgroup/unified
fi

berth=${BERTH:-}
if [[ -z $berth ]]; then
    (cd "$repo" && cargo build --release -q -p berth)
    berth=$repo/target/release/berth
fi

work=$(mktemp -d /tmp/berth-bench-runtime.XXXXXX)
cleanup() { [[ $keep -eq 1 ]] && echo "kept $work" || rm -rf "$work"; }
trap cleanup EXIT

# ---- preparation (not timed) -------------------------------------------------
bash "$repo/fixtures/busybox/make.sh" -o "$work/busybox.oci.tar" >/dev/null
root=$work/root
"$berth" --root "$root" load -i "$work/busybox.oci.tar" >/dev/null
"$berth" --root "$root" run --rm --network none busybox true   # unpacks the layer once

bundle=$work/bundle
mkdir -p "$bundle/rootfs" "$work/layout"
tar -xf "$work/busybox.oci.tar" -C "$work/layout"
manifest=$(jq -r '.manifests[0].digest' "$work/layout/index.json" | cut -d: -f2)
for layer in $(jq -r '.layers[].digest' "$work/layout/blobs/sha256/$manifest" | cut -d: -f2); do
    tar -xzf "$work/layout/blobs/sha256/$layer" -C "$bundle/rootfs"
done
(cd "$bundle" && runc spec)
caps='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]'
jq --argjson caps "$caps" '
    .process.terminal = false | .process.args = ["/bin/true"] |
    .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps, inheritable: [], ambient: []} |
    .root.readonly = false |
    .linux.namespaces = [{type:"pid"},{type:"network"},{type:"ipc"},{type:"uts"},{type:"mount"},{type:"cgroup"}]
' "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
rootfs=$bundle/rootfs

names=("berth run (image)" "berth run --rootfs" "crun run" "runc run" "floor: unshare+chroot")
cmds=(
    "$berth --root $root run --rm --network none busybox /bin/true"
    "$berth --root $root run --rm --network none --rootfs $rootfs /bin/true"
    "crun run -b $bundle bench-crun"
    "runc run -b $bundle bench-runc"
    "unshare -m -u -i -n -p -f chroot $rootfs /bin/true"
)

# ---- timing ----------------------------------------------------------------
# Round-robin: every round runs each command once, in a rotating order, so
# that load from other processes on the machine hits all of them alike.
# Times come from bash's $EPOCHREALTIME (no extra process per measurement).
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f\n", (b - a) * 1000}'; }
for ((r = 0; r < 5; r++)); do
    for c in "${cmds[@]}"; do $c >/dev/null 2>&1 || true; done
done
n=${#cmds[@]}
for ((r = 0; r < runs; r++)); do
    for ((k = 0; k < n; k++)); do
        i=$(( (r + k) % n ))
        t0=$EPOCHREALTIME
        ${cmds[$i]} >/dev/null 2>&1 || { echo "runtime.sh: '${cmds[$i]}' failed" >&2; exit 1; }
        t1=$EPOCHREALTIME
        ms "$t0" "$t1" >>"$work/times.$i"
    done
done

declare -a med mean min
for i in "${!cmds[@]}"; do
    read -r med[$i] mean[$i] min[$i] < <(sort -n "$work/times.$i" |
        awk '{a[NR] = $1; s += $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m, s / NR, a[1]}')
done
crun_med=${med[2]}

echo
echo "start-to-exit latency of /bin/true, $runs runs each ($(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), kernel $(uname -r))"
printf '%-24s %10s %10s %10s %12s\n' "command" "median ms" "mean ms" "min ms" "vs crun"
for i in "${!cmds[@]}"; do
    printf '%-24s %10.2f %10.2f %10.2f %11.2fx\n' "${names[$i]}" "${med[$i]}" "${mean[$i]}" "${min[$i]}" \
        "$(awk -v a="${med[$i]}" -v b="$crun_med" 'BEGIN {print a / b}')"
done

# ---- berth's phases ----------------------------------------------------------
phases=$work/phases
for ((i = 0; i < runs; i++)); do
    "$berth" --root "$root" run --rm --network none --timings busybox /bin/true 2>&1 | grep '^berth timings: image=' >>"$phases"
done
echo
echo "berth run (image) by phase, median ms of $runs runs:"
for p in image spec start run cleanup total; do
    printf '  %-8s %8.2f\n' "$p" "$(grep -o "$p=[0-9.]*" "$phases" | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done
echo "  (image = resolve + overlay layout; spec = /etc files, container record;"
echo "   start = runtime until the process execs; run = until it exited; cleanup = container dir)"
