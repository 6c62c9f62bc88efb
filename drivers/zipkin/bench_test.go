package zipkin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core/driverhost"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// BenchmarkPluginExport measures spans per second from the host through the
// zipkin driver's process into a local receiver (which reads each POST and
// answers 202; decoding is the collector's cost, not the driver's).
func BenchmarkPluginExport(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "tracehop-driver-zipkin")
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop-driver-zipkin", bin); err != nil {
		b.Fatal(err)
	}
	for _, enc := range []string{"json", "proto"} {
		b.Run(enc, func(b *testing.B) {
			var bytes atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n, _ := io.Copy(io.Discard, r.Body)
				bytes.Add(n)
				w.WriteHeader(http.StatusAccepted)
			}))
			defer srv.Close()
			cfg, _ := json.Marshal(map[string]any{"collector_endpoint": srv.URL + "/api/v2/spans", "encoding": enc})
			d, err := driverhost.Start(context.Background(), driverhost.Spec{Name: "zipkin", Path: bin, Config: cfg}, driverhost.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Shutdown(context.Background())
			spans := drivertest.ProxySpans(1, 512)
			start, n := time.Now(), 0
			for b.Loop() {
				if err := d.Export(context.Background(), spans); err != nil {
					b.Fatal(err)
				}
				n += len(spans)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "spans/s")
			b.ReportMetric(float64(bytes.Load())/float64(n), "wire-B/span")
		})
	}
}
