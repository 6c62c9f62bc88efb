package attrnames_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/attrnames"
)

// proxySpan is shaped like the proxy's ingress span (proxy/tracing.go).
func proxySpan(kind sdk.Kind, failed bool) sdk.Span {
	s := sdk.Span{
		Name: "ingress", Kind: kind, Error: failed,
		Tags: []sdk.Tag{
			{Key: "component", Value: "proxy"}, {Key: "guid:x-request-id", Value: "abc"},
			{Key: "http.url", Value: "http://localhost:8000/trace/1?x=1"}, {Key: "http.method", Value: "GET"},
			{Key: "http.protocol", Value: "HTTP/1.1"}, {Key: "user_agent", Value: "curl/8.5.0"},
			{Key: "peer.address", Value: "127.0.0.1:53422"}, {Key: "request_size", Value: "0"},
			{Key: "response_size", Value: "12"}, {Key: "upstream_cluster", Value: "service1"},
			{Key: "http.status_code", Value: "503"},
		},
		Remote: sdk.Endpoint{IP: netip.MustParseAddr("127.0.0.1"), Port: 53422},
	}
	if failed {
		s.Tags = append(s.Tags, sdk.Tag{Key: "error", Value: "true"}, sdk.Tag{Key: "error.message", Value: "upstream reset"})
	}
	return s
}

func TestTranslate(t *testing.T) {
	server := proxySpan(sdk.KindServer, true)
	client := proxySpan(sdk.KindClient, false)
	named := proxySpan(sdk.KindServer, false)
	named.Name = "GET shop" // a route's operation: "{method} {route}"
	grpcSpan := proxySpan(sdk.KindClient, true)
	grpcSpan.Tags = append(slices.Clone(grpcSpan.Tags), sdk.Tag{Key: "grpc.path", Value: "/shop.Cart/AddItem"},
		sdk.Tag{Key: "grpc.status_code", Value: "14"}, sdk.Tag{Key: "grpc.message", Value: "backend down"})
	tests := []struct {
		name     string
		span     sdk.Span
		mode     attrnames.Mode
		wantName string
		want     map[string]string // tags that must be there, "" value: must be absent
	}{
		{"envoy keeps everything", server, attrnames.Envoy, "ingress", map[string]string{
			"http.method": "GET", "http.url": "http://localhost:8000/trace/1?x=1", "error.message": "upstream reset",
			"http.request.method": "",
		}},
		{"otel server span", server, attrnames.OTel, "GET", map[string]string{
			"http.request.method": "GET", "url.scheme": "http", "url.path": "/trace/1", "url.query": "x=1",
			"server.address": "localhost", "server.port": "8000", "http.response.status_code": "503",
			"client.address": "127.0.0.1", "network.protocol.version": "1.1", "user_agent.original": "curl/8.5.0",
			"error.type": "503", "http.response.body.size": "12", "upstream_cluster": "service1", "component": "proxy",
			"http.method": "", "http.url": "", "http.status_code": "", "peer.address": "", "user_agent": "",
			"error": "", "error.message": "", "url.full": "",
		}},
		{"otel client span", client, attrnames.OTel, "GET", map[string]string{
			"url.full": "http://localhost:8000/trace/1?x=1", "server.address": "localhost", "server.port": "8000",
			"url.path": "", "client.address": "", "error.type": "",
		}},
		{"otel gRPC span", grpcSpan, attrnames.OTel, "shop.Cart/AddItem", map[string]string{
			"rpc.system": "grpc", "rpc.service": "shop.Cart", "rpc.method": "AddItem", "rpc.grpc.status_code": "14",
			"grpc.message": "backend down", "grpc.path": "", "grpc.status_code": "",
		}},
		{"otel keeps a route's name", named, attrnames.OTel, "GET shop", map[string]string{"http.request.method": "GET"}},
		{"both", server, attrnames.Both, "ingress", map[string]string{
			"http.method": "GET", "http.request.method": "GET", "http.status_code": "503",
			"http.response.status_code": "503", "error.message": "upstream reset", "error.type": "503",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.span.Tags)
			tags, name := attrnames.Translate(nil, &tt.span, tt.mode)
			if name != tt.wantName {
				t.Errorf("name = %q, want %q", name, tt.wantName)
			}
			got := map[string]string{}
			for _, tag := range tags {
				if _, dup := got[tag.Key]; dup {
					t.Errorf("tag %q written twice", tag.Key)
				}
				got[tag.Key] = tag.Value
			}
			for k, v := range tt.want {
				gv, ok := got[k]
				switch {
				case v == "" && ok:
					t.Errorf("tag %q = %q, want it absent", k, gv)
				case v != "" && gv != v:
					t.Errorf("tag %q = %q (present %v), want %q", k, gv, ok, v)
				}
			}
			if !slices.Equal(before, tt.span.Tags) {
				t.Error("Translate modified the span's tags")
			}
		})
	}
}

func TestURLForms(t *testing.T) {
	for _, tt := range []struct{ url, addr, port, path string }{
		{"https://example.com/a", "example.com", "443", "/a"},
		{"http://[fd00::2]:8080/x?y", "fd00::2", "8080", "/x"},
		{"http://[fd00::2]", "fd00::2", "80", "/"},
		{"http://h", "h", "80", "/"},
	} {
		s := sdk.Span{Kind: sdk.KindServer, Tags: []sdk.Tag{{Key: "http.url", Value: tt.url}}}
		tags, _ := attrnames.Translate(nil, &s, attrnames.OTel)
		got := map[string]string{}
		for _, tag := range tags {
			got[tag.Key] = tag.Value
		}
		if got["server.address"] != tt.addr || got["server.port"] != tt.port || got["url.path"] != tt.path {
			t.Errorf("%s: got %v", tt.url, got)
		}
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]attrnames.Mode{"": attrnames.OTel, "envoy": attrnames.Envoy, "otel": attrnames.OTel, "both": attrnames.Both} {
		if got, err := attrnames.Parse(in, attrnames.OTel); err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := attrnames.Parse("semconv", attrnames.Envoy); err == nil {
		t.Error("Parse(semconv) accepted")
	}
}

// BenchmarkTranslate is the naming option's cost per span (the proxy's 11
// tags), beside the Envoy mode's plain copy.
func BenchmarkTranslate(b *testing.B) {
	s := proxySpan(sdk.KindServer, false)
	for _, m := range []attrnames.Mode{attrnames.Envoy, attrnames.OTel, attrnames.Both} {
		b.Run(m.String(), func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]sdk.Tag, 0, 64)
			for b.Loop() {
				buf, _ = attrnames.Translate(buf[:0], &s, m)
			}
		})
	}
}

// A span decoded from the host has the SDK's copies of the well-known
// keys, which Translate looks up by number; it must translate exactly as
// the same keys from anywhere else, in every mode.
func TestTranslateWellKnownKeys(t *testing.T) {
	grpcSpan := proxySpan(sdk.KindClient, true)
	grpcSpan.Tags = append(grpcSpan.Tags, sdk.Tag{Key: "grpc.path", Value: "/shop.Cart/AddItem"},
		sdk.Tag{Key: "grpc.status_code", Value: "14"}, sdk.Tag{Key: "custom", Value: "kept"})
	for _, byName := range []sdk.Span{proxySpan(sdk.KindServer, true), proxySpan(sdk.KindClient, false), grpcSpan} {
		byNumber := byName
		byNumber.Tags = slices.Clone(byName.Tags)
		numbered := 0
		for i, tag := range byNumber.Tags {
			if byNumber.Tags[i].Key = sdk.WellKnownKey(tag.Key); sdk.TagKeyNumber(byNumber.Tags[i].Key) != 0 {
				numbered++
			}
		}
		if numbered != len(byName.Tags)-1 && numbered != len(byName.Tags) {
			t.Fatalf("%d of %d keys are well-known", numbered, len(byName.Tags))
		}
		for _, mode := range []attrnames.Mode{attrnames.Envoy, attrnames.OTel, attrnames.Both} {
			wantTags, wantName := attrnames.Translate(nil, &byName, mode)
			gotTags, gotName := attrnames.Translate(nil, &byNumber, mode)
			if gotName != wantName || !slices.Equal(gotTags, wantTags) {
				t.Fatalf("%v: by number %q %+v, by name %q %+v", mode, gotName, gotTags, wantName, wantTags)
			}
		}
	}
}

// Facts, fed a span's tags one at a time with any key number (the right
// one, 0, or one that is no key's), names the span as Naming does.
func TestFactsAsNaming(t *testing.T) {
	grpcSpan := proxySpan(sdk.KindServer, true)
	grpcSpan.Name = "egress shop"
	grpcSpan.Tags = append(grpcSpan.Tags, sdk.Tag{Key: "grpc.path", Value: "/shop.Cart/AddItem"})
	for _, s := range []sdk.Span{proxySpan(sdk.KindServer, true), proxySpan(sdk.KindClient, false), grpcSpan} {
		for i := range s.Tags {
			s.Tags[i].Key = sdk.WellKnownKey(s.Tags[i].Key)
		}
		for _, mode := range []attrnames.Mode{attrnames.Envoy, attrnames.OTel, attrnames.Both} {
			wantName, wantErr := attrnames.Naming(&s, mode)
			for _, number := range []func(string) int{sdk.TagKeyNumber, func(string) int { return 0 }, func(string) int { return 1 << 20 }} {
				var f attrnames.Facts
				for _, tag := range s.Tags {
					f.Note(number(tag.Key), tag)
				}
				if name, errType := f.Naming(&s, mode); name != wantName || errType != wantErr {
					t.Fatalf("%v: Facts names %q (error.type %q), Naming %q (%q)", mode, name, errType, wantName, wantErr)
				}
			}
		}
	}
}
