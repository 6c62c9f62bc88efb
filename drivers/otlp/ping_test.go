package otlp_test

import (
	"context"
	"net"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/tracehop/tracehop/drivers/otlp"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// countingReceiver takes every export, and keeps the bytes its one client
// connection sent it (plaintext HTTP/2).
type countingReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu   sync.Mutex
	sent []byte
}

func (*countingReceiver) Export(context.Context, *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type readTap struct {
	net.Conn
	r *countingReceiver
}

func (c readTap) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.r.mu.Lock()
	c.r.sent = append(c.r.sent, p[:n]...)
	c.r.mu.Unlock()
	return n, err
}

type tapListener struct {
	net.Listener
	r *countingReceiver
}

func (l tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return readTap{Conn: c, r: l.r}, nil
}

// clientPings counts the PING frames that are not acknowledgements (RFC
// 9113 section 6.7: type 6, flag ACK 1) in what a client sent, after its
// connection preface; a frame cut short at the end is not counted.
func clientPings(b []byte) int {
	b = b[min(len(b), len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")):]
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

// Over OTLP/gRPC the driver does not ping the receiver per export: left to
// size its windows itself, gRPC pinged on every response (the control in
// core/wire/driverpb's TestNoPingPerExport shows the pattern), a round
// trip per batch in the driver and in the Collector.
func TestGRPCExportsSendNoPings(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &countingReceiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, r)
	go srv.Serve(tapListener{Listener: ln, r: r})
	defer srv.Stop()

	d := otlp.NewWithEnv(func(string) string { return "" })
	configure(t, d, map[string]any{"endpoint": ln.Addr().String(), "tls": map[string]any{"insecure": true}}, sdk.HostInfo{Service: "svc"})
	const exports = 30
	spans := drivertest.ProxySpans(1, 8)
	for range exports {
		if err := d.Export(context.Background(), spans); err != nil {
			t.Fatal(err)
		}
	}
	d.Shutdown(context.Background())
	srv.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sent) == 0 {
		t.Fatal("the receiver saw nothing of the driver's connection")
	}
	if n := clientPings(r.sent); n != 0 {
		t.Errorf("%d exports: the driver sent %d PINGs, want none", exports, n)
	}
}
