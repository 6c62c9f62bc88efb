#!/usr/bin/env bash
# Builds Jaeger v2 (all-in-one, in-memory) from the Go module proxy into a
# cache outside the repo, once, and prints the binary's path. Jaeger's module
# has a replace directive, so `go install` refuses it; building inside a copy
# of the module with its own go.mod and go.sum works. The first build takes
# about 10 minutes on 2 cores; later calls return at once.
set -euo pipefail
version=${JAEGER_VERSION:-v1.76.0}   # Jaeger v2.13.0 is the cmd/jaeger package of module v1.76.0
cache=${TRACEHOP_CACHE:-$HOME/.cache/tracehop}/jaeger-$version
bin=$cache/jaeger
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
echo "building Jaeger $version into $cache (first time only, ~10 min on 2 cores)..." >&2
dir=$(go mod download -json "github.com/jaegertracing/jaeger@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $dir ]] || { echo "go mod download gave no source directory for jaeger@$version" >&2; exit 1; }
src=$(mktemp -d "$cache/src.XXXXXX")
trap 'rm -rf "$src"' EXIT
cp -r "$dir/." "$src"
chmod -R u+w "$src"
(cd "$src" && go build -trimpath -o "$bin.tmp" ./cmd/jaeger)
mv "$bin.tmp" "$bin"
echo "built $bin" >&2
echo "$bin"
