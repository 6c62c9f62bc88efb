package zipkinmodel_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	zipkinproto "github.com/openzipkin/zipkin-go/proto/zipkin_proto3"

	"github.com/tracehop/tracehop/drivers/internal/zipkinmodel"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// sameProto checks that AppendProto's payload for spans reads back, with
// zipkin-go's own decoder, as exactly what zipkin-go's serializer wrote
// (want).
func sameProto(t *testing.T, want []byte, spans []sdk.Span) {
	t.Helper()
	got, _ := zipkinmodel.AppendProto(nil, nil, spans)
	a, err := zipkinproto.ParseSpans(want, false)
	if err != nil {
		t.Fatalf("zipkin-go cannot read its own proto: %v", err)
	}
	b, err := zipkinproto.ParseSpans(got, false)
	if err != nil {
		t.Fatalf("zipkin-go cannot read AppendProto's payload: %v", err)
	}
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		t.Fatalf("AppendProto differs from zipkin-go's serializer:\nzipkin-go:   %s\nAppendProto: %s", ja, jb)
	}
}

func TestAppendProtoMatchesZipkinGo(t *testing.T) {
	spans := drivertest.ProxySpans(3, 20)
	spans[0].Tags = append(spans[0].Tags, sdk.Tag{Key: "dup", Value: "1"}, sdk.Tag{Key: "dup", Value: "2"})
	spans[1].Error, spans[1].Debug, spans[1].Shared = true, true, true
	spans[2].Remote = sdk.Endpoint{IP: netip.MustParseAddr("2001:db8::1"), Port: 8080, Service: "up"}
	spans[3].Events = []sdk.Event{{UnixNano: spans[3].StartUnixNano + 1500, Value: "ws"}}
	spans[4].Name = "bad \xff utf8"
	models := make([]model.SpanModel, len(spans))
	ptrs := make([]*model.SpanModel, len(spans))
	for i := range spans {
		zipkinmodel.ToModel(&spans[i], &models[i])
		ptrs[i] = &models[i]
	}
	want, err := (zipkinproto.SpanSerializer{}).Serialize(ptrs)
	if err != nil {
		t.Fatal(err)
	}
	sameProto(t, want, spans)
}

// sameJSON checks that AppendJSON writes s exactly as encoding/json writes
// zipkin-go's model of it (js).
func sameJSON(t *testing.T, js []byte, s *sdk.Span) {
	t.Helper()
	if got := zipkinmodel.AppendJSON(nil, s); !bytes.Equal(got, js) {
		t.Fatalf("AppendJSON differs from zipkin-go's JSON:\nzipkin-go:  %s\nAppendJSON: %s", js, got)
	}
}

func TestAppendJSONMatchesZipkinGo(t *testing.T) {
	spans := drivertest.ProxySpans(4, 40)
	spans[0].Tags = append(spans[0].Tags, sdk.Tag{Key: "dup", Value: "1"}, sdk.Tag{Key: "Dup", Value: "x"}, sdk.Tag{Key: "dup", Value: "2"})
	spans[1].Error, spans[1].Debug, spans[1].Shared = true, true, true
	spans[2].Remote = sdk.Endpoint{IP: netip.MustParseAddr("2001:db8::1"), Port: 8080, Service: "Up"}
	spans[3].Events = []sdk.Event{{UnixNano: spans[3].StartUnixNano + 1500, Value: "ws <&> \u2028"}, {UnixNano: spans[3].StartUnixNano + 2499, Value: "b"}}
	spans[4].Name = "Bad \xff UTF-8 \"quoted\" \t\x01 Zoë ☃ \u2029"
	spans[5].Duration = 700 // under a microsecond
	spans[6].Remote = sdk.Endpoint{IP: netip.MustParseAddr("::ffff:10.0.0.1")}
	spans[7].Tags = append(spans[7].Tags, sdk.Tag{Key: "error", Value: "false"})
	spans[7].Error = true
	spans[8].TraceID.High = 0
	spans[9].Kind = sdk.KindInternal
	// More tags than the encoder keeps on its stack, keys that share their
	// first 8 bytes or are shorter, one key of invalid UTF-8 and one that
	// needs escaping, with an error to add.
	for i := 40; i > 0; i-- {
		spans[10].Tags = append(spans[10].Tags, sdk.Tag{Key: fmt.Sprintf("upstream_%02d", i%17), Value: fmt.Sprint(i)})
	}
	spans[10].Tags = append(spans[10].Tags, sdk.Tag{Key: "bad\xffkey", Value: "1"}, sdk.Tag{Key: "a<b", Value: "2"}, sdk.Tag{Key: "ab", Value: "3"}, sdk.Tag{Key: "a", Value: "4"})
	spans[10].Error = true
	for i := range spans {
		var m model.SpanModel
		zipkinmodel.ToModel(&spans[i], &m)
		js, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, js, &spans[i])
	}
}

// A list reuses the plan of the last span's tags for the next span with the
// same keys: every span must still come out as it does alone, whether its
// keys, their order, its error flag or only its values changed.
func TestAppendJSONLinesAndListMatchOneByOne(t *testing.T) {
	spans := drivertest.ProxySpans(1, 12)
	spans[2].Tags[3].Value = "changed value <&>"
	spans[3].Error = true // same keys, error added
	spans[4].Tags = append(spans[4].Tags, sdk.Tag{Key: "error", Value: "false"})
	spans[4].Error = true
	spans[5].Tags = spans[5].Tags[1:] // one key fewer
	spans[6].Tags[0], spans[6].Tags[1] = spans[6].Tags[1], spans[6].Tags[0]
	spans[7].Tags[2].Key = "zone\xff"
	spans[8].Tags = nil
	spans[9].Tags, spans[9].Error = nil, true
	spans[10].Tags = append(spans[10].Tags, spans[10].Tags[0]) // a duplicate key, the later wins
	// Values the steps keep, and values that change: one every span (the
	// request id, given up on after a few), one byte apart at the same
	// length, back to an earlier value, not UTF-8, too long to keep.
	for i := range 40 {
		s := drivertest.ProxySpans(uint64(20+i), 1)[0]
		s.Tags[3].Value = fmt.Sprintf("req-%03d", i)
		if i%3 == 0 {
			s.Tags[5].Value = "PUT"
		}
		switch i {
		case 10:
			s.Tags[7].Value = "curl/8.5.1"
		case 11:
			s.Tags[7].Value = "bad\xff<tag>"
		case 12:
			s.Tags[7].Value = strings.Repeat("u\u2028", 100)
		}
		spans = append(spans, s)
	}
	var lines, list []byte
	list = append(list, '[')
	for i := range spans {
		one := zipkinmodel.AppendJSON(nil, &spans[i])
		lines = append(append(lines, one...), '\n')
		if i > 0 {
			list = append(list, ',')
		}
		list = append(list, one...)
	}
	list = append(list, ']')
	if got := zipkinmodel.AppendJSONLines(nil, spans); !bytes.Equal(got, lines) {
		t.Errorf("AppendJSONLines differs from AppendJSON span by span:\n%s\nwant:\n%s", got, lines)
	}
	if got := zipkinmodel.AppendJSONList(nil, spans); !bytes.Equal(got, list) {
		t.Errorf("AppendJSONList differs from AppendJSON span by span:\n%s\nwant:\n%s", got, list)
	}
}

// FuzzToModel: any span, once sanitized as the SDK does, converts to
// Zipkin's model; AppendProto and AppendJSON write what zipkin-go writes
// for it, and the JSON reads back with the same ids.
func FuzzToModel(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint64(3), uint64(0), "op", "svc", "k", "v", "event", int64(1700000000000000000), int64(1500), uint8(1), []byte{10, 0, 0, 1}, true)
	f.Add(uint64(0), uint64(1), uint64(1), uint64(0), "", "", "", "", "", int64(-5), int64(-1), uint8(9), []byte{}, false)
	f.Add(uint64(1<<63), uint64(1), uint64(7), uint64(9), "Zoë ☃", "\xff\xfe", "error", "false", "\x00", int64(1), int64(1<<62), uint8(2), []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, false)
	f.Fuzz(func(t *testing.T, hi, lo, id, parent uint64, name, service, key, value, event string, start, dur int64, kind uint8, ip []byte, failed bool) {
		s := sdk.Span{
			TraceID: sdk.TraceID{High: hi, Low: lo}, SpanID: sdk.SpanID(id), ParentID: sdk.SpanID(parent),
			Name: name, LocalService: service, Kind: sdk.Kind(kind), StartUnixNano: start, Duration: time.Duration(dur),
			Tags: []sdk.Tag{{Key: key, Value: value}}, Events: []sdk.Event{{UnixNano: start + 1, Value: event}}, Error: failed,
		}
		if hi == 0 && lo == 0 || id == 0 {
			return // tracehop never makes such a span: the pipeline drops it (DropInvalid)
		}
		s.Remote.IP, _ = netip.AddrFromSlice(ip)
		s.Sanitize(time.Now)
		var m model.SpanModel
		zipkinmodel.ToModel(&s, &m)
		pb, err := (zipkinproto.SpanSerializer{}).Serialize([]*model.SpanModel{&m})
		if err != nil {
			t.Fatalf("proto: %v", err)
		}
		sameProto(t, pb, []sdk.Span{s})
		js := zipkinmodel.AppendJSON(nil, &s)
		if s.StartUnixNano >= int64(time.Second) { // zipkin-go refuses earlier starts
			want, err := json.Marshal(&m)
			if err != nil {
				t.Fatalf("a sanitized span does not serialize as JSON: %v", err)
			}
			sameJSON(t, want, &s)
		}
		var back model.SpanModel
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatalf("Zipkin cannot read its own JSON back: %v\n%s", err, js)
		}
		if back.TraceID.Low != lo || back.TraceID.High != hi || uint64(back.ID) != id {
			t.Fatalf("ids changed: %+v", back.SpanContext)
		}
	})
}

// BenchmarkEncode is the driver's cost per proxy-shaped span for each
// encoding, against zipkin-go's model and serializers for the same spans.
func BenchmarkEncode(b *testing.B) {
	spans := drivertest.ProxySpans(1, 512)
	perSpan := func(b *testing.B, encode func()) {
		b.ReportAllocs()
		for b.Loop() {
			encode()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
	}
	var buf, scratch []byte
	b.Run("json", func(b *testing.B) {
		perSpan(b, func() { buf = zipkinmodel.AppendJSONList(buf[:0], spans) })
	})
	b.Run("proto", func(b *testing.B) {
		perSpan(b, func() { buf, scratch = zipkinmodel.AppendProto(buf[:0], scratch, spans) })
	})
	b.Run("zipkin-go-json", func(b *testing.B) {
		perSpan(b, func() {
			ms := make([]model.SpanModel, len(spans))
			ptrs := make([]*model.SpanModel, len(spans))
			for i := range spans {
				zipkinmodel.ToModel(&spans[i], &ms[i])
				ptrs[i] = &ms[i]
			}
			json.Marshal(ptrs)
		})
	})
}
