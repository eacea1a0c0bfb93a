#!/usr/bin/env bash
# Parse throughput of berth's Dockerfile front end on a large generated
# Dockerfile: a table of the median MB/s, by wall time and by CPU time, of
# `berth dockerfile parse` (parse and JSON printing) and of the parser alone
# (builder example `parse_only`, in process).
#
# CPU time (user + system, every thread) is what the measured process itself
# used: other builds competing for the cores lengthen the wall time but not
# that. Both paths use two threads on a large file: the CLI parses on one and
# prints on the other, and the parser reads the two halves of the file at once
# (so on two idle cores the wall-time MB/s is above the CPU-time MB/s).
#
# Usage: bench/parse.sh [SIZE_MB] [ROUNDS]     (defaults: at least 24 MB, 5 rounds)
# To measure other builds (say, before and after a change) under the same
# conditions, name their binaries: BERTH=path PARSE_ONLY=path bench/parse.sh
set -euo pipefail

size_mb=${1:-24}
rounds=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$root"
if [ -z "${BERTH:-}" ] || [ -z "${PARSE_ONLY:-}" ]; then
    # `--bin berth` too: naming only the example would build only that.
    cargo build --release --quiet -p berth --bin berth -p berth-builder --example parse_only
fi
berth=${BERTH:-$root/target/release/berth}
parse_only=${PARSE_ONLY:-$root/target/release/examples/parse_only}

# One block of realistic instructions: continuations with comments, flags,
# heredocs, exec and shell forms, ENV pairs, ONBUILD.
cat > "$work/block" <<'BLOCK'
FROM --platform=$BUILDPLATFORM golang:1.22-alpine AS build
ARG TARGETOS TARGETARCH VERSION=dev
ENV CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" \
    PATH=/usr/local/go/bin:$PATH
WORKDIR /src
COPY --link go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    # download modules first for better caching
    go mod download && \
    go build -ldflags="-s -w -X main.version=${VERSION}" -o /out/app ./cmd/app
RUN <<EOF
set -eux
apk add --no-cache ca-certificates tzdata
adduser -D -u 10001 app
EOF
COPY --chown=app:app --chmod=0644 <<-"CONF" /etc/app/config.yaml
	listen: ":8080"
	log_level: info
	CONF
LABEL org.opencontainers.image.title="app" org.opencontainers.image.version="${VERSION}"
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD ["/out/app", "healthcheck"]
EXPOSE 8080/tcp
USER app
ONBUILD COPY . /src
ENTRYPOINT ["/out/app"]
CMD ["serve", "--port", "8080"]
BLOCK

target=$((size_mb * 1000 * 1000))
cp "$work/block" "$work/Dockerfile"
while [ "$(stat -c %s "$work/Dockerfile")" -lt "$target" ]; do
    cat "$work/Dockerfile" "$work/Dockerfile" > "$work/next"
    mv "$work/next" "$work/Dockerfile"
done
bytes=$(stat -c %s "$work/Dockerfile")
echo "input: $bytes bytes, $(wc -l < "$work/Dockerfile") lines; $rounds rounds; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The CLI, one process per round: wall, user and system seconds from bash's
# `time`.
TIMEFORMAT='%R %U %S'
: > "$work/cli_times"
for _ in $(seq "$rounds"); do
    { time "$berth" dockerfile parse --compact "$work/Dockerfile" > /dev/null; } 2>> "$work/cli_times"
done
cli_wall=$(awk '{print $1}' "$work/cli_times" | median)
cli_cpu=$(awk '{print $2 + $3}' "$work/cli_times" | median)

# The parser, in process: the example reports per-round medians itself.
only=$("$parse_only" "$work/Dockerfile" "$rounds")
field() { tr ' ' '\n' <<< "$only" | awk -F= -v k="$1" '$1 == k {print $2}'; }
only_wall=$(field median_s)
only_cpu=$(field median_cpu_s)

awk -v b="$bytes" -v cw="$cli_wall" -v cc="$cli_cpu" -v ow="$only_wall" -v oc="${only_cpu:-}" 'BEGIN {
    mb = b / 1e6
    printf "%-54s %10s %8s %10s %8s\n", "path (medians)", "wall s", "MB/s", "CPU s", "MB/s"
    printf "%-54s %10.3f %8.1f %10.3f %8.1f\n", "berth dockerfile parse --compact (parse + JSON)", cw, mb / cw, cc, mb / cc
    if (oc == "") {
        printf "%-54s %10.3f %8.1f %10s %8s\n", "parser only (examples/parse_only, in process)", ow, mb / ow, "n/a", "n/a"
    } else {
        printf "%-54s %10.3f %8.1f %10.3f %8.1f\n", "parser only (examples/parse_only, in process)", ow, mb / ow, oc, mb / oc
    }
}'
