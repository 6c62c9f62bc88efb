package pipeline

import (
	"sync"
	"unsafe"

	"github.com/tracehop/tracehop/core"
)

// Slot memory kept for reuse. A span bigger than this (a huge custom tag)
// gets memory of its own, given back to the GC once it is exported, so that
// one odd request cannot pin its size in every slot.
const (
	keepSlotBytes = 4 << 10
	keepSlotTags  = 64
)

// queue is one driver's bounded span queue: a ring of slots that own the
// memory of the spans they hold. push copies a span's strings and tags into
// a slot, so that the request path allocates nothing once the slots are
// warm and may reuse its own buffers as soon as Enqueue returns.
//
// Ring positions go through three states, in order: queued [taken, tail),
// in the batch being exported [head, taken), free. A batch's slots are
// freed only when its export is over, since the driver reads their memory
// until then; the in-flight batch therefore counts against the capacity.
// Freed slots go on a stack and the most recently freed is reused first,
// so the memory spans pass through stays about one batch big and warm in
// the cache, instead of cycling through the whole queue's worth.
//
// push signals wake when the queue goes from empty to one span (the
// exporter then arms its batch timer) and when it reaches a full batch, not
// for every span: the exporter goroutine is woken about twice per batch
// instead of once per request.
type queue struct {
	mu                sync.Mutex
	ring              []*slot
	free              []*slot
	head, taken, tail uint64
	closed            bool
	batch             uint64
	wake              chan struct{}
}

type slot struct {
	span   core.Span
	buf    []byte
	tags   []core.Tag
	events []core.Event
}

func newQueue(size, batch int) *queue {
	q := &queue{ring: make([]*slot, size), free: make([]*slot, size), batch: uint64(batch), wake: make(chan struct{}, 1)}
	slots := make([]slot, size)
	for i := range slots {
		q.free[size-1-i] = &slots[i]
	}
	return q
}

// pushResult says what became of a pushed span.
type pushResult int

const (
	pushed pushResult = iota
	pushFull
	pushClosed
)

// push copies s into a free slot.
func (q *queue) push(s *core.Span) pushResult {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return pushClosed
	}
	if len(q.free) == 0 {
		q.mu.Unlock()
		return pushFull
	}
	sl := q.free[len(q.free)-1]
	q.free = q.free[:len(q.free)-1]
	sl.set(s)
	q.ring[q.tail%uint64(len(q.ring))] = sl
	q.tail++
	n := q.tail - q.taken
	q.mu.Unlock()
	if n == 1 || n == q.batch {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return pushed
}

// ready is the number of queued spans not yet taken into a batch.
func (q *queue) ready() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int(q.tail - q.taken)
}

// held is the number of slots in use: queued or being exported.
func (q *queue) held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int(q.tail - q.head)
}

// take appends up to max queued spans to dst. The spans' strings and
// slices stay valid until release.
func (q *queue) take(dst []core.Span, max int) []core.Span {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(q.tail-q.taken, uint64(max))
	for i := range n {
		dst = append(dst, q.ring[(q.taken+i)%uint64(len(q.ring))].span)
	}
	q.taken += n
	return dst
}

// release frees the slots of the batch taken last, which must hold n spans.
func (q *queue) release(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.freeRange(q.head, uint64(n))
	q.head += uint64(n)
}

// close refuses further pushes and frees every queued span, returning how
// many there were. Only the exporter calls it, with no batch in flight.
func (q *queue) close() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	n := q.tail - q.taken
	q.freeRange(q.taken, n)
	q.head, q.taken = q.tail, q.tail
	return int(n)
}

func (q *queue) freeRange(from, n uint64) {
	for i := range n {
		at := &q.ring[(from+i)%uint64(len(q.ring))]
		(*at).trim()
		q.free = append(q.free, *at)
		*at = nil
	}
}

// set copies s into the slot: its strings into the slot's byte buffer,
// sized once for all of them so that the strings made from it stay put,
// and its tags and events into the slot's own slices.
func (sl *slot) set(s *core.Span) {
	n := len(s.Name) + len(s.LocalService) + len(s.Remote.Service) + len(s.TraceState)
	for i := range s.Tags {
		n += len(s.Tags[i].Key) + len(s.Tags[i].Value)
	}
	for i := range s.Events {
		n += len(s.Events[i].Value)
	}
	if cap(sl.buf) < n {
		sl.buf = make([]byte, 0, max(n, 512))
	}
	a := arena{buf: sl.buf[:0]}
	sl.span = *s
	sl.span.Name = a.str(s.Name)
	sl.span.LocalService = a.str(s.LocalService)
	sl.span.Remote.Service = a.str(s.Remote.Service)
	sl.span.TraceState = a.str(s.TraceState)
	if s.Tags != nil {
		tags := sl.tags[:0]
		for _, t := range s.Tags {
			tags = append(tags, core.Tag{Key: a.str(t.Key), Value: a.str(t.Value)})
		}
		sl.tags, sl.span.Tags = tags, tags
	}
	if s.Events != nil {
		events := sl.events[:0]
		for _, e := range s.Events {
			events = append(events, core.Event{UnixNano: e.UnixNano, Value: a.str(e.Value)})
		}
		sl.events, sl.span.Events = events, events
	}
}

// trim drops the slot's references and any memory too big to keep.
func (sl *slot) trim() {
	sl.span = core.Span{}
	if cap(sl.buf) > keepSlotBytes {
		sl.buf = nil
	}
	if cap(sl.tags) > keepSlotTags {
		sl.tags = nil
	}
	if cap(sl.events) > keepSlotTags {
		sl.events = nil
	}
}

// arena hands out strings copied into a buffer whose capacity was reserved
// up front, so appending never moves what earlier strings point at.
type arena struct{ buf []byte }

func (a *arena) str(s string) string {
	if s == "" {
		return ""
	}
	start := len(a.buf)
	a.buf = append(a.buf, s...)
	return unsafe.String(&a.buf[start], len(s))
}
