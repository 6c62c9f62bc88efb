// Package datadog is the Datadog driver, built on dd-trace-go v2. It
// re-emits each finished span with its own ids and times
// (tracer.FromGenericCtx + ChildOf + WithSpanID + StartTime/FinishTime), the
// upper half of a 128-bit trace id as _dd.p.tid, user-keep priority (the
// agent keeps every span tracehop sampled), and Datadog's naming: service,
// operation "http.request" for HTTP spans, resource "METHOD route",
// span.type web, span.kind. An error is the bool Datadog expects.
//
// Lossless: dd-trace-go silently drops spans beyond its internal queue and
// its Flush is asynchronous. The driver counts the library's own
// queue-full drops through an in-process statsd client (synchronously,
// inside Finish) and re-emits those spans with identical ids, and counts
// the chunks the agent acknowledged (X-Datadog-Trace-Count on 2xx answers)
// so that Export returns only when the agent has the whole batch.
//
// No background traffic the user did not ask for: instrumentation
// telemetry, remote configuration, runtime metrics, data streams, AppSec and
// client-side stats are off, and the agent protocol is pinned to v0.4, in
// the process environment from its start (see ProcessEnv); internal metrics
// go to the in-process counter, never to UDP.
//
// Config:
//
//	agent_addr: localhost:8126   # default: $DD_AGENT_HOST:$DD_TRACE_AGENT_PORT (pass them with pass_env), else localhost:8126
//	service: ""                  # for spans without a service of their own
//	env: prod
//	version: 1.2.3
//	tags: {team: edge}           # global tags on every span
//	timeout: 10s                 # how long Export waits for the agent to acknowledge a batch
//	attribute_names: envoy       # or otel (OpenTelemetry's HTTP semantic conventions) or both
package datadog
