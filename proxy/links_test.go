package proxy

import (
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"

	"github.com/tracehop/tracehop/proxy/config"
)

// TestLinkTableOnlyWithBothDirections: the request-id link table is kept
// where an egress request can name an ingress request of the same process,
// and only there (a front proxy pays nothing for it), unless turned off.
func TestLinkTableOnlyWithBothDirections(t *testing.T) {
	const ingress = `  - {name: in, address: "127.0.0.1:0", direction: ingress, routes: [{match: {prefix: /}, cluster: up}]}
`
	const egress = `  - {name: out, address: "127.0.0.1:0", direction: egress, routes: [{match: {prefix: /}, cluster: up}]}
`
	for _, c := range []struct {
		name, listeners, tracing string
		want                     bool
	}{
		{"ingress only", ingress, "", false},
		{"egress only", egress, "", false},
		{"both", ingress + egress, "", true},
		{"both, turned off", ingress + egress, "  link_by_request_id: false\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse("links.yaml", []byte("listeners:\n"+c.listeners+
				"clusters:\n  - {name: up, endpoints: [\"127.0.0.1:1\"]}\ntracing:\n  driver: {name: file}\n"+c.tracing))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := NewTracer(cfg, TracerOptions{Sink: &discardSink{}})
			if err != nil {
				t.Fatal(err)
			}
			if got := tr.links != nil; got != c.want {
				t.Errorf("link table kept: %v, want %v", got, c.want)
			}
		})
	}
}

type discardSink struct{}

func (*discardSink) Enqueue(core.Span) {}

// The fast path's request id lies in its connection's memory, which the
// next request overwrites: the table keeps a copy of the key, so that
// an entry stays where its id says, a replaced one too.
func TestLinkTableCopiesTheKey(t *testing.T) {
	lt := newLinkTable(10)
	buf := []byte("id-1")
	id := str(buf)
	if !lt.put(id, link{ctx: propagation.Context{SpanID: 1}}) || !lt.put(id, link{ctx: propagation.Context{SpanID: 2}}) {
		t.Fatal("put refused")
	}
	copy(buf, "id-2") // the connection's next request
	if lk, ok := lt.get("id-1", nil); !ok || lk.ctx.SpanID != 2 {
		t.Fatalf("id-1 after its memory was reused: %+v, %v", lk, ok)
	}
	if _, ok := lt.get("id-2", nil); ok {
		t.Fatal("id-2 found: the table kept the connection's memory as its key")
	}
	lt.del("id-1", 2)
	if lt.len() != 0 {
		t.Fatalf("%d entries left", lt.len())
	}
}
