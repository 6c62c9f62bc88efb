package propagation

import (
	"net/http"
	"strings"
)

// Mutations records the header changes of one Inject: the stale formats'
// headers removed first, then values set and headers removed in order, with
// the values in a fixed buffer of its own.
// A Mutations is reusable and its zero value is ready; kept on the stack or
// in a per-request struct it makes injection free of allocations.
type Mutations struct {
	n   int
	ops [32]mutation
	// stale are headers removed before the ops: those of the known
	// formats the propagator does not write (it aliases the Propagator's
	// list). Kept apart from ops, a dozen or more of them are not copied
	// into ops and looked at again for every request.
	stale []string
	used  int
	buf   [2048]byte
}

type mutation struct {
	key        string
	del        bool
	start, end int
}

// Reset empties m.
func (m *Mutations) Reset() { m.n, m.used, m.stale = 0, 0, nil }

func (m *Mutations) add(op mutation) {
	if m.n < len(m.ops) {
		m.ops[m.n] = op
		m.n++
	}
}

// Set records that header key is to be value (copied).
func (m *Mutations) Set(key string, value []byte) { m.Set2(key, value, "") }

// SetString is Set with a string value.
func (m *Mutations) SetString(key, value string) { m.Set2(key, nil, value) }

// Set2 records that header key is to be value followed by more. A value
// that does not fit the buffer is dropped, as a too-long header would be.
func (m *Mutations) Set2(key string, value []byte, more string) {
	if m.used+len(value)+len(more) > len(m.buf) {
		m.Del(key)
		return
	}
	start := m.used
	m.used += copy(m.buf[m.used:], value)
	m.used += copy(m.buf[m.used:], more)
	m.add(mutation{key: key, start: start, end: m.used})
}

// Del records that header key is to be removed.
func (m *Mutations) Del(key string) { m.add(mutation{key: key, del: true}) }

// Touches reports whether m sets or removes the header name (compared
// case-insensitively): the request's own value must not be sent.
func (m *Mutations) Touches(name string) bool {
	for i := range m.n {
		if strings.EqualFold(m.ops[i].key, name) {
			return true
		}
	}
	for _, k := range m.stale {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// Len is the number of recorded changes, the stale headers' removal
// aside; Written returns the i-th when it is a value to write.
func (m *Mutations) Len() int { return m.n }

// Written returns the i-th change when it sets a value and is the last
// change of its key (an earlier one does not count): what an HTTP layer
// writing its own headers writes.
func (m *Mutations) Written(i int) (key string, value []byte, ok bool) {
	op := &m.ops[i]
	if op.del {
		return "", nil, false
	}
	for j := i + 1; j < m.n; j++ {
		if m.ops[j].key == op.key {
			return "", nil, false
		}
	}
	return op.key, m.buf[op.start:op.end], true
}

// Apply makes the recorded changes to h.
func (m *Mutations) Apply(h http.Header) {
	for _, k := range m.stale {
		delete(h, k)
	}
	for i := range m.n {
		op := &m.ops[i]
		if op.del {
			delete(h, op.key)
		} else {
			h[op.key] = []string{string(m.buf[op.start:op.end])}
		}
	}
}
