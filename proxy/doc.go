// Package proxy is tracehop's HTTP data plane: listeners, routes, clusters,
// and the tracing of every request that passes through (span creation,
// sampling, propagation), handing finished spans to core's pipeline. It
// never imports a driver: drivers run out of process behind core/driverhost.
//
// # Snapshots: how a configuration is put in force and retired
//
// Everything built from a config (the listeners with their routes and
// settings, the clusters, the tracer, the span pipeline) is one immutable
// snapshot. A listener (one bound address) points at the frontend of the
// snapshot in force; a request loads that pointer once, when its head has
// arrived, and runs on what it found to its end: nothing on the request
// path takes a lock for the configuration.
//
// A reload (App.Reload, under SIGHUP, the file watch or POST /reload)
// builds the next snapshot before anything switches: it parses and
// validates the file, starts and configures every driver that is new or
// whose config changed, and binds the addresses of new listeners. Anything
// that fails leaves the running snapshot untouched. Then Server.Apply points
// every listener at the new frontends at once. What did not change is
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
// # Rooms: one file per role, and arrows one way
//
// A request flows down through the files: each file uses only those listed
// before it here, never one after it, so that one request can be followed
// from the top without going back and forth
// (TestFilesUseOnlyFilesBelowThem fails on two files that use each other).
//
//   - Tracing of a request. spanbuf.go: the memory a span's strings are
//     built in; spanname.go: span name templates; sampling.go: the
//     sampling rules in force, a sampler per route built from the file,
//     PUT /sampling or the remote strategy and swapped whole, and the
//     decision counters per rule; tracer.go: the Tracer built from the
//     tracing config (propagation, sampling, custom tags) and the runtime
//     control of its sampling (SetSampling, SetRemote); links.go: the
//     request-id link table; rpc.go: gRPC calls as spans (Envoy's grpc.*
//     tags, the server's faults); tracing.go: begin and finish, which see a
//     request only as a reqTrace (what the data plane tells tracing and
//     what tracing decides) and a reqView: no connection, listener or
//     route types, so both HTTP paths call them alike.
//   - metrics.go: the per-route series, the client connection counts and
//     the tracer's and pipeline's counters. limits.go: the process's
//     limits (client connections, derived from RLIMIT_NOFILE; resident
//     memory and the container's limit, for the overload signal) and a
//     client connection's life (its age, requests, place in the counts),
//     read on both paths. routes.go: a route, its matching and the upstream failures
//     it maps to a status. frontend.go: a configured listener as a
//     snapshot built it (routes, tracer, settings, its net/http server).
//     request.go: reqState (one request in flight, embedding its reqTrace),
//     request ids, headers never forwarded, and done, which records a
//     finished request (spans, metrics, access log) for both paths.
//   - The HTTP/1.1 fast path, bottom up: h1carrier.go (what tracing reads
//     from parsed heads), h1conn.go (the client connection: its reader, a
//     pooled buffer taken when bytes arrive, the wait without one),
//     h1head.go (a request head: reading it, handing the connection to
//     net/http, tracehop's own answers), h1upload.go (a streamed request
//     body), h1relay.go (the response: 1xx, head, body),
//     h1send.go (the request upstream), h1request.go (one request: route,
//     trace, send, relay, record).
//   - tls.go: a listener's TLS handshake and certificate reports;
//     listener.go: a bound address, its accept loop, the connections it
//     took and what it does at a connection limit (it holds the
//     net.Listener; a reload points it at the frontend in force);
//     reuseport_*.go: SO_REUSEPORT for listeners that share an address.
//   - The net/http path (HTTP/1.0, HTTP/2, upgrades, what the fast path
//     hands off): nethttp_body.go (the request body and the route timer),
//     nethttp_exchange.go (the round trip and the response writer),
//     nethttp.go (the handler).
//   - snapshot.go: a snapshot and how it is built; server.go: the Server
//     (start, shutdown, what the admin server reads); reload.go: Apply and
//     the retirement of a replaced snapshot.
//
// The concepts that stand on their own are packages of their own:
// proxy/config (the strict YAML), proxy/internal/h1 (HTTP/1.1 parsing and
// framing for the fast path), proxy/internal/tlsconf (TLS material and its
// rotation), proxy/internal/upstream (how a cluster's endpoints are
// reached: the net/http transports, the fast path's pools of kept-alive
// connections, TLS to upstreams), proxy/internal/deadline (read
// deadlines moved only when they must, for both sides of the fast path)
// and proxy/internal/sock (the fast path's reads and writes of its
// non-blocking sockets, made without the scheduler).
package proxy
