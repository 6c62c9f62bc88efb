package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

// BatchDriver is a driver that takes its batches in the batch layout of
// core/wire, as the pipeline's queues keep them: the host of a driver
// process (core/driverhost) hands them on as they lie, into the process's
// span ring or its Export request. The pipeline decodes each batch for a
// driver that is not one (an in-process driver: tests, benchmarks).
type BatchDriver interface {
	core.Driver
	// Layout reports what the driver's decoder reads now beyond the
	// base batch layout (wire.AppendSpan's layout). It is asked for every
	// span queued, so it must be cheap.
	Layout() wire.Layout
	// ExportBatch is Export for count spans laid out in the batch layout,
	// which is the runs in order, back to back (they lie in different
	// places of the queue's memory); they are valid only until it
	// returns. l is the layout they were written in: a driver restarted
	// since (a different build, whose decoder reads less) must not get
	// what it does not read.
	ExportBatch(ctx context.Context, runs [][]byte, count int, l wire.Layout) error
}

// Target is one driver the pipeline delivers to.
type Target struct {
	// Name identifies the driver in logs and stats (tracing.driver.name).
	Name   string
	Driver core.Driver
}

// Pipeline fans finished spans out to every target's queue and exports them
// in batches. Enqueue is safe for concurrent use and never blocks.
//
// A reload replaces a pipeline by its Successor, which shares the exporter
// (queue, goroutine, counters, driver) of every driver that carries over;
// the old pipeline keeps taking the spans of requests that began before
// the switch until it is retired with Shutdown, which stops only the
// exporters no successor shares.
type Pipeline struct {
	exporters []*exporter
	closed    atomic.Bool
	stopOnce  sync.Once
}

// New starts a pipeline delivering to targets. Call Shutdown to stop it.
func New(cfg Config, targets []Target, logger *slog.Logger) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{}
	for _, t := range targets {
		p.exporters = append(p.exporters, newExporter(cfg, t, logger))
	}
	return p, nil
}

func newExporter(cfg Config, t Target, logger *slog.Logger) *exporter {
	var layout func() wire.Layout // an in-process driver gets what this build's decoder reads
	bd, _ := t.Driver.(BatchDriver)
	if bd != nil {
		layout = bd.Layout
	} else {
		layout = func() wire.Layout { return wire.Full }
	}
	e := &exporter{
		name:    t.Name,
		driver:  t.Driver,
		batches: bd,
		cfg:     cfg,
		log:     logger.With("driver", t.Name),
		q:       newQueue(cfg.QueueSize, cfg.BatchSize, layout),
		flushes: make(chan chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	e.refs.Store(1)
	go e.run()
	return e
}

// Successor returns the pipeline of a reloaded config, delivering to
// targets. A target whose Driver is one of p's shares p's exporter for it:
// the same queue, goroutine and counters, so nothing queued is lost or
// reordered and its Config stays p's (a changed queue block means new
// drivers: the caller starts them). The other targets get new exporters
// with cfg. p keeps working until Shutdown retires it.
func (p *Pipeline) Successor(cfg Config, targets []Target, logger *slog.Logger) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	next := &Pipeline{}
	for _, t := range targets {
		var shared *exporter
		for _, e := range p.exporters {
			if e.driver == t.Driver && e.ref() {
				shared = e
				break
			}
		}
		if shared != nil {
			next.exporters = append(next.exporters, shared)
			continue
		}
		next.exporters = append(next.exporters, newExporter(cfg, t, logger))
	}
	return next, nil
}

// Enqueue hands a finished span to every driver. It never blocks and never
// allocates: where a driver's queue is full the span is dropped for that
// driver and counted as DropQueueFull. Each queue encodes the span into
// its own memory, so the caller may reuse the span's as soon as Enqueue
// returns.
func (p *Pipeline) Enqueue(s core.Span) {
	if s.TraceID.IsZero() || s.SpanID == 0 {
		for _, e := range p.exporters {
			e.c.dropped[DropInvalid].Add(1)
		}
		return
	}
	// No check of p.closed here: after a reload retired p, an exporter its
	// successor shares still takes spans (a request that began before the
	// switch and ends after the retirement); a stopped one refuses them
	// itself (pushClosed), counted below.
	for _, e := range p.exporters {
		switch e.q.push(&s) {
		case pushed:
			e.c.enqueued.Add(1)
		case pushFull:
			e.c.dropped[DropQueueFull].Add(1)
		case pushClosed:
			e.c.dropped[DropShutdown].Add(1)
		}
	}
}

// Flush exports everything queued at the time of the call to every driver
// and returns when they have acknowledged it (or dropped it), or when ctx
// ends.
func (p *Pipeline) Flush(ctx context.Context) error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, e := range p.exporters {
		wg.Go(func() {
			if err := e.flush(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("driver %q: %w", e.name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Shutdown stops accepting spans, exports what is queued within ctx's
// deadline (what is left then is dropped and counted as DropShutdown) and
// shuts every driver down, but for those a Successor shares: they go on
// untouched. An export in flight is awaited, not cancelled, and its answer
// decides whether the batch is sent again: back ends do not deduplicate,
// and a batch the back end stored but had not yet acknowledged would
// otherwise be stored twice. One that ctx's deadline cuts short is counted
// as DropShutdown and not sent again. It is idempotent.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	var errs []error
	p.stopOnce.Do(func() {
		p.closed.Store(true)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, e := range p.exporters {
			if e.refs.Add(-1) > 0 {
				continue // a successor delivers through it
			}
			wg.Go(func() {
				err := e.shutdown(ctx)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("driver %q: %w", e.name, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	})
	return errors.Join(errs...)
}

// Stats returns a snapshot of every driver's counters, in target order.
func (p *Pipeline) Stats() []DriverStats {
	out := make([]DriverStats, len(p.exporters))
	for i, e := range p.exporters {
		out[i] = e.stats()
	}
	return out
}

var _ StatsSource = (*Pipeline)(nil)

// exporter owns one driver's queue and the goroutine that drains it.
type exporter struct {
	name    string
	driver  core.Driver
	batches BatchDriver  // driver, when it takes the batch layout as it lies
	dec     wire.Decoder // for a driver that does not
	cfg     Config
	log     *slog.Logger
	q       *queue
	flushes chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	c       counters
	// refs counts the pipelines that deliver through the exporter: more
	// than one across a reload.
	refs     atomic.Int32
	stopOnce sync.Once

	// stopCtx is set before stop is closed; it bounds the export in
	// flight at the stop and the final drain.
	stopCtx context.Context
	batchID uint64

	// Export failures are logged at most once per ErrorLogInterval.
	lastErrLog   time.Time
	errsSinceLog int
}

func (e *exporter) stats() DriverStats {
	s := DriverStats{
		Name:         e.name,
		Enqueued:     e.c.enqueued.Load(),
		Exported:     e.c.exported.Load(),
		ExportErrors: e.c.exportErrors.Load(),
		Batches:      e.c.batches.Load(),
		QueueLen:     e.q.held(),
		QueueCap:     len(e.q.recs),
		Up:           true,
	}
	for i := range s.Dropped {
		s.Dropped[i] = e.c.dropped[i].Load()
	}
	s.Latency.Counts = make([]uint64, len(e.c.latencyCounts))
	for i := range s.Latency.Counts {
		s.Latency.Counts[i] = e.c.latencyCounts[i].Load()
	}
	s.Latency.Sum = time.Duration(e.c.latencySumNanos.Load())
	if sup, ok := e.driver.(Supervised); ok {
		s.Restarts = sup.Restarts()
		s.Up = sup.Up()
	}
	return s
}

func (e *exporter) flush(ctx context.Context) error {
	req := make(chan struct{})
	select {
	case e.flushes <- req:
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ref takes a reference for a successor, unless the exporter has stopped
// (its last pipeline shut down): then the driver must start anew.
func (e *exporter) ref() bool {
	for {
		n := e.refs.Load()
		if n <= 0 {
			return false
		}
		if e.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (e *exporter) shutdown(ctx context.Context) error {
	first := false
	e.stopOnce.Do(func() {
		first = true
		e.stopCtx = ctx
		close(e.stop)
	})
	<-e.done
	if !first {
		return nil // stopped already: the driver too
	}
	if ctx.Err() != nil {
		// The drain used the whole deadline (a collector that refuses
		// everything): the driver still gets a moment to stop cleanly.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
	}
	return e.driver.Shutdown(ctx)
}

func (e *exporter) run() {
	defer close(e.done)
	var b batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	// ctx ends when the stop's deadline passes, not when the stop begins:
	// an export in flight at the stop may have reached the back end, which
	// does not deduplicate, so it is awaited and its answer honoured;
	// cancelling it would make the driver abandon a request the back end
	// may already have stored, and sending the batch again would store it
	// twice.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-e.stop:
		case <-e.done:
			return
		}
		select {
		case <-e.stopCtx.Done(): // set before stop was closed
			cancel()
		case <-e.done:
		}
	}()

	// send exports one batch of at most BatchSize queued spans; every
	// outcome (delivered, dropped and counted) frees its slots.
	send := func() {
		e.q.take(&b, e.cfg.BatchSize)
		if b.count == 0 {
			return
		}
		e.export(ctx, &b)
		e.q.release(b.count)
		b.reset()
		e.dec.Release()
	}
	// settle sends every full batch, then arms the timer for what is left.
	settle := func() {
		for e.q.ready() >= e.cfg.BatchSize {
			send()
		}
		switch n := e.q.ready(); {
		case n > 0 && !armed:
			timer.Reset(e.cfg.BatchDelay)
			armed = true
		case n == 0 && armed:
			timer.Stop()
			armed = false
		}
	}
	// drain exports everything queued right now, batch by batch, until
	// the stop's deadline passes.
	drain := func() {
		for n := e.q.ready(); n > 0 && ctx.Err() == nil; n -= e.cfg.BatchSize {
			send()
		}
	}

	for {
		select {
		case <-e.q.wake:
			settle()
		case <-timer.C:
			armed = false
			send()
			settle()
		case req := <-e.flushes:
			drain()
			close(req)
			settle()
		case <-e.stop:
			// An export in flight when the stop began has had its answer
			// by now (or the deadline passed): what is queued goes out
			// under the shutdown deadline.
			timer.Stop()
			drain()
			// Whatever is still there (the deadline passed) is lost, and
			// the queue refuses what straggling Enqueue calls bring:
			// count both.
			e.c.dropped[DropShutdown].Add(uint64(e.q.close()))
			return
		}
	}
}

// stopping reports whether the pipeline's stop has begun.
func (e *exporter) stopping() bool {
	select {
	case <-e.stop:
		return true
	default:
		return false
	}
}

// export sends one batch, retrying retryable failures with backoff (or after
// the delay the back end asked for, core.RetryAfter) until it succeeds,
// RetryFor passes or ctx ends (the stop's deadline). A partly rejected batch
// (core.PartialRejection) counts as sent, its refused spans as DropRejected.
// Every outcome settles the batch: it is sent again only when the answer
// said it was not delivered (a retryable error, which includes a driver
// process that died), never because the pipeline is stopping. An attempt
// in flight when the stop begins is awaited; one the stop's deadline cuts
// short may have been stored, so its spans are counted as DropShutdown and
// not sent again.
func (e *exporter) export(ctx context.Context, b *batch) {
	if e.batches == nil {
		spans, err := e.dec.Decode(b.bytes(), b.count, time.Now)
		if err != nil { // the queue encoded it: a bug, not the driver's fault
			e.c.dropped[DropRejected].Add(uint64(b.count))
			e.logFailure("a queued batch does not decode; its spans are dropped", err, b.count, 0)
			return
		}
		b.spans = spans
	}
	n := b.count
	e.batchID++
	bctx := core.WithBatchID(ctx, e.batchID)
	deadline := time.Now().Add(e.cfg.RetryFor)
	backoff := e.cfg.RetryInitial
	stopSeen := false // the stop has begun and cut a wait short (or found none to cut)
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			// The stop's deadline passed before this attempt: the batch
			// was not delivered and will not be.
			e.c.dropped[DropShutdown].Add(uint64(n))
			e.logFailure("shutdown deadline passed before the batch could be sent; its spans are dropped", ctx.Err(), n, attempt)
			return
		}
		actx, cancel := context.WithTimeout(bctx, e.cfg.ExportTimeout)
		start := time.Now()
		err := e.exportOnce(actx, b)
		cancel()
		e.c.observeLatency(time.Since(start))
		if err == nil {
			e.c.exported.Add(uint64(n))
			e.c.batches.Add(1)
			return
		}
		if pr := core.AsPartialRejection(err); pr != nil {
			// Delivered, less what the back end refused: sending the
			// batch again would duplicate the accepted spans.
			r := min(pr.Rejected, n)
			e.c.exported.Add(uint64(n - r))
			e.c.batches.Add(1)
			e.c.dropped[DropRejected].Add(uint64(r))
			e.logFailure("back end rejected part of a batch; those spans are dropped", err, n, attempt)
			return
		}
		e.c.exportErrors.Add(1)
		if core.IsPermanent(err) {
			e.c.dropped[DropRejected].Add(uint64(n))
			e.logFailure("driver rejected a batch; its spans are dropped", err, n, attempt)
			return
		}
		if ctx.Err() != nil {
			// The stop's deadline cut this attempt short: the back end
			// may have stored the batch, or not. Sending it again could
			// store it twice; it is counted as lost.
			e.c.dropped[DropShutdown].Add(uint64(n))
			e.logFailure("shutdown deadline passed while a batch was being exported; the back end may or may not have it, and it is not sent again", err, n, attempt)
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if asked := core.RetryDelay(err); asked > 0 {
			// The back end said when it can take more (Retry-After,
			// RetryInfo): coming back sooner only earns another refusal.
			wait = asked
		}
		if time.Now().Add(wait).After(deadline) {
			e.c.dropped[DropRetriesExhausted].Add(uint64(n))
			e.logFailure("export kept failing; the batch's spans are dropped", err, n, attempt)
			return
		}
		e.logFailure("export failed; retrying", err, n, attempt)
		if !stopSeen && e.stopping() {
			// The stop began during this attempt: the next one goes at
			// once, under the shutdown deadline, and backoff starts over.
			stopSeen, backoff = true, e.cfg.RetryInitial
			continue
		}
		if dl, ok := e.stopDeadline(stopSeen); ok && time.Now().Add(wait).After(dl) {
			e.c.dropped[DropShutdown].Add(uint64(n))
			e.logFailure("the next attempt would come after the shutdown deadline; the batch's spans are dropped", err, n, attempt)
			return
		}
		var stop <-chan struct{}
		if !stopSeen {
			stop = e.stop
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			backoff = min(2*backoff, e.cfg.RetryMax)
		case <-stop:
			// As above: a stop cuts the wait short once.
			t.Stop()
			stopSeen, backoff = true, e.cfg.RetryInitial
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// exportOnce is one attempt to export b.
func (e *exporter) exportOnce(ctx context.Context, b *batch) error {
	if e.batches != nil {
		return e.batches.ExportBatch(ctx, b.wire, b.count, b.layout)
	}
	return e.driver.Export(ctx, b.spans)
}

// stopDeadline returns the shutdown deadline once the stop has begun
// (stopSeen: e.stop was seen closed, so e.stopCtx is set).
func (e *exporter) stopDeadline(stopSeen bool) (time.Time, bool) {
	if !stopSeen {
		return time.Time{}, false
	}
	return e.stopCtx.Deadline()
}

func (e *exporter) logFailure(msg string, err error, spans, attempt int) {
	e.errsSinceLog++
	now := time.Now()
	if now.Sub(e.lastErrLog) < e.cfg.ErrorLogInterval {
		return
	}
	e.log.Warn(msg, "error", err, "spans", spans, "attempt", attempt,
		"failures_since_last_log", e.errsSinceLog, "dropped_total", e.stats().DroppedTotal())
	e.lastErrLog = now
	e.errsSinceLog = 0
}
