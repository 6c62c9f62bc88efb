package proxy

import (
	"cmp"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

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
	rule             int32             // the route's sampling rule slot (Tracer.ruleSlot); 0: no route
	spanName         *nameTemplate     // the route's span name; nil: the default
	cluster          *upstream.Cluster // the route's cluster; nil: no route
	requestID        string
	start            time.Time
	peer             netip.AddrPort
	peerAddr         string   // the address as text, when the connection has it already
	tls              *connTLS // the client's TLS connection, or nil
	buf              *spanBuf // the connection's, on the fast path; else pooled
	// bagBuf, when not nil, holds baggage and tracestate restored from an
	// ingress request (the fast path's, reused).
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

// name names the request's span: the route's operation, else Envoy's
// default: "ingress", or "egress HOST".
func (tr *reqTrace) name(b *spanBuf, v *reqView) string {
	if tr.spanName != nil {
		return tr.spanName.name(b, v.method, v.uri, v.host)
	}
	if tr.ingress {
		return "ingress"
	}
	return b.concat("egress ", v.host, "")
}

// appendTraceresponse appends the W3C traceresponse value (Trace Context
// level 2) of a traced request: version 00, the trace id, the id of
// tracehop's span and the sampled flag.
func (tr *reqTrace) appendTraceresponse(dst []byte) []byte {
	return propagation.AppendTraceparent(dst, tr.span.TraceID, tr.span.SpanID, tr.sampled, false)
}

// reqView is what tracing and the access log read of a request and its
// response, filled by either HTTP path: net/http's (viewOf) or the HTTP/1.1
// fast path's, whose strings alias its buffers (volatile).
type reqView struct {
	method, host, uri, proto, userAgent string
	contentType                         string // the request's
	header                              propagation.Carrier
	// volatile says the strings above and the header's alias memory that
	// is reused after the request: what outlives the request (the trace
	// context, see begin) must be copied. Spans need not: the sink copies
	// them.
	volatile bool

	status      int // 0 until the response starts
	respBytes   int64
	grpcStatus  string
	grpcMessage string // as sent: percent-encoded
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
	// A new trace's id is made before the decision: with W3C randomness
	// (tracecontext among the formats), the decision is taken on it.
	var newID core.TraceID
	if !in.Valid() {
		newID = t.newTraceID()
	}
	ot, rnd, consistent := t.randomness(&in, newID)
	rule := &t.rules.Load().slots[st.rule]
	sampled, reason := rule.sampler.Decide(sampling.Input{RequestID: st.requestID, ClientTraceID: client, Forced: forced,
		Upstream: uint8(in.Sampled), Consistent: consistent, Randomness: rnd})
	if in.Debug {
		sampled = true
	} else if reason == sampling.RateLimited {
		t.counts.rateLimited.Add(1)
	}
	rule.counts.count(sampled, reason)
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
		s.TraceID = newID
		started = true
	}
	s.Kind = core.KindServer
	if !l.ingress {
		s.Kind = core.KindClient
	}
	s.LocalService = t.service
	s.StartUnixNano = st.start.UnixNano()
	s.Sampled, s.Debug = sampled, in.Debug

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
	if sampled && t.consistent {
		t.threshold(st, &out, rule.sampler, reason, ot, consistent, rnd)
	}
	s.TraceState = out.TraceState
	if t.spawnUpstream {
		u := &st.upstreamSpan
		u.TraceID, u.ParentID, u.SpanID = s.TraceID, s.SpanID, newSpanID()
		u.ParentOrigin = core.ParentLocal // this hop's own span
		u.Kind, u.LocalService, u.Sampled = core.KindClient, t.service, sampled
		u.TraceState = out.TraceState
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

// randomness returns what consistent probability sampling decides on (with
// tracecontext among the formats): the trace's randomness, the explicit rv
// of tracestate's ot member, else the low 56 bits of a trace id that is
// random (W3C level 2's flag, or newID, the one tracehop made for a new
// trace); consistent is false when the trace has none. It also returns
// what the ot member says, for threshold.
func (t *Tracer) randomness(in *propagation.Context, newID core.TraceID) (ot propagation.OTelSampling, rnd uint64, consistent bool) {
	if !t.consistent {
		return ot, 0, false
	}
	if in.TraceState != "" {
		ot = propagation.ParseOTelSampling(in.TraceState)
	}
	switch {
	case !in.Valid():
		return ot, newID.Low & sampling.RandomnessMask, true
	case ot.HasRandomness:
		return ot, ot.Randomness, true
	case in.Random:
		return ot, in.TraceID.Low & sampling.RandomnessMask, true
	}
	return ot, 0, false
}

// threshold writes tracestate's ot=th (OpenTelemetry's consistent
// probability sampling) for a sampled request: the threshold of a random
// decision taken on the trace's W3C randomness; a continued trace's, raised
// to the overall cap's; or none where the probability is unknown (a forced
// or client-chosen trace, a rate limit, a parent's threshold that its
// randomness contradicts). A decision at 100% writes nothing: an absent th
// and th:0 both say each span stands for one.
func (t *Tracer) threshold(st *reqTrace, out *propagation.Context, s *sampling.Sampler, reason sampling.Reason, ot propagation.OTelSampling, consistent bool, rnd uint64) {
	th, set := uint64(0), false
	switch {
	case reason == sampling.Random && consistent:
		th, set = s.Threshold(), s.Probabilistic()
		if (th == 0 || !set) && !ot.HasThreshold {
			return
		}
	case !ot.HasThreshold:
		return // nothing said, nothing to change
	case reason == sampling.Upstream && consistent && rnd >= ot.Threshold:
		th, set = max(ot.Threshold, s.OverallThreshold()), true
		if th == ot.Threshold {
			return // as it came
		}
	case reason == sampling.Upstream && !consistent && s.OverallThreshold() == 0:
		return // no randomness to check it by; passed on as it came
	}
	buf := new([]byte)
	if st.buf != nil {
		buf = &st.buf.state // the fast path's connection's, reused
	}
	*buf = propagation.AppendTraceStateThreshold((*buf)[:0], out.TraceState, th, set)
	out.TraceState = str(*buf)
}

// inject writes the upstream trace context into the outgoing headers.
func (t *Tracer) inject(st *reqTrace, h http.Header) {
	t.prop.Inject(h, st.out)
}

// finish completes the request's spans, which ended at end, and hands them
// to the sink.
func (t *Tracer) finish(st *reqTrace, v *reqView, end time.Time) {
	if st.registered {
		t.links.del(st.requestID, st.out.SpanID)
	}
	if !st.sampled {
		return
	}
	defer t.inflight.Add(-1) // after the sink has the spans
	s := &st.span
	s.Duration = end.Sub(st.start)
	status := cmp.Or(v.status, http.StatusOK)
	failed := status >= 500 || st.upstreamErr != nil
	// A gRPC status other than OK fails a CLIENT span; a SERVER span only
	// for the codes that say the server failed (OpenTelemetry's RPC
	// conventions, as Envoy does): NOT_FOUND is the caller's problem.
	clientFailed := failed || v.grpcStatus != "" && v.grpcStatus != "0"
	if st.ingress {
		failed = failed || grpcServerFault(v.grpcStatus)
	} else {
		failed = clientFailed
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
	need := len("https://") + len(v.host) + path + 2*20 + len(v.grpcMessage)
	if st.spanName != nil {
		need += st.spanName.size + len(v.method) + len(v.host) + len(v.uri)
	}
	if t.spawnUpstream {
		need = 2*need + len("router  egress") + len(st.clusterName()) // its name, maybe its own tags
	}
	b.reset(need + len("egress ") + len(v.host))
	s.Name = st.name(b, v)
	b.tags = t.appendTags(b.tags[:0], b, st, v, status, failed, s.Kind)
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
		u.Error = clientFailed                                    // the upstream call is a CLIENT span
		u.Name = b.concat("router ", st.clusterName(), " egress") // Envoy's name
		u.Tags = b.tags
		if t.sidedTags || st.routeTracing != nil && st.routeTracing.sidedTags {
			// Tags of one side only: the CLIENT span has its own list.
			b.utags = t.appendTags(b.utags[:0], b, st, v, status, clientFailed, core.KindClient)
			u.Tags = b.utags
		}
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
func (t *Tracer) appendTags(tags []core.Tag, b *spanBuf, st *reqTrace, v *reqView, status int, failed bool, kind core.Kind) []core.Tag {
	add := func(k, v string) { tags = append(tags, core.Tag{Key: k, Value: v}) }
	add(keyComponent, "proxy")
	if t.nodeID != "" {
		add(keyNodeID, t.nodeID)
	}
	if t.zone != "" {
		add(keyZone, t.zone)
	}
	add(keyRequestID, st.requestID)
	if st.trusted {
		if id := v.header.Get(headerClientTraceID); id != "" {
			add(keyClientTraceID, id)
		}
	}
	add(keyHTTPURL, t.url(b, v, st))
	add(keyHTTPMethod, v.method)
	add(keyHTTPProtocol, v.proto)
	add(keyUserAgent, cmp.Or(v.userAgent, "-"))
	peer := st.peerAddr
	if peer == "" {
		peer = st.peer.Addr().String()
	}
	add(keyPeerAddress, peer)
	add(keyRequestSize, b.int(st.reqBytes.Load()))
	add(keyResponseSize, b.int(v.respBytes))
	if st.cluster != nil {
		add(keyUpstreamCluster, st.cluster.Name())
	}
	if st.endpoint != nil {
		add(keyUpstreamAddress, st.endpoint.Addr())
	}
	add(keyHTTPStatusCode, statusText(status))
	if isGRPC(v.contentType) {
		tags = appendGRPCTags(tags, b, grpcCall{uri: v.uri, host: v.host, contentType: v.contentType,
			timeout: v.header.Get("Grpc-Timeout"), status: v.grpcStatus, message: v.grpcMessage})
	} else if v.grpcStatus != "" {
		add(keyGRPCStatusCode, v.grpcStatus)
	}
	if st.flags != "" {
		add(keyResponseFlags, st.flags)
	}
	if st.tls != nil && st.tls.id != nil {
		add(keyTLSClientIdentity, st.tls.id.Name)
		add(keyTLSClientSubject, st.tls.id.Subject)
	}
	if failed {
		add(keyError, "true")
	}
	if st.upstreamErr != nil {
		add(keyErrorMessage, st.errReason+": "+st.upstreamErr.Error())
	} else if st.cluster == nil {
		add(keyErrorMessage, "no route")
	}
	tagsFrom := func(cts []customTag) {
		for _, ct := range cts {
			if ct.kind != core.KindUnspecified && ct.kind != kind {
				continue
			}
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
