package sdk

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/core/wire/driverpb"
)

// exportFunc is a Driver whose Export is a function.
type exportFunc func(ctx context.Context, spans []core.Span) error

func (exportFunc) Configure(context.Context, []byte, core.HostInfo) (core.Capabilities, error) {
	return core.Capabilities{}, nil
}
func (f exportFunc) Export(ctx context.Context, spans []core.Span) error { return f(ctx, spans) }
func (exportFunc) Shutdown(context.Context) error                        { return nil }

// The SDK reads an Export's batch out of the span ring, and refuses one
// whose region the host rewrote while the driver read it (a driver that
// outlived its deadline): what it sent may have been torn.
func TestExportFromTheRing(t *testing.T) {
	ring := make([]byte, 1<<12)
	batch := wire.AppendBatch(nil, []core.Span{{TraceID: core.TraceID{Low: 5}, SpanID: 6, Name: "from-the-ring"}})
	const off = 128
	copy(ring[off+wire.RingHeaderBytes:], batch)
	wire.PutRingHeader(ring, off, len(batch), 1)
	wire.SetRingSeq(ring, off, 3)
	req := &driverpb.ExportRequest{BatchId: 1, SpanCount: 1, RingOffset: off, RingLength: uint32(len(batch)), RingSeq: 3}

	var names []string
	s := &server{ring: ring, useRing: true, configured: true, driver: exportFunc(func(_ context.Context, spans []core.Span) error {
		for _, sp := range spans {
			names = append(names, sp.Name)
		}
		return nil
	})}
	if _, err := s.Export(context.Background(), req); err != nil || len(names) != 1 || names[0] != "from-the-ring" {
		t.Fatalf("Export = %v; the driver saw %v", err, names)
	}

	s.driver = exportFunc(func(context.Context, []core.Span) error {
		wire.SetRingSeq(ring, off, 4) // the host reuses the region meanwhile
		return nil
	})
	_, err := s.Export(context.Background(), req)
	if err == nil || !core.IsPermanent(driverpb.ExportError(nil, err)) {
		t.Fatalf("a region rewritten during Export gave %v, want a permanent failure", err)
	}

	// A region out of the ring is refused before anything is read.
	wire.SetRingSeq(ring, off, 3)
	bad := &driverpb.ExportRequest{BatchId: 1, SpanCount: 1, RingOffset: 1 << 40, RingLength: uint32(len(batch)), RingSeq: 3}
	if _, err := s.Export(context.Background(), bad); status.Code(err) == codes.OK {
		t.Fatal("a region out of the ring was read")
	}
	// So is an Export naming a ring the driver did not take.
	s.useRing = false
	if _, err := s.Export(context.Background(), req); status.Code(err) == codes.OK {
		t.Fatal("an Export named a ring the driver did not take, and was read")
	}
}
