#!/usr/bin/env bash
# Builds an OpenTelemetry Collector with the contrib Datadog receiver (a real
# Datadog-agent-protocol receiver: /v0.4/traces msgpack), the OTLP receiver
# (the otlp driver's e2e: plain, TLS and mTLS), the probabilistic sampler
# processor (its proportional mode reads tracehop's tracestate ot=th:...)
# and OTLP and debug exporters
# into a cache outside the repo, once, and prints the binary's path. The
# sandbox's Datadog path is: datadog driver -> this collector -> Jaeger.
# Versions match Jaeger v1.76.0's dependencies. The first build takes about
# 6.5 minutes on 2 cores; later calls return at once.
set -euo pipefail
version=0.140.1
build=3   # bumped when the manifest below changes: 2 added the OTLP receiver, 3 the probabilistic sampler
cache=${TRACEHOP_CACHE:-$HOME/.cache/tracehop}/otelcol-dd-$version-$build
bin=$cache/otelcol-dd
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
echo "building an OpenTelemetry Collector with the Datadog receiver into $cache (first time only, ~7 min)..." >&2
tools=$cache/tools
# The checksum database does not know several of these modules (404); the
# module proxy serves them, so the build goes without it.
export GOSUMDB=off
GOBIN=$tools go install go.opentelemetry.io/collector/cmd/builder@v0.140.0
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat > "$work/manifest.yaml" <<YAML
dist: {name: otelcol-dd, output_path: $work/dist, version: $version-tracehop}
receivers:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/receiver/datadogreceiver v$version
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v0.140.0
processors:
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor v0.140.0
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/processor/probabilisticsamplerprocessor v$version
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/otlpexporter v0.140.0
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter v0.140.0
YAML
"$tools/builder" --config "$work/manifest.yaml" --skip-get-modules --skip-compilation >&2
# -e: a test-only dependency of a dependency is not served (403); the
# binary does not need it.
(cd "$work/dist" && go mod tidy -e >&2 && go build -trimpath -o "$bin.tmp" .)
mv "$bin.tmp" "$bin"
echo "built $bin" >&2
echo "$bin"
