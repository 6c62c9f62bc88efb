package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
)

// Span names from templates ({method} {route} {path} {host}, per route or
// per listener), and custom tags of one side: the SERVER span gets the
// server's, the upstream CLIENT span the client's; on both paths.
func TestSpanNamesAndSidedTags(t *testing.T) {
	up := newUpstream(t, nil)
	cfg := fmt.Sprintf(`node: {id: n, service: s}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, operation: "{method} {host}{path}", routes: [
      {name: shop, match: {prefix: /shop}, cluster: up, operation: "{method} {route}"},
      {match: {prefix: /cart/}, cluster: up, operation: "{method} {route}"},
      {match: {path: /fixed}, cluster: up, operation: checkout},
      {match: {prefix: /}, cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
tracing:
  driver: {name: file}
  spawn_upstream_span: true
  custom_tags:
    - {tag: side, literal: in, span: server}
    - {tag: side, literal: out, span: client}
    - {tag: env, literal: dev}
`, up.Listener.Addr())
	for _, path := range []struct {
		name  string
		setup func(*proxy.Server)
	}{{"fast", nil}, {"net/http", proxy.SlowPathOnly}} {
		t.Run(path.name, func(t *testing.T) {
			p := startProxyWith(t, cfg, core.Capabilities{}, path.setup)
			for _, c := range []struct{ method, target, want string }{
				{"GET", "/shop/items?page=2", "GET shop"},
				{"POST", "/cart/42", "POST /cart/"},
				{"GET", "/fixed", "checkout"},
				{"DELETE", "/other/x?y=1", "DELETE " + p.addr["l"] + "/other/x"},
			} {
				req, _ := http.NewRequest(c.method, "http://"+p.addr["l"]+c.target, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				spans := p.rec.take(t, 2)
				var server, client core.Span
				for _, s := range spans {
					if s.Kind == core.KindServer {
						server = s
					} else {
						client = s
					}
				}
				if server.Name != c.want {
					t.Errorf("%s %s: span name %q, want %q", c.method, c.target, server.Name, c.want)
				}
				if client.Name != "router up egress" {
					t.Errorf("upstream span name %q", client.Name)
				}
				if v, _ := server.Tag("side"); v != "in" || countTag(server, "side") != 1 {
					t.Errorf("SERVER span: side=%q (%d times), want in once", v, countTag(server, "side"))
				}
				if v, _ := client.Tag("side"); v != "out" || countTag(client, "side") != 1 {
					t.Errorf("CLIENT span: side=%q (%d times), want out once", v, countTag(client, "side"))
				}
				if e1, _ := server.Tag("env"); e1 != "dev" {
					t.Errorf("a tag of both sides is missing on the SERVER span")
				}
				if e2, _ := client.Tag("env"); e2 != "dev" {
					t.Errorf("a tag of both sides is missing on the CLIENT span")
				}
			}
		})
	}
}

func countTag(s core.Span, key string) int {
	n := 0
	for _, t := range s.Tags {
		if t.Key == key {
			n++
		}
	}
	return n
}

// An operation's placeholders are checked when the config is: a typo is
// an error that lists the known ones, not a span named "{methd}".
func TestOperationPlaceholdersChecked(t *testing.T) {
	_, err := config.Parse("t.yaml", []byte(`listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, operation: "{verb}", routes: [{cluster: up, operation: "{methd} {route}"}]}
clusters:
  - {name: up, endpoints: ["127.0.0.1:1"]}
tracing:
  driver: {name: file}
  custom_tags: [{tag: x, literal: y, span: inbound}]
`))
	for _, want := range []string{"listeners[0].operation: unknown placeholder {verb}", "routes[0].operation: unknown placeholder {methd} (known: {method}, {route}, {path}, {host})", "custom_tags[0].span: must be server or client"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config error %v; want it to say %q", err, want)
		}
	}
}
