// Package lightstep is the LightStep driver, built on
// github.com/lightstep/lightstep-tracer-go. It re-emits each finished span
// with its own ids and times (SetTraceID, SetSpanID, SetParentSpanID,
// StartTime, FinishTime; never ChildOf, which would override the ids),
// through one tracer per service name (LightStep's service is a reporter
// attribute), and flushes synchronously after every chunk, reading the
// library's status events to return an exact error.
//
// Config:
//
//	access_token: ...              # or access_token_file: /path; redacted everywhere
//	collector: {host: ingest.lightstep.com, port: 443, plaintext: false}
//	transport: grpc                # or http (POST /api/v2/reports)
//	component_name: ""             # one service name for every span; default: each span's own
//	timeout: 10s                   # per flush
//	attribute_names: envoy         # or otel (OpenTelemetry's HTTP semantic conventions) or both
//
// LightStep keeps 64-bit trace ids: the upper half of a 128-bit id is lost
// on the wire and kept as the tag trace_id_high. Durations keep
// microseconds.
package lightstep
