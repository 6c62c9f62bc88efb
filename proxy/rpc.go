package proxy

// gRPC calls as spans: how a call is recognized, which status codes are
// the server's faults, and Envoy's grpc.* tags.

import (
	"strings"

	"github.com/tracehop/tracehop/core"
)

// isGRPC says whether a request's Content-Type is gRPC's (application/grpc,
// +proto, +json, grpc-web, ...).
func isGRPC(contentType string) bool {
	return strings.HasPrefix(contentType, "application/grpc")
}

// grpcServerFault says whether a gRPC status code (as grpc-status writes
// it) is the server's failure: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
// INTERNAL, UNAVAILABLE, DATA_LOSS.
func grpcServerFault(code string) bool {
	switch code {
	case "2", "4", "12", "13", "14", "15":
		return true
	}
	return false
}

// appendGRPCTags appends Envoy's tags of a gRPC call: grpc.path,
// grpc.authority, grpc.content_type, grpc.timeout, grpc.status_code and
// grpc.message (percent-decoded). A driver's attribute_names: otel makes
// them rpc.system, rpc.service, rpc.method and rpc.grpc.status_code.
func appendGRPCTags(tags []core.Tag, sb *spanBuf, c grpcCall) []core.Tag {
	path, _, _ := strings.Cut(c.uri, "?")
	tags = append(tags, core.Tag{Key: keyGRPCPath, Value: path}, core.Tag{Key: keyGRPCAuthority, Value: c.host},
		core.Tag{Key: keyGRPCContentType, Value: c.contentType})
	if c.timeout != "" {
		tags = append(tags, core.Tag{Key: keyGRPCTimeout, Value: c.timeout})
	}
	if c.status != "" {
		tags = append(tags, core.Tag{Key: keyGRPCStatusCode, Value: c.status})
	}
	if c.message != "" {
		tags = append(tags, core.Tag{Key: keyGRPCMessage, Value: grpcMessage(sb, c.message)})
	}
	return tags
}

// grpcCall is what the tags of a gRPC call are made of: the request's
// target, authority, content type and grpc-timeout, the answer's
// grpc-status and grpc-message.
type grpcCall struct {
	uri, host, contentType, timeout, status, message string
}

// grpcMessage decodes grpc-message's percent-encoding (gRPC's HTTP/2
// protocol: the message is UTF-8, percent-encoded); a message with a malformed
// escape is kept as it came.
func grpcMessage(sb *spanBuf, m string) string {
	if strings.IndexByte(m, '%') < 0 {
		return m
	}
	// As baggage values are decoded (RangeBaggage). gRPC's spec lets a
	// receiver that cannot decode keep the message as sent.
	if d, ok := sb.unescape(m); ok {
		return d
	}
	return m
}
