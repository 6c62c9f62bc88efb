package driverhost_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/driverhost"
)

// proxySpan is shaped like the spans the proxy makes: Envoy's tag set.
func proxySpan(id uint64) core.Span {
	return core.Span{
		TraceID: core.TraceID{High: 0x0af7651916cd43dd, Low: id}, SpanID: core.SpanID(id), ParentID: core.SpanID(id + 1),
		Name: "checkavailability", Kind: core.KindServer, LocalService: "service1",
		StartUnixNano: time.Now().UnixNano(), Duration: 1234567, Sampled: true,
		Tags: []core.Tag{
			{Key: "node_id", Value: "service1-sidecar"}, {Key: "zone", Value: "local"},
			{Key: "guid:x-request-id", Value: "6a3e0c5e-4b43-4b3b-9d2c-3f0e6c1d2b7a"},
			{Key: "http.url", Value: "http://localhost:8000/trace/1"}, {Key: "http.method", Value: "GET"},
			{Key: "http.protocol", Value: "HTTP/1.1"}, {Key: "user_agent", Value: "curl/8.5.0"},
			{Key: "peer.address", Value: "127.0.0.1"}, {Key: "request_size", Value: "0"},
			{Key: "response_size", Value: "112"}, {Key: "upstream_cluster", Value: "service1"},
			{Key: "upstream_address", Value: "127.0.0.1:8080"}, {Key: "http.status_code", Value: "200"},
			{Key: "component", Value: "proxy"},
		},
		Remote: core.Endpoint{Service: "front-proxy", IP: netip.MustParseAddr("127.0.0.1"), Port: 8000},
	}
}

// procCPU reads a process's user+system CPU time from /proc.
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ = 100
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPluginExport sends batches of proxy-shaped spans through the
// wire protocol into a real driver process that discards them, over each
// transport (the span ring, gRPC). It reports spans/s end to end and the
// CPU per span of the host (the proxy's share) and of the driver process.
func BenchmarkPluginExport(b *testing.B) {
	for _, c := range []struct {
		transport string
		batch     int
	}{{"shm", 128}, {"grpc", 128}, {"shm", 512}, {"grpc", 512}} {
		batch := c.batch
		b.Run(fmt.Sprintf("transport=%s/batch=%d", c.transport, batch), func(b *testing.B) {
			d, err := driverhost.Start(context.Background(), driverhost.Spec{Name: "fault", Path: testDriverBin, Transport: c.transport}, driverhost.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Shutdown(context.Background())
			if got := d.Transport(); got != c.transport {
				b.Fatalf("transport %s, want %s", got, c.transport)
			}
			spans := make([]core.Span, batch)
			for i := range spans {
				spans[i] = proxySpan(uint64(i + 1))
			}
			b.ReportAllocs()
			pid := d.Pid()
			cpu0, dcpu0, t0 := cpuTime(), procCPU(b, pid), time.Now()
			n := 0
			for b.Loop() {
				if err := d.Export(context.Background(), spans); err != nil {
					b.Fatal(err)
				}
				n += batch
			}
			elapsed, cpu, dcpu := time.Since(t0), cpuTime()-cpu0, procCPU(b, pid)-dcpu0
			b.ReportMetric(float64(n)/elapsed.Seconds(), "spans/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "host-cpu-ns/span")
			b.ReportMetric(float64(dcpu.Nanoseconds())/float64(n), "driver-cpu-ns/span")
		})
	}
}
