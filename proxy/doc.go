// Package proxy is tracehop's HTTP data plane: listeners, routes, clusters,
// and the tracing of every request that passes through (span creation,
// sampling, propagation), handing finished spans to core's pipeline. It
// never imports a driver: drivers run out of process behind core/plugin.
package proxy
