#!/usr/bin/env bash
# Builds a container image from binaries built on this machine (no registry
# is needed: every image here starts FROM scratch).
#
#   deploy/image.sh tracehop      tracehop and every driver (the Containerfile at the root)
#   deploy/image.sh sandbox-app   the sandbox's application (examples/sandbox/service)
#   deploy/image.sh jaeger        Jaeger v2, the binary examples/sandbox/jaeger.sh builds
#   deploy/image.sh otelcol-tier  the Collector of deploy/kubernetes/tiers, the binary examples/sandbox/otelcol-tier.sh builds
#
# Uses podman, or docker where podman is absent ($CONTAINER_TOOL overrides).
# Prints the image's name on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: deploy/image.sh tracehop|sandbox-app|jaeger|otelcol-tier}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
tool=${CONTAINER_TOOL:-$(command -v podman || command -v docker || true)}
[[ -n $tool ]] || { echo "deploy/image.sh: neither podman nor docker is installed: apt-get install -y podman runc (see docs/deploying.md)" >&2; exit 1; }
ctx=$(mktemp -d "${TMPDIR:-/tmp}/tracehop-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
# rootfs/ is copied as the image's /, modes kept: a COPY of a directory's
# contents would create /tmp as 0755, and go-plugin, as user 65532, could not
# make its socket there.
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/etc/ssl/certs"
chmod 1777 "$root/tmp"

# gobuild PKG... builds static linux binaries into the context's bin/.
gobuild() {
  # $LDFLAGS is the Makefile's (the version stamp); -s -w: no symbol tables (a third of the size).
  CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "${LDFLAGS:-"-X github.com/tracehop/tracehop/core.Version=$version"} -s -w" -o "$root/usr/local/bin/" "$@"
}

# libs FILE copies the shared libraries a dynamically linked FILE needs (and
# its loader) into the image, keeping their paths.
libs() {
  ldd "$1" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"
  done
}

case $what in
tracehop)
  name=localhost/tracehop
  echo "image: building tracehop and its drivers (static, version $version)..." >&2
  # Every command but tracehop-inject, which works on manifests, not in Pods.
  gobuild $(go list ./cmd/... | grep -v '/tracehop-inject$')
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || echo "image: no /etc/ssl/certs/ca-certificates.crt here: drivers cannot verify TLS collectors (apt-get install ca-certificates)" >&2
  file=Containerfile
  ;;
sandbox-app)
  name=localhost/tracehop-sandbox-app
  echo "image: building the sandbox application (static)..." >&2
  gobuild ./examples/sandbox/service && mv "$root/usr/local/bin/service" "$root/usr/local/bin/sandbox-service"
  file=examples/sandbox/kubernetes/Containerfile.binary
  ;;
jaeger)
  name=localhost/tracehop-jaeger
  bin=${JAEGER_BIN:-$(examples/sandbox/jaeger.sh)}
  cp "$bin" "$root/usr/local/bin/jaeger"
  libs "$bin"   # jaeger.sh builds with cgo's resolver: libc and its loader come along
  file=examples/sandbox/kubernetes/Containerfile.binary
  ;;
otelcol-tier)
  name=localhost/tracehop-otelcol-tier
  bin=${OTELCOL_TIER_BIN:-$(examples/sandbox/otelcol-tier.sh)}
  cp "$bin" "$root/usr/local/bin/otelcol-tier"   # static: nothing else comes along
  file=examples/sandbox/kubernetes/Containerfile.binary
  ;;
*)
  echo "deploy/image.sh: unknown image $what: tracehop, sandbox-app, jaeger or otelcol-tier" >&2
  exit 2
  ;;
esac
# The sandbox's images are tagged latest only: they are rebuilt for every
# demo, and a tag per commit would pile up.
tags=(-t "$name:latest")
[[ $what == tracehop ]] && tags+=(-t "$name:$version")
echo "image: $tool build $name:latest$([[ $what == tracehop ]] && echo " and :$version")..." >&2
"$tool" build -q -f "$file" "${tags[@]}" "$ctx" >&2
if [[ $what == tracehop ]]; then echo "$name:$version"; else echo "$name:latest"; fi
