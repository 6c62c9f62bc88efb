package attrnames

import (
	"fmt"
	"strings"

	"github.com/tracehop/tracehop/sdk"
)

// Mode is a choice of attribute names.
type Mode uint8

// The modes, as a driver's attribute_names key spells them.
const (
	// Envoy keeps the proxy's tags and span names as they are (Zipkin,
	// Datadog and LightStep users' dashboards know these).
	Envoy Mode = iota
	// OTel writes the stable OpenTelemetry HTTP semantic conventions and
	// names a span after its method, as OpenTelemetry instrumentations do
	// (package.Service/Method for gRPC), unless its route names it.
	OTel
	// Both keeps every Envoy tag and the span name, and adds the
	// OpenTelemetry attributes: for a migration, at the price of about
	// twice the attributes per span.
	Both
)

// String returns the mode's config spelling.
func (m Mode) String() string {
	switch m {
	case Envoy:
		return "envoy"
	case OTel:
		return "otel"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Mode(%d)", m)
}

// Parse reads a mode's config spelling; "" gives def.
func Parse(s string, def Mode) (Mode, error) {
	switch s {
	case "":
		return def, nil
	case "envoy":
		return Envoy, nil
	case "otel":
		return OTel, nil
	case "both":
		return Both, nil
	}
	return def, fmt.Errorf("must be envoy, otel or both, got %q", s)
}

// Translate appends s's tags to dst in mode's names and returns them with
// the span's name in that mode. s is not modified. The values are s's
// strings or substrings of them, so the result lives as long as s does.
// It is TranslateTag for each tag, then Naming's error.type.
func Translate(dst []sdk.Tag, s *sdk.Span, mode Mode) ([]sdk.Tag, string) {
	if mode == Envoy {
		return append(dst, s.Tags...), s.Name
	}
	for _, t := range s.Tags {
		dst = translateTag(dst, t, s.Kind, mode, actionOf(t.Key))
	}
	name, errType := Naming(s, mode)
	if errType != "" {
		dst = append(dst, sdk.Tag{Key: "error.type", Value: errType})
	}
	return dst, name
}

// TranslateTag appends to dst the tags that t, a tag of a span of kind,
// becomes in mode: what Translate does with each tag, for a driver that
// keeps what a tag encodes to (the tags it becomes depend on nothing
// else). Naming gives the rest of Translate's work.
func TranslateTag(dst []sdk.Tag, t sdk.Tag, kind sdk.Kind, mode Mode) []sdk.Tag {
	if mode == Envoy {
		return append(dst, t)
	}
	return translateTag(dst, t, kind, mode, actionOf(t.Key))
}

// Naming returns the span's name in mode and the error.type Translate
// appends after its tags ("" when it appends none): what Translate derives
// from the span as a whole.
func Naming(s *sdk.Span, mode Mode) (name, errType string) {
	if mode == Envoy {
		return s.Name, ""
	}
	var f Facts
	for _, t := range s.Tags {
		f.Note(sdk.TagKeyNumber(t.Key), t)
	}
	return f.Naming(s, mode)
}

// Facts gathers, one tag at a time, what Naming derives from a span's
// tags, for a driver that walks them once to encode them: Naming's own
// walk was about 500 instructions a proxy span in the otlp driver (make
// bench-instr). The zero value is ready; one Facts serves one span.
type Facts struct{ f facts }

// Note notes the tag t, whose key's number (sdk.TagKeyNumber) is n; 0,
// or any number that is not a key's, has the key read by name.
func (x *Facts) Note(n int, t sdk.Tag) {
	if uint(n) >= uint(len(actions)) {
		n = 0
	}
	a := actions[n]
	if a == actByName {
		a = actionByName(t.Key)
	}
	x.f.note(a, t.Value)
}

// Naming returns what Naming(s, mode) returns, from the tags noted: all of
// s's, in their order.
func (x *Facts) Naming(s *sdk.Span, mode Mode) (name, errType string) {
	if mode == Envoy {
		return s.Name, ""
	}
	if s.Error {
		errType = errorType(x.f.status, s.Kind)
	}
	return x.f.name(s, mode), errType
}

// facts are what a span's name and error.type are made of: the last
// method, status and gRPC path among its tags.
type facts struct{ method, status, rpc string }

func (f *facts) note(a action, v string) {
	switch a {
	case actMethod:
		f.method = v
	case actStatus:
		f.status = v
	case actGRPCPath:
		f.rpc = strings.TrimPrefix(v, "/")
	}
}

func (f *facts) name(s *sdk.Span, mode Mode) string {
	switch {
	case mode == Both, !DefaultName(s.Name):
		// A name the operator chose (a route's operation) stays, in
		// every naming, as Envoy's OpenTelemetry tracer keeps a route's
		// decorator.
		return s.Name
	case f.rpc != "":
		// An RPC span is named package.Service/Method.
		return f.rpc
	case f.method == "":
		return s.Name
	}
	return f.method
}

// translateTag is TranslateTag for a tag whose action is a, in the
// OpenTelemetry modes. One switch per tag, on what is to be done with it:
// it runs for every tag of every span in the driver's process. Tags
// without a semantic-convention name (component, node_id,
// guid:x-request-id, upstream_cluster, response_flags, custom tags, ...)
// keep theirs.
func translateTag(dst []sdk.Tag, t sdk.Tag, kind sdk.Kind, mode Mode, a action) []sdk.Tag {
	if mode == Both {
		dst = append(dst, t)
	}
	switch a {
	case actMethod:
		dst = append(dst, sdk.Tag{Key: "http.request.method", Value: t.Value})
	case actStatus:
		dst = append(dst, sdk.Tag{Key: "http.response.status_code", Value: t.Value})
	case actRequestSize:
		dst = append(dst, sdk.Tag{Key: "http.request.body.size", Value: t.Value})
	case actResponseSize:
		dst = append(dst, sdk.Tag{Key: "http.response.body.size", Value: t.Value})
	case actGRPCStatus:
		dst = append(dst, sdk.Tag{Key: "rpc.grpc.status_code", Value: t.Value})
	case actURL:
		dst = appendURL(dst, t.Value, kind)
	case actProtocol:
		if v, ok := strings.CutPrefix(t.Value, "HTTP/"); ok {
			dst = append(dst, sdk.Tag{Key: "network.protocol.name", Value: "http"}, sdk.Tag{Key: "network.protocol.version", Value: v})
		}
	case actUserAgent:
		if t.Value != "-" && t.Value != "" {
			dst = append(dst, sdk.Tag{Key: "user_agent.original", Value: t.Value})
		}
	case actPeer:
		if kind == sdk.KindServer {
			dst = append(dst, sdk.Tag{Key: "client.address", Value: hostOf(t.Value)})
		}
	case actGRPCPath:
		// /package.Service/Method: OpenTelemetry's RPC conventions.
		service, m, _ := strings.Cut(strings.TrimPrefix(t.Value, "/"), "/")
		dst = append(dst, sdk.Tag{Key: "rpc.system", Value: "grpc"}, sdk.Tag{Key: "rpc.service", Value: service},
			sdk.Tag{Key: "rpc.method", Value: m})
	case actStatusOnly:
		// The span's status carries both: OTLP's STATUS_CODE_ERROR
		// and its message.
	default:
		if mode == OTel {
			dst = append(dst, t)
		}
	}
	return dst
}

// actionOf is what Translate does with a tag of this key: read from an
// array for a well-known key (sdk.TagKeyNumber), by name for the others.
// The array's read is inlined where actionOf is called in a loop.
func actionOf(key string) action {
	if a := known(key); a != actByName {
		return a
	}
	return actionByName(key)
}

// known is the action of a well-known key, or actByName for another.
func known(key string) action { return actions[sdk.TagKeyNumber(key)] }

// action is what Translate does with a tag, by its key.
type action uint8

const (
	actKeep action = iota // no semantic-convention name
	actMethod
	actStatus
	actRequestSize
	actResponseSize
	actGRPCStatus
	actURL
	actProtocol
	actUserAgent
	actPeer
	actGRPCPath
	actStatusOnly // error, error.message: the span's status says them
	actByName     // a key that is not well-known: look it up by name
)

func actionByName(key string) action {
	switch key {
	case "http.method":
		return actMethod
	case "http.status_code":
		return actStatus
	case "request_size":
		return actRequestSize
	case "response_size":
		return actResponseSize
	case "grpc.status_code":
		return actGRPCStatus
	case "http.url":
		return actURL
	case "http.protocol":
		return actProtocol
	case "user_agent":
		return actUserAgent
	case "peer.address":
		return actPeer
	case "grpc.path":
		return actGRPCPath
	case "error", "error.message":
		return actStatusOnly
	}
	return actKeep
}

// actions is each well-known tag key's action, by its number
// (sdk.TagKeyNumber): a proxy span's keys are all well-known, so their
// actions are read from here, and only other keys are compared by name.
// The string switch cost about 70 instructions a tag (make bench-instr).
var actions = func() (a [sdk.TagKeyCount + 1]action) {
	a[0] = actByName
	for n := 1; n <= sdk.TagKeyCount; n++ {
		a[n] = actionByName(sdk.TagKeyName(n))
	}
	return a
}()

// DefaultName says whether a span name is one tracehop gives when the
// route names none (Envoy's: "ingress", "egress HOST", "router CLUSTER
// egress"), which the OpenTelemetry naming replaces with the method.
func DefaultName(name string) bool {
	return name == "ingress" || strings.HasPrefix(name, "egress ") ||
		strings.HasPrefix(name, "router ") && strings.HasSuffix(name, " egress")
}

// errorType is error.type for a failed HTTP span: the status code when it
// says failure (5xx; 4xx too on a client span), else _OTHER (the proxy saw
// a connection error or a gRPC failure).
func errorType(status string, kind sdk.Kind) string {
	if len(status) == 3 && (status[0] == '5' || status[0] == '4' && kind == sdk.KindClient) {
		return status
	}
	return "_OTHER"
}

// appendURL writes Envoy's http.url (scheme://host/path?query) as the
// semantic conventions want it: a server span's url.scheme, url.path and
// url.query with server.address and server.port, a client span's url.full
// with server.address and server.port. It splits the string rather than
// parse it: the proxy wrote it, and a parse would allocate.
func appendURL(dst []sdk.Tag, u string, kind sdk.Kind) []sdk.Tag {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return append(dst, sdk.Tag{Key: "url.full", Value: u})
	}
	host, target := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		host, target = rest[:i], rest[i:]
	}
	if kind == sdk.KindClient {
		dst = append(dst, sdk.Tag{Key: "url.full", Value: u})
	} else {
		path, query, hasQuery := strings.Cut(target, "?")
		dst = append(dst, sdk.Tag{Key: "url.scheme", Value: scheme}, sdk.Tag{Key: "url.path", Value: path})
		if hasQuery {
			dst = append(dst, sdk.Tag{Key: "url.query", Value: query})
		}
	}
	addr, port := splitHostPort(host)
	dst = append(dst, sdk.Tag{Key: "server.address", Value: addr})
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return append(dst, sdk.Tag{Key: "server.port", Value: port})
}

// splitHostPort splits "host:port", "[v6]:port", "host" or "[v6]" without
// allocating.
func splitHostPort(hp string) (host, port string) {
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return hp, ""
		}
		host, rest := hp[1:end], hp[end+1:]
		if p, ok := strings.CutPrefix(rest, ":"); ok {
			return host, p
		}
		return host, ""
	}
	if i := strings.LastIndexByte(hp, ':'); i >= 0 && strings.IndexByte(hp, ':') == i {
		return hp[:i], hp[i+1:]
	}
	return hp, ""
}

// hostOf drops the port of an address, if it has one.
func hostOf(addr string) string {
	h, _ := splitHostPort(addr)
	return h
}

// Rename returns copies of spans with their tags and names in mode's
// naming, for a driver's Export when its attribute_names is not envoy. The
// copies share the spans' strings; the caller's spans are not modified
// (the SDK may retry them).
func Rename(spans []sdk.Span, mode Mode) []sdk.Span {
	if mode == Envoy {
		return spans
	}
	out := make([]sdk.Span, len(spans))
	var tags []sdk.Tag
	for i := range spans {
		out[i] = spans[i]
		start := len(tags)
		tags, out[i].Name = Translate(tags, &spans[i], mode)
		out[i].Tags = tags[start:len(tags):len(tags)]
	}
	return out
}
