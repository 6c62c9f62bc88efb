#!/usr/bin/env bash
# make release-check (CI runs it): the archives make release wrote in dist/
# are reproducible and work. It builds the host platform's archive again
# and compares the bytes (packaging), rebuilds tracehop with -a (nothing
# from the build cache) and compares it with the archived binary
# (compilation), then unpacks the host platform's archive and runs
# `tracehop version -drivers` from it: every driver must be found beside
# tracehop, of the same version and protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:?}"
OUT=${OUT:-dist}
host=$(go env GOOS)-$(go env GOARCH)
archive=$OUT/tracehop-$VERSION-$host.tar.gz
[[ -f $archive ]] || { echo "release-check: $archive is missing: run make release first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "release-check: FAIL: $*" >&2; exit 1; }

echo "release-check: (cd $OUT && sha256sum -c SHA256SUMS)"
(cd "$OUT" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match the archives"

echo "release-check: building $host again"
VERSION=$VERSION OUT=$tmp/again PLATFORMS=${host/-//} release/release.sh >/dev/null
cmp "$archive" "$tmp/again/$(basename "$archive")" || fail "two builds of $(basename "$archive") differ"

echo "release-check: unpacking $(basename "$archive")"
mkdir "$tmp/unpacked"
tar -C "$tmp/unpacked" -xzf "$archive"
dir=$tmp/unpacked/tracehop-$VERSION-$host

echo "release-check: rebuilding tracehop with -a"
CGO_ENABLED=0 go build -a -trimpath -buildvcs=false -ldflags "-s -w -X github.com/tracehop/tracehop/core.Version=$VERSION" \
  -o "$tmp/tracehop" ./cmd/tracehop
cmp "$tmp/tracehop" "$dir/tracehop" || fail "tracehop rebuilt without the build cache differs from the archived one"

echo "release-check: $dir/tracehop version -drivers"
out=$(cd "$tmp" && env -i PATH=/usr/bin:/bin "$dir/tracehop" version -drivers)
echo "$out"
grep -qx "tracehop $VERSION" <<<"$out" || fail "the first line is not 'tracehop $VERSION'"
n=0
for bin in "$dir"/tracehop-driver-*; do
  name=${bin##*/tracehop-driver-}
  grep -Eq "^$name +$VERSION +1 +$bin +the tracehop executable's directory *$" <<<"$out" || fail "driver $name is not listed as version $VERSION, protocol 1, beside tracehop"
  n=$((n + 1))
done
((n >= 4)) || fail "only $n drivers in the archive"
[[ -x $dir/tracehop-inject ]] || fail "tracehop-inject is not in the archive (tracehop inject runs it from beside tracehop)"
for f in LICENSE README.md third_party_licenses sbom/tracehop.cdx.json; do
  [[ -e $dir/$f ]] || fail "$f is not in the archive"
done
echo "release-check: ok: $n drivers, reproducible, licenses and SBOMs present"
