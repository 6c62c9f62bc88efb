#!/usr/bin/env bash
# make release: tracehop and every shipped driver for each platform, built
# static (CGO_ENABLED=0) with -trimpath and the version stamped; one archive
# per platform holding the binaries, README.md, LICENSE, the third-party
# license texts and a CycloneDX SBOM per binary; SHA256SUMS over the
# archives. The same commit gives the same bytes: every timestamp is the
# commit's (SOURCE_DATE_EPOCH), tar orders and owns entries alike, gzip
# stores no name or time. release/check.sh proves it.
#
# Environment: VERSION (required), OUT (default dist), GOBIN_TOOLS (where
# make release-deps put go-licenses and cyclonedx-gomod), PLATFORMS.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${VERSION:?VERSION is required (make release sets it from git describe)}"
OUT=${OUT:-dist}
TOOLS=${GOBIN_TOOLS:-$HOME/.cache/tracehop/tools}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export CGO_ENABLED=0

for tool in go-licenses cyclonedx-gomod; do
  [[ -x $TOOLS/$tool ]] || { echo "release: $TOOLS/$tool is missing: run make release-deps" >&2; exit 1; }
done
# tracehop, tracehop-inject (tracehop inject runs it from beside tracehop)
# and every driver.
mains=$(go list ./cmd/... | grep -E '/cmd/tracehop(-driver-[a-z0-9_-]+|-inject)?$')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT"

# Third-party license texts (and, for MPL-2.0 modules, their source, as that
# license asks of a binary distribution). The same for every platform.
echo "release: collecting third-party licenses"
"$TOOLS/go-licenses" save ./cmd/... --save_path "$work/licenses" --force 2>"$work/go-licenses.log" || {
  cat "$work/go-licenses.log" >&2; exit 1; }

for platform in $PLATFORMS; do
  os=${platform%/*} arch=${platform#*/}
  name=tracehop-$VERSION-$os-$arch
  dir=$work/$name
  mkdir -p "$dir/sbom"
  echo "release: building $name"
  # One go build for every binary: the packages they share compile once.
  GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X github.com/tracehop/tracehop/core.Version=$VERSION" -o "$dir/" $mains
  # The SBOMs list modules and versions; license texts are in
  # third_party_licenses (-licenses would triple the time for the same).
  for main in $mains; do
    GOOS=$os GOARCH=$arch "$TOOLS/cyclonedx-gomod" app -json -noserial -notimestamp \
      -main "${main#github.com/tracehop/tracehop/}" -output "$dir/sbom/$(basename "$main").cdx.json" . 2>/dev/null
  done
  cp README.md LICENSE "$dir/"
  cp -r "$work/licenses" "$dir/third_party_licenses"
  find "$dir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    --mode='u+rwX,go+rX,go-w' --format=gnu -C "$work" -cf - "$name" | gzip -n -9 >"$OUT/$name.tar.gz"
done
(cd "$OUT" && sha256sum -- *.tar.gz >SHA256SUMS)
echo "release: $(ls "$OUT" | wc -l) files in $OUT/:"
cat "$OUT/SHA256SUMS"
echo "release: verify a download with 'sha256sum -c --ignore-missing SHA256SUMS'"
