package proxy

import (
	"testing"

	"github.com/tracehop/tracehop/core"

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
