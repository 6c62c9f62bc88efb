package pipeline

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

func testSpan(id uint64, value string) core.Span {
	return core.Span{TraceID: core.TraceID{Low: id}, SpanID: core.SpanID(id), Name: "op", Tags: []core.Tag{{Key: "k", Value: value}}}
}

// readsBack takes every queued span in one batch and checks that it reads
// back as want: ids and tag values, in order.
func readsBack(t *testing.T, q *queue, want []core.Span) {
	t.Helper()
	var b batch
	q.take(&b, len(want)+1)
	got := decoded(t, &b)
	if len(got) != len(want) {
		t.Fatalf("%d spans read back, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].SpanID != want[i].SpanID || got[i].Tags[0].Value != want[i].Tags[0].Value {
			t.Fatalf("span %d reads back as id %d with a %d-byte tag", i+1, got[i].SpanID, len(got[i].Tags[0].Value))
		}
	}
}

// decoded is what a batch holds, as a driver would read it.
func decoded(t *testing.T, b *batch) []core.Span {
	t.Helper()
	spans, err := wire.DecodeBatch(nil, b.bytes(), b.count, time.Now)
	if err != nil {
		t.Fatalf("the batch does not decode: %v", err)
	}
	return spans
}

// The records of a batch being exported are not free: the driver still
// reads them. A push that would overwrite them is refused.
func TestQueueKeepsTheBatchInFlight(t *testing.T) {
	q := newQueue(2, 2, nil)
	for i := range uint64(2) {
		if r := q.push(new(testSpan(i+1, "v"))); r != pushed {
			t.Fatalf("push %d: %v", i, r)
		}
	}
	var b batch
	q.take(&b, 2)
	if r := q.push(new(testSpan(3, "v"))); r != pushFull {
		t.Fatalf("a push over a batch in flight: %v, want pushFull", r)
	}
	if got := decoded(t, &b); len(got) != 2 || got[0].SpanID != 1 || got[1].SpanID != 2 || q.held() != 2 || q.ready() != 0 {
		t.Fatalf("batch %v, held %d, ready %d", got, q.held(), q.ready())
	}
	q.release(b.count)
	if r := q.push(new(testSpan(3, "v"))); r != pushed || q.held() != 1 {
		t.Fatalf("after release: %v, held %d", r, q.held())
	}
	if n := q.close(); n != 1 {
		t.Fatalf("close dropped %d, want 1", n)
	}
	if r := q.push(new(testSpan(4, "v"))); r != pushClosed {
		t.Fatalf("a push after close: %v", r)
	}
}

// The queue's memory comes in chunks: a batch spans them, in runs; a chunk
// whose records are all freed is reused (the one being written starts over),
// so a steady stream keeps using the same memory.
func TestQueueChunksAreReused(t *testing.T) {
	q := newQueue(1024, 512, nil)
	value := strings.Repeat("x", 400)
	one := wire.SpanLen(new(testSpan(1, value)), wire.Layout{})
	perChunk := chunkBytes / one
	var b batch
	id := uint64(0)
	push := func(n int) {
		t.Helper()
		for range n {
			id++
			if r := q.push(new(testSpan(id, value))); r != pushed {
				t.Fatalf("push %d: %v", id, r)
			}
		}
	}
	push(perChunk + 10) // into a second chunk
	q.take(&b, 512)
	if len(b.wire) != 2 || b.count != perChunk+10 || len(decoded(t, &b)) != perChunk+10 {
		t.Fatalf("a batch over two chunks: %d runs, %d spans", len(b.wire), b.count)
	}
	first := b.last
	q.release(b.count)
	if q.chunks != 2 || len(q.free) != 1 {
		t.Fatalf("after the batch: %d chunks, %d free, want 2 and the first free", q.chunks, len(q.free))
	}
	for range 20 { // a steady stream, batch after batch
		push(perChunk / 2)
		q.take(&b, 512)
		if got := decoded(t, &b); got[len(got)-1].SpanID != core.SpanID(id) {
			t.Fatalf("the batch ends at span %d, want %d", got[len(got)-1].SpanID, id)
		}
		q.release(b.count)
	}
	if q.chunks != 2 || q.cur != first && q.cur.used > chunkBytes/2+one {
		t.Fatalf("a steady stream took %d chunks", q.chunks)
	}
}

// A queue refuses a span when no chunk has room for it, however few spans
// it holds; a span larger than a chunk takes memory of its own, given back
// when it is freed.
func TestQueueFullByBytes(t *testing.T) {
	q := newQueue(64, 64, nil)
	big := testSpan(1, strings.Repeat("b", minQueueBytes/2))
	if r := q.push(&big); r != pushed {
		t.Fatalf("first half: %v", r)
	}
	if r := q.push(&big); r != pushFull {
		t.Fatalf("a second half of the memory, with the first held: %v, want pushFull", r)
	}
	if r := q.push(new(testSpan(2, "small"))); r != pushed {
		t.Fatalf("a small span beside it: %v", r)
	}
	var b batch
	q.take(&b, 64)
	q.release(b.count)
	if q.chunks != 1 {
		t.Fatalf("%d chunks held after the big span was freed, want the small one's", q.chunks)
	}
	whole := testSpan(3, strings.Repeat("w", minQueueBytes))
	if r := q.push(&whole); r != pushFull {
		t.Fatalf("a span larger than the queue's memory: %v, want pushFull", r)
	}
}

// A span's trace state and numbered keys are written only while the
// driver reads them, and the batch says what its spans were written in.
func TestQueueLayoutFollowsTheDriver(t *testing.T) {
	reads := wire.Layout{}
	q := newQueue(4, 4, func() wire.Layout { return reads })
	s := testSpan(1, "v")
	s.TraceState = "ot=th:8"
	s.Tags = append(s.Tags, core.Tag{Key: wire.TagKey("component"), Value: "proxy"})
	q.push(&s)
	var b batch
	q.take(&b, 4)
	if b.layout != (wire.Layout{}) || bytes.Contains(b.wire[0], []byte("ot=th:8")) || !bytes.Contains(b.wire[0], []byte("component")) {
		t.Fatalf("for a base-layout driver: layout %+v, bytes %q", b.layout, b.wire[0])
	}
	q.release(1)
	reads = wire.Full
	s.SpanID = 2
	q.push(&s)
	noState := testSpan(3, "v") // binds the batch to no trace state
	q.push(&noState)
	q.take(&b, 4)
	got := decoded(t, &b)
	if b.layout != wire.Full || got[0].TraceState != "ot=th:8" || bytes.Contains(b.wire[0], []byte("component")) {
		t.Fatalf("for a Full driver: layout %+v, trace state %q, bytes %q", b.layout, got[0].TraceState, b.wire[0])
	}
	if got[0].Tags[len(got[0].Tags)-1].Key != "component" {
		t.Fatalf("tags %+v", got[0].Tags)
	}
	q.release(2)
	q.push(&noState)
	q.take(&b, 4)
	if b.layout.TraceState {
		t.Fatalf("a batch without trace states says it has some: %+v", b.layout)
	}
}

func (r pushResult) String() string {
	return [...]string{"pushed", "pushFull", "pushClosed"}[r]
}

// Spans of every size share a batch: one that does not fit in the chunk
// being written goes to the next, one larger than a chunk gets memory of
// its own; the batch reads back as pushed, in order.
func TestQueueSpansOfEverySize(t *testing.T) {
	q := newQueue(64, 64, nil)
	var want []core.Span
	for i, size := range []int{100, 50_000, 5_000, 9_000, 20_000, 300, 70_000, 10, 8_100, 8_200} {
		s := testSpan(uint64(i+1), strings.Repeat(string(rune('a'+i)), size))
		if r := q.push(&s); r != pushed {
			t.Fatalf("push of a %d-byte span: %v", size, r)
		}
		want = append(want, s)
	}
	readsBack(t, q, want)
}

// A span is encoded unmeasured into the rest of the chunk being written;
// one that turns out larger than that rest (but not than a chunk) goes
// whole into the next chunk, and every span reads back as pushed.
func TestQueueSpanLargerThanTheRestOfAChunk(t *testing.T) {
	q := newQueue(1024, 1024, nil)
	small := strings.Repeat("s", 300)
	var want []core.Span
	push := func(value string) {
		t.Helper()
		s := testSpan(uint64(len(want)+1), value)
		if r := q.push(&s); r != pushed {
			t.Fatalf("push %d: %v", s.SpanID, r)
		}
		want = append(want, s)
	}
	for q.cur == nil || len(q.cur.buf)-q.cur.used >= encodeHeadroom+400 {
		push(small)
	}
	first, rest := q.cur, len(q.cur.buf)-q.cur.used
	push(strings.Repeat("L", rest+100)) // does not fit what is left
	if q.cur == first || q.chunks != 2 || first.used != chunkBytes-rest {
		t.Fatalf("the large span: chunk changed %v, %d chunks, first chunk's use %d (was %d)", q.cur != first, q.chunks, first.used, chunkBytes-rest)
	}
	push(small)
	readsBack(t, q, want)
}
