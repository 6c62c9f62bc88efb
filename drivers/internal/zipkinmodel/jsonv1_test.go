package zipkinmodel_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tracehop/tracehop/drivers/internal/zipkinmodel"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

type v1Endpoint struct {
	ServiceName string `json:"serviceName"`
	IPv4        string `json:"ipv4"`
	IPv6        string `json:"ipv6"`
	Port        int    `json:"port"`
}

type v1Span struct {
	TraceID     string `json:"traceId"`
	ID          string `json:"id"`
	ParentID    string `json:"parentId"`
	Name        string `json:"name"`
	Timestamp   *int64 `json:"timestamp"`
	Duration    *int64 `json:"duration"`
	Annotations []struct {
		Timestamp int64      `json:"timestamp"`
		Value     string     `json:"value"`
		Endpoint  v1Endpoint `json:"endpoint"`
	} `json:"annotations"`
	BinaryAnnotations []struct {
		Key      string     `json:"key"`
		Value    any        `json:"value"`
		Endpoint v1Endpoint `json:"endpoint"`
	} `json:"binaryAnnotations"`
}

// The canonical trace in Zipkin v1 JSON, read back with encoding/json: core
// annotations by kind, endpoints on every annotation, the remote side as
// string binary annotations. (Jaeger's Zipkin receiver takes the same bytes in
// the e2e suite, TestE2EZipkinIntoJaeger/json_v1.)
func TestJSONV1(t *testing.T) {
	trace := drivertest.CanonicalTrace(time.Now())
	shared := trace[1]
	shared.Shared = true
	var got []v1Span
	if err := json.Unmarshal(zipkinmodel.AppendJSONV1List(nil, append(trace, shared)), &got); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	us := func(ns int64) int64 { return time.Unix(0, ns).Round(time.Microsecond).UnixNano() / 1e3 }
	values := func(s v1Span) (vals []string, services map[string]bool) {
		services = map[string]bool{}
		for _, a := range s.Annotations {
			vals = append(vals, a.Value)
			services[a.Endpoint.ServiceName] = true
		}
		return vals, services
	}
	front := got[0]
	vals, svcs := values(front)
	if front.TraceID != "0af7651916cd43dd8448eb211c80319c" || front.ID != "00f067aa0ba902b7" || front.ParentID != "" ||
		front.Timestamp == nil || *front.Timestamp != us(trace[0].StartUnixNano) || len(vals) != 2 || vals[0] != "sr" || vals[1] != "ss" || !svcs["front-proxy"] {
		t.Errorf("front-proxy server span: %+v", front)
	}
	if front.Annotations[1].Timestamp != *front.Timestamp+*front.Duration {
		t.Errorf("ss at %d, want start+duration", front.Annotations[1].Timestamp)
	}
	peer := map[string]any{}
	for _, b := range front.BinaryAnnotations {
		peer[b.Key] = b.Value
		if b.Key == "http.method" && (b.Value != "GET" || b.Endpoint.ServiceName != "front-proxy") {
			t.Errorf("tag %+v", b)
		}
	}
	if peer["peer.ipv4"] != "127.0.0.1" || peer["peer.port"] != "53422" {
		t.Errorf("the remote endpoint is not there as strings: %+v", front.BinaryAnnotations)
	}
	egress := got[2]
	vals, _ = values(egress)
	if len(vals) != 2 || vals[0] != "cs" || vals[1] != "cr" {
		t.Errorf("client span annotations %v", vals)
	}
	peer = map[string]any{}
	for _, b := range egress.BinaryAnnotations {
		if _, isString := b.Value.(string); !isString {
			t.Errorf("binary annotation %s is not a string: Jaeger's receiver refuses the batch", b.Key)
		}
		peer[b.Key] = b.Value
	}
	if peer["peer.service"] != "service2" || peer["peer.ipv6"] != "fd00::2" || peer["peer.port"] != "8080" {
		t.Errorf("the remote endpoint is not there as strings: %+v", egress.BinaryAnnotations)
	}
	svc2 := got[3]
	vals, _ = values(svc2)
	if len(vals) != 4 || vals[1] != "upstream connect start" || vals[3] != "ss" {
		t.Errorf("service2 annotations %v", vals)
	}
	if got[4].Timestamp != nil || got[4].Duration != nil {
		t.Errorf("a shared span carries its own timestamp/duration: %+v", got[4])
	}
	local := zipkinmodel.AppendJSONV1(nil, &sdk.Span{TraceID: sdk.TraceID{Low: 1}, SpanID: 2, Kind: sdk.KindInternal, LocalService: "svc", StartUnixNano: 5e9})
	var l v1Span
	if err := json.Unmarshal(local, &l); err != nil || len(l.Annotations) != 0 || len(l.BinaryAnnotations) != 1 || l.BinaryAnnotations[0].Key != "lc" || l.BinaryAnnotations[0].Endpoint.ServiceName != "svc" {
		t.Errorf("local span %s: %+v %v", local, l, err)
	}
}
