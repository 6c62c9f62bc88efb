// Package otlp is the OTLP driver: it exports spans to any OpenTelemetry
// Protocol receiver (Jaeger v2, Grafana Tempo, Honeycomb, the Datadog
// Agent's OTLP intake, ServiceNow Cloud Observability, the OpenTelemetry
// Collector) over gRPC or HTTP/protobuf.
//
// The wire format is the OTLP project's (go.opentelemetry.io/proto/otlp):
// the request is written straight from the spans (encode.go), held by
// TestEncoderMatchesMapper to decode, through those generated types, to
// exactly what building them would give, at no allocation per span (the
// generated types cost about 56 per proxy span and 3 times the CPU,
// BenchmarkEncode). gRPC calls the TraceService's Export with those bytes
// and decodes the generated response type; HTTP is a POST of the same
// bytes. It does not use the OpenTelemetry Go exporters'
// clients (otlptracegrpc, otlptracehttp), although their UploadTraces takes
// ResourceSpans: they report a partial success, and an HTTP Retry-After
// delay, only inside error types of an internal package, so a caller can
// neither count the rejected spans nor honour the delay short of parsing
// error text; and retry, which they would otherwise own, is tracehop's
// pipeline's. What else they offer (the OTEL_EXPORTER_OTLP_* variables, TLS
// files, gzip) is a few lines here.
//
// Errors are classified as the OTLP spec's exporter section says. gRPC:
// CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and
// DATA_LOSS are retried, RESOURCE_EXHAUSTED only with a RetryInfo; every
// other code is final. HTTP: 429, 502, 503 and 504 are retried, every other
// status (400 and 500 too) is final; connection errors are retried. The
// server's RetryInfo or Retry-After becomes sdk.RetryAfter, so tracehop's
// retry waits as long as asked, and a partial success becomes
// sdk.PartiallyRejected: the refused spans are counted as dropped
// ("rejected") and the server's message logged.
//
// Over gRPC, a batch that encodes larger than 4 MiB (what gRPC servers,
// the Collector's OTLP receiver among them, take by default) is sent in
// halves, each split again while too large; a half that fails fails the
// batch, which the host sends again whole (at least once).
//
// Config (every key optional; a key left out is read from the standard
// OTEL_EXPORTER_OTLP_* variable when the driver's pass_env lets it through,
// else takes its default):
//
//	protocol: grpc                # or http/protobuf
//	endpoint: localhost:4317      # grpc: host:port or http(s)://host:port;
//	                              # http/protobuf: http://localhost:4318/v1/traces
//	headers: {x-honeycomb-team: "..."}   # every request; never logged
//	compression: none             # or gzip
//	timeout: 10s                  # one export request
//	tls:
//	  insecure: false             # true: plaintext gRPC to a host:port endpoint
//	  ca_file: ""                 # PEM roots for the receiver's certificate (default: the system's)
//	  cert_file: ""               # client certificate and key, for mTLS
//	  key_file: ""
//	  server_name: ""             # name to check the certificate against (default: the host)
//	resource: {deployment.environment.name: prod}   # literal resource attributes
//	attribute_names: otel         # or envoy, or both (sdk/attrnames)
//
// Resources: one ResourceSpans per local service, with service.name (the
// span's service, node.service) and service.instance.id (node.id) unless
// resource names them, OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME below
// the resource block. One scope names tracehop and its version. Spans keep
// nanoseconds, 128-bit trace ids, the W3C sampled flag and whether the
// parent is remote, as the host says (Span.ParentOrigin: an egress CLIENT
// span's parent came from the application, 0x301); an error span has STATUS_CODE_ERROR with the proxy's
// error message; the remote endpoint is peer.service and
// network.peer.address/port. Strings that are not valid UTF-8 (header
// values need not be) get U+FFFD for the bad bytes instead of failing the
// batch, which protobuf would.
//
// Propagation: tracecontext (W3C), which every OpenTelemetry SDK reads.
package otlp
