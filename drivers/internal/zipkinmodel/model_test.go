package zipkinmodel_test

import (
	"encoding/json"
	"net/netip"
	"reflect"
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

// FuzzToModel: any span, once sanitized as the SDK does, converts to
// Zipkin's model and serializes as JSON and proto, and the JSON reads back
// with the same ids.
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
		js, err := json.Marshal(&m)
		if err != nil {
			t.Fatalf("a sanitized span does not serialize as JSON: %v", err)
		}
		pb, err := (zipkinproto.SpanSerializer{}).Serialize([]*model.SpanModel{&m})
		if err != nil {
			t.Fatalf("proto: %v", err)
		}
		sameProto(t, pb, []sdk.Span{s})
		var back model.SpanModel
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatalf("Zipkin cannot read its own JSON back: %v\n%s", err, js)
		}
		if back.TraceID.Low != lo || back.TraceID.High != hi || uint64(back.ID) != id {
			t.Fatalf("ids changed: %+v", back.SpanContext)
		}
	})
}
