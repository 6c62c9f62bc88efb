// Package attrnames turns the span tags tracehop's proxy writes, which are
// Envoy's (http.method, http.url, http.status_code, peer.address,
// upstream_cluster, ...), into the names OpenTelemetry back ends expect: the
// stable HTTP semantic conventions (http.request.method, url.*,
// http.response.status_code, server.address, client.address,
// network.protocol.version, user_agent.original, error.type) and span names
// in their style ("GET"). A driver offers the choice as its
// attribute_names config key (envoy, otel or both) and calls Translate while
// it encodes a span; the OTLP driver does so with otel by default.
//
// It is for drivers, at export time, so that the proxy's hot path pays
// nothing and two drivers of one tracehop can each get the names their back
// end wants. It does not invent what the proxy did not record: there is no
// http.route, since tracehop's routes are prefixes, not templates.
package attrnames
