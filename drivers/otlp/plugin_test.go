package otlp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/driverhost"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/sdk/drivertest"
	"github.com/tracehop/tracehop/sdk/drivertest/otlpreceiver"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Through the real plugin process and tracehop's pipeline: a 429 with
// Retry-After (or RESOURCE_EXHAUSTED with RetryInfo) holds the retry back
// as long as asked, and a partial success is counted as rejected with the
// receiver's message in tracehop's log.
func TestPluginRetryAfterAndPartialSuccess(t *testing.T) {
	bin := filepath.Join(t.TempDir(), wire.BinaryPrefix+"otlp")
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop-driver-otlp", bin); err != nil {
		t.Fatal(err)
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := otlpreceiver.Start(t, nil)
			throttle := otlpreceiver.Fault{Status: 429, RetryAfter: time.Second, Message: "slow down"}
			if p.name == "grpc" {
				throttle = otlpreceiver.Fault{Code: 8 /* RESOURCE_EXHAUSTED */, RetryAfter: time.Second, Message: "slow down"}
			}
			r.FailNext(throttle, otlpreceiver.Fault{Rejected: 2, Message: "2 spans are too old"})
			raw, _ := json.Marshal(p.config(r))
			d, err := driverhost.Start(context.Background(), driverhost.Spec{Name: "otlp", Path: bin, Config: raw},
				driverhost.Options{Logger: drivertest.TestLogger(t), Host: core.HostInfo{Version: "test"}})
			if err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			pl, err := pipeline.New(pipeline.Config{BatchSize: 5, RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond, ErrorLogInterval: time.Nanosecond},
				[]pipeline.Target{{Name: "otlp", Driver: d}}, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range drivertest.Spans(1, 5) {
				pl.Enqueue(s)
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := pl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			st := pl.Stats()[0]
			if err := pl.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if took < time.Second {
				t.Errorf("the batch was re-sent after %s; the receiver asked for 1s", took)
			}
			if st.Exported != 3 || st.Dropped[pipeline.DropRejected] != 2 || st.DroppedTotal() != 2 || r.Attempts() != 2 {
				t.Errorf("stats = %+v after %d attempts; want 3 exported, 2 rejected, 2 attempts", st, r.Attempts())
			}
			if !strings.Contains(logs.String(), "2 spans are too old") {
				t.Errorf("the receiver's message is not in the log: %s", logs.String())
			}
		})
	}
	_ = os.Remove(bin)
}

// A span's trace state (tracestate ot=th:..., what it was sampled at)
// reaches OTLP's span.trace_state through the real plugin process, over
// both span transports: the SDK says at Configure that its decoder reads
// it, and the host then writes it.
func TestPluginTraceState(t *testing.T) {
	bin := filepath.Join(t.TempDir(), wire.BinaryPrefix+"otlp")
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop-driver-otlp", bin); err != nil {
		t.Fatal(err)
	}
	for _, transport := range []string{wire.TransportShm, wire.TransportGRPC} {
		t.Run(transport, func(t *testing.T) {
			r := otlpreceiver.Start(t, nil)
			raw, _ := json.Marshal(protocols[0].config(r))
			d, err := driverhost.Start(context.Background(), driverhost.Spec{Name: "otlp", Path: bin, Config: raw, Transport: transport},
				driverhost.Options{Logger: drivertest.TestLogger(t), Host: core.HostInfo{Version: "test"}})
			if err != nil {
				if transport == wire.TransportShm && strings.Contains(err.Error(), "shared-memory") {
					t.Skip(err)
				}
				t.Fatal(err)
			}
			defer d.Shutdown(context.Background())
			spans := drivertest.Spans(1, 2)
			spans[0].TraceState = "ot=th:e6666666666666,vendor=x"
			if err := d.Export(context.Background(), spans); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, rs := range r.Requests()[0].ResourceSpans {
				for _, s := range rs.ScopeSpans[0].Spans {
					got[string(s.SpanId)] = s.TraceState
				}
			}
			for _, s := range spans {
				id := string([]byte{0, 0, 0, 0, 0, 0, 0, byte(s.SpanID)})
				if got[id] != s.TraceState {
					t.Errorf("span %d: trace_state %q, want %q", s.SpanID, got[id], s.TraceState)
				}
			}
		})
	}
}
