package lightstep

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ls "github.com/lightstep/lightstep-tracer-go"
	"github.com/opentracing/opentracing-go"
	otlog "github.com/opentracing/opentracing-go/log"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/attrnames"
)

// Collector is where reports go.
type Collector struct {
	Host      string `json:"host"`
	Port      int    `json:"port"`
	Plaintext bool   `json:"plaintext"`
}

// Config is the lightstep driver's config block.
type Config struct {
	AccessToken     sdk.Secret   `json:"access_token"`
	AccessTokenFile string       `json:"access_token_file"`
	Collector       Collector    `json:"collector"`
	Transport       string       `json:"transport"`
	ComponentName   string       `json:"component_name"`
	Timeout         sdk.Duration `json:"timeout"`
	// AttributeNames is envoy (the default: the proxy's tags as they
	// are), otel (OpenTelemetry's HTTP semantic conventions, what
	// ServiceNow Cloud Observability shows for OTLP data) or both
	// (sdk/attrnames).
	AttributeNames string `json:"attribute_names"`
}

// Validate reports every problem with the config.
func (c *Config) Validate() error {
	var p sdk.Problems
	switch {
	case c.AccessToken == "" && c.AccessTokenFile == "":
		p.Add("access_token", "is required (or access_token_file)")
	case c.AccessToken != "" && c.AccessTokenFile != "":
		p.Add("access_token_file", "give access_token or access_token_file, not both")
	}
	if c.Collector.Host == "" {
		p.Add("collector.host", "is required")
	}
	if c.Collector.Port <= 0 || c.Collector.Port > 65535 {
		p.Add("collector.port", "must be a port number, got %d", c.Collector.Port)
	}
	if c.Transport != "grpc" && c.Transport != "http" {
		p.Add("transport", "must be grpc or http, got %q", c.Transport)
	}
	if c.Timeout <= 0 {
		p.Add("timeout", "must be positive")
	}
	if _, err := attrnames.Parse(c.AttributeNames, attrnames.Envoy); err != nil {
		p.Add("attribute_names", "%v", err)
	}
	return p.Err()
}

// chunk is the most spans emitted between two flushes. The library's buffer
// is sized well above it so that it never drops a span or flushes on its
// own in the middle of a chunk.
const chunk = 1000

// Driver reports spans to a LightStep collector.
type Driver struct {
	cfg   Config
	token string
	names attrnames.Mode

	mu       sync.Mutex // one chunk in flight: status events belong to it
	tracers  map[string]ls.Tracer
	shutdown sdk.ShutdownOnce
}

var _ sdk.Driver = (*Driver)(nil)

// New returns an unconfigured lightstep driver.
func New() *Driver { return &Driver{} }

// window collects the library's events during one synchronous Flush.
type window struct {
	mu            sync.Mutex
	sent, dropped int
	errs          []error
}

var current atomic.Pointer[window]

func init() {
	// The library's event handler is process-wide; the driver flushes one
	// chunk at a time, so the events that arrive belong to the open window.
	ls.SetGlobalEventHandler(func(e ls.Event) {
		w := current.Load()
		if w == nil {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		switch ev := e.(type) {
		case ls.EventStatusReport:
			w.sent += ev.SentSpans()
			w.dropped += ev.DroppedSpans()
		case ls.ErrorEvent:
			w.errs = append(w.errs, ev.Err())
		}
	})
}

// Configure reads the token and checks the config. Tracers are created on
// first use; creating one does not touch the network.
func (d *Driver) Configure(_ context.Context, raw []byte, _ sdk.HostInfo) (sdk.Capabilities, error) {
	d.cfg = Config{Collector: Collector{Host: "ingest.lightstep.com", Port: 443}, Transport: "grpc", Timeout: sdk.Duration(10 * time.Second)}
	if err := sdk.DecodeConfig(raw, &d.cfg); err != nil {
		return sdk.Capabilities{}, err
	}
	d.names, _ = attrnames.Parse(d.cfg.AttributeNames, attrnames.Envoy) // Validate checked it
	d.token = d.cfg.AccessToken.Value()
	if d.cfg.AccessTokenFile != "" {
		b, err := os.ReadFile(d.cfg.AccessTokenFile)
		if err != nil {
			return sdk.Capabilities{}, fmt.Errorf("access_token_file: %w", err)
		}
		if d.token = strings.TrimSpace(string(b)); d.token == "" {
			return sdk.Capabilities{}, fmt.Errorf("access_token_file: %s is empty", d.cfg.AccessTokenFile)
		}
	}
	d.tracers = map[string]ls.Tracer{}
	return sdk.Capabilities{
		// tracehop's own B3: the library's B3 propagator is broken.
		Propagation: []string{sdk.FormatOTTracer, sdk.FormatB3},
		TraceID128:  false,
		Precision:   time.Microsecond,
	}, nil
}

func (d *Driver) tracer(service string) (ls.Tracer, error) {
	if tr, ok := d.tracers[service]; ok {
		return tr, nil
	}
	host, _ := os.Hostname()
	tr, err := ls.CreateTracer(ls.Options{
		AccessToken: d.token,
		Collector:   ls.Endpoint{Host: d.cfg.Collector.Host, Port: d.cfg.Collector.Port, Plaintext: d.cfg.Collector.Plaintext},
		UseGRPC:     d.cfg.Transport == "grpc",
		UseHttp:     d.cfg.Transport == "http",
		Tags: opentracing.Tags{
			ls.ComponentNameKey: service,
			ls.HostnameKey:      host,
			ls.CommandLineKey:   "tracehop-driver-lightstep", // not the library's default: the whole argv
		},
		MaxBufferedSpans:   4 * chunk,
		ReportingPeriod:    time.Hour, // the driver flushes; the library must not
		MinReportingPeriod: time.Hour,
		ReportTimeout:      time.Duration(d.cfg.Timeout),
	})
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("creating the LightStep tracer: %w", err))
	}
	d.tracers[service] = tr
	return tr, nil
}

// Export emits the spans, grouped by service, and flushes after every chunk.
func (d *Driver) Export(ctx context.Context, spans []sdk.Span) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tracers == nil || d.shutdown.Done() {
		return sdk.Permanent(errors.New("lightstep driver is not configured or already shut down"))
	}
	spans = attrnames.Rename(spans, d.names)
	byService := map[string][]int{}
	var order []string
	for i := range spans {
		svc := spans[i].LocalService
		if d.cfg.ComponentName != "" {
			svc = d.cfg.ComponentName
		}
		if _, ok := byService[svc]; !ok {
			order = append(order, svc)
		}
		byService[svc] = append(byService[svc], i)
	}
	for _, svc := range order {
		idx := byService[svc]
		for start := 0; start < len(idx); start += chunk {
			if err := d.emitAndFlush(ctx, svc, spans, idx[start:min(start+chunk, len(idx))]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *Driver) emitAndFlush(ctx context.Context, service string, spans []sdk.Span, idx []int) error {
	tr, err := d.tracer(service)
	if err != nil {
		return err
	}
	w := &window{}
	current.Store(w)
	for _, i := range idx {
		emit(tr, &spans[i])
	}
	tr.Flush(ctx)
	// Close the window before anything else can emit events into it.
	current.Store(nil)
	w.mu.Lock()
	sent, dropped, errs := w.sent, w.dropped, w.errs
	w.mu.Unlock()
	var failure error
	switch {
	case len(errs) > 0:
		failure = fmt.Errorf("LightStep report failed: %w", errors.Join(errs...))
	case dropped > 0:
		failure = fmt.Errorf("the LightStep library dropped %d of %d spans", dropped, len(idx))
	case sent < len(idx):
		failure = fmt.Errorf("the LightStep collector took %d of %d spans", sent, len(idx))
	}
	if failure != nil {
		// The library keeps failed spans to send again later; the
		// pipeline re-sends the batch itself, so start clean instead.
		// Close tries one last flush: bound it, within Export's own
		// deadline (the host's: past it the host has moved on).
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		tr.Close(cctx)
		cancel()
		delete(d.tracers, service)
		if refused(errs) {
			return sdk.Permanent(failure)
		}
		return sdk.Retryable(failure)
	}
	return nil
}

// refused reports whether the collector refused the data itself, which
// sending it again cannot change: gRPC INVALID_ARGUMENT, PERMISSION_DENIED
// or UNAUTHENTICATED (as the OTLP spec classes them), or an HTTP 4xx other
// than 408 and 429. The library reports HTTP answers only in its error
// text ("status code (400) is not ok").
func refused(errs []error) bool {
	for _, err := range errs {
		if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
			switch st.Code() {
			case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
				return true
			}
			continue
		}
		if m := httpStatus.FindStringSubmatch(err.Error()); m != nil {
			code, _ := strconv.Atoi(m[1])
			if code >= 400 && code < 500 && code != 408 && code != 429 {
				return true
			}
		}
	}
	return false
}

var httpStatus = regexp.MustCompile(`status code \((\d{3})\)`)

var kindNames = map[sdk.Kind]string{sdk.KindServer: "server", sdk.KindClient: "client", sdk.KindProducer: "producer", sdk.KindConsumer: "consumer"}

// emit re-creates s in the library with its own ids and times.
func emit(tr ls.Tracer, s *sdk.Span) {
	traceID := s.TraceID.Low
	if traceID == 0 {
		traceID = s.TraceID.High // SetTraceID is ignored when zero
	}
	sp := tr.StartSpan(sdk.ValidUTF8(s.Name), ls.SetTraceID(traceID), ls.SetSpanID(uint64(s.SpanID)), ls.SetParentSpanID(uint64(s.ParentID)),
		opentracing.StartTime(s.Start()), spanTags(s))
	var logs []opentracing.LogRecord
	for _, e := range s.Events {
		logs = append(logs, opentracing.LogRecord{Timestamp: time.Unix(0, e.UnixNano), Fields: []otlog.Field{otlog.String("event", sdk.ValidUTF8(e.Value))}})
	}
	sp.FinishWithOptions(opentracing.FinishOptions{FinishTime: s.End(), LogRecords: logs})
}

// spanTags maps a span's tags, kind, error flag, upper trace id and remote
// endpoint to OpenTracing's conventions.
func spanTags(s *sdk.Span) opentracing.Tags {
	tags := opentracing.Tags{}
	for _, t := range s.Tags {
		// Protobuf strings must be UTF-8; header values need not be.
		tags[sdk.ValidUTF8(t.Key)] = sdk.ValidUTF8(t.Value)
	}
	if k, ok := kindNames[s.Kind]; ok {
		tags["span.kind"] = k
	}
	if s.Error {
		tags["error"] = true // a bool: OpenTracing's convention
	}
	if s.TraceID.High != 0 {
		tags["trace_id_high"] = fmt.Sprintf("%016x", s.TraceID.High)
	}
	if r := s.Remote; !r.IsZero() {
		if r.Service != "" {
			tags["peer.service"] = sdk.ValidUTF8(r.Service)
		}
		if r.IP.Is4() {
			tags["peer.ipv4"] = r.IP.String()
		} else if r.IP.IsValid() {
			tags["peer.ipv6"] = r.IP.String()
		}
		if r.Port != 0 {
			tags["peer.port"] = strconv.Itoa(int(r.Port))
		}
	}
	return tags
}

// Shutdown flushes and closes every tracer. Export flushes synchronously,
// so there is nothing left in practice.
func (d *Driver) Shutdown(ctx context.Context) error {
	return d.shutdown.Do(func() error {
		d.mu.Lock() // after the chunk in flight
		defer d.mu.Unlock()
		for _, tr := range d.tracers {
			tr.Close(ctx)
		}
		return nil
	})
}
