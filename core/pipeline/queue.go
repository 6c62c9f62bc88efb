package pipeline

import (
	"sync"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

// Queue memory: chunkBytes at a time, up to queueBytesPerSpan per span of
// QueueSize and at least minQueueBytes: room for spans far larger than a
// proxy's usual few hundred bytes (a 64 KiB header as a tag), without
// letting one driver's queue hold more than a few MiB.
const (
	chunkBytes        = 64 << 10
	queueBytesPerSpan = 512
	minQueueBytes     = 1 << 20
)

// queue is one driver's bounded span queue. push encodes each span once,
// in the batch layout of core/wire, into the queue's memory; a batch is
// the runs of records that lie back to back in it, handed to a driver
// process as they lie (BatchDriver: copied into its span ring or its
// Export request) and never encoded again. Before, the queue copied each
// span's strings and tags into a slot and the driver's host encoded the
// batch from the slots: two copies of every span.
//
// Records go through three states, in order: queued [taken, tail), in the
// batch being exported [head, taken), free. A batch's records are freed
// only when its export is over, since the driver reads their memory until
// then; the batch in flight therefore counts against the capacity.
//
// The memory comes in chunks, taken as records need them and given back
// when their last record is freed; the most recently freed is reused first
// and the chunk being written starts over when its records are all freed.
// So the memory spans pass through stays about a batch big and warm in
// the cache, and more is resident only while a driver falls behind.
//
// push signals wake when the queue goes from empty to one span (the
// exporter then arms its batch timer) and when it reaches a full batch, not
// for every span: the exporter goroutine is woken about twice per batch
// instead of once per request.
type queue struct {
	mu                sync.Mutex
	recs              []record
	head, taken, tail uint64
	cur               *chunk   // being written
	free              []*chunk // of chunkBytes, the last freed on top
	chunks, maxChunks int      // held, in chunkBytes
	closed            bool
	batch             uint64
	wake              chan struct{}
	// layout is what the driver's decoder reads now.
	layout func() wire.Layout
}

// chunk is queue memory: records written back to back from its start.
type chunk struct {
	buf  []byte
	used int // bytes written
	live int // records held
}

// record is where one encoded span lies in the queue's memory.
type record struct {
	c      *chunk
	off, n int
	layout wire.Layout // what it was written in, as far as it matters
}

func newQueue(size, batch int, layout func() wire.Layout) *queue {
	return &queue{
		recs:      make([]record, size),
		maxChunks: max(size*queueBytesPerSpan, minQueueBytes) / chunkBytes,
		batch:     uint64(batch),
		wake:      make(chan struct{}, 1),
		layout:    layout,
	}
}

// pushResult says what became of a pushed span.
type pushResult int

const (
	pushed pushResult = iota
	pushFull
	pushClosed
)

// push encodes s into the queue. Nothing of s is kept.
func (q *queue) push(s *core.Span) pushResult {
	var l wire.Layout
	if q.layout != nil {
		l = q.layout()
		// Only what the span uses binds the batch it goes in.
		l.TraceState = l.TraceState && s.TraceState != ""
		if len(s.Tags) == 0 {
			l.TagKeys = 0
		}
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return pushClosed
	}
	c, off, n := q.encode(s, l)
	if c == nil {
		q.mu.Unlock()
		return pushFull
	}
	c.used += n
	c.live++
	q.recs[q.tail%uint64(len(q.recs))] = record{c: c, off: off, n: n, layout: l}
	q.tail++
	k := q.tail - q.taken
	q.mu.Unlock()
	if k == 1 || k == q.batch {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return pushed
}

// encodeHeadroom is how much must be left of the chunk being written for
// a span to be encoded straight into it, unmeasured: a proxy span is a few
// hundred bytes. Measuring every span first (wire.SpanLen) walked its 40-odd
// strings once more, about 350 instructions per traced request; now only a
// span near a chunk's end, or one larger than the headroom, is measured.
const encodeHeadroom = 4 << 10

// encode writes s into the queue's memory and returns where: its chunk,
// offset and length; a nil chunk when the queue is full.
func (q *queue) encode(s *core.Span, l wire.Layout) (c *chunk, off, n int) {
	if q.tail-q.head == uint64(len(q.recs)) {
		return nil, 0, 0
	}
	if c = q.cur; c != nil {
		if c.live == 0 {
			c.used = 0 // every record in it is freed: start over, warm
		}
		if off = c.used; len(c.buf)-off >= encodeHeadroom {
			out := wire.AppendSpan(c.buf[off:off:len(c.buf)], s, l)
			if &out[0] == &c.buf[off] { // append did not move it: it fit
				return c, off, len(out)
			}
			// Larger than what is left: append made it elsewhere (a rare
			// large span pays for that), and it is copied from there.
			if c = q.room(len(out)); c == nil {
				return nil, 0, 0
			}
			off = c.used
			return c, off, copy(c.buf[off:], out)
		}
	}
	n = wire.SpanLen(s, l)
	if c = q.room(n); c == nil {
		return nil, 0, 0
	}
	off = c.used
	wire.AppendSpan(c.buf[off:off:off+n], s, l) // in place: SpanLen is exact
	return c, off, n
}

// room returns the chunk a record of n bytes goes in: the one being
// written while it has room, else a free or a new one; nil when the queue
// is full.
func (q *queue) room(n int) *chunk {
	if q.tail-q.head == uint64(len(q.recs)) {
		return nil
	}
	if c := q.cur; c != nil {
		if c.live == 0 {
			c.used = 0 // every record in it is freed: start over, warm
		}
		if c.used+n <= len(c.buf) {
			return c
		}
	}
	var c *chunk
	switch need := (n + chunkBytes - 1) / chunkBytes; {
	case need > 1:
		// A span larger than a chunk gets memory of its own, for it
		// alone, given back to the GC once it is freed: one odd request
		// does not pin its size.
		if q.chunks+need > q.maxChunks {
			return nil
		}
		q.chunks += need
		return &chunk{buf: make([]byte, need*chunkBytes)}
	case len(q.free) > 0:
		c = q.free[len(q.free)-1]
		q.free = q.free[:len(q.free)-1]
	case q.chunks < q.maxChunks:
		c = &chunk{buf: make([]byte, chunkBytes)}
		q.chunks++
	default:
		return nil
	}
	if old := q.cur; old != nil && old.live == 0 {
		q.freeChunk(old)
	}
	c.used = 0
	q.cur = c
	return c
}

// freeChunk gives back a chunk none of whose records is held any more.
func (q *queue) freeChunk(c *chunk) {
	if len(c.buf) == chunkBytes {
		q.free = append(q.free, c)
		return
	}
	q.chunks -= len(c.buf) / chunkBytes
}

// ready is the number of queued spans not yet taken into a batch.
func (q *queue) ready() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int(q.tail - q.taken)
}

// held is the number of spans the queue holds: queued or being exported.
func (q *queue) held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int(q.tail - q.head)
}

// take sets b to up to max queued spans, as the runs of records that lie
// back to back. b's bytes stay valid until release.
func (q *queue) take(b *batch, max int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	b.reset()
	size := uint64(len(q.recs))
	for ; q.taken < q.tail && b.count < max; q.taken++ {
		r := q.recs[q.taken%size]
		if k := len(b.wire) - 1; k >= 0 && b.last == r.c && b.end == r.off {
			b.wire[k] = r.c.buf[b.start : r.off+r.n : r.off+r.n]
		} else {
			b.wire = append(b.wire, r.c.buf[r.off:r.off+r.n:r.off+r.n])
			b.start = r.off
		}
		b.last, b.end = r.c, r.off+r.n
		b.layout = b.layout.Union(r.layout)
		b.count++
	}
}

// release frees the records of the batch taken last, which must hold n
// spans.
func (q *queue) release(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.freeRecords(uint64(n))
}

func (q *queue) freeRecords(n uint64) {
	size := uint64(len(q.recs))
	for ; n > 0; n-- {
		r := &q.recs[q.head%size]
		if r.c.live--; r.c.live == 0 && r.c != q.cur {
			q.freeChunk(r.c)
		}
		r.c = nil
		q.head++
	}
}

// close refuses further pushes and frees every queued span, returning how
// many there were. Only the exporter calls it, with no batch in flight.
func (q *queue) close() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	n := q.tail - q.taken
	q.freeRecords(q.tail - q.head)
	q.taken = q.tail
	return int(n)
}

// batch is what the exporter sends at once: spans in the batch layout, in
// runs that each lie back to back in the queue's memory, and, for a driver
// that takes decoded spans, the same decoded.
type batch struct {
	wire   [][]byte // alias the queue's memory until release
	count  int
	layout wire.Layout // what its spans were written in
	spans  []core.Span
	// The last run: its chunk, and where it starts and ends there.
	last       *chunk
	start, end int
	joined     []byte // the runs as one, for decoding
}

func (b *batch) reset() {
	clear(b.wire) // drop references to the queue's memory
	b.wire, b.count, b.layout, b.last = b.wire[:0], 0, wire.Layout{}, nil
	clear(b.spans)
	b.spans = b.spans[:0]
}

// bytes returns the batch's runs as one buffer, valid until the next call.
func (b *batch) bytes() []byte {
	if len(b.wire) == 1 {
		return b.wire[0]
	}
	b.joined = b.joined[:0]
	for _, w := range b.wire {
		b.joined = append(b.joined, w...)
	}
	return b.joined
}
