package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/attrnames"
)

// Driver exports spans over OTLP, gRPC or HTTP/protobuf.
type Driver struct {
	// getenv reads the driver's environment; tests replace it.
	getenv func(string) string

	cfg    Config
	mapper *mapper
	// send sends one encoded request. released says the transport no
	// longer holds body, so its buffer may serve the next batch.
	send    func(ctx context.Context, body []byte) (released bool, err error)
	buffers sync.Pool // *encoder with its request buffer, batch after batch
	// maxRequest is the largest request send takes in one piece (0: any);
	// a batch that encodes larger goes in parts.
	maxRequest int

	shutdown sdk.ShutdownOnce
	conn     *grpc.ClientConn
	httpc    *http.Client
	grpcMD   metadata.MD
	httpHead http.Header
}

var _ sdk.Driver = (*Driver)(nil)

// New returns an unconfigured otlp driver that reads OTEL_EXPORTER_OTLP_*
// from its process's environment.
func New() *Driver { return &Driver{getenv: os.Getenv} }

// NewWithEnv returns an unconfigured otlp driver that reads the
// OTEL_EXPORTER_OTLP_* variables through getenv instead, for tests.
func NewWithEnv(getenv func(string) string) *Driver { return &Driver{getenv: getenv} }

// Configure decodes and checks the config, fills what it leaves out from
// the environment and prepares the client. It does not contact the
// receiver: gRPC connects on the first export.
func (d *Driver) Configure(_ context.Context, raw []byte, host sdk.HostInfo) (sdk.Capabilities, error) {
	var cfg Config
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return sdk.Capabilities{}, err
	}
	if err := cfg.applyEnv(d.getenv); err != nil {
		return sdk.Capabilities{}, err
	}
	if err := cfg.Validate(); err != nil {
		return sdk.Capabilities{}, err
	}
	res, err := cfg.resource(d.getenv)
	if err != nil {
		return sdk.Capabilities{}, err
	}
	mode, _ := attrnames.Parse(cfg.AttributeNames, attrnames.OTel)
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		return sdk.Capabilities{}, err
	}
	d.cfg = cfg
	d.mapper = newMapper(mode, host.Version, host.NodeID, res)
	if cfg.Protocol == ProtocolGRPC {
		err = d.dialGRPC(tlsConf)
	} else {
		d.prepareHTTP(tlsConf)
	}
	if err != nil {
		return sdk.Capabilities{}, err
	}
	return sdk.Capabilities{
		Propagation: []string{sdk.FormatTraceContext},
		TraceID128:  true,
		Precision:   time.Nanosecond,
	}, nil
}

// tlsConfig builds the TLS settings from the tls block; nil means the
// system's defaults.
func (c *Config) tlsConfig() (*tls.Config, error) {
	var p sdk.Problems
	conf := &tls.Config{ServerName: c.TLS.ServerName, MinVersion: tls.VersionTLS12}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			p.Add("tls.ca_file", "cannot read %q: %v", c.TLS.CAFile, err)
		} else {
			conf.RootCAs = x509.NewCertPool()
			if !conf.RootCAs.AppendCertsFromPEM(pem) {
				p.Add("tls.ca_file", "%q holds no PEM certificate", c.TLS.CAFile)
			}
		}
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			p.Add("tls.cert_file", "cannot load the pair %q / %q: %v", c.TLS.CertFile, c.TLS.KeyFile, err)
		} else {
			conf.Certificates = []tls.Certificate{cert}
		}
	}
	return conf, p.Err()
}

// dialGRPC prepares the gRPC connection. The call is the OTLP
// TraceService's Export with the request the encoder wrote and the
// response decoded into go.opentelemetry.io/proto/otlp's type, not
// otlptracegrpc's: see the package doc for why.
func (d *Driver) dialGRPC(tlsConf *tls.Config) error {
	target, plaintext := d.cfg.Endpoint, d.cfg.TLS.Insecure != nil && *d.cfg.TLS.Insecure
	if strings.Contains(target, "://") {
		u, _ := url.Parse(target) // Validate checked it
		target, plaintext = u.Host, u.Scheme == "http"
	}
	creds := insecure.NewCredentials()
	if !plaintext {
		creds = credentials.NewTLS(tlsConf)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("tracehop-driver-otlp/" + d.mapper.version),
		// A batch is hundreds of kilobytes: with gRPC's 32 KiB write
		// buffer its frames go out in many small writes (measured: 10.9
		// µs of driver CPU per span against 9.3–9.9 with this).
		grpc.WithWriteBufferSize(512 << 10),
		grpc.WithReadBufferSize(64 << 10),
		// Fixed receive windows: left dynamic, gRPC estimates the
		// bandwidth with a PING whenever data arrives after a pause, that
		// is on every export's response (a few bytes): a round trip per
		// batch in the driver and in the receiver, for nothing.
		grpc.WithInitialWindowSize(1 << 20),
		grpc.WithInitialConnWindowSize(1 << 20),
		// gRPC's own reconnect backoff grows to 2 minutes, so after a
		// long outage a receiver that is back would wait that long for
		// its spans; 5s matches the pipeline's longest retry backoff.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if d.cfg.Compression == "gzip" {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(grpcgzip.Name)))
	}
	conn, err := grpc.NewClient("passthrough:///"+target, opts...)
	if err != nil {
		return fmt.Errorf("endpoint: %q: %w", d.cfg.Endpoint, err)
	}
	d.conn = conn
	d.grpcMD = metadata.MD{}
	for k, v := range d.cfg.Headers {
		d.grpcMD.Set(k, v.Value())
	}
	d.send = d.sendGRPC
	d.maxRequest = maxGRPCRequest
	return nil
}

// maxGRPCRequest is what gRPC servers accept in one message unless told
// otherwise, the OpenTelemetry Collector's OTLP receiver among them
// (max_recv_msg_size_mib: 4): a larger request is refused with
// RESOURCE_EXHAUSTED, and its spans would be lost. A batch of 1,024 spans
// (tracehop's default) passes it at 4 KiB a span.
const maxGRPCRequest = 4 << 20

func (d *Driver) prepareHTTP(tlsConf *tls.Config) {
	d.httpc = &http.Client{Transport: &http.Transport{
		TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true,
		// The request body goes out in 4 KiB writes by default. A body
		// larger than the buffer goes out through io.Copy's 32 KiB chunks,
		// a syscall and a fresh 32 KiB buffer each: 1 MiB holds a batch of
		// 1,024 proxy spans with otel names (about 740 KiB) whole.
		WriteBufferSize: 1 << 20,
	}}
	d.httpHead = http.Header{}
	for k, v := range d.cfg.Headers {
		d.httpHead.Set(k, v.Value())
	}
	d.httpHead.Set("Content-Type", "application/x-protobuf")
	d.httpHead.Set("User-Agent", "tracehop-driver-otlp/"+d.mapper.version)
	if d.cfg.Compression == "gzip" {
		d.httpHead.Set("Content-Encoding", "gzip")
	}
	d.send = d.sendHTTP
}

// Export sends the batch as one OTLP request and returns once the receiver
// has answered: nil when it took every span, sdk.PartiallyRejected when it
// refused some (partial success), and otherwise an error classified as the
// OTLP spec's exporter section says, with the receiver's retry delay.
func (d *Driver) Export(ctx context.Context, spans []sdk.Span) error {
	if d.send == nil || d.shutdown.Done() {
		return sdk.Permanent(errors.New("otlp driver is not configured or already shut down"))
	}
	enc, _ := d.buffers.Get().(*pooledEncoder)
	if enc == nil || enc.m != d.mapper {
		// A new encoder, also after a Configure: what an encoder keeps
		// (its kept attributes) was written for its mapper's naming.
		enc = &pooledEncoder{encoder: encoder{m: d.mapper}}
	}
	enc.buf = enc.appendRequest(enc.buf[:0], spans)
	if d.maxRequest > 0 && len(enc.buf) > d.maxRequest && len(spans) > 1 {
		if cap(enc.buf) <= maxKeptBuffer {
			d.buffers.Put(enc)
		}
		return d.exportInParts(ctx, spans)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(d.cfg.Timeout))
	defer cancel()
	released, err := d.send(ctx, enc.buf)
	if released && cap(enc.buf) <= maxKeptBuffer {
		d.buffers.Put(enc)
	}
	return err
}

// exportInParts exports a batch too large for one request as two halves,
// each split again while it is too large. A half that fails fails the
// batch, and the host sends all of it again: a first half already stored
// is stored twice, which at-least-once delivery allows (the host keeps
// the batch's id). The back end's partial rejections add up.
func (d *Driver) exportInParts(ctx context.Context, spans []sdk.Span) error {
	half := len(spans) / 2
	first := d.Export(ctx, spans[:half])
	p1 := sdk.AsPartialRejection(first)
	if first != nil && p1 == nil {
		return first
	}
	second := d.Export(ctx, spans[half:])
	p2 := sdk.AsPartialRejection(second)
	switch {
	case p1 == nil, second != nil && p2 == nil:
		return second
	case p2 == nil:
		return first
	}
	msgs := slices.DeleteFunc([]string{p1.Message, p2.Message}, func(m string) bool { return m == "" })
	return sdk.PartiallyRejected(p1.Rejected+p2.Rejected, strings.Join(msgs, "; "))
}

// maxKeptBuffer bounds the request buffer an encoder keeps for the next
// batch: the odd giant batch's is left to the GC.
const maxKeptBuffer = 8 << 20

// pooledEncoder is an encoder with the buffer it writes requests into.
type pooledEncoder struct {
	encoder
	buf []byte
}

// rawRequest is an ExportTraceServiceRequest already encoded (encoder):
// rawCodec sends its bytes as they are.
type rawRequest []byte

// rawCodec is gRPC's proto codec for the one call the driver makes: the
// request goes out as the bytes the encoder wrote, the response is decoded
// into the OTLP project's generated type.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*rawRequest); ok {
		return *r, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }

// Name is "proto", so the request's content type is application/grpc+proto
// as for any OTLP client.
func (rawCodec) Name() string { return "proto" }

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

func (d *Driver) sendGRPC(ctx context.Context, body []byte) (bool, error) {
	if len(d.grpcMD) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, d.grpcMD)
	}
	req := rawRequest(body)
	var resp coltracepb.ExportTraceServiceResponse
	if err := d.conn.Invoke(ctx, exportMethod, &req, &resp, grpc.ForceCodec(rawCodec{})); err != nil {
		// A failed call may leave the request in the transport's write
		// queue: its buffer is not reused.
		return false, grpcError(d.cfg.Endpoint, err)
	}
	// A unary response comes after the server read the whole request.
	return true, partial(resp.GetPartialSuccess())
}

// grpcError classifies a failed export by the OTLP spec's table of gRPC
// codes: the transient ones are retried (RESOURCE_EXHAUSTED only when the
// server says when to come back), every other is final.
func grpcError(endpoint string, err error) error {
	st := status.Convert(err)
	var delay time.Duration
	for _, det := range st.Details() {
		if ri, ok := det.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	e := fmt.Errorf("OTLP/gRPC export to %s: %s: %s", endpoint, st.Code(), st.Message())
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		return sdk.RetryAfter(e, delay)
	case codes.ResourceExhausted:
		if delay > 0 {
			return sdk.RetryAfter(e, delay)
		}
	}
	return sdk.Permanent(e)
}

func partial(ps *coltracepb.ExportTracePartialSuccess) error {
	if ps == nil {
		return nil
	}
	return sdk.PartiallyRejected(int(ps.GetRejectedSpans()), ps.GetErrorMessage())
}

func (d *Driver) sendHTTP(ctx context.Context, raw []byte) (released bool, err error) {
	body := raw
	if d.cfg.Compression == "gzip" {
		// The compressed copy is what the transport reads; raw is free
		// once it is made.
		buf := new(bytes.Buffer)
		zw := gzip.NewWriter(buf)
		zw.Write(raw)
		zw.Close()
		body = buf.Bytes()
	}
	reader := bytes.NewReader(body)
	defer func() {
		// net/http may still be reading the body when the receiver
		// answered before taking all of it: then the buffer is its.
		released = d.cfg.Compression == "gzip" || reader.Len() == 0
	}()
	return false, d.postHTTP(ctx, reader)
}

func (d *Driver) postHTTP(ctx context.Context, body io.Reader) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.Endpoint, body)
	if err != nil {
		return sdk.Permanent(err)
	}
	hreq.Header = d.httpHead.Clone()
	resp, err := d.httpc.Do(hreq)
	if err != nil {
		// Refused, reset, timed out: the receiver may come back.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return sdk.Retryable(fmt.Errorf("OTLP/HTTP export to %s: %w", d.cfg.Endpoint, err))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		var out coltracepb.ExportTraceServiceResponse
		if len(msg) > 0 && proto.Unmarshal(msg, &out) == nil {
			return partial(out.GetPartialSuccess())
		}
		return nil
	}
	e := fmt.Errorf("OTLP/HTTP export to %s: %s: %s", d.cfg.Endpoint, resp.Status, httpMessage(msg))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return sdk.RetryAfter(e, retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	}
	// 400 and every other status (500 too) is final, as the spec says.
	return sdk.Permanent(e)
}

// httpMessage is the receiver's explanation: the message of the
// google.rpc.Status the spec says an error body holds, or the body's text.
func httpMessage(body []byte) string {
	var st spb.Status
	if proto.Unmarshal(body, &st) == nil && st.GetMessage() != "" {
		return st.GetMessage()
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 512 {
		s = s[:512]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// retryAfter reads an HTTP Retry-After value: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Shutdown closes the connection. Export is synchronous, so nothing is
// buffered.
func (d *Driver) Shutdown(context.Context) error {
	return d.shutdown.Do(func() error {
		if d.httpc != nil {
			d.httpc.CloseIdleConnections()
		}
		if d.conn != nil {
			return d.conn.Close()
		}
		return nil
	})
}
