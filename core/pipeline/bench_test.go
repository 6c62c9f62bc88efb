package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/wire"
)

type discard struct{}

func (discard) Configure(context.Context, []byte, core.HostInfo) (core.Capabilities, error) {
	return core.Capabilities{}, nil
}
func (discard) Export(context.Context, []core.Span) error { return nil }
func (discard) Shutdown(context.Context) error            { return nil }
func (discard) Layout() wire.Layout                       { return wire.Full }
func (discard) ExportBatch(context.Context, [][]byte, int, wire.Layout) error {
	return nil
}

var _ pipeline.BatchDriver = discard{}

// BenchmarkEnqueue measures the request path's share of span delivery: the
// accepted path (the queue has room; it is drained outside the timer) and
// the drop path (the queue is full).
func BenchmarkEnqueue(b *testing.B) {
	b.Run("accepted", func(b *testing.B) {
		const room = 4096
		p, err := pipeline.New(pipeline.Config{QueueSize: room, BatchSize: 512}, []pipeline.Target{{Name: "discard", Driver: discard{}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Shutdown(context.Background())
		s := span(1)
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			if n++; n%room == 0 {
				b.StopTimer()
				p.Flush(context.Background())
				b.StartTimer()
			}
			p.Enqueue(s)
		}
		if st := p.Stats()[0]; st.DroppedTotal() != 0 {
			b.Fatalf("dropped %v: the accepted path was not measured", st.Dropped)
		}
	})
	b.Run("queue_full", func(b *testing.B) {
		p, err := pipeline.New(pipeline.Config{QueueSize: 1, BatchSize: 1}, []pipeline.Target{{Name: "stalled", Driver: stalled{}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			p.Shutdown(ctx)
		}()
		s := span(1)
		p.Enqueue(s)
		p.Enqueue(s)
		b.ReportAllocs()
		for b.Loop() {
			p.Enqueue(s)
		}
	})
}

// stalled never finishes an export until its context ends.
type stalled struct{ discard }

func (stalled) Export(ctx context.Context, _ []core.Span) error {
	<-ctx.Done()
	return ctx.Err()
}

func (stalled) ExportBatch(ctx context.Context, _ [][]byte, _ int, _ wire.Layout) error {
	<-ctx.Done()
	return ctx.Err()
}

var _ pipeline.BatchDriver = stalled{}
