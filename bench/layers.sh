#!/usr/bin/env bash
# Layer creation and extraction: berth (oci/examples/layertool) against its peers
# on a ~500 MiB tree of real files copied from /usr.
#
#   create gzip-6 : berth create      vs  tar -c | gzip -6,  tar -c | pigz -6,  umoci repack
#   create zstd-3 : berth create      vs  tar -c | zstd -3 -T0
#   extract       : berth extract     vs  tar -xzf (same blob),  umoci raw unpack (its own image)
#
# Each command runs ROUNDS times (hyperfine, page cache warm: the tree is read
# once first; dropping caches is not attempted). Prints a table of medians and
# berth/peer ratios (below 1 means berth is faster).
#
# Environment: ROUNDS (default 5), SIZE_MIB (default 500), LEVEL (gzip level,
# default 6), BENCH_DIR (parent of the scratch dir, default /var/tmp).
# Needs: cargo, tar, gzip, pigz, zstd, umoci, hyperfine, jq. Run as root (umoci
# unpack and tar keep owners).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
SIZE_MIB=${SIZE_MIB:-500}
LEVEL=${LEVEL:-6}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

for tool in cargo tar gzip pigz zstd umoci hyperfine jq; do
    command -v "$tool" >/dev/null || { echo "layers.sh: $tool is not installed" >&2; exit 1; }
done

echo "== building layertool (release)" >&2
(cd "$ROOT" && cargo build --release -p berth-oci --example layertool >&2)
LT="$ROOT/target/release/examples/layertool"

WORK=$(mktemp -d "$BENCH_DIR/berth-bench-layers.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SRC="$WORK/src"
mkdir "$SRC"

# --- the source tree ----------------------------------------------------------
# Real files from a few parts of /usr (binaries, headers, docs/locales,
# libraries), each part given an equal share of what is left of the budget.
echo "== copying ~${SIZE_MIB} MiB of /usr into $SRC" >&2
parts=()
for d in /usr/bin /usr/include /usr/share /usr/lib; do
    [ -d "$d" ] && parts+=("$d")
done
left=$((SIZE_MIB * 1024 * 1024))
n=${#parts[@]}
for i in "${!parts[@]}"; do
    budget=$((left / (n - i)))
    list="$WORK/list.$i"
    # Files and symlinks in find order while they fit the budget, each
    # preceded by its not yet listed parent directories (so they keep their
    # metadata).
    # (find dies of SIGPIPE when awk stops early: not an error.)
    { find "${parts[$i]}" -xdev \( -type f -o -type l \) -printf '%y\t%s\t%P\n' || true; } |
        awk -F'\t' -v budget="$budget" -v prefix="${parts[$i]#/}" '
            $1 == "f" {
                if (total + $2 > budget) { if (total > budget * 0.98) exit; next }
                total += $2
            }
            {
                n = split($3, c, "/"); p = prefix
                for (j = 1; j < n; j++) { p = p "/" c[j]; if (!(p in seen)) { seen[p] = 1; print p } }
                print prefix "/" $3
            }
            END { print total + 0 > "/dev/stderr" }' >"$list" 2>"$list.size"
    tar -C / -cf - --no-recursion -T "$list" 2>/dev/null | tar -C "$SRC" -xf -
    left=$((left - $(cat "$list.size")))
done
src_bytes=$(du -sb "$SRC" | cut -f1)
src_files=$(find "$SRC" -type f | wc -l)
src_all=$(find "$SRC" | wc -l)
printf '== source tree: %d MiB in %d files (%d entries)\n' $((src_bytes / 1024 / 1024)) "$src_files" "$src_all" >&2

# Warm the page cache and the binaries.
tar -C "$SRC" -cf - . >/dev/null
"$LT" create "$SRC" "$WORK/berth.tar.gz" --level "$LEVEL" >/dev/null

# --- umoci fixtures -----------------------------------------------------------
# An empty base image, unpacked; the tree copied into its rootfs. Without
# --refresh-bundle, repack leaves the bundle as it was, so each timed repack
# only needs a fresh copy of the (small) image layout.
umoci init --layout "$WORK/img0" >/dev/null
umoci new --image "$WORK/img0:base" >/dev/null
umoci unpack --image "$WORK/img0:base" "$WORK/bundle0" >/dev/null
cp -a "$SRC/." "$WORK/bundle0/rootfs/"

# --- timing -------------------------------------------------------------------
RESULTS="$WORK/results"
mkdir "$RESULTS"

# bench NAME PREPARE COMMAND: median seconds of ROUNDS runs.
bench() {
    local name=$1 prepare=$2 cmd=$3
    echo "== $name" >&2
    hyperfine --runs "$ROUNDS" --warmup 0 --shell bash --style basic \
        --prepare "$prepare" --export-json "$RESULTS/$name.json" "$cmd" >&2
    jq -r '.results[0].median' "$RESULTS/$name.json"
}

declare -A T
T[berth_gzip]=$(bench berth-create-gzip "rm -f $WORK/b.tgz" \
    "$LT create $SRC $WORK/b.tgz --compression gzip --level $LEVEL >/dev/null")
T[gzip]=$(bench tar-gzip "rm -f $WORK/g.tgz" \
    "tar -C $SRC -cf - . | gzip -$LEVEL > $WORK/g.tgz")
T[pigz]=$(bench tar-pigz "rm -f $WORK/p.tgz" \
    "tar -C $SRC -cf - . | pigz -$LEVEL > $WORK/p.tgz")
T[umoci_repack]=$(bench umoci-repack \
    "rm -rf $WORK/img && cp -a $WORK/img0 $WORK/img" \
    "umoci repack --image $WORK/img:new $WORK/bundle0 >/dev/null")
T[berth_zstd]=$(bench berth-create-zstd "rm -f $WORK/b.tzst" \
    "$LT create $SRC $WORK/b.tzst --compression zstd --level 3 >/dev/null")
T[zstd]=$(bench tar-zstd "rm -f $WORK/z.tzst" \
    "tar -C $SRC -cf - . | zstd -q -3 -T0 > $WORK/z.tzst")

# Extraction of the same gzip blob (berth's), and umoci unpacking the image it
# made from the same tree.
cp "$WORK/b.tgz" "$WORK/layer.tgz"
T[berth_extract]=$(bench berth-extract "rm -rf $WORK/x && mkdir $WORK/x" \
    "$LT extract $WORK/layer.tgz $WORK/x >/dev/null")
T[tar_extract]=$(bench tar-xzf "rm -rf $WORK/x && mkdir $WORK/x" \
    "tar -C $WORK/x -xzf $WORK/layer.tgz")
T[umoci_unpack]=$(bench umoci-raw-unpack "rm -rf $WORK/x" \
    "umoci raw unpack --image $WORK/img:new $WORK/x >/dev/null")

# Sanity: both gzip blobs hold the same tar, and the extracted tree is complete.
berth_diff=$(zcat "$WORK/b.tgz" | sha256sum | cut -d' ' -f1)
mkdir "$WORK/check"
"$LT" extract "$WORK/b.tgz" "$WORK/check" >"$WORK/extract.out"
grep -q "sha256:$berth_diff" "$WORK/extract.out" || { echo "diffID mismatch" >&2; exit 1; }
diff -r --no-dereference "$SRC" "$WORK/check" >/dev/null || { echo "extracted tree differs from the source" >&2; exit 1; }

# --- table --------------------------------------------------------------------
sizes=$(printf 'blob sizes: berth gzip %d MiB, gzip %d MiB, pigz %d MiB; berth zstd %d MiB, zstd %d MiB' \
    $(($(stat -c %s "$WORK/b.tgz") / 1048576)) $(($(stat -c %s "$WORK/g.tgz") / 1048576)) \
    $(($(stat -c %s "$WORK/p.tgz") / 1048576)) $(($(stat -c %s "$WORK/b.tzst") / 1048576)) \
    $(($(stat -c %s "$WORK/z.tzst") / 1048576)))

row() {
    awk -v op="$1" -v b="$2" -v peer="$3" -v p="$4" \
        'BEGIN { printf "| %-22s | %14.2f | %-24s | %13.2f | %16.2f |\n", op, b, peer, p, b / p }'
}
echo
printf 'source: %d MiB, %d files, %d entries; %d rounds each, median seconds; %s; %s cores\n' \
    $((src_bytes / 1024 / 1024)) "$src_files" "$src_all" "$ROUNDS" "$sizes" "$(nproc)"
echo
echo "| operation              | berth median s | peer                     | peer median s | ratio berth/peer |"
echo "|------------------------|----------------|--------------------------|---------------|------------------|"
row "create gzip-$LEVEL" "${T[berth_gzip]}" "tar -c | gzip -$LEVEL" "${T[gzip]}"
row "create gzip-$LEVEL" "${T[berth_gzip]}" "tar -c | pigz -$LEVEL" "${T[pigz]}"
row "create gzip (layer)" "${T[berth_gzip]}" "umoci repack" "${T[umoci_repack]}"
row "create zstd-3" "${T[berth_zstd]}" "tar -c | zstd -3 -T0" "${T[zstd]}"
row "extract gzip" "${T[berth_extract]}" "tar -xzf" "${T[tar_extract]}"
row "extract gzip (layer)" "${T[berth_extract]}" "umoci raw unpack" "${T[umoci_unpack]}"
