//go:build linux

package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
)

// reusePortYAML is a config whose one listener, at addr, routes to upstream.
func reusePortYAML(addr, upstream string, reusePort bool) string {
	return fmt.Sprintf(`admin: {address: "127.0.0.1:0"}
listeners:
  - {name: in, address: %q, direction: ingress, reuse_port: %t, routes: [{match: {prefix: /}, cluster: app}]}
clusters:
  - {name: app, endpoints: [%q]}
`, addr, reusePort, strings.TrimPrefix(upstream, "http://"))
}

// startServer starts a proxy.Server from yaml and returns its listener's
// address, or Start's error.
func startServer(t *testing.T, yaml string) (string, error) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	srv := proxy.NewServer(cfg, proxy.Options{})
	addrs, err := srv.Start()
	if err != nil {
		return "", err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return addrs[0].Address, nil
}

func namedUpstream(t *testing.T, name string) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(up.Close)
	return up.URL
}

// Two servers that both set reuse_port share one address, and the kernel
// gives each some of the new connections: what lets one tracehop process
// per core serve one port.
func TestReusePortSharesAnAddress(t *testing.T) {
	addr, err := startServer(t, reusePortYAML("127.0.0.1:0", namedUpstream(t, "first"), true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := startServer(t, reusePortYAML(addr, namedUpstream(t, "second"), true)); err != nil {
		t.Fatalf("a second listener with reuse_port on %s: %v", addr, err)
	}
	seen := map[string]int{}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	// A new connection each: the kernel picks a socket per connection, by
	// a hash of its addresses, so 64 all going to one has odds of 2^-63.
	for range 64 {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(body)]++
	}
	if seen["first"] == 0 || seen["second"] == 0 || seen["first"]+seen["second"] != 64 {
		t.Fatalf("answers by upstream over 64 connections: %v; want both servers to have served some, and nothing else", seen)
	}
}

// Without reuse_port on both, the second bind fails, and the error says
// what to do.
func TestReusePortOffOnOneSide(t *testing.T) {
	for _, c := range []struct {
		name          string
		first, second bool
		want          string
	}{
		{"second without", true, false, "set reuse_port: true on the listener of each"},
		{"first without", false, true, "another process holds it without reuse_port"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, err := startServer(t, reusePortYAML("127.0.0.1:0", namedUpstream(t, "first"), c.first))
			if err != nil {
				t.Fatal(err)
			}
			_, err = startServer(t, reusePortYAML(addr, namedUpstream(t, "second"), c.second))
			if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("second Start: %v; want address already in use and %q", err, c.want)
			}
		})
	}
}

// A reload cannot change reuse_port on a bound address (the socket cannot
// be rebound beside itself): it fails, says so, and the listener serves on.
func TestReloadKeepsReusePort(t *testing.T) {
	for _, bound := range []bool{false, true} {
		t.Run(fmt.Sprintf("bound with %t", bound), func(t *testing.T) {
			up := namedUpstream(t, "app")
			// An address as a config names it: the reload matches the
			// listener by it.
			addr := freePort(t)
			r := startReloadable(t, reusePortYAML(addr, up, bound), &recorder{})
			err := r.srv.Apply(parseConfig(t, reusePortYAML(addr, up, !bound)), nil, nil)
			if err == nil || !strings.Contains(err.Error(), "reuse_port cannot change") || !strings.Contains(err.Error(), "restart tracehop") {
				t.Fatalf("reload setting reuse_port to %t: %v; want it refused with what to do", !bound, err)
			}
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "app" {
				t.Fatalf("after the refused reload the listener answered %q, want the upstream's %q", body, "app")
			}
		})
	}
}

// tracehop validate binds each address as a start would: beside a
// reuse_port listener it passes with reuse_port and fails, saying what to
// change, without.
func TestCheckAddressesWithReusePort(t *testing.T) {
	up := namedUpstream(t, "first")
	addr, err := startServer(t, reusePortYAML("127.0.0.1:0", up, true))
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.CheckAddresses(parseConfig(t, reusePortYAML(addr, up, true))); err != nil {
		t.Fatalf("with reuse_port beside a reuse_port listener: %v", err)
	}
	err = proxy.CheckAddresses(parseConfig(t, reusePortYAML(addr, up, false)))
	if err == nil || !strings.Contains(err.Error(), "set reuse_port: true on the listener of each") {
		t.Fatalf("without reuse_port beside a reuse_port listener: %v; want the address refused with what to change", err)
	}
}
