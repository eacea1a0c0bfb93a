#!/usr/bin/env bash
# Registry servers: `berth registry serve` against Debian's docker-registry
# (distribution), driven by the same client (skopeo) on the same data.
#
#   push / pull of a 512 MiB single-layer image   (skopeo copy oci: <-> docker://)
#   push / pull of an image with 64 small layers   (64 x 256 KiB)
#   manifest GETs per second                       (wrk, 2 connections, bounded)
#   push / GET of the 512 MiB layer as one blob    (curl: POST, then PUT of the
#                                                   body; GET), with the server's
#                                                   CPU seconds for each
#   peak RSS of each server over a round, and while a 1 GiB blob is pushed
#
# skopeo itself tops out near 110 MB/s, so the skopeo rows measure the client
# as much as the server; the curl rows show what the servers can do.
#
# Every round starts both servers afresh (new storage root, new ephemeral
# port) so that neither skopeo's blob-info cache nor earlier rounds turn an
# upload into a mount. Prints medians over ROUNDS rounds and the ratio
# berth/peer (for seconds and MiB below 1 means berth is better, for req/s
# above 1 means berth is better).
#
# Environment: ROUNDS (default 3), BIG_MIB (default 512), SMALL_LAYERS
# (default 64), WRK_SECS (default 5), BENCH_DIR (default /var/tmp), BERTH_BIN
# (a berth binary to use instead of building target/release/berth).
# Needs: cargo, skopeo, docker-registry, wrk, curl, jq, python3.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
BIG_MIB=${BIG_MIB:-512}
SMALL_LAYERS=${SMALL_LAYERS:-64}
WRK_SECS=${WRK_SECS:-5}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

for tool in cargo skopeo docker-registry wrk curl jq python3; do
    command -v "$tool" >/dev/null || { echo "registry.sh: $tool is not installed" >&2; exit 1; }
done

if [ -n "${BERTH_BIN:-}" ]; then
    BERTH=$BERTH_BIN
else
    echo "== building berth (release)" >&2
    (cd "$ROOT" && cargo build --release -p berth >&2)
    BERTH="$ROOT/target/release/berth"
fi

WORK=$(mktemp -d "$BENCH_DIR/berth-bench-registry.XXXXXX")
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- test images (OCI layouts) -------------------------------------------------
# make_image DIR LAYERS BYTES_PER_LAYER: gzip streams of random bytes
# (incompressible, and already compressed so that skopeo copies them as they
# are instead of compressing them on the way).
make_image() {
    local dir=$1 n=$2 bytes=$3
    mkdir -p "$dir/blobs/sha256"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
    local layers="" diffs="" i
    for ((i = 0; i < n; i++)); do
        head -c "$bytes" /dev/urandom | gzip -1 >"$dir/layer"
        local d size
        d=$(sha256sum "$dir/layer" | cut -d' ' -f1)
        size=$(stat -c %s "$dir/layer")
        mv "$dir/layer" "$dir/blobs/sha256/$d"
        layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$size}"
        diffs+="${diffs:+,}\"sha256:$d\""
    done
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]}}' "$diffs" >"$dir/config"
    local cd cs
    cd=$(sha256sum "$dir/config" | cut -d' ' -f1)
    cs=$(stat -c %s "$dir/config")
    mv "$dir/config" "$dir/blobs/sha256/$cd"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
        "$cd" "$cs" "$layers" >"$dir/manifest"
    local md ms
    md=$(sha256sum "$dir/manifest" | cut -d' ' -f1)
    ms=$(stat -c %s "$dir/manifest")
    mv "$dir/manifest" "$dir/blobs/sha256/$md"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
        "$md" "$ms" >"$dir/index.json"
}
echo "== making a ${BIG_MIB} MiB single-layer image and a ${SMALL_LAYERS}-layer image" >&2
make_image "$WORK/big" 1 $((BIG_MIB * 1024 * 1024))
make_image "$WORK/small" "$SMALL_LAYERS" $((256 * 1024))
head -c 1073741824 /dev/zero | sha256sum | cut -d' ' -f1 >"$WORK/zero.sha"
BIG_DIGEST=$(jq -r '.layers[0].digest' "$WORK/big/blobs/sha256/$(jq -r '.manifests[0].digest' "$WORK/big/index.json" | cut -d: -f2)")
BIG_LAYER="$WORK/big/blobs/sha256/${BIG_DIGEST#sha256:}"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_server KIND: sets ADDR and SERVER_PID on a fresh storage root.
start_server() {
    local kind=$1 store="$WORK/store-$1"
    rm -rf "$store"
    mkdir -p "$store"
    if [ "$kind" = berth ]; then
        "$BERTH" --root "$store" registry serve --addr 127.0.0.1:0 >"$WORK/berth.out" 2>"$WORK/berth.log" &
        SERVER_PID=$!
        for _ in $(seq 100); do
            ADDR=$(sed -n 's/^listening on //p' "$WORK/berth.out")
            [ -n "$ADDR" ] && break
            sleep 0.1
        done
    else
        local port
        port=$(free_port)
        cat >"$WORK/distribution.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $store
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
        docker-registry serve "$WORK/distribution.yml" >"$WORK/distribution.log" 2>&1 &
        SERVER_PID=$!
        ADDR=127.0.0.1:$port
    fi
    for _ in $(seq 100); do
        curl -sf "http://$ADDR/v2/" >/dev/null && return 0
        sleep 0.1
    done
    echo "registry.sh: $kind did not start" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SERVER_PID/stat"; }

# curl_push REPO FILE DIGEST: a monolithic upload, POST then PUT of the body.
curl_push() {
    local repo=$1 file=$2 digest=$3 loc sep='?'
    loc=$(curl -sf -X POST -D - -o /dev/null "http://$ADDR/v2/$repo/blobs/uploads/" |
        awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')
    case "$loc" in http*) ;; *) loc="http://$ADDR$loc" ;; esac
    case "$loc" in *\?*) sep='&' ;; esac
    curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T "$file" -o /dev/null "${loc}${sep}digest=$digest"
}

hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status"; }

# timed CMD...: seconds of wall time.
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$WORK/last.err" || { cat "$WORK/last.err" >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

RESULTS="$WORK/results"
mkdir "$RESULTS"
record() { echo "$3" >>"$RESULTS/$1.$2"; }

for round in $(seq "$ROUNDS"); do
    for kind in berth distribution; do
        echo "== round $round: $kind" >&2
        start_server "$kind"
        sk=(skopeo copy -q --dest-tls-verify=false --src-tls-verify=false)
        record "$kind" push_big "$(timed "${sk[@]}" "oci:$WORK/big:bench" "docker://$ADDR/bench/big:1")"
        record "$kind" push_small "$(timed "${sk[@]}" "oci:$WORK/small:bench" "docker://$ADDR/bench/small:1")"
        rm -rf "$WORK/pull-big" "$WORK/pull-small"
        record "$kind" pull_big "$(timed "${sk[@]}" "docker://$ADDR/bench/big:1" "dir:$WORK/pull-big")"
        record "$kind" pull_small "$(timed "${sk[@]}" "docker://$ADDR/bench/small:1" "dir:$WORK/pull-small")"
        cmp -s "$WORK/pull-big/$(jq -r '.layers[0].digest' "$WORK/pull-big/manifest.json" | cut -d: -f2)" \
            "$WORK/big/blobs/sha256/$(jq -r '.layers[0].digest' "$WORK/pull-big/manifest.json" | cut -d: -f2)" ||
            { echo "registry.sh: $kind served a different big layer" >&2; exit 1; }
        rps=$(wrk -t2 -c2 -d"${WRK_SECS}s" \
            -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
            "http://$ADDR/v2/bench/small/manifests/1" | awk '/^Requests\/sec:/ { print $2 }')
        record "$kind" manifest_rps "$rps"
        record "$kind" rss_round "$(hwm_mib)"
        stop_server

        # The big layer as one blob through curl, on a fresh server.
        start_server "$kind"
        c0=$(cpu_seconds)
        record "$kind" push_curl "$(timed curl_push bench/curl "$BIG_LAYER" "$BIG_DIGEST")"
        c1=$(cpu_seconds)
        record "$kind" pull_curl "$(timed curl -sf -o /dev/null "http://$ADDR/v2/bench/curl/blobs/$BIG_DIGEST")"
        c2=$(cpu_seconds)
        record "$kind" push_curl_cpu "$(echo "$c1 - $c0" | bc -l)"
        record "$kind" pull_curl_cpu "$(echo "$c2 - $c1" | bc -l)"
        curl -sf "http://$ADDR/v2/bench/curl/blobs/$BIG_DIGEST" | cmp -s - "$BIG_LAYER" ||
            { echo "registry.sh: $kind served a different blob" >&2; exit 1; }
        stop_server

        # Peak RSS while a 1 GiB blob is pushed in one streamed PATCH.
        start_server "$kind"
        loc=$(curl -sf -X POST -D - -o /dev/null "http://$ADDR/v2/bench/zero/blobs/uploads/" |
            awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')
        case "$loc" in http*) ;; *) loc="http://$ADDR$loc" ;; esac
        head -c 1073741824 /dev/zero |
            curl -sf -X PATCH -H 'Content-Type: application/octet-stream' -T - -D "$WORK/patch.h" -o /dev/null "$loc"
        loc=$(awk 'tolower($1) == "location:" { print $2 }' "$WORK/patch.h" | tr -d '\r')
        case "$loc" in http*) ;; *) loc="http://$ADDR$loc" ;; esac
        sep='?'
        case "$loc" in *\?*) sep='&' ;; esac
        curl -sf -X PUT -o /dev/null "${loc}${sep}digest=sha256:$(cat "$WORK/zero.sha")"
        record "$kind" rss_1gib "$(hwm_mib)"
        stop_server
    done
done

median() { sort -g "$1" | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

row() {
    local op=$1 key=$2 unit=$3 b p
    b=$(median "$RESULTS/berth.$key")
    p=$(median "$RESULTS/distribution.$key")
    awk -v op="$op" -v u="$unit" -v b="$b" -v p="$p" \
        'BEGIN { printf "| %-34s | %-5s | %12.2f | %12.2f | %16.2f |\n", op, u, b, p, b / p }'
}
big_mb=$((BIG_MIB * 1048576 / 1000000))
echo
printf 'docker-registry %s; skopeo %s; %d rounds, medians; %s cores\n' \
    "$(docker-registry --version 2>/dev/null | awk '{print $NF}')" "$(skopeo --version | awk '{print $NF}')" "$ROUNDS" "$(nproc)"
echo
echo "| operation                          | unit  |        berth | distribution | ratio berth/peer |"
echo "|------------------------------------|-------|--------------|--------------|------------------|"
row "push ${BIG_MIB} MiB, 1 layer" push_big s
row "pull ${BIG_MIB} MiB, 1 layer" pull_big s
row "push ${SMALL_LAYERS} x 256 KiB layers" push_small s
row "pull ${SMALL_LAYERS} x 256 KiB layers" pull_small s
row "manifest GET (wrk -c2, ${WRK_SECS} s)" manifest_rps req/s
row "curl push ${BIG_MIB} MiB blob (POST+PUT)" push_curl s
row "curl GET ${BIG_MIB} MiB blob" pull_curl s
row "server CPU, curl push ${BIG_MIB} MiB" push_curl_cpu s
row "server CPU, curl GET ${BIG_MIB} MiB" pull_curl_cpu s
row "peak RSS over a round" rss_round MiB
row "peak RSS pushing a 1 GiB blob" rss_1gib MiB
b=$(median "$RESULTS/berth.push_big"); p=$(median "$RESULTS/distribution.push_big")
awk -v b="$b" -v p="$p" -v mb="$big_mb" 'BEGIN { printf "\npush throughput: berth %.0f MB/s, distribution %.0f MB/s (%.2fx)\n", mb / b, mb / p, p / b }'
b=$(median "$RESULTS/berth.pull_big"); p=$(median "$RESULTS/distribution.pull_big")
awk -v b="$b" -v p="$p" -v mb="$big_mb" 'BEGIN { printf "pull throughput: berth %.0f MB/s, distribution %.0f MB/s (%.2fx)\n", mb / b, mb / p, p / b }'
b=$(median "$RESULTS/berth.push_curl"); p=$(median "$RESULTS/distribution.push_curl")
awk -v b="$b" -v p="$p" -v mb="$big_mb" 'BEGIN { printf "curl push throughput: berth %.0f MB/s, distribution %.0f MB/s (%.2fx)\n", mb / b, mb / p, p / b }'
b=$(median "$RESULTS/berth.pull_curl"); p=$(median "$RESULTS/distribution.pull_curl")
awk -v b="$b" -v p="$p" -v mb="$big_mb" 'BEGIN { printf "curl GET throughput: berth %.0f MB/s, distribution %.0f MB/s (%.2fx)\n", mb / b, mb / p, p / b }'
