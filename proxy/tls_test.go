package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/internal/app"
	"github.com/tracehop/tracehop/internal/tlstest"
	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
)

// pki is the certificates one TLS test uses, made at run time into its
// temporary directory.
type pki struct {
	dir                string
	ca, other          *tlstest.CA
	caFile             string
	serverCrt, srvKey  string
	clientCrt, cliKey  string
	strangerCrt, sgKey string // a client certificate from another CA
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	must := func(e error) {
		if e != nil {
			t.Fatal(e)
		}
	}
	p.ca, err = tlstest.NewCA("tracehop test CA")
	must(err)
	p.other, err = tlstest.NewCA("another CA")
	must(err)
	p.caFile, err = p.ca.WriteCA(p.dir, "ca")
	must(err)
	p.serverCrt, p.srvKey, err = p.ca.WritePair(p.dir, "server", tlstest.Localhost("tracehop"))
	must(err)
	cl := tlstest.Leaf{CommonName: "service1", URIs: []string{"spiffe://mesh.test/ns/default/sa/service1"}, DNS: []string{"service1.test"}}
	p.clientCrt, p.cliKey, err = p.ca.WritePair(p.dir, "client", cl)
	must(err)
	p.strangerCrt, p.sgKey, err = p.other.WritePair(p.dir, "stranger", cl)
	must(err)
	return p
}

func (p *pki) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.ca.CertPEM)
	return pool
}

// client returns an HTTPS client that trusts the test CA, presenting the
// pair (certFile, keyFile) if given; h2 offers HTTP/2 by ALPN.
func (p *pki) client(t testing.TB, certFile, keyFile string, h2 bool) *http.Client {
	tc := &tls.Config{RootCAs: p.pool(), ServerName: "localhost"}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		// Sent whatever CAs tracehop asks for (Go's client would
		// otherwise send none from another CA), as curl does.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// tlsListener is a config with one ingress listener "l" on TLS in front of
// the cluster "up"; tlsExtra goes into the listener's tls block,
// clusterExtra into the cluster.
func tlsListener(p *pki, upstream, tlsExtra, clusterExtra string) string {
	return fmt.Sprintf(`node: {id: node-1, service: svc}
admin: {address: "127.0.0.1:0"}
listeners:
  - name: l
    address: "127.0.0.1:0"
    direction: ingress
    routes: [{match: {prefix: /}, cluster: up, timeout: 5s}]
    tls:
      cert_file: %s
      key_file: %s
%s
clusters:
  - name: up
    endpoints: [%s]
    connect_timeout: 2s
%s
`, p.serverCrt, p.srvKey, tlsExtra, upstream, clusterExtra) + tracingBlock
}

func httpsGet(t testing.TB, c *http.Client, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func metricValue(s *proxy.Server, series string) string {
	for _, line := range strings.Split(proxy.Metrics(s), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return "0"
}

// HTTPS through the fast path: keep-alive requests over one TLS
// connection are served without a hand-off to net/http, with
// X-Forwarded-Proto https and an https span URL; a client's own
// x-forwarded-client-cert does not pass.
func TestTLSFastPath(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), "", ""))
	c := p.client(t, "", "", false)
	for i := range 5 {
		resp, body := httpsGet(t, c, "https://localhost:"+port(tp.addr["l"])+"/x", map[string]string{"X-Forwarded-Client-Cert": "Subject=\"CN=forged\""})
		if resp.StatusCode != 200 || body != "hello" || resp.ProtoMajor != 1 {
			t.Fatalf("request %d: %d %q %s", i, resp.StatusCode, body, resp.Proto)
		}
	}
	if n := proxy.HandedOff(tp.srv, "l"); n != 0 {
		t.Errorf("%d connections handed to net/http: want the fast path to serve them all", n)
	}
	if got := up.header("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := up.header("X-Forwarded-Client-Cert"); got != "" {
		t.Errorf("a client's own XFCC reached the upstream: %q", got)
	}
	spans := tp.rec.wait(t, 5)
	if u := tagOf(spans[0], "http.url"); !strings.HasPrefix(u, "https://") {
		t.Errorf("http.url = %q", u)
	}
}

// tagOf returns a span's tag value, or "".
func tagOf(s core.Span, key string) string {
	for _, tg := range s.Tags {
		if tg.Key == key {
			return tg.Value
		}
	}
	return ""
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// HTTP/2 chosen by ALPN goes to net/http (one hand-off per connection),
// and a gRPC client over TLS reaches an h2c gRPC upstream through it.
func TestTLSHTTP2AndGRPC(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), "", ""))
	resp, body := httpsGet(t, p.client(t, "", "", true), "https://localhost:"+port(tp.addr["l"])+"/h2", nil)
	if resp.StatusCode != 200 || body != "hello" || resp.ProtoMajor != 2 {
		t.Fatalf("%d %q %s", resp.StatusCode, body, resp.Proto)
	}
	if n := proxy.HandedOff(tp.srv, "l"); n != 1 {
		t.Errorf("%d hand-offs, want 1 (the h2 connection)", n)
	}
	if got := up.header("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto over h2 = %q", got)
	}

	// gRPC: a health server behind an h2c cluster.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	tg := startProxy(t, tlsListener(p, ln.Addr().String(), "", "    protocol: h2c"))
	conn, err := grpc.NewClient("localhost:"+port(tg.addr["l"]), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.pool()})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC over TLS: %v %v", hr, err)
	}
	s := tg.rec.one(t)
	if tagOf(s, "grpc.status_code") != "0" || tagOf(s, "http.protocol") != "HTTP/2" {
		t.Errorf("span tags %v", s.Tags)
	}
}

// Mutual TLS: a verified client certificate's identity is a span tag and,
// with sanitize_set, the x-forwarded-client-cert the upstream gets (the
// client's own replaced); no certificate, or one from another CA, fails
// the handshake, counted by reason.
func TestTLSMutual(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), fmt.Sprintf("      client_ca_file: %s\n      forward_client_cert: sanitize_set", p.caFile), ""))
	url := "https://localhost:" + port(tp.addr["l"]) + "/m"
	resp, _ := httpsGet(t, p.client(t, p.clientCrt, p.cliKey, false), url, map[string]string{"X-Forwarded-Client-Cert": "By=forged"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	xfcc := up.header("X-Forwarded-Client-Cert")
	if !strings.HasPrefix(xfcc, "Hash=") || !strings.Contains(xfcc, `;Subject="CN=service1,O=tracehop test"`) ||
		!strings.Contains(xfcc, ";URI=spiffe://mesh.test/ns/default/sa/service1;DNS=service1.test") || strings.Contains(xfcc, "forged") {
		t.Errorf("XFCC = %q", xfcc)
	}
	s := tp.rec.one(t)
	if tagOf(s, "tls.client.identity") != "spiffe://mesh.test/ns/default/sa/service1" || tagOf(s, "tls.client.subject") != "CN=service1,O=tracehop test" {
		t.Errorf("span tags %v", s.Tags)
	}

	for _, c := range []struct {
		name, cert, key, reason string
	}{
		{"no certificate", "", "", tlsconf.ReasonNoClientCert},
		{"another CA", p.strangerCrt, p.sgKey, tlsconf.ReasonUnknownCA},
	} {
		if _, err := p.client(t, c.cert, c.key, false).Get(url); err == nil {
			t.Errorf("%s: the request went through", c.name)
		}
		series := fmt.Sprintf(`tracehop_tls_handshake_failures_total{listener="l",reason="%s"}`, c.reason)
		waitFor(t, func() bool { return metricValue(tp.srv, series) == "1" }, c.name+": "+series+" = 1")
	}
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A plaintext request on the TLS port gets net/http's 400 at once, and is
// counted.
func TestTLSPlaintextOnTLSPort(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), "", ""))
	conn, err := net.Dial("tcp", tp.addr["l"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(conn)
	got := string(b)
	if !strings.HasPrefix(got, "HTTP/1.0 400 Bad Request\r\n") || !strings.Contains(got, "Client sent an HTTP request to an HTTPS server.") {
		t.Errorf("answer %q", got)
	}
	waitFor(t, func() bool {
		return metricValue(tp.srv, `tracehop_tls_handshake_failures_total{listener="l",reason="plaintext"}`) == "1"
	}, "the plaintext failure counted")
}

// TLS to a cluster: verified against ca_file, pooled (one upstream
// connection for sequential requests) on the fast path, and a new
// connection after the old ones closed resumes the TLS session.
func TestTLSCluster(t *testing.T) {
	p := newPKI(t)
	var conns atomic.Int64
	var resumed atomic.Bool
	us := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resumed.Store(r.TLS.DidResume)
		fmt.Fprint(w, "secure hello")
	}))
	good, err := tls.LoadX509KeyPair(p.serverCrt, p.srvKey)
	if err != nil {
		t.Fatal(err)
	}
	us.TLS = &tls.Config{Certificates: []tls.Certificate{good}}
	us.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	us.Config.ErrorLog = log.New(io.Discard, "", 0)
	us.StartTLS()
	t.Cleanup(us.Close)
	addr := strings.TrimPrefix(us.URL, "https://")
	tp := startProxy(t, fmt.Sprintf(`admin: {address: off}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: egress, routes: [{cluster: up, timeout: 2s}]}
clusters:
  - {name: up, endpoints: [%s], connect_timeout: 1s, tls: {ca_file: %s, server_name: localhost}}
`, addr, p.caFile)+tracingBlock)
	url := "http://" + tp.addr["l"] + "/s"
	for range 3 {
		if resp, body := do(t, "GET", url, nil); resp.StatusCode != 200 || body != "secure hello" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d upstream connections for 3 sequential requests: want the pool to keep one", n)
	}
	if n := proxy.HandedOff(tp.srv, "l"); n != 0 {
		t.Errorf("%d hand-offs: want the fast path", n)
	}
	us.CloseClientConnections()
	time.Sleep(50 * time.Millisecond) // past the pool's peekAfterIdle: the closed connection is seen and dropped
	if resp, _ := do(t, "GET", url, nil); resp.StatusCode != 200 {
		t.Fatalf("after the upstream closed: %d", resp.StatusCode)
	}
	if n := conns.Load(); n != 2 || !resumed.Load() {
		t.Errorf("%d connections, resumed %v: want a second connection resuming the session", n, resumed.Load())
	}
}

// The handshake timeout: a client that connects and says nothing is cut
// off after handshake_timeout, while others are served meanwhile.
func TestTLSHandshakeTimeout(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), "      handshake_timeout: 300ms", ""))
	var stalled []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", tp.addr["l"])
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{0x16, 0x03, 0x01}) // the start of a record, then nothing
		stalled = append(stalled, c)
	}
	start := time.Now()
	if resp, _ := httpsGet(t, p.client(t, "", "", false), "https://localhost:"+port(tp.addr["l"])+"/", nil); resp.StatusCode != 200 {
		t.Errorf("a client beside stalled ones: %d", resp.StatusCode)
	}
	for _, c := range stalled {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("a stalled client: %v (want the connection closed)", err)
		}
		c.Close()
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stalled clients closed after %s", d)
	}
	waitFor(t, func() bool {
		return metricValue(tp.srv, `tracehop_tls_handshake_failures_total{listener="l",reason="timeout"}`) == "20"
	}, "20 timeouts counted")
}

// SNI: with a certificates list, each name gets its own certificate, and
// a name none holds gets the first.
func TestTLSSNI(t *testing.T) {
	p := newPKI(t)
	aCrt, aKey, _ := p.ca.WritePair(p.dir, "a", tlstest.Leaf{CommonName: "a", DNS: []string{"a.test"}})
	bCrt, bKey, _ := p.ca.WritePair(p.dir, "b", tlstest.Leaf{CommonName: "b", DNS: []string{"b.test"}})
	up := newUpstream(t, nil)
	cfg := fmt.Sprintf(`admin: {address: off}
listeners:
  - name: l
    address: "127.0.0.1:0"
    direction: ingress
    routes: [{cluster: up}]
    tls:
      certificates:
        - {cert_file: %s, key_file: %s}
        - {cert_file: %s, key_file: %s}
clusters:
  - {name: up, endpoints: [%s]}
`, aCrt, aKey, bCrt, bKey, up.addr())
	tp := startProxy(t, cfg)
	for name, want := range map[string]string{"a.test": "a", "b.test": "b", "c.test": "a"} {
		c, err := tls.Dial("tcp", tp.addr["l"], &tls.Config{ServerName: name, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != want {
			t.Errorf("SNI %s: certificate %s, want %s", name, got, want)
		}
		c.Close()
	}
}

// TestReliabilityTLSRotation: the listener's certificate is replaced on
// disk while clients make new connections and reuse old ones: no request
// fails, and new handshakes get the new certificate.
func TestReliabilityTLSRotation(t *testing.T) {
	old := tlsconf.CheckEvery
	tlsconf.CheckEvery = 100 * time.Millisecond
	t.Cleanup(func() { tlsconf.CheckEvery = old })
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), "", ""))
	url := "https://localhost:" + port(tp.addr["l"]) + "/r"
	serial := func() string {
		c, err := tls.Dial("tcp", tp.addr["l"], &tls.Config{RootCAs: p.pool(), ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			c := p.client(t, "", "", false)
			if i%2 == 0 { // half open a new connection for every request
				c.Transport.(*http.Transport).DisableKeepAlives = true
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(err, resp))
				} else {
					ok.Add(1)
				}
			}
		})
	}
	rotations := int(chaosDur(3, 20))
	for range rotations {
		time.Sleep(300 * time.Millisecond)
		if _, _, err := p.ca.WritePair(p.dir, "server", tlstest.Localhost("tracehop")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	after := serial()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed (first: %v)", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	if after == before {
		t.Errorf("new handshakes still get the old certificate (serial %s)", before)
	}
	report(t, result{
		Fault:    fmt.Sprintf("listener certificate rotated on disk %d times under load (new and kept-alive connections)", rotations),
		Measured: fmt.Sprintf("%d/%d requests ok; new handshakes got the new certificate", ok.Load(), ok.Load()+failed.Load()),
		Bound:    "no failed request; the new pair in use within 1s",
	})
}

// TestReliabilityTLSStalledHandshakes: clients that open connections and
// stall mid-handshake are cut off by handshake_timeout; the others are
// served meanwhile.
func TestReliabilityTLSStalledHandshakes(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), "      handshake_timeout: 1s", ""))
	const n = 200
	var stalled []net.Conn
	for range n {
		c, err := net.Dial("tcp", tp.addr["l"])
		if err != nil {
			t.Fatal(err)
		}
		// A ClientHello's first bytes, then nothing.
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
		stalled = append(stalled, c)
	}
	start := time.Now()
	c := p.client(t, "", "", false)
	var worst time.Duration
	for range 20 {
		t0 := time.Now()
		if resp, _ := httpsGet(t, c, "https://localhost:"+port(tp.addr["l"])+"/", nil); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		worst = max(worst, time.Since(t0))
	}
	var closedBy time.Duration
	for _, sc := range stalled {
		sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(sc)
		if _, err := io.ReadAll(br); err != nil {
			t.Fatalf("a stalled client was not cut off: %v", err)
		}
		closedBy = max(closedBy, time.Since(start))
		sc.Close()
	}
	if closedBy > 3*time.Second {
		t.Errorf("stalled clients cut off after %s, want about handshake_timeout (1s)", closedBy)
	}
	report(t, result{
		Fault:    fmt.Sprintf("%d clients stall mid-handshake (handshake_timeout: 1s)", n),
		Measured: fmt.Sprintf("all cut off within %s; 20/20 other requests ok meanwhile, slowest %s", closedBy.Round(10*time.Millisecond), worst.Round(time.Millisecond)),
		Bound:    "cut off at handshake_timeout; others served",
	})
}

// TestReliabilityTLSUntrustedUpstream: the upstream's certificate is
// replaced by one from a CA tracehop does not trust, under load: every
// request in that window is a 502 with the reason (no hang, no retry
// storm: one handshake per request), and requests succeed again once it
// is fixed.
func TestReliabilityTLSUntrustedUpstream(t *testing.T) {
	p := newPKI(t)
	good, _ := tls.LoadX509KeyPair(p.serverCrt, p.srvKey)
	badCrt, badKey, _ := p.other.WritePair(p.dir, "untrusted", tlstest.Localhost("impostor"))
	bad, _ := tls.LoadX509KeyPair(badCrt, badKey)
	var current atomic.Pointer[tls.Certificate]
	current.Store(&good)
	var handshakes atomic.Int64
	us := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // every request a new handshake
		fmt.Fprint(w, "ok")
	}))
	us.TLS = &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			handshakes.Add(1)
			return current.Load(), nil
		},
		// A replaced certificate comes with a restarted server, whose
		// session tickets tracehop's cannot resume.
		SessionTicketsDisabled: true,
	}
	us.Config.ErrorLog = log.New(io.Discard, "", 0)
	us.StartTLS()
	t.Cleanup(us.Close)
	addr := strings.TrimPrefix(us.URL, "https://")
	tp := startProxy(t, fmt.Sprintf(`admin: {address: off}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: egress, routes: [{cluster: up, timeout: 2s}]}
clusters:
  - {name: up, endpoints: [%s], connect_timeout: 1s, tls: {ca_file: %s, server_name: localhost}}
`, addr, p.caFile)+tracingBlock)
	url := "http://" + tp.addr["l"] + "/u"
	count := func(d time.Duration) (ok, bad502, other int) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			resp, body := do(t, "GET", url, nil)
			switch {
			case resp.StatusCode == 200:
				ok++
			case resp.StatusCode == 502 && strings.Contains(body, "upstream TLS error"):
				bad502++
			default:
				other++
			}
		}
		return
	}
	ok1, _, o1 := count(500 * time.Millisecond)
	current.Store(&bad)
	h0 := handshakes.Load()
	n0 := len(tp.rec.all())
	ok2, b2, o2 := count(time.Second)
	h := handshakes.Load() - h0
	if spans := tp.rec.wait(t, n0+ok2+b2); len(spans) > n0 {
		msg := tagOf(spans[len(spans)-1], "error.message")
		if !strings.Contains(msg, "upstream TLS error: the certificate of "+addr+` (server name "localhost") failed verification: certificate signed by unknown authority`) {
			t.Errorf("error.message = %q", msg)
		}
	}
	current.Store(&good)
	ok3, b3, o3 := count(500 * time.Millisecond)
	if ok1 == 0 || o1+o2+o3 != 0 || ok2 > 1 || b2 == 0 || ok3 == 0 || b3 > 1 {
		t.Errorf("before %d ok; untrusted %d ok %d 502; fixed %d ok %d 502; %d other answers", ok1, ok2, b2, ok3, b3, o1+o2+o3)
	}
	if h > int64(b2)+2 {
		t.Errorf("%d handshakes for %d requests while untrusted: a retry storm", h, b2)
	}
	report(t, result{
		Fault:    "upstream certificate replaced by an untrusted one, then fixed",
		Measured: fmt.Sprintf("untrusted: %d/%d requests 502 \"upstream TLS error\" (%d handshakes: no retries); fixed: %d/%d ok", b2, ok2+b2, h, ok3, ok3+b3),
		Bound:    "502 with the reason, not retried; recovers at once",
	})
}

// A listener's key file that is missing fails the config's load, naming
// the file, the line and the key.
func TestTLSStartFailsOnMissingFiles(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	cfg := tlsListener(p, up.addr(), "", "")
	if err := os.Remove(filepath.Join(p.dir, "server.key")); err != nil {
		t.Fatal(err)
	}
	// config.Parse already reads the files: the error names file:line.
	if _, err := config.Parse("test.yaml", []byte(cfg)); err == nil || !strings.Contains(err.Error(), "listeners[0].tls.key_file: cannot read the key") {
		t.Errorf("err = %v", err)
	}
}

func metricsGrep(s *proxy.Server, sub string) string {
	var out []string
	for _, l := range strings.Split(proxy.Metrics(s), "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Sidecar to sidecar over mutual TLS, as in a mesh: service1's egress
// sidecar dials service2's ingress sidecar with its client certificate;
// the ingress verifies it (client_auth: require), tags its span with the
// caller's identity and passes it on as x-forwarded-client-cert; the two
// spans are one trace.
func TestTLSSidecarToSidecar(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	ingress := startProxy(t, fmt.Sprintf(`node: {id: sidecar2, service: service2}
admin: {address: off}
listeners:
  - name: in
    address: "127.0.0.1:0"
    direction: ingress
    routes: [{cluster: app}]
    tls: {cert_file: %s, key_file: %s, client_ca_file: %s, forward_client_cert: sanitize_set}
clusters:
  - {name: app, endpoints: [%s]}
`, p.serverCrt, p.srvKey, p.caFile, up.addr())+tracingBlock)
	egress := startProxy(t, fmt.Sprintf(`node: {id: sidecar1, service: service1}
admin: {address: off}
listeners:
  - {name: out, address: "127.0.0.1:0", direction: egress, routes: [{cluster: service2}]}
clusters:
  - name: service2
    endpoints: [%s]
    tls: {ca_file: %s, server_name: localhost, cert_file: %s, key_file: %s}
`, ingress.addr["in"], p.caFile, p.clientCrt, p.cliKey)+tracingBlock)
	for range 3 {
		if resp, body := do(t, "GET", "http://"+egress.addr["out"]+"/call", nil); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	client, server := egress.rec.wait(t, 3), ingress.rec.wait(t, 3)
	for i := range 3 {
		if client[i].TraceID != server[i].TraceID || server[i].ParentID != client[i].SpanID {
			t.Errorf("request %d: the ingress span does not continue the egress span's trace", i)
		}
	}
	if id := tagOf(server[0], "tls.client.identity"); id != "spiffe://mesh.test/ns/default/sa/service1" {
		t.Errorf("tls.client.identity = %q", id)
	}
	if x := up.header("X-Forwarded-Client-Cert"); !strings.Contains(x, "URI=spiffe://mesh.test/ns/default/sa/service1") {
		t.Errorf("XFCC = %q", x)
	}
	if proxy.HandedOff(egress.srv, "out") != 0 || proxy.HandedOff(ingress.srv, "in") != 0 {
		t.Errorf("hand-offs: want both sidecars on the fast path")
	}
}

// BenchmarkFastPathTLS is BenchmarkFastPath over TLS (ECDSA P-256, TLS
// 1.3, keep-alive): what terminating TLS adds to a request on the fast
// path. /new is one request per connection: a full handshake each.
func BenchmarkFastPathTLS(b *testing.B) {
	p := newPKI(b)
	up := rawUpstream(b)
	for _, traced := range []bool{false, true} {
		name, block := "untraced", ""
		if traced {
			name, block = "traced", tracingBlock
		}
		tp := startProxyWith(b, fmt.Sprintf(`admin: {address: off}
listeners:
  - name: l
    address: "127.0.0.1:0"
    direction: ingress
    routes: [{cluster: up}]
    tls: {cert_file: %s, key_file: %s}
clusters:
  - {name: up, endpoints: [%s]}
`, p.serverCrt, p.srvKey, up)+block, benchCaps, nil)
		tc := &tls.Config{RootCAs: p.pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}}
		b.Run(name, func(b *testing.B) {
			conn, err := tls.Dial("tcp", tp.addr["l"], tc)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			pingPong(b, conn)
		})
		if traced {
			continue
		}
		b.Run("new-connection", func(b *testing.B) {
			req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
			for b.Loop() {
				conn, err := tls.Dial("tcp", tp.addr["l"], tc)
				if err != nil {
					b.Fatal(err)
				}
				conn.Write(req)
				if _, err := io.Copy(io.Discard, conn); err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
		})
	}
}

// An HTTP/1.1 request the fast path hands to net/http (a chunked body)
// keeps what TLS told: X-Forwarded-Proto https and the client's identity.
func TestTLSHandedOffHTTP1(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, tlsListener(p, up.addr(), fmt.Sprintf("      client_ca_file: %s\n      forward_client_cert: sanitize_set", p.caFile), ""))
	c := p.client(t, p.clientCrt, p.cliKey, false)
	req, _ := http.NewRequest("POST", "https://localhost:"+port(tp.addr["l"])+"/chunked", io.MultiReader(strings.NewReader("a"), strings.NewReader("b")))
	req.ContentLength = -1 // chunked
	req.Header.Set("X-Forwarded-Client-Cert", "By=forged")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || proxy.HandedOff(tp.srv, "l") != 1 {
		t.Fatalf("status %d, %d hand-offs (want 1)", resp.StatusCode, proxy.HandedOff(tp.srv, "l"))
	}
	if up.header("X-Forwarded-Proto") != "https" || !strings.Contains(up.header("X-Forwarded-Client-Cert"), "URI=spiffe://mesh.test/ns/default/sa/service1") ||
		strings.Contains(up.header("X-Forwarded-Client-Cert"), "forged") {
		t.Errorf("X-Forwarded-Proto %q, XFCC %q", up.header("X-Forwarded-Proto"), up.header("X-Forwarded-Client-Cert"))
	}
	if s := tp.rec.one(t); tagOf(s, "tls.client.identity") == "" || !strings.HasPrefix(tagOf(s, "http.url"), "https://") {
		t.Errorf("span tags %v", s.Tags)
	}
}

// A cluster with protocol h2 speaks HTTP/2 over TLS (ALPN) to a gRPC
// server with TLS credentials.
func TestTLSClusterH2GRPC(t *testing.T) {
	p := newPKI(t)
	cert, err := tls.LoadX509KeyPair(p.serverCrt, p.srvKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	tp := startProxy(t, fmt.Sprintf(`admin: {address: off}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: egress, routes: [{cluster: grpc}]}
clusters:
  - {name: grpc, endpoints: [%s], protocol: h2, tls: {ca_file: %s, server_name: localhost}}
`, ln.Addr(), p.caFile)+tracingBlock)
	conn, err := grpc.NewClient("passthrough:///"+tp.addr["l"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC through an h2 TLS cluster: %v %v", hr, err)
	}
}

// /config shows where a key is, never what it holds.
func TestTLSConfigDumpHasNoKeys(t *testing.T) {
	p := newPKI(t)
	cfg, err := config.Parse("test.yaml", []byte(tlsListener(p, "127.0.0.1:1", fmt.Sprintf("      client_ca_file: %s", p.caFile),
		fmt.Sprintf("    tls: {ca_file: %s, cert_file: %s, key_file: %s}", p.caFile, p.clientCrt, p.cliKey))))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(app.RedactedConfig(cfg))
	if !strings.Contains(string(b), p.srvKey) || strings.Contains(string(b), "PRIVATE KEY") || strings.Contains(string(b), "BEGIN") {
		t.Errorf("/config: %s", b)
	}
}

// cipher_suites narrows TLS 1.2's suites (issue 26: CBC suites could only
// be turned off by min_version 1.3); session_tickets: false turns
// resumption off; session_ticket_lifetime refuses older tickets.
func TestTLSCipherSuitesAndTickets(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	// dial makes one TLS connection with cfg, sends a request and reads
	// the answer (which also takes in a TLS 1.3 ticket), and says what was
	// negotiated.
	dial := func(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		resp.Body.Close()
		return c.ConnectionState(), nil
	}
	client := func(suites ...uint16) *tls.Config {
		cfg := &tls.Config{RootCAs: p.pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}}
		if suites != nil {
			cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, suites
		}
		return cfg
	}

	t.Run("cipher_suites", func(t *testing.T) {
		tp := startProxy(t, tlsListener(p, up.addr(), "      cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n", ""))
		addr := tp.addr["l"]
		if _, err := dial(t, addr, client(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA)); err == nil {
			t.Error("a TLS 1.2 client offering only a CBC suite left out of cipher_suites was served")
		}
		cs, err := dial(t, addr, client(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
		if err != nil || cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
			t.Errorf("suite %s, %v; want the one listed", tls.CipherSuiteName(cs.CipherSuite), err)
		}
		if cs, err := dial(t, addr, client()); err != nil || cs.Version != tls.VersionTLS13 {
			t.Errorf("TLS 1.3 (its suites not configurable): %x %v", cs.Version, err)
		}
	})

	for _, c := range []struct {
		name, settings string
		resumes        []bool // the second connection, then a third after 1.5 s
	}{
		{"tickets on", "", []bool{true, true}},
		{"tickets off", "      session_tickets: false\n", []bool{false, false}},
		{"lifetime 1s", "      session_ticket_lifetime: 1s\n", []bool{true, false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := startProxy(t, tlsListener(p, up.addr(), c.settings, ""))
			for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
				cfg := client()
				cfg.MaxVersion = version
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				if _, err := dial(t, tp.addr["l"], cfg); err != nil {
					t.Fatal(err)
				}
				for i, want := range c.resumes {
					if i == 1 {
						time.Sleep(1500 * time.Millisecond)
					}
					cs, err := dial(t, tp.addr["l"], cfg)
					if err != nil {
						t.Fatal(err)
					}
					if cs.DidResume != want {
						t.Errorf("TLS %x, connection %d: resumed %v, want %v", version, i+2, cs.DidResume, want)
					}
				}
			}
		})
	}
}

// A TLS connection's idle wait reads inside the TLS layer, so, unlike a
// plaintext one, it cannot be marked busy before its read: an eviction
// (a new connection over max_connections) can land just after the read
// took a request out of the socket. That request is served, as the
// connection's last (Connection: close), not cut: on the fast path, and
// when the request goes on to net/http (an escaped path), whose answer
// closes the connection too.
func TestTLSEvictedWhileReadingIsServed(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, limitsConfig(up.addr(), fmt.Sprintf(", read_header_timeout: 1s, tls: {cert_file: %s, key_file: %s}", p.serverCrt, p.srvKey)))
	var armed atomic.Bool
	evicted := make(chan int, 1)
	proxy.AfterIdleRead(func() {
		if armed.CompareAndSwap(true, false) {
			evicted <- proxy.EvictIdle(tp.srv, "l", 1)
		}
	})
	t.Cleanup(func() { proxy.AfterIdleRead(nil) })
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, c := range []struct {
		path, second string
		handedOff    int64
	}{
		{"fast path", get, 0},
		{"handed to net/http", "GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n", 1}, // an escaped path
	} {
		conn := dialHTTP11(t, p, tp.addr["l"], 5*time.Second)
		br := bufio.NewReader(conn)
		// A first request, so that the handshake and the connection's
		// first wait are behind it; the second one's read is where the
		// eviction lands.
		for i, req := range []string{get, c.second} {
			armed.Store(i == 1)
			io.WriteString(conn, req)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: request %d was cut: %v", c.path, i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "hello" {
				t.Fatalf("%s: request %d: %d %q", c.path, i, resp.StatusCode, body)
			}
			if i == 1 && !resp.Close {
				t.Errorf("%s: the request read as the connection was evicted was answered without Connection: close", c.path)
			}
		}
		select {
		case n := <-evicted:
			if n != 1 {
				t.Fatalf("%s: the eviction in the read's window closed %d connections, want 1", c.path, n)
			}
		default:
			t.Fatalf("%s: no eviction landed in the window: the test did not test it", c.path)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := br.ReadByte(); err == nil || isTimeout(err) {
			t.Errorf("%s: the connection stayed open after the request it was evicted during: %v", c.path, err)
		}
		if n := proxy.HandedOff(tp.srv, "l"); n != c.handedOff {
			t.Errorf("%s: %d connections handed to net/http, want %d", c.path, n, c.handedOff)
		}
	}

	// A first head, evicted after its first part and never finished: the
	// rest is awaited for read_header_timeout, as any head's is, and not
	// for ever (the connection no longer counts: nothing else would close
	// it).
	conn := dialHTTP11(t, p, tp.addr["l"], 5*time.Second)
	armed.Store(true)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("a head left unfinished after its connection was evicted got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("a head left unfinished after its connection was evicted: %s, want 408", resp.Status)
	}
	if n := <-evicted; n != 1 {
		t.Errorf("unfinished head: the eviction closed %d connections, want 1", n)
	}
}

// An eviction whose read deadline (now) is set after the evicted
// connection, having read a request's first part meanwhile, set its own
// must not cut the rest of that head: the connection waits for its
// evictor before it sets the deadline the rest reads on.
func TestTLSEvictionDeadlineBeforeTheConnections(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	tp := startProxy(t, limitsConfig(up.addr(), fmt.Sprintf(", read_header_timeout: 5s, tls: {cert_file: %s, key_file: %s}", p.serverCrt, p.srvKey)))
	var armed atomic.Bool
	inWindow := make(chan struct{})
	evicted := make(chan int, 1)
	proxy.AfterIdleRead(func() {
		if !armed.CompareAndSwap(true, false) {
			return
		}
		// The evictor runs on its own goroutine and stops between
		// marking the connection and setting its deadline; this one
		// goes on meanwhile.
		go func() { evicted <- proxy.EvictIdle(tp.srv, "l", 1) }()
		<-inWindow
	})
	proxy.WhileEvicting(func() {
		close(inWindow)
		// Time for the connection to set its deadline first, were it
		// not waiting for this one's.
		time.Sleep(300 * time.Millisecond)
	})
	t.Cleanup(func() { proxy.AfterIdleRead(nil); proxy.WhileEvicting(nil) })

	conn := dialHTTP11(t, p, tp.addr["l"], 10*time.Second)
	armed.Store(true)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n")
	// The rest after the evictor has set its deadline.
	if n := <-evicted; n != 1 {
		t.Fatalf("the eviction closed %d connections, want 1", n)
	}
	time.Sleep(100 * time.Millisecond)
	io.WriteString(conn, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("a head whose first part was read as its connection was evicted got no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("a head finished after its connection's eviction: %s %q, want 200 (its rest cut by the evictor's deadline?)", resp.Status, body)
	}
	if !resp.Close {
		t.Error("the request read as its connection was evicted was answered without Connection: close")
	}
}

// dialHTTP11 opens a TLS connection to addr for HTTP/1.1, trusting p's CA,
// closed when the test ends, with every read and write bounded by d.
func dialHTTP11(t *testing.T, p *pki, addr string, d time.Duration) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(d))
	return conn
}
