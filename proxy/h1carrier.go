package proxy

import "github.com/tracehop/tracehop/proxy/internal/h1"

// respCapture holds the response headers that response-header tags read,
// copied out of the upstream connection's buffer, which the body reuses.
type respCapture struct {
	buf    []byte
	fields [][3]int // name start, value start, value end in buf
}

// capture keeps the fields of hs that a custom tag of t or of rt (the
// route's tracing, or nil) reads.
func (c *respCapture) capture(hs []h1.Header, t *Tracer, rt *routeTracing) {
	c.buf, c.fields = c.buf[:0], c.fields[:0]
	wanted := func(name []byte, tags []customTag) bool {
		for _, ct := range tags {
			if ct.respHeader != "" && h1.EqualFold(name, ct.respHeader) {
				return true
			}
		}
		return false
	}
	for _, h := range hs {
		if wanted(h.Name, t.customTags) || rt != nil && wanted(h.Name, rt.customTags) {
			start := len(c.buf)
			c.buf = append(c.buf, h.Name...)
			mid := len(c.buf)
			c.buf = append(c.buf, h.Value...)
			c.fields = append(c.fields, [3]int{start, mid, len(c.buf)})
		}
	}
}

// Get returns the first captured value of key.
func (c *respCapture) Get(key string) string {
	for _, f := range c.fields {
		if h1.EqualFold(c.buf[f[0]:f[1]], key) {
			return str(c.buf[f[1]:f[2]])
		}
	}
	return ""
}

// h1Carrier reads trace headers from the fast path's parsed head.
type h1Carrier struct {
	hs   []h1.Header
	hide bool // an untrusted listener: trace headers are not there
	// names is h1.NamesOf(hs), once known is set: the first lookup makes
	// it, so that an untraced request, which looks nothing up, does not
	// pay for it (about 27 instructions a header).
	names uint64
	known bool
}

// reset makes c read hs.
func (c *h1Carrier) reset(hs []h1.Header) { c.hs, c.known = hs, false }

func (c *h1Carrier) hidden(key string) bool {
	if !c.hide {
		return false
	}
	for _, h := range untrustedHeaders {
		if h == key {
			return true
		}
	}
	return false
}

// mayHave says whether a header named key may be among c's: false when
// its bit is missing from their names'. Extraction asks for a dozen names
// (traceparent, tracestate, b3's five, baggage, ...) that a request mostly
// does not carry, each otherwise a scan of every header.
func (c *h1Carrier) mayHave(key string) bool {
	if !c.known {
		c.names, c.known = h1.NamesOf(c.hs), true
	}
	return c.names&h1.NameBit(key) != 0
}

// Get implements propagation.Carrier.
func (c *h1Carrier) Get(key string) string {
	if !c.mayHave(key) {
		return ""
	}
	for _, h := range c.hs {
		if h1.EqualFold(h.Name, key) {
			if c.hidden(key) {
				return ""
			}
			return str(h.Value)
		}
	}
	return ""
}

// GetJoined implements propagation.Carrier.
func (c *h1Carrier) GetJoined(key string) string {
	if !c.mayHave(key) {
		return ""
	}
	var first []byte
	var joined []byte
	for _, h := range c.hs {
		if !h1.EqualFold(h.Name, key) {
			continue
		}
		switch {
		case first == nil:
			first = h.Value
		case joined == nil:
			joined = append(append(append(joined, first...), ','), h.Value...)
		default:
			joined = append(append(joined, ','), h.Value...)
		}
	}
	if first == nil || c.hidden(key) {
		return ""
	}
	if joined != nil {
		return string(joined)
	}
	return str(first)
}
