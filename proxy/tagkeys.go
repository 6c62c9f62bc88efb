package proxy

import "github.com/tracehop/tracehop/core/wire"

// The keys of the tags the proxy gives its spans, as core/wire's table
// holds them: the batch encoder writes each as its number
// (wire.TagKeyNumber), not its bytes, for a driver that reads numbers.
var (
	keyComponent         = wire.TagKey("component")
	keyNodeID            = wire.TagKey("node_id")
	keyZone              = wire.TagKey("zone")
	keyRequestID         = wire.TagKey("guid:x-request-id")
	keyClientTraceID     = wire.TagKey("guid:x-client-trace-id")
	keyHTTPURL           = wire.TagKey("http.url")
	keyHTTPMethod        = wire.TagKey("http.method")
	keyHTTPProtocol      = wire.TagKey("http.protocol")
	keyUserAgent         = wire.TagKey("user_agent")
	keyPeerAddress       = wire.TagKey("peer.address")
	keyRequestSize       = wire.TagKey("request_size")
	keyResponseSize      = wire.TagKey("response_size")
	keyUpstreamCluster   = wire.TagKey("upstream_cluster")
	keyUpstreamAddress   = wire.TagKey("upstream_address")
	keyHTTPStatusCode    = wire.TagKey("http.status_code")
	keyGRPCStatusCode    = wire.TagKey("grpc.status_code")
	keyResponseFlags     = wire.TagKey("response_flags")
	keyTLSClientIdentity = wire.TagKey("tls.client.identity")
	keyTLSClientSubject  = wire.TagKey("tls.client.subject")
	keyError             = wire.TagKey("error")
	keyErrorMessage      = wire.TagKey("error.message")
	keyGRPCPath          = wire.TagKey("grpc.path")
	keyGRPCAuthority     = wire.TagKey("grpc.authority")
	keyGRPCContentType   = wire.TagKey("grpc.content_type")
	keyGRPCTimeout       = wire.TagKey("grpc.timeout")
	keyGRPCMessage       = wire.TagKey("grpc.message")
)
