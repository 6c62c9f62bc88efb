package datadog

import (
	"context"
	"errors"
	"fmt"
	"io"

	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/ext"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/attrnames"
)

// Config is the datadog driver's config block.
type Config struct {
	AgentAddr string            `json:"agent_addr"`
	Service   string            `json:"service"`
	Env       string            `json:"env"`
	Version   string            `json:"version"`
	Tags      map[string]string `json:"tags"`
	Timeout   sdk.Duration      `json:"timeout"`
	// AttributeNames is envoy (the default: the proxy's tags as they
	// are), otel (OpenTelemetry's HTTP semantic conventions, which
	// Datadog maps for OTLP-ingested spans) or both (sdk/attrnames).
	AttributeNames string `json:"attribute_names"`
}

// Validate reports every problem with the config.
func (c *Config) Validate() error {
	var p sdk.Problems
	if _, port, err := net.SplitHostPort(c.AgentAddr); err != nil || port == "" {
		p.Add("agent_addr", "must be host:port, such as localhost:8126, got %q", c.AgentAddr)
	}
	if c.Timeout <= 0 {
		p.Add("timeout", "must be positive")
	}
	for k := range c.Tags {
		if k == "" {
			p.Add("tags", "a tag needs a name")
		}
	}
	if _, err := attrnames.Parse(c.AttributeNames, attrnames.Envoy); err != nil {
		p.Add("attribute_names", "%v", err)
	}
	return p.Err()
}

// ProcessEnv is what the driver's process needs in its environment from its
// very start: dd-trace-go reads some of these during package init, so
// setting them in main would be too late. sdk.Serve re-executes the process
// with them.
func (d *Driver) ProcessEnv() map[string]string {
	return map[string]string{
		"DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
		"DD_REMOTE_CONFIGURATION_ENABLED":      "false",
		"DD_TRACE_AGENT_PROTOCOL_VERSION":      "0.4",
		"DD_TRACE_STARTUP_LOGS":                "false",
		"DD_RUNTIME_METRICS_ENABLED":           "false",
		"DD_DATA_STREAMS_ENABLED":              "false",
		"DD_APPSEC_ENABLED":                    "false",
		"DD_TRACE_STATS_COMPUTATION_ENABLED":   "false",
		"DD_TRACE_ENABLED":                     "true",
		"DD_PROFILING_ENABLED":                 "false",
		"OTEL_TRACES_EXPORTER":                 "",
		"OTEL_SDK_DISABLED":                    "",
	}
}

// Driver reports spans to a Datadog agent.
type Driver struct {
	cfg      Config
	names    attrnames.Mode
	stats    *dropCounter
	acks     *ackCounter
	mu       sync.Mutex // one batch at a time: acknowledgements belong to it
	started  bool
	shutdown sdk.ShutdownOnce
}

var _ sdk.Driver = (*Driver)(nil)

// New returns an unconfigured datadog driver.
func New() *Driver { return &Driver{} }

// dropCounter is the tracer's statsd client: it counts the spans the
// tracer drops because its queue is full. The tracer increments it inside
// Finish, so a change right after Finish means that span was dropped.
type dropCounter struct {
	statsd.NoOpClientDirect
	dropped atomic.Int64
	failed  atomic.Int64 // traces the tracer could not send
}

func (c *dropCounter) Count(name string, value int64, tags []string, _ float64) error {
	switch {
	case name == "datadog.tracer.spans_dropped" && hasTag(tags, "reason:queue_full"):
		c.dropped.Add(value)
	case name == "datadog.tracer.traces_dropped" && hasTag(tags, "reason:send_failed"):
		c.failed.Add(value)
	}
	return nil
}

func (c *dropCounter) Incr(name string, tags []string, rate float64) error {
	return c.Count(name, 1, tags, rate)
}

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// ackCounter wraps the tracer's HTTP transport and sums the trace chunks
// the agent accepted, and remembers its last refusal.
type ackCounter struct {
	next    http.RoundTripper
	chunks  atomic.Int64
	mu      sync.Mutex
	lastErr error
	// export is the context of the Export in progress: the tracer's
	// requests to the agent end with it, so that a stalled agent cannot
	// hold Export (nor the tracer's Flush and Stop) past its deadline.
	export atomic.Pointer[context.Context]
}

// agentRefusal is an answer of the agent other than 2xx.
type agentRefusal struct {
	status string
	code   int
}

func (e *agentRefusal) Error() string { return "the agent answered " + e.status }

// permanent says whether sending the same payload again cannot help: the
// agent refused the data itself (400, 413, 415, ...). 408, 429 and 5xx are
// worth a retry.
func (e *agentRefusal) permanent() bool {
	return e.code >= 400 && e.code < 500 && e.code != http.StatusRequestTimeout && e.code != http.StatusTooManyRequests
}

func (a *ackCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	n, _ := strconv.ParseInt(req.Header.Get("X-Datadog-Trace-Count"), 10, 64)
	var stop func() bool
	if ec := a.export.Load(); ec != nil {
		ctx, cancel := context.WithCancel(req.Context())
		after := context.AfterFunc(*ec, cancel)
		stop = func() bool { after(); cancel(); return true }
		req = req.WithContext(ctx)
	}
	resp, err := a.next.RoundTrip(req)
	if stop != nil {
		if err != nil {
			stop()
		} else {
			resp.Body = &closeHook{ReadCloser: resp.Body, close: stop}
		}
	}
	if !strings.HasSuffix(req.URL.Path, "/traces") {
		return resp, err
	}
	switch {
	case err != nil:
		a.setErr(fmt.Errorf("sending to the agent: %w", err))
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		a.chunks.Add(n)
	default:
		a.setErr(&agentRefusal{status: resp.Status, code: resp.StatusCode})
	}
	return resp, err
}

// closeHook runs close once its body is closed.
type closeHook struct {
	io.ReadCloser
	close func() bool
}

func (c *closeHook) Close() error {
	err := c.ReadCloser.Close()
	c.close()
	return err
}

func (a *ackCounter) setErr(err error) {
	a.mu.Lock()
	a.lastErr = err
	a.mu.Unlock()
}

func (a *ackCounter) takeErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.lastErr
	a.lastErr = nil
	return err
}

// Configure checks the config and starts the (process-wide) tracer. The
// tracer asks the agent for /info but does not fail when it is down.
func (d *Driver) Configure(_ context.Context, raw []byte, host sdk.HostInfo) (sdk.Capabilities, error) {
	agent := "localhost:8126"
	if h := os.Getenv("DD_AGENT_HOST"); h != "" {
		port := os.Getenv("DD_TRACE_AGENT_PORT")
		if port == "" {
			port = "8126"
		}
		agent = net.JoinHostPort(h, port)
	}
	d.cfg = Config{AgentAddr: agent, Timeout: sdk.Duration(10 * time.Second)}
	if err := sdk.DecodeConfig(raw, &d.cfg); err != nil {
		return sdk.Capabilities{}, err
	}
	if d.cfg.Service == "" {
		d.cfg.Service = host.Service
	}
	if d.cfg.Service == "" {
		d.cfg.Service = "tracehop"
	}
	d.names, _ = attrnames.Parse(d.cfg.AttributeNames, attrnames.Envoy) // Validate checked it
	d.stats = &dropCounter{}
	d.acks = &ackCounter{next: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second}}
	d.start()
	d.started = true
	return sdk.Capabilities{
		Propagation: []string{sdk.FormatDatadog, sdk.FormatTraceContext},
		TraceID128:  true,
		Precision:   time.Nanosecond,
	}, nil
}

func (d *Driver) start() {
	opts := []tracer.StartOption{
		tracer.WithAgentAddr(d.cfg.AgentAddr),
		tracer.WithService(d.cfg.Service),
		tracer.WithLogStartup(false),
		tracer.WithStatsComputation(false),
		tracer.WithStatsdClient(d.stats),
		tracer.WithHTTPClient(&http.Client{Transport: d.acks, Timeout: time.Duration(d.cfg.Timeout)}),
		tracer.WithSendRetries(2),
		tracer.WithLogger(ddLogger{}),
	}
	if d.cfg.Env != "" {
		opts = append(opts, tracer.WithEnv(d.cfg.Env))
	}
	if d.cfg.Version != "" {
		opts = append(opts, tracer.WithServiceVersion(d.cfg.Version))
	}
	for k, v := range d.cfg.Tags {
		opts = append(opts, tracer.WithGlobalTag(k, v))
	}
	tracer.Start(opts...)
}

// ddLogger sends dd-trace-go's log lines to the driver's log, and so to
// tracehop's.
type ddLogger struct{}

func (ddLogger) Log(msg string) { slog.Debug(strings.TrimSpace(msg), "source", "dd-trace-go") }

// Export emits every span, re-emits those the library dropped, and waits
// until the agent has acknowledged them all.
func (d *Driver) Export(ctx context.Context, spans []sdk.Span) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started || d.shutdown.Done() {
		return sdk.Permanent(errors.New("datadog driver is not configured or already shut down"))
	}
	d.acks.takeErr()
	d.acks.export.Store(&ctx)
	defer d.acks.export.Store(nil)
	spans = attrnames.Rename(spans, d.names)
	base := d.acks.chunks.Load()
	for i := range spans {
		if err := d.emit(ctx, &spans[i]); err != nil {
			return err
		}
	}
	want := base + int64(len(spans))
	deadline := time.Now().Add(time.Duration(d.cfg.Timeout))
	wait := time.Millisecond // the agent usually answers within a few ms
	for d.acks.chunks.Load() < want {
		tracer.Flush() // its requests end with ctx (ackCounter.export)
		if err := d.acks.takeErr(); err != nil {
			return d.failed(fmt.Errorf("%w; %d of %d spans acknowledged", err, d.acks.chunks.Load()-base, len(spans)))
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return d.failed(fmt.Errorf("the agent at %s acknowledged %d of %d spans in time", d.cfg.AgentAddr, d.acks.chunks.Load()-base, len(spans)))
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
	return nil
}

// failed restarts the tracer so that what it still holds of the failed
// batch is not sent behind the pipeline's back (the pipeline re-sends the
// batch), and returns err as retryable, or permanent when the agent
// refused the data itself.
func (d *Driver) failed(err error) error {
	tracer.Stop()
	d.start()
	var refusal *agentRefusal
	if errors.As(err, &refusal) && refusal.permanent() {
		return sdk.Permanent(err)
	}
	return sdk.Retryable(err)
}

// emit re-creates s in dd-trace-go, re-emitting it while the tracer's queue
// drops it.
func (d *Driver) emit(ctx context.Context, s *sdk.Span) error {
	for attempt := 0; ; attempt++ {
		before := d.stats.dropped.Load()
		emitSpan(s, d.cfg.Service, d.cfg.Version)
		if d.stats.dropped.Load() == before {
			return nil
		}
		if attempt > 1000 || ctx.Err() != nil {
			return sdk.Retryable(errors.New("the Datadog tracer's queue stays full"))
		}
		// Let the tracer's worker drain its queue, then send the same span
		// (same ids) again.
		time.Sleep(50 * time.Microsecond)
	}
}

// parentCtx is a generic span context that FromGenericCtx turns into the
// parent of a re-emitted span: the trace id (both halves) and the parent's
// span id (0: the span is a root).
type parentCtx struct {
	hi, lo, span uint64
}

func (p *parentCtx) SpanID() uint64 { return p.span }
func (p *parentCtx) TraceID() string {
	return fmt.Sprintf("%016x%016x", p.hi, p.lo)
}
func (p *parentCtx) TraceIDBytes() [16]byte {
	var b [16]byte
	for i := range 8 {
		b[i], b[8+i] = byte(p.hi>>(56-8*i)), byte(p.lo>>(56-8*i))
	}
	return b
}
func (p *parentCtx) TraceIDLower() uint64                      { return p.lo }
func (p *parentCtx) ForeachBaggageItem(func(k, v string) bool) {}

var kindNames = map[sdk.Kind]string{sdk.KindServer: "server", sdk.KindClient: "client", sdk.KindProducer: "producer", sdk.KindConsumer: "consumer", sdk.KindInternal: "internal"}

func emitSpan(s *sdk.Span, defaultService, version string) {
	parent := tracer.FromGenericCtx(&parentCtx{hi: s.TraceID.High, lo: s.TraceID.Low, span: uint64(s.ParentID)})
	service := sdk.ValidUTF8(s.LocalService)
	if service == "" {
		service = defaultService
	}
	method, ok := s.Tag("http.method")
	if !ok {
		method, _ = s.Tag("http.request.method") // attribute_names: otel
	}
	method = sdk.ValidUTF8(method)
	name := sdk.ValidUTF8(s.Name)
	opName, resource, spanType := "tracehop.span", name, ""
	if method != "" {
		opName, resource, spanType = "http.request", method+" "+name, ext.SpanTypeWeb
		if name == method || strings.HasPrefix(name, method+" ") {
			resource = name // OpenTelemetry's span names start with the method
		}
	}
	opts := []tracer.StartSpanOption{
		tracer.ChildOf(parent), tracer.WithSpanID(uint64(s.SpanID)), tracer.StartTime(s.Start()),
		tracer.ServiceName(service), tracer.ResourceName(resource),
		tracer.Tag(ext.SpanKind, kindNames[s.Kind]), tracer.Tag(ext.ManualKeep, true),
		tracer.Tag("tracehop.name", name),
	}
	if spanType != "" {
		opts = append(opts, tracer.SpanType(spanType))
	}
	if version != "" {
		// dd-trace-go adds the version only to its default service's
		// spans; tracehop's spans carry their own services.
		opts = append(opts, tracer.Tag(ext.Version, version))
	}
	sp := tracer.StartSpan(opName, opts...)
	for _, t := range s.Tags {
		if t.Key == "error" || t.Key == ext.ManualKeep || t.Key == ext.ManualDrop {
			continue // error must be a bool; keep/drop are ours to set
		}
		sp.SetTag(sdk.ValidUTF8(t.Key), sdk.ValidUTF8(t.Value))
	}
	if s.Error {
		sp.SetTag(ext.Error, true)
	}
	if r := s.Remote; !r.IsZero() {
		if r.Service != "" {
			sp.SetTag(ext.PeerService, sdk.ValidUTF8(r.Service))
		}
		if r.IP.IsValid() {
			sp.SetTag(ext.NetworkDestinationIP, r.IP.String())
		}
		if r.Port != 0 {
			sp.SetTag(ext.NetworkDestinationPort, strconv.Itoa(int(r.Port)))
		}
	}
	for _, e := range s.Events {
		sp.AddEvent(e.Value, tracer.WithSpanEventTimestamp(time.Unix(0, e.UnixNano)))
	}
	sp.Finish(tracer.FinishTime(s.End()))
}

// Shutdown stops the tracer, which sends what it holds and waits for the
// sends.
func (d *Driver) Shutdown(context.Context) error {
	return d.shutdown.Do(func() error {
		d.mu.Lock() // after the batch in flight
		defer d.mu.Unlock()
		if d.started {
			tracer.Stop()
		}
		return nil
	})
}
