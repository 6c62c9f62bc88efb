package proxy

import (
	"cmp"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/core/sampling"
	"github.com/tracehop/tracehop/proxy/config"
)

// Headers tracehop reads besides the propagation formats.
const (
	headerRequestID     = "X-Request-Id"
	headerClientTraceID = "X-Client-Trace-Id"
	headerForceTrace    = "X-Tracehop-Force-Trace"
)

// Tracer makes the spans of the requests tracehop proxies. It is built once
// from the tracing config and shared by every listener.
type Tracer struct {
	prop          *propagation.Propagator
	sampler       *sampling.Sampler
	sink          Sink
	service       string
	nodeID, zone  string
	maxPath       int
	spawnUpstream bool
	trace128      bool
	sharedSpans   bool
	customTags    []customTag
	respTags      bool       // a custom tag reads a response header
	baggageTags   []string   // baggage members copied onto spans
	links         *linkTable // nil when link_by_request_id is off
	counts        *tracerCounts
	secrets       [][]string // each driver's secret config keys
	// inflight counts the sampled requests whose spans are not finished:
	// a reload retires this tracer's pipeline only when it is 0, so that
	// every span reaches the drivers in force when its request began.
	inflight atomic.Int64
}

// tracerCounts are the tracer's counters, kept across reloads: a new
// tracer takes over its predecessor's.
type tracerCounts struct {
	started, sampled atomic.Uint64
	rateLimited      atomic.Uint64 // new traces not started: max_traces_per_second
}

// Sink receives finished spans; the pipeline is one. Enqueue must copy
// what it keeps (core.Span.Clone): the span's tags and strings are reused
// once it returns.
type Sink interface {
	Enqueue(core.Span)
}

var _ Sink = (*pipeline.Pipeline)(nil)

type customTag struct {
	tag, value   string // value: a literal, or the environment's value read at start
	header       string // a request header's name, canonical
	respHeader   string // a response header's name, canonical
	defaultValue string
}

// headerGetter reads a response's headers: net/http's, or those the fast
// path copied out for the span (respCapture).
type headerGetter interface{ Get(key string) string }

// TracerOptions is what the tracer needs besides the config.
type TracerOptions struct {
	Sink Sink
	// Capabilities of every configured driver: they choose the default
	// propagation formats and whether trace ids are 128-bit.
	Capabilities []core.Capabilities
	// Previous is the tracer a reload replaces: the new one keeps its
	// counters and, when both link requests by id, its table of ingress
	// requests in flight (they may have egress requests still to come).
	Previous *Tracer
}

// NewTracer builds the tracer for cfg.Tracing.
func NewTracer(cfg *config.Config, opts TracerOptions) (*Tracer, error) {
	tc := cfg.Tracing
	formats := tc.Propagation
	if len(formats) == 0 {
		for _, c := range opts.Capabilities {
			for _, f := range c.Propagation {
				if !slices.Contains(formats, f) {
					formats = append(formats, f)
				}
			}
		}
	}
	if len(formats) == 0 {
		formats = []string{core.FormatB3, core.FormatTraceContext}
	}
	prop, err := propagation.New(formats)
	if err != nil {
		return nil, err
	}
	// A format that carries 64 bits (ot-tracer) would split 128-bit traces
	// at the next hop, and so would a back end that keeps 64.
	trace128 := prop.TraceID128()
	sharedSpans := len(opts.Capabilities) > 0
	for _, c := range opts.Capabilities {
		trace128 = trace128 && c.TraceID128
		// Span ids are shared by all drivers: join only if all want it.
		sharedSpans = sharedSpans && c.SharedSpans
	}
	sampler, err := sampling.New(tc.Sampling.Random, tc.Sampling.Client, tc.Sampling.Overall)
	if err != nil {
		return nil, err
	}
	if m := tc.Sampling.MaxTracesPerSecond; m != nil {
		if err := sampler.LimitNewTraces(*m); err != nil {
			return nil, err
		}
	}
	t := &Tracer{
		prop: prop, sampler: sampler, sink: opts.Sink,
		service: cmp.Or(cfg.Node.Service, cfg.Node.ID, "tracehop"),
		nodeID:  cfg.Node.ID, zone: cfg.Node.Zone,
		maxPath: tc.MaxPathTagLength, spawnUpstream: tc.SpawnUpstreamSpan, trace128: trace128, sharedSpans: sharedSpans,
	}
	for _, ct := range tc.CustomTags {
		t.customTags = append(t.customTags, newCustomTag(ct))
		t.respTags = t.respTags || ct.ResponseHeader != nil
	}
	t.baggageTags = tc.BaggageTags
	for _, c := range opts.Capabilities {
		t.secrets = append(t.secrets, c.SecretKeys)
	}
	t.counts = new(tracerCounts)
	if prev := opts.Previous; prev != nil {
		t.counts = prev.counts
		t.links = prev.links
	}
	if !tc.Linking() {
		t.links = nil
	} else if t.links == nil {
		t.links = newLinkTable(65536)
	}
	return t, nil
}

// secretKeys returns each driver's secret config keys (nil for no tracer).
func (t *Tracer) secretKeys() [][]string {
	if t == nil {
		return nil
	}
	return t.secrets
}

// Formats returns the propagation formats in use.
func (t *Tracer) Formats() []string { return t.prop.Formats() }

func newSpanID() core.SpanID {
	for {
		if id := rand.Uint64(); id != 0 {
			return core.SpanID(id)
		}
	}
}

func (t *Tracer) newTraceID() core.TraceID {
	id := core.TraceID{Low: uint64(newSpanID())}
	if t.trace128 {
		id.High = rand.Uint64()
	}
	return id
}

// newRequestID returns a random UUIDv4.
func newRequestID() string {
	var b [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i], b[8+i] = byte(hi>>(56-8*i)), byte(lo>>(56-8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	j := 0
	for i, v := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexDigits[v>>4], hexDigits[v&0xf]
		j += 2
	}
	return string(out[:])
}

const hexDigits = "0123456789abcdef"

// validRequestID accepts what a sane client or proxy sends: 1 to 128
// printable ASCII characters.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
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

// viewOf is the reqView of a net/http request.
func viewOf(r *http.Request) reqView {
	return reqView{
		method: r.Method, host: r.Host, uri: r.URL.RequestURI(), proto: protocolName(r), userAgent: r.UserAgent(),
		header: propagation.HeaderCarrier(r.Header),
	}
}

func newCustomTag(ct config.CustomTag) customTag {
	c := customTag{tag: ct.Tag, value: ct.Literal}
	switch {
	case ct.Environment != nil:
		c.value = ct.Environment.Default
		if v, ok := os.LookupEnv(ct.Environment.Name); ok {
			c.value = v
		}
	case ct.RequestHeader != nil:
		c.header = http.CanonicalHeaderKey(ct.RequestHeader.Name)
		c.defaultValue = ct.RequestHeader.Default
	case ct.ResponseHeader != nil:
		c.respHeader = http.CanonicalHeaderKey(ct.ResponseHeader.Name)
		c.defaultValue = ct.ResponseHeader.Default
	}
	return c
}

// wantsResponse reports whether the span of a request on route rt reads
// response headers, which the fast path must then copy out before its
// buffer is reused.
func (t *Tracer) wantsResponse(rt *route) bool {
	return t.respTags || rt != nil && rt.tracing != nil && rt.tracing.respTags
}

// routeTracing is a route's own tracing (config.RouteTracing), resolved
// once.
type routeTracing struct {
	off        bool
	sampler    *sampling.Sampler // nil: the tracer's
	customTags []customTag       // after the tracer's
	respTags   bool              // one of customTags reads a response header
}

// forRoute resolves a route's tracing block; nil when it has none.
func (t *Tracer) forRoute(rc *config.RouteTracing) *routeTracing {
	if rc == nil {
		return nil
	}
	rt := &routeTracing{off: rc.Off()}
	if s := rc.Sampling; s.Random != nil || s.Client != nil || s.Overall != nil {
		// The config was validated: the percentages are in range.
		rt.sampler, _ = t.sampler.With(s.Random, s.Client, s.Overall)
	}
	for _, ct := range rc.CustomTags {
		rt.customTags = append(rt.customTags, newCustomTag(ct))
		rt.respTags = rt.respTags || ct.ResponseHeader != nil
	}
	return rt
}

// begin decides the request id, the sampling and the spans of one request,
// and prepares the context to send upstream.
func (t *Tracer) begin(st *reqState, v *reqView) {
	l := st.listener
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
	if st.route != nil && st.route.tracing != nil && st.route.tracing.sampler != nil {
		sampler = st.route.tracing.sampler
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
	s.Name = st.operation(v.host)

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
		// Baggage is kept with the context, as tracestate is, for the
		// egress requests of an application that forwards only the
		// request id. Within W3C's limit only: the table stays bounded.
		// It may alias the request's memory (volatile): the entry is
		// removed before that is reused, and get copies it out.
		bg := h.GetJoined(propagation.BaggageHeader)
		if len(bg) > propagation.MaxBaggageBytes {
			bg = ""
		}
		st.registered = t.links.put(st.requestID, link{ctx: out, baggage: bg})
	}
}

// inject writes the upstream trace context into the outgoing headers.
func (t *Tracer) inject(st *reqState, h http.Header) {
	t.prop.Inject(h, st.out)
}

// finish completes the request's spans and hands them to the sink.
func (t *Tracer) finish(st *reqState, v *reqView) {
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
	tags := b.tags[:0]
	add := func(k, v string) { tags = append(tags, core.Tag{Key: k, Value: v}) }
	add("component", "proxy")
	if t.nodeID != "" {
		add("node_id", t.nodeID)
	}
	if t.zone != "" {
		add("zone", t.zone)
	}
	add("guid:x-request-id", st.requestID)
	if st.listener.trusted {
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
	if st.route != nil {
		add("upstream_cluster", st.route.cluster.Name())
	}
	if st.endpoint != nil {
		add("upstream_address", st.endpoint.Addr())
	}
	add("http.status_code", statusText(status))
	if grpcStatus != "" {
		add("grpc.status_code", grpcStatus)
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
	} else if st.route == nil {
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
	if st.route != nil && st.route.tracing != nil {
		tagsFrom(st.route.tracing.customTags)
	}
	if len(t.baggageTags) > 0 {
		bg := v.header.GetJoined(propagation.BaggageHeader)
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
	b.tags = tags
	s.Tags = tags
	if st.listener.ingress {
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
		u.Tags = tags
		if st.endpoint != nil {
			u.Remote = upstreamEndpoint(st)
		}
		t.sink.Enqueue(*u)
	}
	t.sink.Enqueue(*s)
}

func upstreamEndpoint(st *reqState) core.Endpoint {
	e := core.Endpoint{Service: st.route.cluster.Name()}
	if ip := st.endpoint.AddrPort(); ip.IsValid() {
		e.IP, e.Port = ip.Addr(), ip.Port()
	}
	return e
}

func protocolName(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return "HTTP/2"
	}
	return r.Proto
}

// url builds the http.url tag like Envoy: proto://host/path, the path cut to
// max_path_tag_length.
func (t *Tracer) url(b *spanBuf, v *reqView, st *reqState) string {
	scheme := "http://"
	if st.tls != nil {
		scheme = "https://"
	} else if st.listener.trusted {
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

// linkTable maps the request ids of ingress requests in flight to the
// context their upstream call carries, so that an egress request that
// carries only the x-request-id can continue the trace.
type linkTable struct {
	mu  sync.Mutex
	m   map[string]link
	max int
}

// link is what an ingress request leaves for its application's egress
// requests: its upstream context and the baggage it came with. In the
// table, baggage may alias the ingress request's buffers, which stay
// unchanged until its entry is removed (finish).
type link struct {
	ctx     propagation.Context
	baggage string
}

// lostBaggage is the ingress request's baggage when the egress request h
// has none of its own: the application did not forward it.
func (lk link) lostBaggage(h propagation.Carrier) string {
	if lk.baggage == "" || h.Get(propagation.BaggageHeader) != "" {
		return ""
	}
	return lk.baggage
}

func newLinkTable(max int) *linkTable {
	return &linkTable{m: make(map[string]link), max: max}
}

// put records id; it refuses when the table is full, so a flood of requests
// cannot grow it without bound.
func (lt *linkTable) put(id string, c link) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if len(lt.m) >= lt.max {
		return false
	}
	lt.m[id] = c
	return true
}

// get returns id's link, its baggage copied while the entry is certainly
// alive: into *buf (reused, so the fast path does not allocate) or, with
// buf nil, a new string.
func (lt *linkTable) get(id string, buf *[]byte) (link, bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	c, ok := lt.m[id]
	if ok && c.baggage != "" {
		if buf == nil {
			c.baggage = strings.Clone(c.baggage)
		} else {
			*buf = append((*buf)[:0], c.baggage...)
			c.baggage = unsafe.String(&(*buf)[0], len(*buf))
		}
	}
	return c, ok
}

// del removes id if it still maps to the span that put it there.
func (lt *linkTable) del(id string, span core.SpanID) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if c, ok := lt.m[id]; ok && c.ctx.SpanID == span {
		delete(lt.m, id)
	}
}

func (lt *linkTable) len() int {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return len(lt.m)
}

// peerAddr parses a request's RemoteAddr.
func peerAddr(r *http.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
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
