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
)

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
	e := &exporter{
		name:    t.Name,
		driver:  t.Driver,
		cfg:     cfg,
		log:     logger.With("driver", t.Name),
		q:       newQueue(cfg.QueueSize, cfg.BatchSize),
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

// Enqueue hands a finished span to every driver. It never blocks and, once
// the queue's slots are warm, never allocates: where a driver's queue is
// full the span is dropped for that driver and counted as DropQueueFull.
// Each queue copies the span's strings and tags, so the caller may reuse
// their memory as soon as Enqueue returns.
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
// untouched. It is idempotent.
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

	// stopCtx is set before stop is closed; it bounds the final drain.
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
		QueueCap:     len(e.q.ring),
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
	batch := make([]core.Span, 0, e.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Stopping cuts retries of the batch in flight short; the final
		// drain then runs under the shutdown deadline.
		<-e.stop
		cancel()
	}()

	final := false // set once the stop has begun; only then is stopCtx read
	// send exports one batch of at most BatchSize queued spans. It returns
	// false when the stop interrupted the export: the batch stays taken,
	// and the final drain sends it again.
	send := func(ctx context.Context) bool {
		if len(batch) == 0 {
			batch = e.q.take(batch, e.cfg.BatchSize)
		}
		if len(batch) == 0 || !e.export(ctx, batch, final) {
			return len(batch) == 0
		}
		e.q.release(len(batch))
		clear(batch) // drop references to the slots' memory
		batch = batch[:0]
		return true
	}
	// settle sends every full batch, then arms the timer for what is left.
	settle := func() {
		for e.q.ready() >= e.cfg.BatchSize {
			if !send(ctx) {
				return
			}
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
	// drain exports everything queued right now, batch by batch.
	drain := func(ctx context.Context) {
		if len(batch) > 0 && !send(ctx) { // a batch the stop interrupted
			return
		}
		for n := e.q.ready(); n > 0; n -= e.cfg.BatchSize {
			if !send(ctx) {
				return
			}
		}
	}

	for {
		select {
		case <-e.q.wake:
			settle()
		case <-timer.C:
			armed = false
			if send(ctx) {
				settle()
			}
		case req := <-e.flushes:
			drain(ctx)
			close(req)
			settle()
		case <-e.stop:
			// A batch whose retries the stop interrupted gets one more
			// chance under the shutdown deadline.
			final = true
			timer.Stop()
			drain(e.stopCtx)
			// Whatever is still there (the deadline passed) is lost, and
			// the queue refuses what straggling Enqueue calls bring:
			// count both.
			e.c.dropped[DropShutdown].Add(uint64(e.q.close()))
			return
		}
	}
}

// export sends one batch, retrying retryable failures with backoff (or after
// the delay the back end asked for, core.RetryAfter) until it succeeds,
// RetryFor passes or ctx ends. A partly rejected batch (core.PartialRejection)
// counts as sent, its refused spans as DropRejected. It returns false, keeping the batch,
// only when the pipeline's stop interrupted it: shutdown then sends it again
// under its own deadline.
func (e *exporter) export(ctx context.Context, batch []core.Span, final bool) bool {
	e.batchID++
	bctx := core.WithBatchID(ctx, e.batchID)
	deadline := time.Now().Add(e.cfg.RetryFor)
	backoff := e.cfg.RetryInitial
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(bctx, e.cfg.ExportTimeout)
		start := time.Now()
		err := e.driver.Export(actx, batch)
		cancel()
		e.c.observeLatency(time.Since(start))
		if err == nil {
			e.c.exported.Add(uint64(len(batch)))
			e.c.batches.Add(1)
			return true
		}
		if pr := core.AsPartialRejection(err); pr != nil {
			// Delivered, less what the back end refused: sending the
			// batch again would duplicate the accepted spans.
			n := min(pr.Rejected, len(batch))
			e.c.exported.Add(uint64(len(batch) - n))
			e.c.batches.Add(1)
			e.c.dropped[DropRejected].Add(uint64(n))
			e.logFailure("back end rejected part of a batch; those spans are dropped", err, len(batch), attempt)
			return true
		}
		e.c.exportErrors.Add(1)
		if core.IsPermanent(err) {
			e.c.dropped[DropRejected].Add(uint64(len(batch)))
			e.logFailure("driver rejected a batch; its spans are dropped", err, len(batch), attempt)
			return true
		}
		if ctx.Err() != nil {
			if !final {
				return false
			}
			e.c.dropped[DropShutdown].Add(uint64(len(batch)))
			e.logFailure("shutdown deadline passed; the batch's spans are dropped", err, len(batch), attempt)
			return true
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if asked := core.RetryDelay(err); asked > 0 {
			// The back end said when it can take more (Retry-After,
			// RetryInfo): coming back sooner only earns another refusal.
			wait = asked
		}
		if time.Now().Add(wait).After(deadline) {
			e.c.dropped[DropRetriesExhausted].Add(uint64(len(batch)))
			e.logFailure("export kept failing; the batch's spans are dropped", err, len(batch), attempt)
			return true
		}
		e.logFailure("export failed; retrying", err, len(batch), attempt)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, e.cfg.RetryMax)
	}
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
