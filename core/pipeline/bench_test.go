package pipeline_test

import (
	"context"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
)

type discard struct{}

func (discard) Configure(context.Context, []byte, core.HostInfo) (core.Capabilities, error) {
	return core.Capabilities{}, nil
}
func (discard) Export(context.Context, []core.Span) error { return nil }
func (discard) Shutdown(context.Context) error            { return nil }

// BenchmarkEnqueue measures the request path's share of span delivery.
func BenchmarkEnqueue(b *testing.B) {
	p, err := pipeline.New(pipeline.Config{}, []pipeline.Target{{Name: "discard", Driver: discard{}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s := span(1)
	b.ReportAllocs()
	for b.Loop() {
		p.Enqueue(s)
	}
	st := p.Stats()[0]
	b.ReportMetric(float64(st.Dropped[pipeline.DropQueueFull])/float64(b.N)*100, "%dropped")
}
