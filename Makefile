# tracehop: `make build` builds tracehop and every driver into ./bin;
# `make test` is the test command CI runs (see README.md).

SHELL     := /bin/bash
GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/tracehop/tracehop/core.Version=$(VERSION)
# Code generators for `make proto`, pinned; installed into GOBIN_TOOLS.
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
GOBIN_TOOLS        ?= $(HOME)/.cache/tracehop/tools
# Release tools (make release-deps), pinned: third-party licenses and SBOMs.
GO_LICENSES        := github.com/google/go-licenses@v1.6.0
CYCLONEDX_GOMOD    := github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
# h2spec, the HTTP/2 conformance suite make e2e runs against an h2c listener.
H2SPEC             := github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
FUZZTIME  ?= 5s

.PHONY: js-deps js-test e2e-deps release release-deps release-check all build test vet fmt-check race conformance fuzz-short bench bench-deps bench-micro bench-instr bench-syscalls bench-upstream bench-ci proto demo sandbox sandbox-bin e2e chaos edge-load clean image images k8s-demo k8s-scale k8s-tiers

all: build

## build: tracehop and every tracehop-driver-NAME into ./bin
build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...
	@echo "built: $$(ls $(BIN) | tr '\n' ' ')(in ./bin)"

## test: formatting, vet, the JavaScript reference driver's own tests and every Go test with the race detector
test: fmt-check vet js-test race

# The JavaScript reference driver (drivers/otlpjs): its dependencies from its
# package-lock.json, with npm's cache outside the repo; reinstalled when the
# lock changes.
NPM_CACHE ?= $(HOME)/.cache/tracehop/npm
OTLPJS    := drivers/otlpjs

## js-deps: the JavaScript reference driver's dependencies (npm ci into drivers/otlpjs/node_modules)
js-deps: $(OTLPJS)/node_modules/.package-lock.json

$(OTLPJS)/node_modules/.package-lock.json: $(OTLPJS)/package.json $(OTLPJS)/package-lock.json
	cd $(OTLPJS) && npm_config_cache=$(NPM_CACHE) npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

## js-test: the JavaScript reference driver's tests (node --test: the batch layout's vectors, its config)
js-test: js-deps
	cd $(OTLPJS) && node --test test/

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# js-deps: tracehop driver check's test runs the JavaScript reference driver.
race: js-deps
	$(GO) test -race -count=1 ./...

## e2e: the sandbox into real back ends: zipkin driver -> Jaeger, otlp driver -> Jaeger (gRPC and HTTP), datadog driver -> OpenTelemetry Collector -> Jaeger; TLS with curl, openssl s_client and an nginx ssl upstream;
## h2spec against an h2c listener; the Kubernetes sandbox in podman (kube play, images built here); the Collector tiers in podman, short (Jaeger and the two Collectors built once into ~/.cache/tracehop: ~10, ~7 and ~10 min the first time)
e2e: e2e-deps js-deps
	@jaeger=$$(examples/sandbox/jaeger.sh) && otelcol=$$(examples/sandbox/otelcol.sh) && H2SPEC_BIN=$(GOBIN_TOOLS)/h2spec JAEGER_BIN=$$jaeger OTELCOL_BIN=$$otelcol $(GO) test -tags e2e -count=1 -run E2E -v ./proxy/ ./cmd/tracehop/ 2>&1 | grep -v '^\s*sandbox_test.go:[0-9]*: \[' ; exit $${PIPESTATUS[0]}
	@echo "e2e: the Kubernetes sandbox in podman (after the others: its Pods would compete with their timings)"
	JAEGER_BIN=$$(examples/sandbox/jaeger.sh) $(GO) test -tags e2e -count=1 -run E2EKubernetesSandbox -v ./examples/sandbox/kubernetes/run/
	@echo "e2e: the Collector tiers in podman, short (make k8s-tiers is the full run); the tier Collector built once into ~/.cache/tracehop"
	tier=$$(examples/sandbox/otelcol-tier.sh) && OTELCOL_TIER_BIN=$$tier $(GO) test -count=1 -run TestTiers -v ./deploy/kubernetes/ && OTELCOL_TIER_BIN=$$tier JAEGER_BIN=$$(examples/sandbox/jaeger.sh) $(GO) test -tags e2e -count=1 -run E2EKubernetesTiers -v ./examples/sandbox/kubernetes/run/

## chaos: the reliability tests at full length (collector down a minute, 10-minute soak, ...); rewrites the README's table
chaos:
	@rows=$$(mktemp) && TRACEHOP_CHAOS=long TRACEHOP_RELIABILITY_OUT=$$rows $(GO) test -count=1 -timeout 30m -run 'TestReliability|TestHTTPConformance|TestEdgeLoad' -v ./proxy/ 2>&1 \
	  | grep -E -- '^\s*--- |RELIABILITY|soak curve|^(ok|FAIL)|_test.go:[0-9]+: [^[]' ; status=$${PIPESTATUS[0]}; \
	  TRACEHOP_RELIABILITY_OUT=$$rows TRACEHOP_RENDER_README=$(CURDIR)/README.md $(GO) test -count=1 -run TestRenderReliabilityTable ./proxy/ >/dev/null; \
	  rm -f $$rows; echo "README.md's reliability table is rewritten from this run"; exit $$status

## conformance: the HTTP/1.1 conformance suite through every path (fast, net/http, handed off); rewrites its row of the README's reliability table
conformance:
	@rows=$$(mktemp) && TRACEHOP_RELIABILITY_OUT=$$rows $(GO) test -count=1 -run 'TestHTTPConformance' -v ./proxy/ 2>&1 \
	  | grep -E -- '^\s*--- FAIL|RELIABILITY|^(ok|FAIL)|_test.go:[0-9]+: [^[]' ; status=$${PIPESTATUS[0]}; \
	  TRACEHOP_RELIABILITY_OUT=$$rows TRACEHOP_RENDER_README=$(CURDIR)/README.md $(GO) test -count=1 -run TestRenderReliabilityTable ./proxy/ >/dev/null; \
	  rm -f $$rows; echo "README.md's conformance row is rewritten from this run"; exit $$status

## edge-load: the edge-load suite at the issue's sizes (idle floods, slowloris, huge heads and bodies, storms, pipelining; nginx beside tracehop where installed); rewrites its rows of the README's reliability table
edge-load:
	@rows=$$(mktemp) && TRACEHOP_CHAOS=long TRACEHOP_RELIABILITY_OUT=$$rows $(GO) test -count=1 -timeout 10m -run 'TestEdgeLoad' -v ./proxy/ 2>&1 \
	  | grep -E -- '^\s*--- |RELIABILITY|^(ok|FAIL)|_test.go:[0-9]+: [^[]' ; status=$${PIPESTATUS[0]}; \
	  TRACEHOP_RELIABILITY_OUT=$$rows TRACEHOP_RENDER_README=$(CURDIR)/README.md $(GO) test -count=1 -run TestRenderReliabilityTable ./proxy/ >/dev/null; \
	  rm -f $$rows; echo "README.md's edge-load rows are rewritten from this run"; exit $$status

## fuzz-short: every fuzz target for $(FUZZTIME) (CI runs this)
fuzz-short:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    if ! out=$$($(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); then \
	      n=$$(echo "$$out" | grep -o 'execs: [0-9]*' | tail -1 | grep -o '[0-9]*' || true); \
	      if echo "$$out" | grep -qx '    context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written' && [ "$${n:-0}" -gt 0 ]; then \
	        echo "fuzz $$t: Go's fuzzing coordinator failed on its own -fuzztime deadline, no failing input (golang/go#75804, fixed in Go 1.27); once more counted in executions, $${n}x, as many as it made:"; \
	        $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${n}x $$pkg 2>&1 | tail -40; \
	        test $${PIPESTATUS[0]} -eq 0; \
	      else \
	        echo "$$out" | tail -40; \
	        echo "fuzz $$t failed; once more (a crash it found is in testdata/fuzz now, and fails again):"; \
	        $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg 2>&1 | tail -40; \
	        test $${PIPESTATUS[0]} -eq 0; \
	      fi; \
	    fi; \
	  done; \
	done

## bench-deps: what make bench loads and compares with: wrk, nginx, HAProxy, valgrind (Debian), fortio (Go module proxy)
bench-deps:
	@command -v wrk >/dev/null && command -v nginx >/dev/null && command -v haproxy >/dev/null && command -v valgrind >/dev/null || \
	  { apt-get install -y -q wrk nginx-light haproxy valgrind >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk nginx-light haproxy valgrind >/dev/null; }; }
	@test -x $(GOBIN_TOOLS)/fortio || GOBIN=$(GOBIN_TOOLS) $(GO) install fortio.org/fortio@v1.68.2
	@echo "bench-deps: wrk, nginx, haproxy, valgrind and $(GOBIN_TOOLS)/fortio are ready"

## bench: tracehop against direct, a Go reverse proxy, nginx and HAProxy (about 6 min); ROUNDS=3; rewrites README's table
## WORKERS=2: two worker threads per proxy (GOMAXPROCS, worker_processes, nbthread), and tracehop as two processes sharing the listener (reuse_port); rewrites its own table
## BASELINE=DIR: also the tracehop configurations from an older build's binaries (make build BIN=DIR on its checkout), NAME@base
ROUNDS ?= 3
WORKERS ?= 1
bench: build bench-deps
	$(GO) build -o $(BIN)/tracehop-bench ./bench
	$(BIN)/tracehop-bench -bin $(BIN) -tools $(GOBIN_TOOLS) -rounds $(ROUNDS) -workers $(WORKERS) $(if $(BASELINE),-baseline $(BASELINE)) -out bench/results -readme README.md

## bench-instr: instructions per request of tracehop and its driver under valgrind's callgrind, untraced, otlp and file (about 3 min, BASELINE=DIR beside: twice that); repeatable on a busy machine, unlike CPU time; rewrites README's table
## ONLY=tracehop,tracehop-otlp: some configurations; N=10000 requests per round; BENCH_README= leaves README.md as it is
N ?= 10000
BENCH_README ?= README.md
bench-instr: build bench-deps
	$(GO) build -o $(BIN)/tracehop-bench ./bench
	$(BIN)/tracehop-bench -instructions -bin $(BIN) -tools $(GOBIN_TOOLS) -rounds $(ROUNDS) -n $(N) $(if $(BASELINE),-baseline $(BASELINE)) $(if $(ONLY),-only $(ONLY)) -out bench/results $(if $(BENCH_README),-readme $(BENCH_README))

## bench-syscalls: system calls and context switches per request of each proxy under saturation, counted by perf stat's tracepoints (about 2 min; needs root or kernel.perf_event_paranoid <= 1); ONLY= picks the proxies; rewrites README's table
SYSCALLS_ONLY ?= tracehop,tracehop-otlp,nginx,haproxy,nginx-reqid,haproxy-reqid
bench-syscalls: build bench-deps
	@command -v perf >/dev/null || apt-get install -y -q linux-perf >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q linux-perf >/dev/null; }
	$(GO) build -o $(BIN)/tracehop-bench ./bench
	$(BIN)/tracehop-bench -syscalls -bin $(BIN) -tools $(GOBIN_TOOLS) -only $(if $(ONLY),$(ONLY),$(SYSCALLS_ONLY)) -out bench/results -readme README.md

## bench-upstream: what each propagation format costs the application behind tracehop (its HTTP server and its tracer's extract, real libraries); rewrites README's table
bench-upstream:
	$(GO) build -o $(BIN)/tracehop-bench ./bench
	GOMAXPROCS=1 $(GO) test -run '^$$' -bench UpstreamPropagation -benchtime 300ms -count 15 ./bench | tee /dev/stderr | $(BIN)/tracehop-bench -upstream -readme README.md

## bench-micro: Go micro benchmarks of the hot path and the export path
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem ./core/... ./proxy/... ./drivers/internal/...

## bench-ci: every benchmark once, so they keep compiling and running
bench-ci:
	@log=$$(mktemp); echo "$(GO) test -run '^\$$' -bench . -benchtime 1x ./... >$$log"; \
	$(GO) test -run '^$$' -bench . -benchtime 1x ./... >$$log 2>&1 || { grep -v '^Benchmark\|^ok \|^? \|^PASS\|^goos\|^goarch\|^pkg:\|^cpu:' $$log; rm -f $$log; exit 1; }; rm -f $$log

## proto: regenerate core/wire/driverpb from driver.proto (needs protoc: apt-get install protobuf-compiler)
proto:
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler"; exit 1; }
	GOBIN=$(GOBIN_TOOLS) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(GOBIN_TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC)
	cd core/wire/driverpb && PATH=$(GOBIN_TOOLS):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative driver.proto

## e2e-deps: h2spec (Go module proxy), headless Chromium, curl, openssl and nginx-light for the TLS tests, and podman with runc (Debian) for make e2e
e2e-deps:
	@test -x $(GOBIN_TOOLS)/h2spec || { echo "installing h2spec into $(GOBIN_TOOLS)"; GOBIN=$(GOBIN_TOOLS) $(GO) install $(H2SPEC); }
	@command -v chromium >/dev/null || { echo "installing chromium (Debian) for the trace view's browser test"; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }
	@command -v curl >/dev/null && command -v openssl >/dev/null && command -v nginx >/dev/null || { echo "installing curl, openssl, nginx-light (Debian) for the TLS tests"; \
	  apt-get install -y -q curl openssl nginx-light >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q curl openssl nginx-light >/dev/null; }; }
	@deploy/podman-setup.sh

## release: tracehop and every driver for linux and darwin, amd64 and arm64: reproducible archives in dist/ with SHA256SUMS
release: release-deps
	VERSION=$(VERSION) GOBIN_TOOLS=$(GOBIN_TOOLS) release/release.sh

## release-deps: go-licenses and cyclonedx-gomod into the tools cache (Go module proxy)
release-deps:
	@test -x $(GOBIN_TOOLS)/go-licenses || GOBIN=$(GOBIN_TOOLS) $(GO) install $(GO_LICENSES)
	@test -x $(GOBIN_TOOLS)/cyclonedx-gomod || GOBIN=$(GOBIN_TOOLS) $(GO) install $(CYCLONEDX_GOMOD)

## release-check: make release, then prove it reproducible and run tracehop version -drivers from an unpacked archive (CI)
release-check: release
	VERSION=$(VERSION) GOBIN_TOOLS=$(GOBIN_TOOLS) release/check.sh

clean:
	rm -rf $(BIN) dist

COLLECTOR ?= file
PROPAGATE ?= all
# TLS=1: the front proxy on HTTPS, service1 -> service2 over mutual TLS (certificates made by the demo)
TLS ?=

## demo: start the sandbox, send a request, draw the trace, stop (COLLECTOR=jaeger for Jaeger, COLLECTOR=otlp for the otlp driver into Jaeger, PROPAGATE=false|request-id, TLS=1 for HTTPS and mutual TLS)
demo: build sandbox-bin
	$(GO) run ./examples/sandbox/run -collector $(COLLECTOR) -propagate $(PROPAGATE) $(if $(TLS),-tls)

## sandbox: the same topology, left running until Ctrl-C
sandbox: build sandbox-bin
	$(GO) run ./examples/sandbox/run -collector $(COLLECTOR) -propagate $(PROPAGATE) $(if $(TLS),-tls) -keep

sandbox-bin:
	$(GO) build -o $(BIN)/sandbox-service ./examples/sandbox/service

## image: the tracehop image (./Containerfile: static binaries FROM scratch, non-root, drivers beside tracehop), with podman or docker
image:
	@VERSION=$(VERSION) LDFLAGS='$(LDFLAGS)' deploy/image.sh tracehop

## images: the tracehop image and the Kubernetes sandbox's (its application; Jaeger, built by examples/sandbox/jaeger.sh)
images: image
	@deploy/image.sh sandbox-app >/dev/null && deploy/image.sh jaeger >/dev/null

## k8s-demo: the sandbox as Kubernetes Pods in podman (kube play), one request, its trace checked in Jaeger, kube down (PROPAGATE=false, INJECT=1: through tracehop inject, DEPLOY=1: deploy/kubernetes, KEEP=1)
k8s-demo: build images
	$(GO) run ./examples/sandbox/kubernetes/run -propagate $(PROPAGATE) $(if $(INJECT),-inject) $(if $(DEPLOY),-deploy deploy/kubernetes) $(if $(KEEP),-keep)

## k8s-scale: N Pods (default 8) of app + injected sidecar in podman, RATE req/s each for DURATION, CPU/RSS per sidecar and spans delivered (COLLECTOR_DOWN=20s stops Jaeger a while; docs/deploying.md)
N ?= 8
RATE ?= 100
DURATION ?= 30s
k8s-scale: images
	$(GO) run ./examples/sandbox/kubernetes/run -scale $(N) -rate $(RATE) -duration $(DURATION) $(if $(COLLECTOR_DOWN),-collector-down $(COLLECTOR_DOWN))

## k8s-tiers: 8 Pods (TIERS_PODS) with sidecars -> OTel Collector gateway (load_balancing by trace id) -> 2 tail-sampling replicas -> Jaeger (deploy/kubernetes/tiers) in podman; TIERS_RATE req/s to each front Pod for TIERS_DURATION, checked in Jaeger, then a phase of TIERS_KILL with one replica killed and restarted (TIERS_KILL= to skip; TIERS_HEAD=50: the sidecars head-sample at 50%, spanmetrics extrapolate)
TIERS_PODS ?= 8
TIERS_RATE ?= 50
TIERS_DURATION ?= 60s
TIERS_KILL ?= 60s
TIERS_HEAD ?=
k8s-tiers: images
	@deploy/image.sh otelcol-tier >/dev/null
	$(GO) run ./examples/sandbox/kubernetes/run -tiers $(TIERS_PODS) -rate $(TIERS_RATE) -duration $(TIERS_DURATION) $(if $(TIERS_KILL),-kill $(TIERS_KILL)) $(if $(TIERS_HEAD),-head $(TIERS_HEAD))
