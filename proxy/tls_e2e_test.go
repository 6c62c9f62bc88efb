//go:build e2e

package proxy_test

// TLS against real peers (make e2e; make e2e-deps installs curl, openssl
// and nginx-light): curl and openssl s_client as clients, nginx with ssl
// as an upstream. Certificates are made by the test.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/internal/tlstest"
	"github.com/tracehop/tracehop/proxy"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: make e2e-deps installs it", name)
	}
	return p
}

// curl, HTTP/1.1 and HTTP/2, with --cacert and a client certificate
// (--cert/--key) on a listener that requires one; without one, the
// handshake fails and is counted.
func TestE2ETLSCurl(t *testing.T) {
	curl := needTool(t, "curl")
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), fmt.Sprintf("      client_ca_file: %s\n      forward_client_cert: sanitize_set", p.caFile), ""))
	url := "https://localhost:" + port(tp.addr["l"]) + "/curl"
	for _, c := range []struct{ flag, want string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
		out, err := exec.Command(curl, "-sS", c.flag, "--cacert", p.caFile, "--cert", p.clientCrt, "--key", p.cliKey,
			"-w", " %{http_code} %{http_version}", url).CombinedOutput()
		if err != nil || string(out) != "hello 200 "+c.want {
			t.Errorf("curl %s: %q %v", c.flag, out, err)
		}
	}
	if n := proxy.HandedOff(tp.srv, "l"); n != 1 {
		t.Errorf("%d hand-offs: want 1 (HTTP/2), HTTP/1.1 on the fast path", n)
	}
	if x := up.header("X-Forwarded-Client-Cert"); !strings.Contains(x, "URI=spiffe://mesh.test/ns/default/sa/service1") {
		t.Errorf("XFCC = %q", x)
	}
	// Plaintext HTTP on the TLS port: net/http's 400, at once.
	out, _ := exec.Command(curl, "-sS", "-m", "5", "-w", " %{http_code}", strings.Replace(url, "https:", "http:", 1)).CombinedOutput()
	if string(out) != "Client sent an HTTP request to an HTTPS server.\n 400" {
		t.Errorf("curl http:// to the TLS port: %q", out)
	}
	if out, err := exec.Command(curl, "-sS", "--cacert", p.caFile, url).CombinedOutput(); err == nil {
		t.Errorf("curl without a client certificate got through: %q", out)
	}
	waitFor(t, func() bool {
		return metricValue(tp.srv, `tracehop_tls_handshake_failures_total{listener="l",reason="no_client_cert"}`) == "1"
	}, "no_client_cert counted")
}

// openssl s_client: a request over TLS 1.2 and 1.3 with ALPN http/1.1 is
// served; a client certificate from another CA is refused and counted.
func TestE2ETLSOpenSSL(t *testing.T) {
	openssl := needTool(t, "openssl")
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), fmt.Sprintf("      client_ca_file: %s\n      client_auth: request", p.caFile), ""))
	sclient := func(args ...string) (string, error) {
		cmd := exec.Command(openssl, append([]string{"s_client", "-connect", tp.addr["l"], "-servername", "localhost",
			"-CAfile", p.caFile, "-verify_return_error", "-quiet", "-alpn", "http/1.1"}, args...)...)
		cmd.Stdin = strings.NewReader("GET /ossl HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, v := range []string{"-tls1_2", "-tls1_3"} {
		out, err := sclient(v)
		if err != nil || !strings.Contains(out, "HTTP/1.1 200 OK") || !strings.Contains(out, "hello") {
			t.Errorf("openssl s_client %s: %v\n%s", v, err, out)
		}
	}
	if n := proxy.HandedOff(tp.srv, "l"); n != 0 {
		t.Errorf("%d hand-offs: want the fast path", n)
	}
	out, _ := sclient("-cert", p.strangerCrt, "-key", p.sgKey)
	if strings.Contains(out, "HTTP/1.1 200") {
		t.Errorf("a certificate from another CA got through:\n%s", out)
	}
	waitFor(t, func() bool {
		return metricValue(tp.srv, `tracehop_tls_handshake_failures_total{listener="l",reason="unknown_ca"}`) == "1"
	}, "unknown_ca counted")
}

// nginx with ssl as the upstream of a TLS cluster: verified against the
// test CA, kept alive and reused on the fast path.
func TestE2ETLSNginxUpstream(t *testing.T) {
	nginx := needTool(t, "nginx")
	p := newPKI(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s ssl;
    ssl_certificate %[3]s;
    ssl_certificate_key %[4]s;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "nginx over tls $ssl_protocol $connection\n"; }
  }
}
`, dir, addr, p.serverCrt, p.srvKey)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
	cmd := exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "nginx listening")

	tp := startProxy(t, fmt.Sprintf(`admin: {address: off}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: egress, routes: [{cluster: nginx}]}
clusters:
  - {name: nginx, endpoints: [%s], tls: {ca_file: %s, server_name: localhost}}
`, addr, p.caFile)+tracingBlock)
	var conns []string
	for range 3 {
		resp, body := do(t, "GET", "http://"+tp.addr["l"]+"/", nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "nginx over tls TLSv1.3 ") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		conns = append(conns, strings.Fields(body)[4])
	}
	if conns[0] != conns[1] || conns[1] != conns[2] {
		t.Errorf("nginx connections %v: want one, kept alive", conns)
	}
	if n := proxy.HandedOff(tp.srv, "l"); n != 0 {
		t.Errorf("%d hand-offs: want the fast path", n)
	}

	// The same nginx, verified against another CA: a 502 naming why.
	otherCA, _ := tlstest.NewCA("not nginx's CA")
	otherFile, _ := otherCA.WriteCA(dir, "other")
	tp2 := startProxy(t, fmt.Sprintf(`admin: {address: off}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: egress, routes: [{cluster: nginx}]}
clusters:
  - {name: nginx, endpoints: [%s], tls: {ca_file: %s, server_name: localhost}}
`, addr, otherFile)+tracingBlock)
	resp, body := do(t, "GET", "http://"+tp2.addr["l"]+"/", nil)
	if resp.StatusCode != 502 || !strings.Contains(body, "upstream TLS error") {
		t.Errorf("untrusted nginx: %d %q", resp.StatusCode, body)
	}
	if msg := tagOf(tp2.rec.one(t), "error.message"); !strings.Contains(msg, "failed verification: certificate signed by unknown authority") {
		t.Errorf("error.message = %q", msg)
	}
}
