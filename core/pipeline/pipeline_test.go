package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/wire"
)

// recorder is an in-process driver that records batches and fails on
// demand.
type recorder struct {
	mu      sync.Mutex
	batches [][]core.Span
	ids     map[uint64]uint64 // batch id -> times seen
	// fail returns the error for the n-th Export call (from 1), or nil.
	fail     func(n int) error
	calls    int
	block    chan struct{} // when set, Export waits on it (or ctx)
	shutdown int
}

func (r *recorder) Configure(context.Context, []byte, core.HostInfo) (core.Capabilities, error) {
	return core.Capabilities{}, nil
}

func (r *recorder) Export(ctx context.Context, spans []core.Span) error {
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return core.Retryable(ctx.Err())
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.ids == nil {
		r.ids = map[uint64]uint64{}
	}
	r.ids[core.BatchID(ctx)]++
	if r.fail != nil {
		if err := r.fail(r.calls); err != nil {
			return err
		}
	}
	kept := make([]core.Span, len(spans))
	for i := range spans {
		kept[i] = spans[i].Clone() // the pipeline reuses spans' memory after Export
	}
	r.batches = append(r.batches, kept)
	return nil
}

func (r *recorder) Shutdown(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shutdown++
	return nil
}

func (r *recorder) spans() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, b := range r.batches {
		n += len(b)
	}
	return n
}

func span(id uint64) core.Span {
	return core.Span{TraceID: core.TraceID{Low: id}, SpanID: core.SpanID(id), Name: "op", Tags: []core.Tag{{Key: "k", Value: "v"}}}
}

func newPipeline(t *testing.T, cfg pipeline.Config, drivers ...*recorder) *pipeline.Pipeline {
	t.Helper()
	var targets []pipeline.Target
	for i, d := range drivers {
		targets = append(targets, pipeline.Target{Name: string(rune('a' + i)), Driver: d})
	}
	p, err := pipeline.New(cfg, targets, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func shutdown(t *testing.T, p *pipeline.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBatchesBySize(t *testing.T) {
	r := &recorder{}
	p := newPipeline(t, pipeline.Config{BatchSize: 10, BatchDelay: time.Hour}, r)
	for i := range 25 {
		p.Enqueue(span(uint64(i + 1)))
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	sizes := []int{}
	for _, b := range r.batches {
		sizes = append(sizes, len(b))
	}
	r.mu.Unlock()
	if len(sizes) != 3 || sizes[0] != 10 || sizes[1] != 10 || sizes[2] != 5 {
		t.Fatalf("batch sizes = %v, want [10 10 5]", sizes)
	}
	shutdown(t, p)
	st := p.Stats()[0]
	if st.Enqueued != 25 || st.Exported != 25 || st.Batches != 3 || st.DroppedTotal() != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestBatchDelaySendsPartialBatch(t *testing.T) {
	r := &recorder{}
	p := newPipeline(t, pipeline.Config{BatchSize: 100, BatchDelay: 10 * time.Millisecond}, r)
	defer shutdown(t, p)
	p.Enqueue(span(1))
	deadline := time.Now().Add(10 * time.Second)
	for r.spans() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r.spans() != 1 {
		t.Fatal("a lone span was never sent")
	}
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	r := &recorder{block: make(chan struct{})}
	p := newPipeline(t, pipeline.Config{QueueSize: 8, BatchSize: 4, BatchDelay: time.Millisecond}, r)
	for i := range 1000 {
		p.Enqueue(span(uint64(i + 1))) // must return although nothing drains
	}
	st := p.Stats()[0]
	if st.Dropped[pipeline.DropQueueFull] == 0 || st.Enqueued+st.Dropped[pipeline.DropQueueFull] != 1000 {
		t.Fatalf("enqueued %d + dropped %v != 1000", st.Enqueued, st.Dropped)
	}
	close(r.block)
	shutdown(t, p)
	if got := uint64(r.spans()); got != st.Enqueued {
		t.Fatalf("exported %d, want every enqueued span (%d)", got, st.Enqueued)
	}
}

func TestRetryableIsRetriedWithTheSameBatchID(t *testing.T) {
	r := &recorder{fail: func(n int) error {
		if n <= 3 {
			return core.Retryable(errors.New("503"))
		}
		return nil
	}}
	p := newPipeline(t, pipeline.Config{BatchSize: 5, RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond}, r)
	for i := range 5 {
		p.Enqueue(span(uint64(i + 1)))
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	shutdown(t, p)
	st := p.Stats()[0]
	if st.Exported != 5 || st.ExportErrors != 3 || st.DroppedTotal() != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if len(r.ids) != 1 {
		t.Fatalf("retries used batch ids %v; want one id for all attempts", r.ids)
	}
}

func TestPermanentIsDroppedAndCounted(t *testing.T) {
	r := &recorder{fail: func(int) error { return core.Permanent(errors.New("400 bad span")) }}
	p := newPipeline(t, pipeline.Config{BatchSize: 5}, r)
	for i := range 5 {
		p.Enqueue(span(uint64(i + 1)))
	}
	p.Flush(context.Background())
	shutdown(t, p)
	st := p.Stats()[0]
	if st.Dropped[pipeline.DropRejected] != 5 || r.calls != 1 {
		t.Fatalf("dropped = %v after %d calls; want 5 rejected after 1 call", st.Dropped, r.calls)
	}
}

func TestRetriesGiveUpAfterRetryFor(t *testing.T) {
	r := &recorder{fail: func(int) error { return errors.New("unclassified: retried") }}
	p := newPipeline(t, pipeline.Config{BatchSize: 5, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, RetryFor: 50 * time.Millisecond}, r)
	for i := range 5 {
		p.Enqueue(span(uint64(i + 1)))
	}
	p.Flush(context.Background())
	shutdown(t, p)
	st := p.Stats()[0]
	if st.Dropped[pipeline.DropRetriesExhausted] != 5 || r.calls < 2 {
		t.Fatalf("dropped = %v after %d calls; want 5 retries_exhausted after several calls", st.Dropped, r.calls)
	}
}

func TestShutdownDrainsAndStopsDrivers(t *testing.T) {
	a, b := &recorder{}, &recorder{}
	p := newPipeline(t, pipeline.Config{BatchSize: 7, BatchDelay: time.Hour}, a, b)
	for i := range 100 {
		p.Enqueue(span(uint64(i + 1)))
	}
	shutdown(t, p)
	shutdown(t, p) // idempotent
	if a.spans() != 100 || b.spans() != 100 {
		t.Fatalf("after Shutdown: a=%d b=%d spans, want 100 each", a.spans(), b.spans())
	}
	if a.shutdown != 1 || b.shutdown != 1 {
		t.Fatalf("driver Shutdown calls: a=%d b=%d, want 1 each", a.shutdown, b.shutdown)
	}
	p.Enqueue(span(101))
	if st := p.Stats()[0]; st.Dropped[pipeline.DropShutdown] != 1 {
		t.Fatalf("a span enqueued after Shutdown must be counted as dropped: %v", st.Dropped)
	}
}

func TestShutdownDeadlineCountsWhatIsLeft(t *testing.T) {
	r := &recorder{block: make(chan struct{})} // never answers
	p := newPipeline(t, pipeline.Config{BatchSize: 10, BatchDelay: time.Millisecond}, r)
	for i := range 50 {
		p.Enqueue(span(uint64(i + 1)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p.Shutdown(ctx)
	st := p.Stats()[0]
	if st.Dropped[pipeline.DropShutdown] != 50 {
		t.Fatalf("dropped = %v, want all 50 as shutdown", st.Dropped)
	}
}

func TestOneStalledDriverDoesNotHoldBackAnother(t *testing.T) {
	stalled, fine := &recorder{block: make(chan struct{})}, &recorder{}
	p := newPipeline(t, pipeline.Config{QueueSize: 64, BatchSize: 8, BatchDelay: time.Millisecond}, stalled, fine)
	// Feed less than a queue at a time and wait for the healthy driver to
	// take it: it must keep up although the other one never answers.
	for i := range 500 {
		p.Enqueue(span(uint64(i + 1)))
		if (i+1)%32 == 0 {
			deadline := time.Now().Add(10 * time.Second)
			for fine.spans() < i+1 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if fine.spans() < i+1 {
				t.Fatalf("the healthy driver is stuck at %d spans behind a stalled one", fine.spans())
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	p.Shutdown(ctx)
	if fine.spans() != 500 {
		t.Fatalf("the healthy driver got %d of 500 spans", fine.spans())
	}
}

func TestValidate(t *testing.T) {
	err := pipeline.Config{QueueSize: 10, BatchSize: 20, RetryFor: -time.Second}.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"batch_size: must not exceed queue_size (10), got 20", "retry_for: must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// Enqueue is on every request's path: once the queue's slots have held a
// span each, it must not allocate.
func TestEnqueueDoesNotAllocate(t *testing.T) {
	r := &recorder{}
	const size = 2048
	p := newPipeline(t, pipeline.Config{QueueSize: size, BatchSize: size, BatchDelay: time.Hour}, r)
	defer shutdown(t, p)
	s := span(1)
	for range size {
		p.Enqueue(s)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { p.Enqueue(s) }); n != 0 {
		t.Fatalf("Enqueue allocates %.1f times per call, want 0", n)
	}
}

// Enqueue copies what it is given: the caller may reuse its buffers at once,
// and a span too big for a slot's kept memory still arrives whole.
func TestEnqueueCopiesTheSpan(t *testing.T) {
	r := &recorder{}
	p := newPipeline(t, pipeline.Config{QueueSize: 4, BatchSize: 2}, r)
	scratch := []byte("GET /first")
	s := span(1)
	s.Name = string(scratch) // a copy; the tag below aliases scratch
	s.Tags = []core.Tag{{Key: "http.url", Value: unsafe.String(&scratch[0], len(scratch))}}
	s.Events = []core.Event{{UnixNano: 1, Value: "retry"}}
	p.Enqueue(s)
	copy(scratch, "PUT /other")
	s.Tags[0].Key = "overwritten"
	big := span(2)
	big.Tags = []core.Tag{{Key: "x-big", Value: strings.Repeat("b", 64<<10)}}
	for i := range 100 {
		big.Tags = append(big.Tags, core.Tag{Key: fmt.Sprint("k", i), Value: "v"})
	}
	p.Enqueue(big)
	shutdown(t, p)
	if r.spans() != 2 {
		t.Fatalf("%d spans exported, want 2", r.spans())
	}
	got := r.batches[0]
	if v, _ := got[0].Tag("http.url"); v != "GET /first" || got[0].Name != "GET /first" || got[0].Events[0].Value != "retry" {
		t.Errorf("exported %+v: the caller's later writes reached the queued span", got[0])
	}
	if v, _ := got[1].Tag("x-big"); len(v) != 64<<10 || len(got[1].Tags) != 101 || got[1].Tags[100].Key != "k99" {
		t.Errorf("a big span arrived cut: %d tags, x-big of %d bytes", len(got[1].Tags), len(v))
	}
}

// A span without ids would make a collector refuse its whole batch: it is
// dropped at the door and counted.
func TestInvalidSpansAreDroppedAndCounted(t *testing.T) {
	r := &recorder{}
	p := newPipeline(t, pipeline.Config{BatchSize: 4}, r)
	p.Enqueue(core.Span{SpanID: 1})                     // no trace id
	p.Enqueue(core.Span{TraceID: core.TraceID{Low: 1}}) // no span id
	p.Enqueue(span(3))
	shutdown(t, p)
	st := p.Stats()[0]
	if st.Dropped[pipeline.DropInvalid] != 2 || r.spans() != 1 {
		t.Fatalf("dropped %v, exported %d", st.Dropped, r.spans())
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	var times []time.Time
	r := &recorder{fail: func(n int) error {
		times = append(times, time.Now())
		if n == 1 {
			return core.RetryAfter(errors.New("429 Too Many Requests"), 300*time.Millisecond)
		}
		return nil
	}}
	// The pipeline's own backoff would come back within 2ms.
	p := newPipeline(t, pipeline.Config{BatchSize: 5, RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond}, r)
	for i := range 5 {
		p.Enqueue(span(uint64(i + 1)))
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	shutdown(t, p)
	if len(times) != 2 {
		t.Fatalf("%d Export calls; want 2", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < 300*time.Millisecond {
		t.Fatalf("retried after %s; the back end asked for 300ms", gap)
	}
	if st := p.Stats()[0]; st.Exported != 5 || st.DroppedTotal() != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestRetryAfterBeyondRetryForDrops(t *testing.T) {
	r := &recorder{fail: func(int) error {
		return core.RetryAfter(errors.New("503 Service Unavailable"), time.Hour)
	}}
	p := newPipeline(t, pipeline.Config{BatchSize: 5, RetryFor: time.Second}, r)
	for i := range 5 {
		p.Enqueue(span(uint64(i + 1)))
	}
	start := time.Now()
	p.Flush(context.Background())
	shutdown(t, p)
	if st := p.Stats()[0]; st.Dropped[pipeline.DropRetriesExhausted] != 5 || r.calls != 1 {
		t.Fatalf("dropped = %v after %d calls; want 5 retries_exhausted after 1 call", st.Dropped, r.calls)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s: a delay past RetryFor must drop at once, not wait", d)
	}
}

func TestPartialRejectionIsCountedAndLogged(t *testing.T) {
	r := &recorder{fail: func(n int) error {
		if n == 1 {
			return core.PartiallyRejected(2, "2 spans had an empty name")
		}
		return nil
	}}
	var logs bytes.Buffer
	p, err := pipeline.New(pipeline.Config{BatchSize: 5}, []pipeline.Target{{Name: "otlp", Driver: r}},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		p.Enqueue(span(uint64(i + 1)))
	}
	p.Flush(context.Background())
	shutdown(t, p)
	st := p.Stats()[0]
	if st.Exported != 3 || st.Dropped[pipeline.DropRejected] != 2 || st.DroppedTotal() != 2 || r.calls != 1 || st.ExportErrors != 0 {
		t.Fatalf("stats = %+v after %d calls; want 3 exported, 2 rejected, no retry", st, r.calls)
	}
	if !strings.Contains(logs.String(), "2 spans had an empty name") {
		t.Fatalf("the back end's message is not logged: %s", logs.String())
	}
}

func TestPartiallyRejectedNothingToReport(t *testing.T) {
	if err := core.PartiallyRejected(0, ""); err != nil {
		t.Fatalf("PartiallyRejected(0, \"\") = %v; want nil", err)
	}
	err := fmt.Errorf("wrapped: %w", core.PartiallyRejected(0, "deprecated field"))
	if pr := core.AsPartialRejection(err); pr == nil || pr.Rejected != 0 || pr.Message != "deprecated field" {
		t.Fatalf("AsPartialRejection = %+v", pr)
	}
	if d := core.RetryDelay(core.Permanent(errors.New("x"))); d != 0 {
		t.Fatalf("RetryDelay of a permanent error = %s", d)
	}
	if d := core.RetryDelay(fmt.Errorf("w: %w", core.RetryAfter(errors.New("x"), time.Second))); d != time.Second {
		t.Fatalf("RetryDelay through a wrap = %s", d)
	}
}

// A reload's successor shares the exporter of a driver that carries over,
// so its queue goes on; retiring the old pipeline flushes and stops only
// the driver that was removed, and every span reaches the driver in force
// when it was enqueued.
func TestSuccessorSharesCarriedDrivers(t *testing.T) {
	kept, removed, added := &recorder{}, &recorder{}, &recorder{}
	cfg := pipeline.Config{QueueSize: 100, BatchSize: 10, BatchDelay: time.Hour}
	old, err := pipeline.New(cfg, []pipeline.Target{{Name: "kept", Driver: kept}, {Name: "removed", Driver: removed}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		old.Enqueue(span(uint64(i)))
	}
	next, err := old.Successor(cfg, []pipeline.Target{{Name: "kept", Driver: kept}, {Name: "added", Driver: added}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A request that began before the switch finishes after it.
	old.Enqueue(span(6))
	for i := 7; i <= 9; i++ {
		next.Enqueue(span(uint64(i)))
	}
	shutdown(t, old)
	if removed.spans() != 6 || removed.shutdown != 1 {
		t.Fatalf("the removed driver got %d spans (want 6) and %d shutdowns (want 1)", removed.spans(), removed.shutdown)
	}
	if kept.shutdown != 0 {
		t.Fatal("retiring the old pipeline stopped a driver its successor shares")
	}
	// A request that outlived the retirement (a WebSocket): its span still
	// reaches the driver that carried over; the removed one counts it.
	old.Enqueue(span(11))
	next.Enqueue(span(10))
	shutdown(t, next)
	if kept.spans() != 11 || added.spans() != 4 || kept.shutdown != 1 || added.shutdown != 1 {
		t.Fatalf("kept %d spans (want 11, shut %d), added %d (want 4, shut %d)", kept.spans(), kept.shutdown, added.spans(), added.shutdown)
	}
	if d := old.Stats()[1].Dropped[pipeline.DropShutdown]; d != 1 {
		t.Fatalf("the removed driver counted %d spans dropped at shutdown, want 1", d)
	}
	if st := next.Stats(); st[0].Name != "kept" || st[0].Exported != 11 {
		t.Fatalf("the shared exporter's counters did not carry over: %+v", st[0])
	}
}

// lateBackend is a driver in front of a back end that stores each batch as
// it arrives and answers only answerAfter later, as a distant or loaded
// collector does. Like a real driver, it gives up on the answer when its
// context ends: the back end has stored the batch all the same.
type lateBackend struct {
	answerAfter time.Duration
	// refuseFirst makes the first call answer a retryable error, late,
	// without storing anything (a 503): the batch was not delivered.
	refuseFirst bool

	mu     sync.Mutex
	calls  int
	stored map[core.SpanID]int
}

func (b *lateBackend) Configure(context.Context, []byte, core.HostInfo) (core.Capabilities, error) {
	return core.Capabilities{}, nil
}

func (b *lateBackend) Export(ctx context.Context, spans []core.Span) error {
	b.mu.Lock()
	b.calls++
	refuse := b.refuseFirst && b.calls == 1
	if !refuse {
		if b.stored == nil {
			b.stored = map[core.SpanID]int{}
		}
		for _, s := range spans {
			b.stored[s.SpanID]++
		}
	}
	b.mu.Unlock()
	select {
	case <-time.After(b.answerAfter):
	case <-ctx.Done():
		return core.Retryable(fmt.Errorf("no answer: %w", ctx.Err()))
	}
	if refuse {
		return core.Retryable(errors.New("503 service unavailable"))
	}
	return nil
}

func (b *lateBackend) Shutdown(context.Context) error { return nil }

func (b *lateBackend) count(id core.SpanID) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stored[id]
}

func (b *lateBackend) started() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// waitExporting waits until the back end has had n Export calls.
func waitExporting(t *testing.T, b *lateBackend, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); b.started() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pipeline did not export within 5s")
		}
	}
}

// storedOnce checks that spans 1..n were stored exactly once each.
func storedOnce(t *testing.T, b *lateBackend, n int) {
	t.Helper()
	for id := core.SpanID(1); id <= core.SpanID(n); id++ {
		if c := b.count(id); c != 1 {
			t.Errorf("span %d stored %d times, want once", id, c)
		}
	}
}

// Stopping (SIGTERM, a drain) while an export is in flight to a back end
// that has stored the batch but not answered yet: the export is awaited
// within the shutdown deadline and its answer honoured. Cancelling it
// would make the pipeline send the batch again, and back ends do not
// deduplicate (issue 26: every span stored twice).
func TestShutdownAwaitsTheExportInFlight(t *testing.T) {
	b := &lateBackend{answerAfter: 450 * time.Millisecond}
	p, err := pipeline.New(pipeline.Config{BatchDelay: 10 * time.Millisecond}, []pipeline.Target{{Name: "late", Driver: b}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		p.Enqueue(span(uint64(i + 1)))
	}
	waitExporting(t, b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	storedOnce(t, b, 5)
	st := p.Stats()[0]
	if st.Exported != 5 || st.DroppedTotal() != 0 || b.started() != 1 {
		t.Errorf("exported %d, dropped %v, %d Export calls; want 5, none, 1", st.Exported, st.Dropped, b.started())
	}
}

// A reload that removes a driver retires its pipeline the same way: the
// export in flight is awaited, not cancelled and sent again.
func TestRetiringAwaitsTheExportInFlight(t *testing.T) {
	removed, added := &lateBackend{answerAfter: 450 * time.Millisecond}, &recorder{}
	cfg := pipeline.Config{BatchDelay: 10 * time.Millisecond}
	old, err := pipeline.New(cfg, []pipeline.Target{{Name: "removed", Driver: removed}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		old.Enqueue(span(uint64(i + 1)))
	}
	waitExporting(t, removed, 1)
	next, err := old.Successor(cfg, []pipeline.Target{{Name: "added", Driver: added}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, next)
	shutdown(t, old)
	storedOnce(t, removed, 5)
	if st := old.Stats()[0]; st.Exported != 5 || st.DroppedTotal() != 0 {
		t.Errorf("exported %d, dropped %v; want 5, none", st.Exported, st.Dropped)
	}
}

// When the shutdown deadline passes with the export still in flight, the
// back end may or may not have the batch: it is counted as dropped at
// shutdown and not sent again, and Shutdown keeps to its deadline.
func TestShutdownDeadlineDuringExportDoesNotResend(t *testing.T) {
	b := &lateBackend{answerAfter: 5 * time.Second}
	p, err := pipeline.New(pipeline.Config{BatchDelay: 10 * time.Millisecond}, []pipeline.Target{{Name: "late", Driver: b}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		p.Enqueue(span(uint64(i + 1)))
	}
	waitExporting(t, b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	p.Shutdown(ctx)
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("Shutdown took %s with a 100ms deadline", took)
	}
	storedOnce(t, b, 5)
	if st := p.Stats()[0]; st.Dropped[pipeline.DropShutdown] != 5 || b.started() != 1 {
		t.Errorf("dropped %v after %d Export calls; want 5 as shutdown after 1", st.Dropped, b.started())
	}
}

// An answer that says the batch was not delivered (a retryable error, as a
// 503 or a dead driver process give) still gets the batch sent again
// during the shutdown, within its deadline.
func TestShutdownResendsWhatWasNotDelivered(t *testing.T) {
	b := &lateBackend{answerAfter: 300 * time.Millisecond, refuseFirst: true}
	p, err := pipeline.New(pipeline.Config{BatchDelay: 10 * time.Millisecond, RetryInitial: 10 * time.Second}, []pipeline.Target{{Name: "late", Driver: b}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		p.Enqueue(span(uint64(i + 1)))
	}
	waitExporting(t, b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.Shutdown(ctx)
	storedOnce(t, b, 5)
	if st := p.Stats()[0]; st.Exported != 5 || st.DroppedTotal() != 0 || b.started() != 2 {
		t.Errorf("exported %d, dropped %v after %d Export calls; want 5, none, 2", st.Exported, st.Dropped, b.started())
	}
}

// layoutDriver takes its batches in the batch layout, as a driver
// process's host does, and records them decoded.
type layoutDriver struct {
	recorder
	layout  wire.Layout
	layouts []wire.Layout // the layout of each ExportBatch
}

var _ pipeline.BatchDriver = (*layoutDriver)(nil)

func (d *layoutDriver) Layout() wire.Layout {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.layout
}

func (d *layoutDriver) ExportBatch(ctx context.Context, runs [][]byte, count int, l wire.Layout) error {
	spans, err := wire.DecodeBatch(nil, bytes.Join(runs, nil), count, time.Now)
	if err != nil {
		return core.Permanent(err)
	}
	d.mu.Lock()
	d.layouts = append(d.layouts, l)
	d.mu.Unlock()
	return d.Export(ctx, spans)
}

// A BatchDriver gets each batch as the queue encoded it, trace states only
// while it reads them, with the same retries and batch ids as any driver.
// (What each layout writes: wire's and the queue's tests.)
func TestBatchDriverGetsTheLayoutAsQueued(t *testing.T) {
	d := &layoutDriver{}
	d.fail = func(n int) error {
		if n == 1 {
			return core.Retryable(errors.New("once"))
		}
		return nil
	}
	p, err := pipeline.New(pipeline.Config{QueueSize: 8, BatchSize: 2, RetryInitial: time.Millisecond}, []pipeline.Target{{Name: "layout", Driver: d}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := span(1)
	s.TraceState = "ot=th:8"
	p.Enqueue(s)
	d.mu.Lock()
	d.layout = wire.Layout{TraceState: true}
	d.mu.Unlock()
	s = span(2)
	s.TraceState = "ot=th:8"
	p.Enqueue(s)
	shutdown(t, p)
	if len(d.batches) != 1 || len(d.batches[0]) != 2 || len(d.ids) != 1 || d.calls != 2 {
		t.Fatalf("batches %v, ids %v, calls %d: want one batch of 2, sent twice with one id", d.batches, d.ids, d.calls)
	}
	if got := d.batches[0]; got[0].TraceState != "" || got[1].TraceState != "ot=th:8" || !d.layouts[0].TraceState {
		t.Fatalf("trace states %q %q, layouts %v: want only the second span's, said", got[0].TraceState, got[1].TraceState, d.layouts)
	}
}
