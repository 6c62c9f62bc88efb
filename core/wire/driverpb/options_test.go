package driverpb_test

import (
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tracehop/tracehop/core/wire/driverpb"
)

// exporter answers every Export at once.
type exporter struct {
	driverpb.UnimplementedDriverServer
}

func (exporter) Export(context.Context, *driverpb.ExportRequest) (*driverpb.ExportResponse, error) {
	return &driverpb.ExportResponse{}, nil
}

// tap is a server-side connection that keeps what crosses it each way, so
// that a test can read the HTTP/2 frames (the connection is plaintext).
type tap struct {
	net.Conn
	mu      sync.Mutex
	in, out []byte
}

func (c *tap) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in = append(c.in, p[:n]...)
	c.mu.Unlock()
	return n, err
}

func (c *tap) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, p...)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

type tapListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*tap
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	t := &tap{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, t)
	l.mu.Unlock()
	return t, nil
}

// pings counts the PING frames that are not acknowledgements in an HTTP/2
// byte stream (RFC 9113 section 6.7: type 6, flag ACK 1), after the
// client's connection preface when it starts with one. A frame cut short
// at the end (the connection closed as it crossed) is not counted.
func pings(b []byte) int {
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	if len(b) >= len(preface) && string(b[:len(preface)]) == preface {
		b = b[len(preface):]
	}
	n := 0
	for len(b) >= 9 {
		length := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		if len(b) < 9+length {
			break
		}
		if b[3] == 6 && b[4]&1 == 0 {
			n++
		}
		b = b[9+length:]
	}
	return n
}

// exportPings makes calls Exports from a client with dial to a server with
// serve, one after another as the host's exporter does, and counts the
// PINGs each side sent.
func exportPings(t *testing.T, serve []grpc.ServerOption, dial []grpc.DialOption, calls int) (fromHost, fromDriver int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &tapListener{Listener: ln}
	srv := grpc.NewServer(serve...)
	driverpb.RegisterDriverServer(srv, exporter{})
	go srv.Serve(tl)
	cc, err := grpc.NewClient(ln.Addr().String(), append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	client := driverpb.NewDriverClient(cc)
	for range calls {
		// A batch named in the span ring: a few dozen bytes.
		if _, err := client.Export(context.Background(), &driverpb.ExportRequest{BatchId: 1, SpanCount: 1024, RingOffset: 4096, RingLength: 300 << 10, RingSeq: 7}); err != nil {
			t.Fatal(err)
		}
	}
	cc.Close()
	srv.Stop()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if len(tl.conns) != 1 {
		t.Fatalf("%d connections, want the one", len(tl.conns))
	}
	c := tl.conns[0]
	c.mu.Lock()
	defer c.mu.Unlock()
	return pings(c.in), pings(c.out)
}

// With the span ring every Export is a small message after a pause, and
// gRPC's dynamic flow control starts each such burst with a PING to
// estimate the bandwidth: a round trip per batch in both processes. Host
// and driver fix their windows (DialOptions, ServerOptions), and neither
// pings. The dynamic case is the control: it shows the count sees pings.
func TestNoPingPerExport(t *testing.T) {
	const calls = 50
	host, driver := exportPings(t, driverpb.ServerOptions(), driverpb.DialOptions(), calls)
	if host != 0 || driver != 0 {
		t.Errorf("with fixed windows, %d Exports: the host sent %d PINGs and the driver %d, want none", calls, host, driver)
	}
	host, driver = exportPings(t, nil, nil, calls)
	t.Logf("dynamic windows, %d Exports: the host sent %d PINGs, the driver %d", calls, host, driver)
	if host < calls/2 || driver < calls/2 {
		t.Errorf("control: with gRPC's dynamic windows, %d Exports made the host send %d PINGs and the driver %d; "+
			"want about one each per Export (if gRPC no longer pings to size its windows, drop the control)", calls, host, driver)
	}
}

// recorder answers every Export at once and notes the goroutine it ran on.
type recorder struct {
	driverpb.UnimplementedDriverServer
	mu         sync.Mutex
	goroutines map[string]bool
}

func (r *recorder) Export(context.Context, *driverpb.ExportRequest) (*driverpb.ExportResponse, error) {
	var buf [64]byte
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine "), " ")
	r.mu.Lock()
	r.goroutines[id] = true
	r.mu.Unlock()
	return &driverpb.ExportResponse{}, nil
}

// exportGoroutines makes calls Exports, one after another, to a server with
// serve while two streams stay open on it (go-plugin's broker and stdio
// streams do, for a driver's life), and returns on how many goroutines
// the Exports ran.
func exportGoroutines(t *testing.T, serve []grpc.ServerOption, calls int) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(serve...)
	rec := &recorder{goroutines: map[string]bool{}}
	driverpb.RegisterDriverServer(srv, rec)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	defer srv.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil { // the stream's handler is running
			t.Fatal(err)
		}
	}
	client := driverpb.NewDriverClient(cc)
	for range calls {
		if _, err := client.Export(ctx, &driverpb.ExportRequest{BatchId: 1}); err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.goroutines)
}

// A goroutine per call grows its stack anew, by copying, on every batch;
// the driver's server keeps its Exports on stream workers, one per core,
// beside the ones go-plugin's long-lived streams hold. The default (a
// goroutine per call) is the control.
func TestExportsReuseGoroutines(t *testing.T) {
	const calls = 20
	if n := exportGoroutines(t, driverpb.ServerOptions(), calls); n > runtime.GOMAXPROCS(0) {
		t.Errorf("%d Exports one after another ran on %d goroutines, want at most %d (GOMAXPROCS): no stream worker was free",
			calls, n, runtime.GOMAXPROCS(0))
	}
	if n := exportGoroutines(t, nil, calls); n != calls {
		t.Errorf("control: without stream workers, %d Exports ran on %d goroutines, want one each", calls, n)
	}
}
