#!/usr/bin/env bash
# Parse throughput of berth's Dockerfile front end on a large generated
# Dockerfile: prints the median MB/s of `berth dockerfile parse` (parse and
# JSON printing) and of the parser alone (builder example `parse_only`).
#
# Usage: bench/parse.sh [SIZE_MB] [ROUNDS]     (defaults: at least 24 MB, 5 rounds)
set -euo pipefail

size_mb=${1:-24}
rounds=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$root"
cargo build --release --quiet -p berth -p berth-builder --example parse_only
berth="$root/target/release/berth"
parse_only="$root/target/release/examples/parse_only"

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
echo "input: $bytes bytes, $(wc -l < "$work/Dockerfile") lines"

# Wall time of each round in seconds, via date(1) to stay dependency-free.
times=()
for _ in $(seq "$rounds"); do
    start=$(date +%s%N)
    "$berth" dockerfile parse --compact "$work/Dockerfile" > /dev/null
    end=$(date +%s%N)
    times+=("$((end - start))")
done
median_ns=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
awk -v b="$bytes" -v ns="$median_ns" -v r="$rounds" 'BEGIN {
    printf "berth dockerfile parse (parse + JSON to /dev/null): median %.3f s over %d rounds = %.1f MB/s\n", ns / 1e9, r, b / 1e6 / (ns / 1e9)
}'

echo -n "parser only (examples/parse_only, in-process, $rounds rounds): "
"$parse_only" "$work/Dockerfile" "$rounds"
