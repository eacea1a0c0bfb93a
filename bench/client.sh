#!/usr/bin/env bash
# Registry client: berth pull/push against skopeo copy, both talking to the
# same local registry over plain HTTP on 127.0.0.1 -- once against Debian's
# docker-registry (distribution), once against berth's own server
# (`berth registry serve`, anonymous).
#
#   push : berth push (from its store)        vs  skopeo copy oci:LAYOUT docker://
#   pull : berth pull (into an empty store)   vs  skopeo copy docker:// oci:EMPTY
#
# for a single-layer image of SIZE_MIB (default 512) and an image of LAYERS
# (default 64) layers of LAYER_MIB (default 4) each. Layers are gzip'd tars of
# random data (so neither tool recompresses). Every push goes to a new
# repository so nothing is skipped as already present. Then the peak RSS of
# `berth pull` of one RSS_MIB (default 1024) layer from distribution, the
# highest of RSS_ROUNDS (default 3) runs (target: < 40 MiB).
#
# Each command runs ROUNDS times (hyperfine); the table shows medians and the
# ratio berth/peer (below 1 means berth is faster; the target, berth 1.5x as
# fast, is a ratio <= 0.67). The registry's own CPU seconds per push are shown
# too: a single-blob push is bound by the registry hashing the body as it
# arrives, which no client can parallelise (distribution 2.8 appends PATCH
# chunks in arrival order, ignoring Content-Range).
#
# Environment: ROUNDS (default 5), SIZE_MIB, LAYERS, LAYER_MIB, RSS_MIB, RSS_ROUNDS,
# SERVERS (default "distribution berth"), BENCH_DIR (parent of the scratch
# dir, default /var/tmp), BERTH (a prebuilt binary; default: cargo build
# --release).
# Needs: cargo, docker-registry, skopeo, hyperfine, jq, gzip, tar, GNU time.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
SIZE_MIB=${SIZE_MIB:-512}
LAYERS=${LAYERS:-64}
LAYER_MIB=${LAYER_MIB:-4}
RSS_MIB=${RSS_MIB:-1024}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

for tool in docker-registry skopeo hyperfine jq gzip tar; do
    command -v "$tool" >/dev/null || { echo "client.sh: $tool is not installed" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "client.sh: GNU time (/usr/bin/time) is not installed" >&2; exit 1; }

if [ -z "${BERTH:-}" ]; then
    echo "== building berth (release)" >&2
    (cd "$ROOT" && cargo build --release -p berth >&2)
    BERTH="$ROOT/target/release/berth"
fi

SERVERS=${SERVERS:-distribution berth}
WORK=$(mktemp -d "$BENCH_DIR/berth-bench-client.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- the registries -----------------------------------------------------------
declare -A HOSTS REG_PID
start_distribution() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$port
EOF
    docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
    PIDS+=($!)
    REG_PID[distribution]=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    HOSTS[distribution]=127.0.0.1:$port
}
# berth's own server, anonymous (an empty config).
start_berth_server() {
    : >"$WORK/berth-registry.yml"
    "$BERTH" --root "$WORK/berth-registry" registry serve --addr 127.0.0.1:0 \
        --config "$WORK/berth-registry.yml" >"$WORK/berth-registry.out" 2>"$WORK/berth-registry.log" &
    PIDS+=($!)
    REG_PID[berth]=$!
    local addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on //p' "$WORK/berth-registry.out")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "client.sh: berth registry serve did not start" >&2
        cat "$WORK/berth-registry.log" >&2
        exit 1
    fi
    HOSTS[berth]=$addr
}
for server in $SERVERS; do
    case $server in
        distribution) start_distribution ;;
        berth) start_berth_server ;;
        *) echo "client.sh: unknown server $server" >&2; exit 1 ;;
    esac
done

# --- the images ---------------------------------------------------------------
# make_image LAYOUT NAME COUNT MIB: an OCI layout holding NAME (ref.name) with
# COUNT gzip layers, each a tar of one file of MIB MiB of random data.
make_image() {
    local layout=$1 name=$2 count=$3 mib=$4 i
    mkdir -p "$layout/blobs/sha256" "$WORK/gen"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    local layers='[]' diffs='[]'
    for i in $(seq "$count"); do
        head -c $((mib * 1024 * 1024)) /dev/urandom >"$WORK/gen/data"
        tar -C "$WORK/gen" -cf "$WORK/gen/layer.tar" data
        local diff gz size
        diff=$(sha256sum "$WORK/gen/layer.tar" | cut -d' ' -f1)
        gzip -1 -c "$WORK/gen/layer.tar" >"$WORK/gen/layer.tgz"
        gz=$(sha256sum "$WORK/gen/layer.tgz" | cut -d' ' -f1)
        size=$(stat -c %s "$WORK/gen/layer.tgz")
        mv "$WORK/gen/layer.tgz" "$layout/blobs/sha256/$gz"
        layers=$(jq -c --arg d "sha256:$gz" --argjson s "$size" \
            '. + [{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":$d,"size":$s}]' <<<"$layers")
        diffs=$(jq -c --arg d "sha256:$diff" '. + [$d]' <<<"$diffs")
    done
    rm -rf "$WORK/gen"
    local config manifest cd md
    config=$(jq -c -n --argjson diffs "$diffs" \
        '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":$diffs}}')
    cd=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
    printf '%s' "$config" >"$layout/blobs/sha256/$cd"
    manifest=$(jq -c -n --arg cd "sha256:$cd" --argjson cs "${#config}" --argjson layers "$layers" \
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":$cd,"size":$cs},"layers":$layers}')
    md=$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
    printf '%s' "$manifest" >"$layout/blobs/sha256/$md"
    jq -c -n --arg md "sha256:$md" --argjson ms "${#manifest}" --arg name "$name" \
        '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":$md,"size":$ms,"annotations":{"org.opencontainers.image.ref.name":$name}}]}' \
        >"$layout/index.json"
}

echo "== making images: 1 x ${SIZE_MIB} MiB, ${LAYERS} x ${LAYER_MIB} MiB, 1 x ${RSS_MIB} MiB" >&2
make_image "$WORK/big" big:latest 1 "$SIZE_MIB"
make_image "$WORK/many" many:latest "$LAYERS" "$LAYER_MIB"
make_image "$WORK/huge" huge:latest 1 "$RSS_MIB"

# berth's store holds the images to push, tagged for each registry; each
# registry gets the copy to pull from, pushed once by skopeo.
BROOT="$WORK/berth-store"
for img in big many; do
    tar -C "$WORK/$img" -cf "$WORK/$img.tar" .
    "$BERTH" --root "$BROOT" load -i "$WORK/$img.tar" >/dev/null
    rm "$WORK/$img.tar"
    for server in $SERVERS; do
        "$BERTH" --root "$BROOT" tag "$img:latest" "${HOSTS[$server]}/src/$img:1"
        skopeo copy -q --dest-tls-verify=false "oci:$WORK/$img:$img:latest" "docker://${HOSTS[$server]}/src/$img:1"
    done
done
RSS_SERVER=${SERVERS%% *}
RSS_HOST=${HOSTS[$RSS_SERVER]}
skopeo copy -q --dest-tls-verify=false "oci:$WORK/huge:huge:latest" "docker://$RSS_HOST/src/huge:1"

RESULTS="$WORK/results"
mkdir "$RESULTS"
COUNTER="$WORK/counter"
echo 0 >"$COUNTER"

bench() {
    local name=$1 prepare=$2 cmd=$3
    echo "== $name" >&2
    hyperfine --runs "$ROUNDS" --warmup 0 --shell bash --style basic \
        --prepare "$prepare" --export-json "$RESULTS/$name.json" "$cmd" >&2
    jq -r '.results[0].median' "$RESULTS/$name.json"
}

# CPU seconds a process has used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

# Each push goes to a fresh repository: $(cat counter) changes per round.
# skopeo and berth remember which repositories hold a blob (skopeo's
# blob-info cache, the store's sources/) and would mount instead of
# uploading: both forget before each of their rounds.
next='echo $(( $(cat '"$COUNTER"') + 1 )) >'"$COUNTER"
forget='rm -f /var/lib/containers/cache/blob-info-cache-v1.* "${XDG_DATA_HOME:-$HOME/.local/share}"/containers/cache/blob-info-cache-v1.*'
berth_forget="rm -rf $BROOT/sources"

declare -A T CPU
for server in $SERVERS; do
    HOST=${HOSTS[$server]}
    pid=${REG_PID[$server]}
    for img in big many; do
        c0=$(cpu_seconds "$pid")
        T[$server,berth_push_$img]=$(bench "$server-berth-push-$img" "$next; $berth_forget" \
            "$BERTH --root $BROOT --insecure-registry $HOST push -q $HOST/src/$img:1 $HOST/berth-\$(cat $COUNTER)/$img:1 >/dev/null")
        c1=$(cpu_seconds "$pid")
        T[$server,skopeo_push_$img]=$(bench "$server-skopeo-push-$img" "$next; $forget" \
            "skopeo copy -q --dest-tls-verify=false oci:$WORK/$img:$img:latest docker://$HOST/skopeo-\$(cat $COUNTER)/$img:1")
        c2=$(cpu_seconds "$pid")
        CPU[$server,berth_push_$img]=$(awk -v a="$c0" -v b="$c1" -v n="$ROUNDS" 'BEGIN { printf "%.2f", (b - a) / n }')
        CPU[$server,skopeo_push_$img]=$(awk -v a="$c1" -v b="$c2" -v n="$ROUNDS" 'BEGIN { printf "%.2f", (b - a) / n }')
        T[$server,berth_pull_$img]=$(bench "$server-berth-pull-$img" "rm -rf $WORK/pull" \
            "$BERTH --root $WORK/pull --insecure-registry $HOST pull -q $HOST/src/$img:1 >/dev/null")
        T[$server,skopeo_pull_$img]=$(bench "$server-skopeo-pull-$img" "rm -rf $WORK/pull; $forget" \
            "skopeo copy -q --src-tls-verify=false docker://$HOST/src/$img:1 oci:$WORK/pull:x")
    done
done

rss() {
    rm -rf "$WORK/pull"
    /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1
}
# The peak varies from run to run: the highest of RSS_ROUNDS runs counts.
RSS_ROUNDS=${RSS_ROUNDS:-3}
berth_rss=0
skopeo_rss=0
for _ in $(seq "$RSS_ROUNDS"); do
    run_b=$(rss "$BERTH" --root "$WORK/pull" --insecure-registry "$RSS_HOST" pull -q "$RSS_HOST/src/huge:1")
    run_s=$(rss skopeo copy -q --src-tls-verify=false "docker://$RSS_HOST/src/huge:1" "oci:$WORK/pull:x")
    if ((run_b > berth_rss)); then berth_rss=$run_b; fi
    if ((run_s > skopeo_rss)); then skopeo_rss=$run_s; fi
done
rm -rf "$WORK/pull"

# row OPERATION SERVER KEY: berth's and skopeo's medians for KEY on SERVER,
# and for pushes the registry's CPU seconds per run (with berth / skopeo).
row() {
    local op=$1 server=$2 key=$3 cpu=""
    if [ -n "${CPU[$server,berth_$key]:-}" ]; then
        cpu="${CPU[$server,berth_$key]} / ${CPU[$server,skopeo_$key]}"
    fi
    awk -v op="$op" -v server="$server" -v b="${T[$server,berth_$key]}" \
        -v p="${T[$server,skopeo_$key]}" -v cpu="$cpu" \
        'BEGIN { printf "| %-22s | %-12s | %14.2f | %13.2f | %16.2f | %-19s |\n", op, server, b, p, b / p, cpu }'
}
echo
printf '%d rounds each, median seconds; peer: skopeo copy; %s cores\n' "$ROUNDS" "$(nproc)"
echo
echo "| operation              | registry     | berth median s | peer median s | ratio berth/peer | registry CPU s b/p  |"
echo "|------------------------|--------------|----------------|---------------|------------------|---------------------|"
for server in $SERVERS; do
    row "push 1 x ${SIZE_MIB} MiB" "$server" push_big
    row "pull 1 x ${SIZE_MIB} MiB" "$server" pull_big
    row "push ${LAYERS} x ${LAYER_MIB} MiB" "$server" push_many
    row "pull ${LAYERS} x ${LAYER_MIB} MiB" "$server" pull_many
done
echo
printf 'peak RSS pulling 1 x %d MiB layer from %s (highest of %d runs): berth %d MiB (target < 40), skopeo %d MiB\n' \
    "$RSS_MIB" "$RSS_SERVER" "$RSS_ROUNDS" $((berth_rss / 1024)) $((skopeo_rss / 1024))
