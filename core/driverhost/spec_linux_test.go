package driverhost_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/driverhost"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/core/wire/driverpb"
)

// specDriverEnv makes this test binary, started by the host, the driver
// of TestDriverWrittenFromTheSpec instead of running tests.
const specDriverEnv = "TRACEHOP_TEST_SPEC_DRIVER"

func init() {
	if os.Getenv(specDriverEnv) == "1" {
		os.Exit(specDriver())
	}
}

// A driver that does only what docs/driver-protocol.md asks, by hand:
// no go-plugin and no SDK (it borrows wire's batch decoder, which the test
// vectors check on their own). It prints the handshake line with its own
// certificate, requires the host's, serves the Driver service, the health
// check and GRPCController, reads batches from the span ring, and logs a
// JSON line on stderr. The host starts it, exports through the ring and
// inside the request, and stops it gracefully, as it does an SDK driver.
func TestDriverWrittenFromTheSpec(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	d, err := driverhost.Start(context.Background(), driverhost.Spec{
		Name: "spec", Path: exe, Config: []byte(`{"greeting":"hello"}`),
		Env: map[string]string{specDriverEnv: "1"}, Transport: wire.TransportShm,
	}, driverhost.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	if got := d.Capabilities(); !got.TraceID128 || len(got.Propagation) != 1 || got.Propagation[0] != core.FormatTraceContext || got.Precision != time.Microsecond {
		t.Errorf("capabilities %+v", got)
	}
	if d.Transport() != wire.TransportShm {
		t.Fatalf("transport %s, want shm: the driver took the ring", d.Transport())
	}

	// The driver answers every batch with a partial rejection of 0 spans
	// whose message says what it read, and where from.
	spans := []core.Span{
		{TraceID: core.TraceID{High: 1, Low: 2}, SpanID: 3, Name: "first", Kind: core.KindServer, StartUnixNano: 1e18, Sampled: true},
		{TraceID: core.TraceID{High: 1, Low: 2}, SpanID: 4, ParentID: 3, Name: "second", Kind: core.KindClient, StartUnixNano: 1e18, Tags: []core.Tag{{Key: "k", Value: "\xff"}}},
	}
	for i := range 3 {
		err := d.Export(core.WithBatchID(context.Background(), uint64(10+i)), spans)
		pr := core.AsPartialRejection(err)
		if want := fmt.Sprintf("batch %d: 2 spans from the ring: first, second", 10+i); pr == nil || pr.Message != want {
			t.Fatalf("Export = %v, want the driver's %q", err, want)
		}
	}
	// Spans the pipeline queued for a driver that read more (the one
	// before a restart as another build): numbered keys and a trace
	// state are written again for this one.
	full := wire.AppendBatchLayout(nil, []core.Span{{TraceID: core.TraceID{Low: 5}, SpanID: 6, Name: "queued", StartUnixNano: 1e18,
		TraceState: "ot=th:8", Tags: []core.Tag{{Key: wire.TagKey("component"), Value: "proxy"}, {Key: "tier", Value: "gold"}}}}, wire.Full)
	err = d.ExportBatch(core.WithBatchID(context.Background(), 20), [][]byte{full[:20], full[20:]}, 1, wire.Full)
	if pr := core.AsPartialRejection(err); pr == nil || pr.Message != "batch 20: 1 spans from the ring: queued" {
		t.Fatalf("ExportBatch of a Full batch to a base-layout driver = %v", err)
	}
	// A batch larger than the ring comes inside the request.
	large := make([]core.Span, 2000)
	for i := range large {
		large[i] = core.Span{TraceID: core.TraceID{Low: 7}, SpanID: core.SpanID(i + 1), Name: strings.Repeat("x", 3000), StartUnixNano: 1e18}
	}
	err = d.Export(core.WithBatchID(context.Background(), 99), large)
	if pr := core.AsPartialRejection(err); pr == nil || !strings.HasPrefix(pr.Message, "batch 99: 2000 spans from the request") {
		t.Fatalf("a batch too large for the ring: %v", err)
	}

	time.Sleep(1500 * time.Millisecond) // a health check or two
	if !d.Up() || d.Restarts() != 0 {
		t.Fatalf("the driver failed its health checks: up %v, restarts %d\n%s", d.Up(), d.Restarts(), logs)
	}
	// A driver that serves GRPCController exits when asked; one that
	// does not is killed after go-plugin's 2 s, and go-plugin logs that
	// (checked below). Not a timing: under a loaded CI run the asked
	// exit itself took 1.9 s.
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"configured","driver":"spec","greeting":"hello"`) {
		t.Errorf("the driver's JSON log line did not reach the host's log as a line with its attributes:\n%s", out)
	}
	if strings.Contains(out, "failed to exit gracefully") {
		t.Errorf("the driver was killed:\n%s", out)
	}
}

// specDriver is the driver's main; it returns the exit status.
func specDriver() int {
	if os.Getenv(wire.MagicCookieKey) != wire.MagicCookieValue {
		fmt.Fprintln(os.Stderr, "a tracehop driver: tracehop starts it")
		return 1
	}
	// Its stderr carries JSON log lines: @level, @message, an optional
	// @timestamp with six fraction digits, any other key an attribute.
	logLine := func(level, msg string, kv ...any) {
		entry := map[string]any{"@level": level, "@message": msg, "@timestamp": time.Now().Format("2006-01-02T15:04:05.000000Z07:00")}
		for i := 0; i+1 < len(kv); i += 2 {
			entry[kv[i].(string)] = kv[i+1]
		}
		b, _ := json.Marshal(entry)
		os.Stderr.Write(append(b, '\n'))
	}
	fail := func(err error) int { logLine("error", "spec driver", "error", err.Error()); return 1 }

	// The span ring: fd TRACEHOP_SPAN_RING_FD, mapped read-only.
	var ring []byte
	if v := os.Getenv("TRACEHOP_SPAN_RING_FD"); v != "" {
		fd, err := strconv.Atoi(v)
		if err != nil {
			return fail(err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			return fail(err)
		}
		if ring, err = syscall.Mmap(fd, 0, int(st.Size), syscall.PROT_READ, syscall.MAP_SHARED); err != nil {
			return fail(err)
		}
		syscall.Close(fd)
	}

	// Mutual TLS: trust exactly the host's certificate, present a new
	// self-signed one for "localhost" (P-256: the key type is ours to pick).
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(os.Getenv("PLUGIN_CLIENT_CERT"))) {
		return fail(fmt.Errorf("no certificate in PLUGIN_CLIENT_CERT"))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fail(err)
	}
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: roots, MinVersion: tls.VersionTLS12,
	})

	dir, err := os.MkdirTemp("", "spec-driver-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return fail(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds), grpc.MaxRecvMsgSize(wire.MaxMessageBytes))
	done := make(chan struct{})
	var stopOnce sync.Once
	driverpb.RegisterDriverServer(srv, &specServer{ring: ring, log: logLine})
	hs := health.NewServer()
	hs.SetServingStatus("plugin", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	// plugin.GRPCController, by hand: its Empty is any empty message.
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "plugin.GRPCController",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Shutdown", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			stopOnce.Do(func() { close(done) }) // answer, then exit
			return new(emptypb.Empty), nil
		}}},
	}, struct{}{})
	go srv.Serve(lis)

	// The handshake: one line, the certificate in base64 without padding.
	fmt.Printf("1|%d|unix|%s|grpc|%s\n", wire.ProtocolVersion, sock, base64.RawStdEncoding.EncodeToString(der))
	<-done
	time.Sleep(50 * time.Millisecond) // let the answer go out
	srv.Stop()
	return 0
}

type specServer struct {
	driverpb.UnimplementedDriverServer
	ring    []byte
	useRing bool
	log     func(level, msg string, kv ...any)
}

func (s *specServer) Configure(_ context.Context, req *driverpb.ConfigureRequest) (*driverpb.ConfigureResponse, error) {
	var cfg struct {
		Greeting string `json:"greeting"`
	}
	dec := json.NewDecoder(bytes.NewReader(req.ConfigJson))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	s.useRing = req.SpanRingBytes != 0 && req.SpanRingBytes == uint64(len(s.ring))
	s.log("info", "configured", "greeting", cfg.Greeting)
	return &driverpb.ConfigureResponse{
		Capabilities: &driverpb.Capabilities{Propagation: []string{core.FormatTraceContext}, TraceId_128Bit: true, Precision: driverpb.Precision_PRECISION_MICROSECOND},
		SpanRing:     s.useRing,
	}, nil
}

func (s *specServer) Export(_ context.Context, req *driverpb.ExportRequest) (*driverpb.ExportResponse, error) {
	batch, from := req.Spans, "the request"
	if req.RingSeq != 0 {
		var err error
		if batch, err = s.region(req); err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		from = "the ring"
	}
	spans, err := wire.DecodeBatch(nil, batch, int(req.SpanCount), time.Now)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	// This driver answered neither span_trace_state nor span_tag_keys:
	// the host must set neither flag 64 nor 128 (section 4.1). Sanitizing
	// changes no field's size, so each span's base encoding says where
	// the next one starts.
	for off, i := 0, 0; i < len(spans); i++ {
		if flags := batch[off+6*8+1]; flags&(64|128) != 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "span %d has flags %#x: not the base layout this driver reads", i, flags)
		}
		off += len(wire.AppendSpan(nil, &spans[i], wire.Layout{}))
	}
	names := make([]string, 0, 2)
	for _, sp := range spans[:min(2, len(spans))] {
		names = append(names, sp.Name)
	}
	msg := fmt.Sprintf("batch %d: %d spans from %s: %s", req.BatchId, len(spans), from, strings.Join(names, ", "))
	if req.RingSeq != 0 && s.seq(req.RingOffset) != req.RingSeq {
		return nil, status.Error(codes.FailedPrecondition, "the region was rewritten during Export")
	}
	return &driverpb.ExportResponse{RejectedMessage: msg}, nil
}

// region checks an Export's region as the spec's section 7.4 says, and
// returns its batch.
func (s *specServer) region(req *driverpb.ExportRequest) ([]byte, error) {
	size := uint64(len(s.ring))
	off, n := req.RingOffset, uint64(req.RingLength)
	switch {
	case !s.useRing:
		return nil, fmt.Errorf("an Export names the ring, which this driver did not take")
	case off%8 != 0 || off > size || size-off < 16 || n > size-off-16:
		return nil, fmt.Errorf("region %d+%d is not in the ring", off, n)
	case s.seq(off) != req.RingSeq:
		return nil, fmt.Errorf("region sequence %d, the Export says %d", s.seq(off), req.RingSeq)
	}
	h := s.ring[off : off+16]
	if uint64(binary.LittleEndian.Uint32(h[8:])) != n || binary.LittleEndian.Uint32(h[12:]) != req.SpanCount {
		return nil, fmt.Errorf("the region's header disagrees with the Export")
	}
	return s.ring[off+16 : off+16+n], nil
}

// seq loads a region's sequence number with (at least) acquire ordering.
func (s *specServer) seq(off uint64) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&s.ring[off])))
}

// Shutdown has nothing to flush; it would be idempotent and safe without
// Configure anyway.
func (s *specServer) Shutdown(context.Context, *driverpb.ShutdownRequest) (*driverpb.ShutdownResponse, error) {
	s.log("info", "shut down")
	return &driverpb.ShutdownResponse{}, nil
}
