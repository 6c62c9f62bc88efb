// Package propagation reads and writes trace context in HTTP headers: B3
// (multi-header x-b3-* and single b3), W3C traceparent/tracestate, Datadog
// (x-datadog-*, with _dd.p.tid for the upper 64 bits) and LightStep's
// ot-tracer-*. Extraction tries the configured formats in order; injection
// writes every configured format and removes stale headers of the others.
//
// Malformed or oversized headers are ignored, never an error or a panic: the
// caller starts a new trace. W3C tracestate is checked against the spec's
// grammar and limits and truncated to 512 characters as the spec says
// (cleanTraceState). Parsing ids, and a well-formed tracestate, does not
// allocate.
package propagation
