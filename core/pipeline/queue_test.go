package pipeline

import (
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core"
)

func testSpan(id uint64, value string) core.Span {
	return core.Span{TraceID: core.TraceID{Low: id}, SpanID: core.SpanID(id), Name: "op", Tags: []core.Tag{{Key: "k", Value: value}}}
}

// The slots of a batch being exported are not free: the driver still reads
// them. A push that would overwrite them is refused.
func TestQueueKeepsTheBatchInFlight(t *testing.T) {
	q := newQueue(2, 2)
	for i := range uint64(2) {
		if r := q.push(new(testSpan(i+1, "v"))); r != pushed {
			t.Fatalf("push %d: %v", i, r)
		}
	}
	batch := q.take(nil, 2)
	if r := q.push(new(testSpan(3, "v"))); r != pushFull {
		t.Fatalf("a push over a batch in flight: %v, want pushFull", r)
	}
	if batch[0].SpanID != 1 || batch[1].SpanID != 2 || q.held() != 2 || q.ready() != 0 {
		t.Fatalf("batch %v, held %d, ready %d", batch, q.held(), q.ready())
	}
	q.release(len(batch))
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

// A slot gives back memory too big to keep once its span is exported, and
// keeps ordinary memory for the next span.
func TestQueueSlotMemory(t *testing.T) {
	q := newQueue(1, 1)
	q.push(new(testSpan(1, strings.Repeat("x", keepSlotBytes+1))))
	q.release(len(q.take(nil, 1)))
	if sl := q.free[0]; sl.buf != nil || sl.span.Tags != nil {
		t.Fatalf("slot kept %d bytes and its span after release", cap(sl.buf))
	}
	q.push(new(testSpan(2, "small")))
	q.release(len(q.take(nil, 1)))
	if sl := q.free[0]; cap(sl.buf) == 0 || cap(sl.tags) == 0 {
		t.Fatal("slot dropped its ordinary memory: every span would allocate")
	}
}

func (r pushResult) String() string {
	return [...]string{"pushed", "pushFull", "pushClosed"}[r]
}
