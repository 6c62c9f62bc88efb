package datadog

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tracehop/tracehop/sdk"
)

// FuzzEmitSpan: any sanitized span goes through the conversion into
// dd-trace-go without a panic. The tracer is not started here, so nothing
// leaves the process.
func FuzzEmitSpan(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint64(3), uint64(0), "op", "GET", "k", "v", "event", int64(1700000000000000000), int64(1500), uint8(1), []byte{10, 0, 0, 1}, true)
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), "", "", "error", "false", "", int64(-1), int64(-1), uint8(200), []byte{}, false)
	f.Fuzz(func(t *testing.T, hi, lo, id, parent uint64, name, method, key, value, event string, start, dur int64, kind uint8, ip []byte, failed bool) {
		s := sdk.Span{TraceID: sdk.TraceID{High: hi, Low: lo}, SpanID: sdk.SpanID(id), ParentID: sdk.SpanID(parent), Name: name,
			Kind: sdk.Kind(kind), StartUnixNano: start, Duration: time.Duration(dur),
			Tags:   []sdk.Tag{{Key: "http.method", Value: method}, {Key: key, Value: value}},
			Events: []sdk.Event{{UnixNano: start, Value: event}}, Error: failed}
		s.Remote.IP, _ = netip.AddrFromSlice(ip)
		s.Sanitize(time.Now)
		emitSpan(&s, "fuzz", "1.0")
	})
}
