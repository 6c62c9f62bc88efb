#!/usr/bin/env bash
# Builds the OpenTelemetry Collector for the tiered topology
# (deploy/kubernetes/tiers): one binary serves both tiers.
#   gateway tier:       otlp receiver -> memory_limiter -> load_balancing
#                       exporter (routing by trace id; static or DNS resolver)
#   tail-sampling tier: otlp receiver -> memory_limiter -> tail_sampling ->
#                       batch -> otlp exporter (Jaeger), and a spanmetrics
#                       connector -> prometheus exporter (RED metrics)
# plus probabilistic_sampler (head sampling at a tier; reads tracehop's
# tracestate ot=th:...), resource (each tail-sampling replica stamps its
# name on what it keeps), debug, and the health_check extension (probes).
# It is built into a cache outside the repo, once, and the script prints the
# binary's path. Every module is pinned to ONE Collector release: contrib
# v0.161.0 and the core modules of the same release (v0.161.0; the stable
# core modules it pulls are v1.67.0). v0.161.0 is the release whose
# tail_sampling processor is known to build here; the Datadog collector
# (otelcol.sh) stays on v0.140.1 for Jaeger v1.76.0's dependencies, so this is
# a build of its own, in a cache directory of its own. The first build takes
# about 10 minutes on 2 cores; later calls return at once.
set -euo pipefail
version=0.161.0
build=1   # bumped when the manifest below changes
cache=${TRACEHOP_CACHE:-$HOME/.cache/tracehop}/otelcol-tier-$version-$build
bin=$cache/otelcol-tier
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
echo "building the tier OpenTelemetry Collector (v$version) into $cache (first time only, ~10 min)..." >&2
tools=$cache/tools
# The checksum database does not know several of these modules (404); the
# module proxy serves them, so the build goes without it.
export GOSUMDB=off
GOBIN=$tools go install go.opentelemetry.io/collector/cmd/builder@v$version
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
core=go.opentelemetry.io/collector
contrib=github.com/open-telemetry/opentelemetry-collector-contrib
cat > "$work/manifest.yaml" <<YAML
dist: {name: otelcol-tier, output_path: $work/dist, version: $version-tracehop}
receivers:
  - gomod: $core/receiver/otlpreceiver v$version
processors:
  - gomod: $core/processor/batchprocessor v$version
  - gomod: $core/processor/memorylimiterprocessor v$version
  - gomod: $contrib/processor/tailsamplingprocessor v$version
  - gomod: $contrib/processor/probabilisticsamplerprocessor v$version
  - gomod: $contrib/processor/resourceprocessor v$version
exporters:
  - gomod: $core/exporter/otlpexporter v$version
  - gomod: $core/exporter/debugexporter v$version
  - gomod: $contrib/exporter/loadbalancingexporter v$version
  - gomod: $contrib/exporter/prometheusexporter v$version
connectors:
  - gomod: $contrib/connector/spanmetricsconnector v$version
extensions:
  - gomod: $contrib/extension/healthcheckextension v$version
# The module proxy here does not serve servicediscovery v1.48.0 (403), which
# load_balancing's AWS Cloud Map resolver imports; v1.40.2 is served and has
# the calls that resolver makes. tracehop's tiers use the dns and static
# resolvers only.
replaces:
  - github.com/aws/aws-sdk-go-v2/service/servicediscovery => github.com/aws/aws-sdk-go-v2/service/servicediscovery v1.40.2
YAML
# This builder writes go.mod (every module at the version above) only when
# it gets the modules itself; its own `go mod tidy` may stop on a test-only
# dependency of a dependency that the proxy does not serve (403), so a
# failure after go.mod exists is retried below with tidy -e, which skips
# those: the binary does not need them.
if ! "$tools/builder" --config "$work/manifest.yaml" --skip-compilation >&2; then
  [[ -f $work/dist/go.mod ]] || { echo "otelcol-tier.sh: the builder failed before writing go.mod" >&2; exit 1; }
  echo "otelcol-tier.sh: the builder's go mod tidy failed; retrying with go mod tidy -e" >&2
fi
# Static (CGO_ENABLED=0): the image is FROM scratch.
(cd "$work/dist" && go mod tidy -e >&2 && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" .)
mv "$bin.tmp" "$bin"
echo "built $bin" >&2
echo "$bin"
