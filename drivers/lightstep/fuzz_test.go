package lightstep

import (
	"net/netip"
	"testing"
	"time"

	ls "github.com/lightstep/lightstep-tracer-go"

	"github.com/tracehop/tracehop/sdk"
)

// FuzzEmit: any sanitized span goes through the conversion and into the
// library's buffer without a panic. (Nothing is flushed: the collector
// address is never dialled.)
func FuzzEmit(f *testing.F) {
	tr, err := ls.CreateTracer(ls.Options{AccessToken: "fuzz", Collector: ls.Endpoint{Host: "127.0.0.1", Port: 1, Plaintext: true},
		UseHttp: true, MaxBufferedSpans: 100, ReportingPeriod: time.Hour, MinReportingPeriod: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint64(1), uint64(2), uint64(3), "op", "k", "v", "event", int64(1700000000000000000), int64(1500), uint8(1), []byte{10, 0, 0, 1}, uint16(80), true)
	f.Add(uint64(0), uint64(0), uint64(0), "", "", "", "", int64(-1), int64(-1), uint8(200), []byte{}, uint16(0), false)
	f.Fuzz(func(t *testing.T, hi, lo, id uint64, name, key, value, event string, start, dur int64, kind uint8, ip []byte, port uint16, failed bool) {
		s := sdk.Span{TraceID: sdk.TraceID{High: hi, Low: lo}, SpanID: sdk.SpanID(id), Name: name, Kind: sdk.Kind(kind),
			StartUnixNano: start, Duration: time.Duration(dur), Tags: []sdk.Tag{{Key: key, Value: value}},
			Events: []sdk.Event{{UnixNano: start, Value: event}}, Error: failed}
		s.Remote.IP, _ = netip.AddrFromSlice(ip)
		s.Remote.Port = port
		s.Sanitize(time.Now)
		tags := spanTags(&s)
		if failed && tags["error"] != true {
			t.Fatal("an error span lost its error flag")
		}
		emit(tr, &s)
	})
}
