package proxy

import (
	"cmp"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/core/sampling"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
	"github.com/tracehop/tracehop/proxy/internal/upstream"
)

// reqTrace is the tracing of one request: what the data plane tells
// tracing about it (either HTTP path fills it in) and what begin decides
// for finish to complete. Tracing sees nothing else of a request: no
// connection, listener or route, so that both paths call it alike and its
// arrows point one way.
type reqTrace struct {
	// Set before begin.
	ingress, trusted bool              // the listener's direction and trust
	baggageTrusted   bool              // the listener keeps its clients' baggage
	routeTracing     *routeTracing     // the route's own tracing, or nil
	operation        string            // the route's operation name, or "": the default
	cluster          *upstream.Cluster // the route's cluster; nil: no route
	requestID        string
	start            time.Time
	peer             netip.AddrPort
	peerAddr         string   // the address as text, when the connection has it already
	tls              *connTLS // the client's TLS connection, or nil
	buf              *spanBuf // the connection's, on the fast path; else pooled
	// bagBuf, when not nil, holds baggage restored from an ingress request
	// (the fast path's, reused).
	bagBuf *[]byte

	// Set as the request goes on; read by finish.
	endpoint      *upstream.Endpoint
	upstreamStart time.Time
	reqBytes      atomic.Int64
	upstreamErr   error
	errReason     string
	flags         string // Envoy-style response flags: DC, UR, DPE, SI

	// Decided by begin.
	traced  bool // tracing is on, and not off for the route
	sampled bool
	linked  bool
	// baggage is the ingress request's, restored on an egress request
	// linked to it that lost it (link_by_request_id).
	baggage      string
	registered   bool
	span         core.Span
	upstreamSpan core.Span
	out          propagation.Context
}

// clusterName names the request's cluster, "none" without a route.
func (tr *reqTrace) clusterName() string {
	if tr.cluster == nil {
		return "none"
	}
	return tr.cluster.Name()
}

// spanName names the request's span: the route's operation, else Envoy's
// default: "ingress", or "egress HOST".
func (tr *reqTrace) spanName(host string) string {
	if tr.operation != "" {
		return tr.operation
	}
	if tr.ingress {
		return "ingress"
	}
	return "egress " + host
}

// reqView is what tracing and the access log read of a request and its
// response, filled by either HTTP path: net/http's (viewOf) or the HTTP/1.1
// fast path's, whose strings alias its buffers (volatile).
type reqView struct {
	method, host, uri, proto, userAgent string
	header                              propagation.Carrier
	// volatile says the strings above and the header's alias memory that
	// is reused after the request: what outlives the request (the trace
	// context, see begin) must be copied. Spans need not: the sink copies
	// them.
	volatile bool

	status     int // 0 until the response starts
	respBytes  int64
	grpcStatus string
	// respHeader is the upstream's response header, when a custom tag
	// reads it; nil when tracehop answered itself.
	respHeader headerGetter
}

// begin decides the request id, the sampling and the spans of one request,
// and prepares the context to send upstream.
func (t *Tracer) begin(st *reqTrace, v *reqView) {
	l := st
	h := v.header
	var in propagation.Context
	var client, forced bool
	if l.trusted {
		in = t.prop.ExtractFrom(h)
		if v.volatile {
			in.Detach()
		}
		client = h.Get(headerClientTraceID) != ""
		forced = h.Get(headerForceTrace) != ""
	}
	// Only a context that may have lost something needs the ingress
	// request's: none at all, a 64-bit half of a 128-bit trace, or no W3C
	// flags and tracestate. A whole traceparent costs no table lookup.
	if !l.ingress && t.links != nil && (!in.Valid() || t.trace128 && in.TraceID.High == 0 || !in.Random) {
		switch lk, ok := t.links.get(st.requestID, st.bagBuf); {
		case !ok:
		case !in.Valid():
			// Beyond Envoy: the application forwarded only x-request-id;
			// continue the ingress request it belongs to.
			in, st.linked = lk.ctx, true
			st.baggage = lk.lostBaggage(h)
		case lk.ctx.SpanID == in.SpanID && lk.ctx.TraceID.Low == in.TraceID.Low && (in.TraceID.High == 0 || in.TraceID.High == lk.ctx.TraceID.High):
			// The application forwarded that request's context in a format
			// that lost some of it (ot-tracer's upper 64 bits, or no
			// traceparent: W3C's random flag and tracestate): take them
			// back from the ingress request.
			in.TraceID.High = lk.ctx.TraceID.High
			if in.TraceState == "" && !in.Random {
				in.Random, in.TraceState = lk.ctx.Random, lk.ctx.TraceState
			}
			st.baggage = lk.lostBaggage(h)
		}
	}
	sampler := t.sampler
	if st.routeTracing != nil && st.routeTracing.sampler != nil {
		sampler = st.routeTracing.sampler
	}
	sampled, reason := sampler.Decide(sampling.Input{RequestID: st.requestID, ClientTraceID: client, Forced: forced, Upstream: uint8(in.Sampled)})
	if in.Debug {
		sampled = true
	} else if reason == sampling.RateLimited {
		t.counts.rateLimited.Add(1)
	}
	st.sampled = sampled
	t.counts.started.Add(1)
	if sampled {
		t.counts.sampled.Add(1)
		t.inflight.Add(1)
	}

	s := &st.span
	s.SpanID = newSpanID()
	started := false
	switch {
	case in.Valid() && l.ingress && t.sharedSpans && in.ClientSpan:
		// Zipkin's shared span: the server side joins the client's span.
		// Only a client span may be joined (a SERVER span joined would
		// make two SERVER spans of one id), and only B3 says a span is one,
		// and who its parent is.
		s.TraceID, s.SpanID, s.ParentID, s.Shared = in.TraceID, in.SpanID, in.ParentID, true
		s.ParentOrigin = core.ParentRemote // the client's parent, in the caller
	case in.Valid():
		// From another process: a header (the caller's span, or on an
		// egress listener the application's), or the link standing in
		// for the one the application did not forward.
		s.TraceID, s.ParentID, s.ParentOrigin = in.TraceID, in.SpanID, core.ParentRemote
	default:
		s.TraceID = t.newTraceID()
		started = true
	}
	s.Kind = core.KindServer
	if !l.ingress {
		s.Kind = core.KindClient
	}
	s.LocalService = t.service
	s.StartUnixNano = st.start.UnixNano()
	s.Sampled, s.Debug = sampled, in.Debug
	s.Name = st.spanName(v.host)

	out := in
	out.TraceID, out.SpanID, out.ParentID = s.TraceID, s.SpanID, s.ParentID
	out.Sampled = propagation.SamplingNo
	if sampled {
		out.Sampled = propagation.SamplingYes
	}
	// What goes upstream is this hop's CLIENT span, on an egress listener
	// or with spawn_upstream_span: the next hop may share it.
	out.ClientSpan = t.sharedSpans && (!l.ingress || t.spawnUpstream)
	if started {
		// tracehop's trace ids are random in every bit (newTraceID): say so
		// (W3C level 2). A continued trace keeps its parent's word.
		out.Random = true
	}
	if t.spawnUpstream {
		u := &st.upstreamSpan
		u.TraceID, u.ParentID, u.SpanID = s.TraceID, s.SpanID, newSpanID()
		u.ParentOrigin = core.ParentLocal // this hop's own span
		u.Kind, u.LocalService, u.Sampled = core.KindClient, t.service, sampled
		u.Name = "router " + st.clusterName() + " egress"
		out.SpanID, out.ParentID = u.SpanID, s.SpanID
	}
	st.out = out
	if l.ingress && t.links != nil {
		st.registered = t.links.put(st.requestID, link{ctx: out, baggage: linkedBaggage(st, h)})
	}
}

// linkedBaggage is the baggage an ingress request leaves in the link
// table, kept with the context as tracestate is, for the egress requests
// of an application that forwards only the request id. Within W3C's limit
// only: the table stays bounded. It may alias the request's memory
// (volatile): the entry is removed before that is reused, and get copies
// it out. An untrusted client's baggage is never kept: linking would give
// it back to the application's onward calls.
func linkedBaggage(st *reqTrace, h propagation.Carrier) string {
	if !st.baggageTrusted {
		return ""
	}
	if bg := h.GetJoined(propagation.BaggageHeader); len(bg) <= propagation.MaxBaggageBytes {
		return bg
	}
	return ""
}

// inject writes the upstream trace context into the outgoing headers.
func (t *Tracer) inject(st *reqTrace, h http.Header) {
	t.prop.Inject(h, st.out)
}

// finish completes the request's spans and hands them to the sink.
func (t *Tracer) finish(st *reqTrace, v *reqView) {
	if st.registered {
		t.links.del(st.requestID, st.out.SpanID)
	}
	if !st.sampled {
		return
	}
	defer t.inflight.Add(-1) // after the sink has the spans
	end := time.Now()
	s := &st.span
	s.Duration = end.Sub(st.start)
	status := cmp.Or(v.status, http.StatusOK)
	failed := status >= 500 || st.upstreamErr != nil
	grpcStatus := v.grpcStatus
	if grpcStatus != "" && grpcStatus != "0" {
		failed = true
	}
	s.Error = failed

	// The tags and the strings made for them live in per-connection (or
	// pooled) memory: the sink copies the span before finish returns.
	b := st.buf
	if b == nil {
		b = spanBufs.Get().(*spanBuf)
		defer spanBufs.Put(b)
	}
	path := len(v.uri)
	if t.maxPath > 0 {
		path = min(path, t.maxPath)
	}
	b.reset(len("https://") + len(v.host) + path + 2*20)
	b.tags = t.appendTags(b.tags[:0], b, st, v, status, failed)
	s.Tags = b.tags
	if st.ingress {
		s.Remote = core.Endpoint{IP: st.peer.Addr(), Port: st.peer.Port()}
	} else if st.endpoint != nil {
		s.Remote = upstreamEndpoint(st)
	}
	if t.spawnUpstream {
		u := &st.upstreamSpan
		u.StartUnixNano = st.upstreamStart.UnixNano()
		if st.upstreamStart.IsZero() {
			u.StartUnixNano = s.StartUnixNano
		}
		u.Duration = time.Duration(end.UnixNano() - u.StartUnixNano)
		u.Error = failed
		u.Tags = b.tags
		if st.endpoint != nil {
			u.Remote = upstreamEndpoint(st)
		}
		t.sink.Enqueue(*u)
	}
	t.sink.Enqueue(*s)
}

// appendTags appends the tags of a finished request's spans to tags, with
// the strings made for them in b: Envoy's tags, then the custom tags of
// the tracer and of the route, then the baggage members asked for.
func (t *Tracer) appendTags(tags []core.Tag, b *spanBuf, st *reqTrace, v *reqView, status int, failed bool) []core.Tag {
	add := func(k, v string) { tags = append(tags, core.Tag{Key: k, Value: v}) }
	add("component", "proxy")
	if t.nodeID != "" {
		add("node_id", t.nodeID)
	}
	if t.zone != "" {
		add("zone", t.zone)
	}
	add("guid:x-request-id", st.requestID)
	if st.trusted {
		if id := v.header.Get(headerClientTraceID); id != "" {
			add("guid:x-client-trace-id", id)
		}
	}
	add("http.url", t.url(b, v, st))
	add("http.method", v.method)
	add("http.protocol", v.proto)
	add("user_agent", cmp.Or(v.userAgent, "-"))
	peer := st.peerAddr
	if peer == "" {
		peer = st.peer.Addr().String()
	}
	add("peer.address", peer)
	add("request_size", b.int(st.reqBytes.Load()))
	add("response_size", b.int(v.respBytes))
	if st.cluster != nil {
		add("upstream_cluster", st.cluster.Name())
	}
	if st.endpoint != nil {
		add("upstream_address", st.endpoint.Addr())
	}
	add("http.status_code", statusText(status))
	if v.grpcStatus != "" {
		add("grpc.status_code", v.grpcStatus)
	}
	if st.flags != "" {
		add("response_flags", st.flags)
	}
	if st.tls != nil && st.tls.id != nil {
		add("tls.client.identity", st.tls.id.Name)
		add("tls.client.subject", st.tls.id.Subject)
	}
	if failed {
		add("error", "true")
	}
	if st.upstreamErr != nil {
		add("error.message", st.errReason+": "+st.upstreamErr.Error())
	} else if st.cluster == nil {
		add("error.message", "no route")
	}
	tagsFrom := func(cts []customTag) {
		for _, ct := range cts {
			val := ct.value
			switch {
			case ct.header != "":
				val = cmp.Or(v.header.Get(ct.header), ct.defaultValue)
			case ct.respHeader != "":
				val = ct.defaultValue
				if v.respHeader != nil {
					val = cmp.Or(v.respHeader.Get(ct.respHeader), val)
				}
			}
			if val != "" {
				add(ct.tag, val)
			}
		}
	}
	tagsFrom(t.customTags)
	if st.routeTracing != nil {
		tagsFrom(st.routeTracing.customTags)
	}
	if len(t.baggageTags) > 0 {
		var bg string
		if st.baggageTrusted { // an untrusted client's is no tag
			bg = v.header.GetJoined(propagation.BaggageHeader)
		}
		if bg == "" {
			bg = st.baggage // restored from the ingress request: sent upstream
		}
		if bg != "" {
			first := len(tags)
			propagation.RangeBaggage(bg, func(k, val string) {
				if !slices.Contains(t.baggageTags, k) {
					return
				}
				for _, tg := range tags[first:] {
					if tg.Key == k {
						return // the first member of a key counts
					}
				}
				add(k, val)
			})
		}
	}
	return tags
}

func upstreamEndpoint(st *reqTrace) core.Endpoint {
	e := core.Endpoint{Service: st.cluster.Name()}
	if ip := st.endpoint.AddrPort(); ip.IsValid() {
		e.IP, e.Port = ip.Addr(), ip.Port()
	}
	return e
}

// url builds the http.url tag like Envoy: proto://host/path, the path cut to
// max_path_tag_length.
func (t *Tracer) url(b *spanBuf, v *reqView, st *reqTrace) string {
	scheme := "http://"
	if st.tls != nil {
		scheme = "https://"
	} else if st.trusted {
		if p := v.header.Get("X-Forwarded-Proto"); p == "https" {
			scheme = "https://"
		}
	}
	path := v.uri
	if t.maxPath > 0 && len(path) > t.maxPath {
		path = path[:t.maxPath]
	}
	return b.concat(scheme, v.host, path)
}

// spanBuf is the memory finish builds a span's tags in, reused request
// after request: a fast-path connection has its own, the net/http path
// takes one from spanBufs.
type spanBuf struct {
	tags []core.Tag
	// text holds the strings made for tags. Its capacity is reserved by
	// reset before any string is made, and a string that does not fit is
	// allocated instead, so appending never moves what a tag points at.
	text []byte
}

var spanBufs = sync.Pool{New: func() any { return new(spanBuf) }}

// Most strings a span's tags need fit in this many bytes; a request with
// a longer URL gets it allocated rather than grow every connection's buffer.
const maxSpanText = 4 << 10

// reset empties the buffer and makes sure it can hold need bytes of text.
func (sb *spanBuf) reset(need int) {
	if cap(sb.text) < need && need <= maxSpanText {
		sb.text = make([]byte, 0, max(need, 512))
	}
	sb.text = sb.text[:0]
}

// concat returns a+b+c, in the buffer when they fit.
func (sb *spanBuf) concat(a, b, c string) string {
	n := len(a) + len(b) + len(c)
	if cap(sb.text)-len(sb.text) < n {
		return a + b + c
	}
	start := len(sb.text)
	sb.text = append(append(append(sb.text, a...), b...), c...)
	return unsafe.String(&sb.text[start], n)
}

// int returns v in decimal, in the buffer when it fits.
func (sb *spanBuf) int(v int64) string {
	if cap(sb.text)-len(sb.text) < 20 {
		return strconv.FormatInt(v, 10)
	}
	start := len(sb.text)
	sb.text = strconv.AppendInt(sb.text, v, 10)
	return unsafe.String(&sb.text[start], len(sb.text)-start)
}

// statusCodes holds the decimal text of every status code, so that tagging
// one does not allocate.
var statusCodes = func() (t [600]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return
}()

func statusText(code int) string {
	if code >= 0 && code < len(statusCodes) {
		return statusCodes[code]
	}
	return strconv.Itoa(code)
}

// connTLS is what a TLS client connection tells about itself, worked out
// once per connection.
type connTLS struct {
	id *tlsconf.Identity // nil without a verified client certificate
}

// str views b as a string without a copy; it is valid while b is.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
