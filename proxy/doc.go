// Package proxy is tracehop's HTTP data plane: listeners, routes, clusters,
// and the tracing of every request that passes through (span creation,
// sampling, propagation), handing finished spans to core's pipeline. It
// never imports a driver: drivers run out of process behind core/driverhost.
//
// # Snapshots: how a configuration is put in force and retired
//
// Everything built from a config (the listeners with their routes and
// settings, the clusters, the tracer, the span pipeline) is one immutable
// snapshot. A socket (one bound address) points at the listener of the
// snapshot in force; a request loads that pointer once, when its head has
// arrived, and runs on what it found to its end: nothing on the request
// path takes a lock for the configuration.
//
// A reload (App.Reload, under SIGHUP, the file watch or POST /reload)
// builds the next snapshot before anything switches: it parses and
// validates the file, starts and configures every driver that is new or
// whose config changed, and binds the addresses of new listeners. Anything
// that fails leaves the running snapshot untouched. Then Server.Apply points
// every socket at the new listeners at once. What did not change is
// shared, not rebuilt: a cluster with the same config (and its pooled
// connections), the request-id link table and the tracer's counters, and,
// through pipeline.Successor, the exporter (queue and process) of every
// driver that carries over.
//
// The replaced snapshot is retired in the background once it is idle: the
// connections its net/http servers took finish their request and close,
// its sampled requests in flight (Tracer.inflight) finish, and then its
// pipeline shuts down what no successor shares: a removed driver gets
// every span of the requests that began before the switch, then stops.
// Clusters that are gone close their idle connections. The wait is
// bounded by the drain timeout. A control plane (xDS-like) would feed
// Apply the same way.
//
// The package is large; the concepts that stand on their own are split out:
// proxy/config (the strict YAML), proxy/internal/h1 (HTTP/1.1 parsing and
// framing for the fast path), proxy/internal/tlsconf (TLS material and its
// rotation), proxy/internal/upstream (how a cluster's endpoints are
// reached: the net/http transports, the fast path's pools of kept-alive
// connections, TLS to upstreams) and proxy/internal/deadline (read
// deadlines moved only when they must, for both sides of the fast path).
package proxy
