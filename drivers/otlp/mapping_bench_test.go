package otlp

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/attrnames"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

var modes = []attrnames.Mode{attrnames.Envoy, attrnames.OTel, attrnames.Both}

// The encoder writes what the OTLP project's generated types would: its
// bytes decode, with those types, to exactly the mapper's structs.
func TestEncoderMatchesMapper(t *testing.T) {
	odd := drivertest.Spans(1, 3)
	odd[0].Name, odd[0].LocalService = "bad\xffname", "svc\xc3"
	odd[0].Tags = append(odd[0].Tags, sdk.Tag{Key: "user_agent", Value: "Mozilla\xfe"}, sdk.Tag{Key: "", Value: ""},
		sdk.Tag{Key: "http.status_code", Value: "abc"}, sdk.Tag{Key: "response_size", Value: "-1"})
	odd[1].ParentID, odd[1].Error, odd[1].Sampled = 7, true, false
	odd[1].Events = []sdk.Event{{UnixNano: odd[1].StartUnixNano, Value: ""}, {UnixNano: 1, Value: "\xe2\x82"}}
	odd[2].Remote = sdk.Endpoint{Service: "up", IP: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 65535}
	odd[2].Kind = sdk.KindProducer
	odd[1].ParentOrigin = sdk.ParentLocal // a SERVER span continuing a local parent
	odd[2].ParentID, odd[2].ParentOrigin = 9, sdk.ParentRemote
	// The encoder reserves room for lengths: a span over 16 KiB and a
	// group over 2 MiB need more, a bare span less.
	large := drivertest.ProxySpans(1, 200)
	for i := range large {
		large[i].Tags = append(large[i].Tags, sdk.Tag{Key: "big", Value: strings.Repeat("x", 12<<10+i*50)})
	}
	bare := []sdk.Span{{TraceID: sdk.TraceID{Low: 1}, SpanID: 2, LocalService: "s", Events: []sdk.Event{{Value: "e"}}}}
	// Peer addresses that change from span to span: plain, the same
	// again, IPv6, none, IPv4-mapped (written unmapped), another.
	peers := drivertest.ProxySpans(1, 6)
	for i, a := range []string{"10.0.0.1", "10.0.0.1", "2001:db8::1", "", "::ffff:10.0.0.1", "10.0.0.2"} {
		peers[i].Remote.IP = netip.Addr{}
		if a != "" {
			peers[i].Remote.IP = netip.MustParseAddr(a)
		}
	}
	batches := map[string][]sdk.Span{
		"canonical":     drivertest.CanonicalTrace(time.Now()),
		"proxy":         drivertest.ProxySpans(1, 20),
		"proxy by name": byName(drivertest.ProxySpans(1, 20)),
		"kept":          keptSpans(),
		"odd":           odd,
		"large":         large,
		"bare":          bare,
		"peers":         peers,
	}
	resources := []map[string]string{nil, {"b": "2", "a": "1", "service.name": "override", "x\xff": "y\xfe"}}
	for name, spans := range batches {
		for _, mode := range modes {
			for ri, res := range resources {
				m := newMapper(mode, "1.0", "node-1", res)
				if ri == 0 {
					m.instance = ""
				}
				want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: m.resourceSpans(spans)}
				e := encoder{m: m}
				// Twice: the second batch reuses the encoder's scratch.
				for range 2 {
					raw := e.appendRequest(nil, spans)
					var got coltracepb.ExportTraceServiceRequest
					if err := proto.Unmarshal(raw, &got); err != nil {
						t.Fatalf("%s/%s/%d: the encoder's bytes do not decode: %v", name, mode, ri, err)
					}
					if !proto.Equal(&got, want) {
						t.Fatalf("%s/%s/%d: decoded\n%v\nwant\n%v", name, mode, ri, &got, want)
					}
					if size := proto.Size(want); size != len(raw) {
						t.Errorf("%s/%s/%d: %d bytes, the generated code writes %d", name, mode, ri, len(raw), size)
					}
				}
			}
		}
	}
}

// The encoder keeps a tag's attributes per slot of keptKind: within a
// slot, every kind must translate every tag alike.
func TestKeptKindSlots(t *testing.T) {
	values := []string{"", "-", "GET", "200", "HTTP/1.1", "http://shop:8080/a/b?c=d", "https://h/", "10.0.0.1:5000", "[::1]:80", "/pkg.Svc/M", "x"}
	all := []sdk.Kind{sdk.KindUnspecified, sdk.KindServer, sdk.KindClient, sdk.KindProducer, sdk.KindConsumer, sdk.KindInternal}
	for _, mode := range modes {
		for n := 1; n <= sdk.TagKeyCount; n++ {
			for _, v := range values {
				tag := sdk.Tag{Key: sdk.TagKeyName(n), Value: v}
				first := map[int][]sdk.Tag{}
				for _, k := range all {
					got := attrnames.TranslateTag(nil, tag, k, mode)
					if want, seen := first[keptKind(k)]; seen && !slices.Equal(got, want) {
						t.Fatalf("%s %+v: kind %d gives %v, another kind of its slot %v", mode, tag, k, got, want)
					}
					first[keptKind(k)] = got
				}
			}
		}
	}
}

// byName gives spans keys with the bytes of their keys, not the SDK's
// copies: the encoder then writes every tag anew.
func byName(spans []sdk.Span) []sdk.Span {
	for i := range spans {
		spans[i].Tags = slices.Clone(spans[i].Tags)
		for j := range spans[i].Tags {
			spans[i].Tags[j].Key = strings.Clone(spans[i].Tags[j].Key)
		}
	}
	return spans
}

// keptSpans is a batch for the encoder's kept attributes (appendSpanKept):
// kinds taking turns, a value changing with every span (the request id,
// until its key is left alone, and again after), some every third, a
// status and its error going back and forth, a value too long to keep, a
// custom key, and strings that are not ASCII in the middle (valid UTF-8,
// and not), which the other path writes.
func keptSpans() []sdk.Span {
	spans := drivertest.ProxySpans(1, 2*restSpans+40)
	kinds := []sdk.Kind{sdk.KindServer, sdk.KindClient, sdk.KindServer, sdk.KindProducer, sdk.KindInternal}
	for i := range spans {
		s := &spans[i]
		s.Kind = kinds[i%len(kinds)]
		s.Tags = slices.Clone(s.Tags)
		for j := range s.Tags {
			switch s.Tags[j].Key {
			case "guid:x-request-id":
				s.Tags[j].Value = "req-" + strconv.Itoa(i)
			case "http.url":
				s.Tags[j].Value = "http://shop/" + strconv.Itoa(i/3) + "?q=" + strconv.Itoa(i%2)
			case "http.status_code":
				if i%7 == 3 {
					s.Tags[j].Value, s.Error = "503", true
				}
			case "user_agent":
				switch i {
				case 100:
					s.Tags[j].Value = "Zoë/1.0"
				case 101:
					s.Tags[j].Value = "bad\xff"
				case 102:
					s.Tags[j].Value = strings.Repeat("u", maxKeptValue+1)
				}
			}
		}
		s.Tags = append(s.Tags, sdk.Tag{Key: "tier", Value: "gold"})
		if i == 50 {
			s.Name = "naïve"
		}
		if i%11 == 0 {
			s.Tags = append(s.Tags, sdk.Tag{Key: sdk.TagKeyName(22), Value: "/shop.Cart/Add"}) // grpc.path
		}
	}
	return spans
}

// BenchmarkEncode is the driver's own CPU per span for a batch of 512
// proxy-shaped spans, for each attribute_names choice (what the naming
// option costs where it is paid), through the encoder the driver uses and,
// for comparison, through the generated types (Generated).
func BenchmarkEncode(b *testing.B) {
	spans := drivertest.ProxySpans(1, 512)
	for _, mode := range modes {
		m := newMapper(mode, "bench", "node", nil)
		b.Run(mode.String(), func(b *testing.B) {
			e := encoder{m: m}
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf = e.appendRequest(buf[:0], spans)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
			b.ReportMetric(float64(len(buf))/float64(len(spans)), "B/span")
		})
		b.Run("Generated/"+mode.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: m.resourceSpans(spans)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
		})
	}
}

// parseInt's fast path answers as strconv.ParseInt does.
func TestParseIntMatchesStrconv(t *testing.T) {
	for _, v := range []string{"", "0", "7", "200", "007", "-1", "+5", "1_000", " 1", "1 ", "12a",
		"999999999999999999", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "99999999999999999999"} {
		want, err := strconv.ParseInt(v, 10, 64)
		got, ok := parseInt(v)
		if ok != (err == nil) || (ok && got != want) {
			t.Errorf("parseInt(%q) = %d, %v; strconv says %d, %v", v, got, ok, want, err)
		}
	}
}
