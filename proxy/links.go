package proxy

import (
	"strings"
	"sync"
	"unsafe"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
)

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
// cannot grow it without bound. The key is copied: the fast path's id
// lies in its connection's memory, which its next request overwrites, and
// a map stores the key of every assignment, a replaced value's too.
func (lt *linkTable) put(id string, c link) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if len(lt.m) >= lt.max {
		return false
	}
	lt.m[strings.Clone(id)] = c
	return true
}

// get returns id's link, its baggage and tracestate copied while the
// entry is certainly alive (both may alias the ingress request's memory,
// which its connection reuses once it is done, while the egress request
// may still run): into *buf (reused, so the fast path does not allocate)
// or, with buf nil, new strings.
func (lt *linkTable) get(id string, buf *[]byte) (link, bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	c, ok := lt.m[id]
	if !ok || c.baggage == "" && c.ctx.TraceState == "" {
		return c, ok
	}
	if buf == nil {
		c.baggage, c.ctx.TraceState = strings.Clone(c.baggage), strings.Clone(c.ctx.TraceState)
		return c, ok
	}
	*buf = append(append((*buf)[:0], c.baggage...), c.ctx.TraceState...)
	b := *buf
	view := func(from, n int) string {
		if n == 0 {
			return ""
		}
		return unsafe.String(&b[from], n)
	}
	c.baggage, c.ctx.TraceState = view(0, len(c.baggage)), view(len(c.baggage), len(c.ctx.TraceState))
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
