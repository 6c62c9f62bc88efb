package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"gopkg.in/yaml.v3"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/wire"
)

// Config is a whole tracehop config file.
type Config struct {
	Node      Node       `yaml:"node"`
	Admin     Admin      `yaml:"admin"`
	Listeners []Listener `yaml:"listeners"`
	Clusters  []Cluster  `yaml:"clusters"`
	// Tracing is nil when the file has no tracing block: tracehop then
	// proxies without tracing.
	Tracing *Tracing `yaml:"tracing"`
	// Overload is the process's limits and what /ready says near them.
	Overload Overload `yaml:"overload"`

	// File is the path the config was loaded from.
	File string `yaml:"-"`
	// Dir is the file's directory, against which relative paths in the
	// config (plugin_dir, driver path, certificate files) are resolved.
	Dir string `yaml:"-"`
	// Warnings are settings that load but weaken something (TLS
	// verification turned off): logged at start, printed by validate.
	Warnings []Problem `yaml:"-"`

	lines map[string]int // the line of every key set in the file
}

// Place returns where key (a dotted path, as problems name keys, such as
// "tracing.driver.config.endpoint") was set: the file and the line of the
// key, or of its nearest parent that the file sets (the keys inside a
// driver's config block are known to the line of its top-level keys).
func (c *Config) Place(key string) (file string, line int) {
	d := decoder{lines: c.lines}
	return c.File, d.lineOf(key)
}

// DriverKey is the key of the i-th driver of AllDrivers: tracing.driver,
// or tracing.drivers[i].
func (c *Config) DriverKey(i int) string {
	if c.Tracing != nil && c.Tracing.Driver != nil {
		return "tracing.driver"
	}
	return fmt.Sprintf("tracing.drivers[%d]", i)
}

// Node names this tracehop: the node_id and zone tags and the local service
// name of its spans.
type Node struct {
	ID      string `yaml:"id"`
	Service string `yaml:"service"`
	Zone    string `yaml:"zone"`
}

// Admin is the admin server (/ready, /healthz, /metrics, /config,
// /sampling, /reload).
type Admin struct {
	// Address defaults to 127.0.0.1:9901 (loopback: the admin server
	// exposes the config, and PUT /sampling and POST /reload change what
	// tracehop does); "off" disables it. Bind it elsewhere only where
	// whoever can reach it may do that, or set TokenFile.
	Address string `yaml:"address"`
	// TokenFile, when set, names a file (relative to the config's
	// directory) whose content, without surrounding whitespace, is a
	// bearer token that requests changing state (PUT and DELETE /sampling,
	// POST /reload) must carry: "Authorization: Bearer TOKEN". It is read
	// on each such request, so it can be rotated in place. Reading
	// endpoints stay open.
	TokenFile string `yaml:"token_file"`
}

// Overload is what the whole process may hold, and when it counts as
// overloaded: near a limit, /ready can answer 503 so that Kubernetes stops
// sending traffic before requests fail (Envoy's overload manager).
type Overload struct {
	// MaxConnections bounds the client connections of all listeners
	// together. 0 (the default) derives it from RLIMIT_NOFILE: half of
	// what is left after 128 descriptors kept for the admin server,
	// drivers and files, since each client connection may hold an
	// upstream one (1024 gives 448).
	MaxConnections int `yaml:"max_connections"`
	// ConnectionsPercent (default 95) of max_connections (the process's,
	// or a listener's) counts as overloaded; 0 turns the signal off.
	ConnectionsPercent *float64 `yaml:"connections_percent"`
	// MemoryBytes is the memory to stay under: 0 (the default) takes the
	// container's limit (cgroup memory.max) when there is one.
	// MemoryPercent (default 90) of it, as resident memory, counts as
	// overloaded; 0 turns the signal off.
	MemoryBytes   int64    `yaml:"memory_bytes"`
	MemoryPercent *float64 `yaml:"memory_percent"`
	// SpanQueuePercent of a driver's span queue counts as overloaded; 0,
	// the default, turns the signal off: a collector that is down fills
	// every tracehop's queue at once, and no pod should stop taking
	// traffic for that.
	SpanQueuePercent float64 `yaml:"span_queue_percent"`
	// ReadyWhenOverloaded (default true) keeps /ready at 200 when
	// overloaded (its body says so); false makes it 503.
	ReadyWhenOverloaded *bool `yaml:"ready_when_overloaded"`
}

// Connections is connections_percent, its default when unset.
func (o *Overload) Connections() float64 {
	if o.ConnectionsPercent == nil {
		return DefaultConnectionsPercent
	}
	return *o.ConnectionsPercent
}

// Memory is memory_percent, its default when unset.
func (o *Overload) Memory() float64 {
	if o.MemoryPercent == nil {
		return DefaultMemoryPercent
	}
	return *o.MemoryPercent
}

// Ready reports whether /ready stays 200 while overloaded.
func (o *Overload) Ready() bool { return o.ReadyWhenOverloaded == nil || *o.ReadyWhenOverloaded }

// Directions of a listener.
const (
	Ingress = "ingress" // traffic into the local service: SERVER spans
	Egress  = "egress"  // traffic out of the local service: CLIENT spans
)

// Listener is one address tracehop accepts HTTP on.
type Listener struct {
	Name      string `yaml:"name"`
	Address   string `yaml:"address"`
	Direction string `yaml:"direction"`
	// TrustTraceHeaders, true by default, lets incoming trace context,
	// x-request-id and force-trace headers count. Set it false at the edge:
	// they are then ignored and removed.
	TrustTraceHeaders *bool   `yaml:"trust_trace_headers"`
	Routes            []Route `yaml:"routes"`
	// ReadHeaderTimeout (default 10s), IdleTimeout (default 60s) and
	// MaxHeaderBytes (default 64 KiB) protect the listener from slow and
	// oversized clients. A connection's first head is due
	// ReadHeaderTimeout after the connection's start (nginx's
	// client_header_timeout); IdleTimeout is the wait for the next one.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	// BodyReadTimeout (default 60s, as nginx's client_body_timeout) is the
	// longest wait for the next bytes of a request body. A client slower
	// than that gets 408: its slowness is not the upstream's fault.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout"`
	// HeadersWithUnderscores says what happens to request header names
	// that hold an underscore: allow (default, as Envoy), drop (as nginx)
	// or reject (400). Whatever the setting, a look-alike of a header that
	// frames, routes or identifies a request (Content_Length,
	// Transfer_Encoding, X_Forwarded_For, the trace headers) is dropped:
	// CGI-style applications read it as the real one.
	HeadersWithUnderscores string `yaml:"headers_with_underscores"`
	// TLS makes the listener HTTPS: nil is plaintext.
	TLS *ListenerTLS `yaml:"tls"`
	// Operation is the span name of the listener's routes that name none
	// (Route.Operation, with the same placeholders).
	Operation string `yaml:"operation"`
	// Traceresponse, false by default, puts W3C Trace Context level 2's
	// traceresponse header on the answers to traced requests: the trace id
	// and the id of tracehop's span, so that a caller can find its trace.
	// At an edge that does not trust its clients, that tells any client
	// the trace ids of your traces: turn it on where that is wanted.
	Traceresponse bool `yaml:"traceresponse"`
	// ReusePort, false by default, binds the listener with SO_REUSEPORT
	// (Linux), so that several tracehop processes of the same user can
	// listen on the same address and the kernel spreads new connections
	// over them: one process with GOMAXPROCS 1 per core, as nginx runs one
	// worker per core, or a new tracehop started beside the old one before
	// the old one stops. Off by default: two processes sharing a port by
	// accident would each get part of the traffic, silently. It is fixed
	// when the address is bound; a reload cannot change it.
	ReusePort bool `yaml:"reuse_port"`
	// Baggage says whether a client's W3C baggage header is believed.
	Baggage ListenerBaggage `yaml:"baggage"`

	// MaxConnections bounds the listener's client connections (0, the
	// default: only the process's bound, overload.max_connections). When
	// it is reached, the connections that have waited longest for a
	// request are closed to make room; with none waiting, a new
	// connection is closed at once.
	MaxConnections int `yaml:"max_connections"`
	// MaxRequestsPerConnection closes a client connection after that many
	// requests (its last answer says Connection: close); MaxConnectionAge
	// after that long (the answer to a request after it, or at once when
	// it waits for one). Both spread load behind a Kubernetes Service,
	// whose connections otherwise stick to the pods they first reached.
	// 0, the default: no bound (as Envoy; nginx's keepalive_requests is
	// 1000).
	MaxRequestsPerConnection int           `yaml:"max_requests_per_connection"`
	MaxConnectionAge         time.Duration `yaml:"max_connection_age"`
	// MaxRequestBodyBytes answers 413 to a request body larger than this
	// (0, the default: no bound; nginx's client_max_body_size is 1 MiB).
	// A route may set its own.
	MaxRequestBodyBytes int64 `yaml:"max_request_body_bytes"`
	// BufferRequestBody reads a request body whole before the upstream
	// is dialed, when it is at most max_bytes, so that a slow client does
	// not hold an upstream connection while it uploads. A route may set
	// its own.
	BufferRequestBody *BufferRequestBody `yaml:"buffer_request_body"`
}

// BufferRequestBody is request buffering: bodies up to MaxBytes are read
// whole before the request goes upstream; larger ones stream.
type BufferRequestBody struct {
	// MaxBytes is required: each request being buffered may hold that
	// much memory.
	MaxBytes int64 `yaml:"max_bytes"`
}

// ListenerBaggage is a listener's trust in the W3C baggage its clients
// send.
type ListenerBaggage struct {
	// Trust (default: as trust_trace_headers) keeps a client's baggage:
	// passed to the application, read by baggage_tags, kept for
	// request-id linking. Untrusted, it is removed before the
	// application, never tagged and never linked. Security: baggage
	// reaches every service of the trace, and applications act on it
	// (a tenant, a user, a feature flag); from the internet it is
	// whatever an attacker wrote.
	Trust *bool `yaml:"trust"`
}

// TrustsBaggage reports whether the listener keeps its clients' baggage.
func (l *Listener) TrustsBaggage() bool {
	if l.Baggage.Trust != nil {
		return *l.Baggage.Trust
	}
	return l.Trusted()
}

// What HeadersWithUnderscores may say.
const (
	UnderscoresAllow  = "allow"
	UnderscoresDrop   = "drop"
	UnderscoresReject = "reject"
)

// Trusted reports whether the listener trusts incoming trace headers.
func (l *Listener) Trusted() bool { return l.TrustTraceHeaders == nil || *l.TrustTraceHeaders }

// Route sends matching requests to a cluster.
type Route struct {
	// Name labels the route in metrics and logs (default: the operation,
	// else "route" and its index).
	Name    string `yaml:"name"`
	Match   Match  `yaml:"match"`
	Cluster string `yaml:"cluster"`
	// Operation names the span; by default, like Envoy, "ingress" on an
	// ingress listener and "egress HOST" on an egress one (or the
	// listener's operation). It may hold placeholders: {method}, {route}
	// (the route's name, else its match as written), {path} (the request's
	// path: many names, for few routes) and {host}; "{method} {route}" is
	// how OpenTelemetry's HTTP conventions name a server span.
	Operation string `yaml:"operation"`
	// Timeout bounds the wait for the upstream's response headers (default
	// 15s, as Envoy's route timeout). It does not cut a streamed response
	// body (gRPC streams, server-sent events) short; 0s disables it.
	Timeout *time.Duration `yaml:"timeout"`
	// Tracing overrides the tracing block for this route, as Envoy's route
	// tracing and nginx's per-location settings do.
	Tracing *RouteTracing `yaml:"tracing"`
	// MaxRequestBodyBytes and BufferRequestBody replace the listener's
	// for this route (max_request_body_bytes: 0 lifts the listener's
	// bound here).
	MaxRequestBodyBytes *int64             `yaml:"max_request_body_bytes"`
	BufferRequestBody   *BufferRequestBody `yaml:"buffer_request_body"`
}

// RouteTracing is a route's own tracing: off (health checks, /metrics,
// load balancer probes: no spans and no propagation headers, still a
// request id), other sampling percentages (each unset one is the tracing
// block's), and custom tags added to the tracing block's.
type RouteTracing struct {
	Enabled    *bool       `yaml:"enabled"`
	Sampling   Sampling    `yaml:"sampling"`
	CustomTags []CustomTag `yaml:"custom_tags"`
}

// Off reports whether tracing is turned off for the route.
func (r *RouteTracing) Off() bool { return r != nil && r.Enabled != nil && !*r.Enabled }

// Match selects requests. Every condition given must hold; an empty match
// matches everything.
type Match struct {
	Prefix  string        `yaml:"prefix"`
	Path    string        `yaml:"path"`
	Headers []HeaderMatch `yaml:"headers"`
	// Method, when set, is the request method the route takes, compared
	// exactly (methods are case-sensitive): GET, POST, ...
	Method string `yaml:"method"`
}

// Label names a route in metrics, logs and sampling rules: its name, else
// its operation, else "route" and its index i in the listener.
func (r Route) Label(i int) string {
	if r.Name != "" {
		return r.Name
	}
	if r.Operation != "" {
		return r.Operation
	}
	return "route" + strconv.Itoa(i)
}

// HeaderMatch holds when the header is present, and, if Value is given,
// equal to it.
type HeaderMatch struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// Cluster protocols.
const (
	HTTP1 = "http1"
	H2C   = "h2c" // HTTP/2 in plaintext (prior knowledge)
	H2    = "h2"  // HTTP/2 over TLS (ALPN): needs a tls block
)

// Cluster is a set of upstream endpoints.
type Cluster struct {
	Name      string   `yaml:"name"`
	Endpoints []string `yaml:"endpoints"`
	Protocol  string   `yaml:"protocol"`
	// ConnectTimeout defaults to 1s. With TLS it bounds the TCP connect
	// and the handshake together.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// TLS makes tracehop dial the endpoints over TLS: nil is plaintext.
	TLS *ClusterTLS `yaml:"tls"`
}

// Tracing configures span generation, propagation and delivery.
type Tracing struct {
	Driver  *DriverEntry  `yaml:"driver"`
	Drivers []DriverEntry `yaml:"drivers"`
	// PluginDir is searched first for driver executables; relative to the
	// config file's directory.
	PluginDir string `yaml:"plugin_dir"`
	// Propagation lists the formats to extract (in order) and inject; by
	// default the union of what the drivers' back ends read.
	Propagation []string    `yaml:"propagation"`
	Sampling    Sampling    `yaml:"sampling"`
	CustomTags  []CustomTag `yaml:"custom_tags"`
	// BaggageTags names W3C baggage members copied onto the span, each as
	// a tag of the member's key (as OpenTelemetry's baggage span
	// processors do). Baggage itself passes through untouched.
	BaggageTags       []string `yaml:"baggage_tags"`
	MaxPathTagLength  int      `yaml:"max_path_tag_length"`
	SpawnUpstreamSpan bool     `yaml:"spawn_upstream_span"`
	// LinkByRequestID (default true) makes an egress request that carries
	// only the x-request-id of a request this tracehop is serving on an
	// ingress listener a child of that request's span.
	LinkByRequestID *bool `yaml:"link_by_request_id"`
	Queue           Queue `yaml:"queue"`
}

// Linking reports whether link_by_request_id is on.
func (t *Tracing) Linking() bool { return t.LinkByRequestID == nil || *t.LinkByRequestID }

// DriverEntry is one driver entry of the tracing block: which driver (by
// name, or path), how it is launched and the config it is given. The
// running process is internal/app.RunningDriver; the interface it serves,
// core.Driver.
type DriverEntry struct {
	Name     string         `yaml:"name"`
	Path     string         `yaml:"path"`
	Checksum string         `yaml:"checksum"`
	Config   map[string]any `yaml:"config"`
	// Env is set in the driver's environment; PassEnv names variables of
	// tracehop's environment the driver may see. Nothing else of
	// tracehop's environment reaches it.
	Env     map[string]string `yaml:"env"`
	PassEnv []string          `yaml:"pass_env"`
	// Transport is how batches reach the driver: auto (default: the
	// shared-memory span ring where the platform and the driver can, else
	// gRPC), shm (the ring, or the driver does not start) or grpc.
	Transport string `yaml:"transport"`
	// Nice lowers the driver process's scheduling priority below
	// tracehop's by this much (0 to 19; default 10): its batch work then
	// waits for a core rather than delaying requests that share it.
	Nice *int `yaml:"nice"`
}

// Sampling percentages, 0 to 100 in 0.01 steps; each defaults to 100.
//
// Sampling decides at the head of a request, before its outcome is known:
// keeping the traces of failed or slow requests (status, latency) is tail
// sampling, the work of a Collector tier (the OpenTelemetry Collector's
// tail_sampling processor) that sees whole traces.
type Sampling struct {
	Random  *float64 `yaml:"random"`
	Client  *float64 `yaml:"client"`
	Overall *float64 `yaml:"overall"`
	// MaxTracesPerSecond caps the traces this tracehop starts (by random
	// or client sampling), as Jaeger's rate-limiting sampler: "random
	// percent, but never more than N a second". Unset: no cap. Traces
	// continued from a sampled parent follow it, so a trace stays whole.
	MaxTracesPerSecond *float64 `yaml:"max_traces_per_second"`
	// Remote polls a Jaeger remote sampling endpoint for this service's
	// strategy (tracing.sampling only, not a route's): see RemoteSampling.
	Remote *RemoteSampling `yaml:"remote"`
}

// RemoteSampling is a Jaeger remote sampling source: tracehop polls
// GET URL?service=SERVICE (Jaeger v2's remote_sampling extension, or the
// Jaeger v1 collector's /api/sampling) every PollInterval. A probabilistic
// strategy sets the random percentage, a rate-limiting one the rate (at
// 100%); per-operation strategies apply to the routes whose span name
// (a fixed operation, or the default "ingress") or label is that
// operation. Until the first answer the file's sampling applies; when the
// endpoint fails, the last strategy it gave stays in force.
type RemoteSampling struct {
	URL string `yaml:"url"`
	// PollInterval defaults to 60s, as Jaeger's and OpenTelemetry's
	// remote samplers.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Service is the service whose strategy is asked for; by default
	// node.service, else node.id, else "tracehop" (the spans' service).
	Service string `yaml:"service"`
}

// CustomTag adds a tag to every span, from exactly one source.
type CustomTag struct {
	Tag           string         `yaml:"tag"`
	Literal       string         `yaml:"literal"`
	Environment   *TagFromEnv    `yaml:"environment"`
	RequestHeader *TagFromHeader `yaml:"request_header"`
	// ResponseHeader reads the upstream's response (an x-cache or
	// x-user-tier), as Envoy's response_header tag and Traefik's
	// capturedResponseHeaders; the default is used when the header is
	// absent, or when tracehop answered itself.
	ResponseHeader *TagFromHeader `yaml:"response_header"`
	// Span limits the tag to one side: server (the SERVER span of an
	// ingress listener) or client (the CLIENT span of an egress listener,
	// and the upstream span spawn_upstream_span adds); "" tags both.
	Span string `yaml:"span"`
}

// The placeholders of an operation (span name) template.
const (
	PlaceholderMethod = "{method}"
	PlaceholderRoute  = "{route}"
	PlaceholderPath   = "{path}"
	PlaceholderHost   = "{host}"
)

// placeholders lists them, for messages.
var placeholders = []string{PlaceholderMethod, PlaceholderRoute, PlaceholderPath, PlaceholderHost}

// checkOperation reports the first unknown placeholder of an operation
// template, or "".
func checkOperation(op string) string {
	for rest := op; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return ""
		}
		rest = rest[i:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return rest
		}
		if !slices.Contains(placeholders, rest[:j+1]) {
			return rest[:j+1]
		}
		rest = rest[j+1:]
	}
}

// Spans a custom tag may be limited to (CustomTag.Span).
const (
	TagSpanServer = "server"
	TagSpanClient = "client"
)

// TagFromEnv reads the tag's value from the environment once, at start.
type TagFromEnv struct {
	Name    string `yaml:"name"`
	Default string `yaml:"default"`
}

// TagFromHeader reads the tag's value from a request header.
type TagFromHeader struct {
	Name    string `yaml:"name"`
	Default string `yaml:"default"`
}

// Queue is the span pipeline's delivery block (see core/pipeline.Config).
type Queue struct {
	Size          int           `yaml:"size"`
	BatchSize     int           `yaml:"batch_size"`
	BatchDelay    time.Duration `yaml:"batch_delay"`
	ExportTimeout time.Duration `yaml:"export_timeout"`
	RetryFor      time.Duration `yaml:"retry_for"`
}

// Pipeline converts the queue block.
func (q Queue) Pipeline() pipeline.Config {
	return pipeline.Config{QueueSize: q.Size, BatchSize: q.BatchSize, BatchDelay: q.BatchDelay, ExportTimeout: q.ExportTimeout, RetryFor: q.RetryFor}
}

// AllDrivers returns driver and drivers as one list.
func (t *Tracing) AllDrivers() []DriverEntry {
	if t.Driver != nil {
		return append([]DriverEntry{*t.Driver}, t.Drivers...)
	}
	return t.Drivers
}

// Defaults for unset values.
const (
	DefaultAdminAddress      = "127.0.0.1:9901"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultBodyReadTimeout   = 60 * time.Second
	DefaultRouteTimeout      = 15 * time.Second
	DefaultConnectTimeout    = time.Second
	DefaultMaxPathTagLength  = 256
	DefaultRemotePoll        = 60 * time.Second
	// Overload signals, in percent of their limit.
	DefaultConnectionsPercent = 95
	DefaultMemoryPercent      = 90
)

// Load reads, decodes, defaults and validates the config file at path.
// A returned *Error lists every problem at once.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %w", err)
	}
	return Parse(path, raw)
}

// Parse is Load for a config already in memory; path names it in errors.
func Parse(path string, raw []byte) (*Config, error) {
	d := &decoder{file: path, lines: map[string]int{}}
	cfg := &Config{File: path, Dir: filepath.Dir(path)}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // yaml.v3's word for an empty document
			return nil, &Error{Problems: []Problem{{File: path, Msg: "the file is empty; see examples/ for a starting point"}}}
		}
		return nil, &Error{Problems: []Problem{{File: path, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	if len(doc.Content) > 0 {
		d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
	}
	if len(d.problems) == 0 {
		cfg.applyDefaults()
		cfg.validate(d)
	}
	if len(d.problems) > 0 {
		slices.SortStableFunc(d.problems, func(a, b Problem) int { return a.Line - b.Line })
		return nil, &Error{Problems: d.problems}
	}
	cfg.Warnings = d.warnings
	cfg.lines = d.lines
	return cfg, nil
}

func (c *Config) applyDefaults() {
	if c.Admin.Address == "" {
		c.Admin.Address = DefaultAdminAddress
	}
	if c.Admin.TokenFile != "" && !filepath.IsAbs(c.Admin.TokenFile) {
		c.Admin.TokenFile = filepath.Join(c.Dir, c.Admin.TokenFile)
	}
	if c.Overload.ConnectionsPercent == nil {
		p := float64(DefaultConnectionsPercent)
		c.Overload.ConnectionsPercent = &p
	}
	if c.Overload.MemoryPercent == nil {
		p := float64(DefaultMemoryPercent)
		c.Overload.MemoryPercent = &p
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.ReadHeaderTimeout == 0 {
			l.ReadHeaderTimeout = DefaultReadHeaderTimeout
		}
		if l.IdleTimeout == 0 {
			l.IdleTimeout = DefaultIdleTimeout
		}
		if l.MaxHeaderBytes == 0 {
			l.MaxHeaderBytes = DefaultMaxHeaderBytes
		}
		if l.BodyReadTimeout == 0 {
			l.BodyReadTimeout = DefaultBodyReadTimeout
		}
		if l.HeadersWithUnderscores == "" {
			l.HeadersWithUnderscores = UnderscoresAllow
		}
		if l.TLS != nil {
			l.TLS.applyDefaults(c.Dir)
		}
		for j := range l.Routes {
			if l.Routes[j].Timeout == nil {
				t := DefaultRouteTimeout
				l.Routes[j].Timeout = &t
			}
		}
	}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		if cl.Protocol == "" {
			cl.Protocol = HTTP1
		}
		if cl.ConnectTimeout == 0 {
			cl.ConnectTimeout = DefaultConnectTimeout
		}
		if cl.TLS != nil {
			cl.TLS.applyDefaults(c.Dir)
		}
	}
	if t := c.Tracing; t != nil {
		if t.MaxPathTagLength == 0 {
			t.MaxPathTagLength = DefaultMaxPathTagLength
		}
		if r := t.Sampling.Remote; r != nil {
			if r.PollInterval == 0 {
				r.PollInterval = DefaultRemotePoll
			}
			if r.Service == "" {
				r.Service = cmp.Or(c.Node.Service, c.Node.ID, "tracehop")
			}
		}
		if t.PluginDir != "" && !filepath.IsAbs(t.PluginDir) {
			t.PluginDir = filepath.Join(c.Dir, t.PluginDir)
		}
		for _, drv := range []*DriverEntry{t.Driver} {
			if drv != nil && drv.Path != "" && !filepath.IsAbs(drv.Path) {
				drv.Path = filepath.Join(c.Dir, drv.Path)
			}
		}
		for i := range t.Drivers {
			if p := t.Drivers[i].Path; p != "" && !filepath.IsAbs(p) {
				t.Drivers[i].Path = filepath.Join(c.Dir, p)
			}
		}
	}
}

// knownFormats are the propagation formats tracehop implements.
var knownFormats = []string{core.FormatB3, core.FormatB3Single, core.FormatTraceContext, core.FormatDatadog, core.FormatOTTracer}

// bindKey is what the kernel binds for a listen address: the port as a
// number and the host as an IP where it is one, so that two spellings of
// one address (::ffff:127.0.0.1 and 127.0.0.1, http and 80, localhost and
// 127.0.0.1) are seen as one. Host "" is a wildcard.
type bindKey struct {
	host string
	port int
}

// parseBind returns addr's bindKey; false for port 0 (each bind gets its
// own port, so it overlaps nothing) or an address that does not parse
// (checkAddr says so).
func parseBind(addr string) (bindKey, bool) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return bindKey{}, false
	}
	port, err := net.LookupPort("tcp", p)
	if err != nil || port == 0 {
		return bindKey{}, false
	}
	if strings.EqualFold(h, "localhost") {
		// Go's Listen binds the first IPv4 address a name resolves to,
		// and localhost's is 127.0.0.1.
		h = "127.0.0.1"
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip = ip.Unmap(); ip.IsUnspecified() {
			h = ""
		} else {
			h = ip.String()
		}
	}
	return bindKey{h, port}, true
}

// ListenPort is the port addr binds, as a number ("http" and "080" are
// 80), or 0 for port 0 or an address that does not parse.
func ListenPort(addr string) int {
	k, _ := parseBind(addr)
	return k.port
}

// overlaps reports whether binding a and b would take part of the same
// address: the same port, and the same host or a wildcard on either side.
func (a bindKey) overlaps(b bindKey) bool {
	return a.port == b.port && (a.host == "" || b.host == "" || a.host == b.host)
}

// overlapping returns the listener of ls whose address takes part of
// addr's (bindKey.overlaps).
func overlapping(addr string, ls []Listener) (Listener, bool) {
	k, ok := parseBind(addr)
	if !ok {
		return Listener{}, false
	}
	for _, l := range ls {
		if o, ok := parseBind(l.Address); ok && k.overlaps(o) {
			return l, true
		}
	}
	return Listener{}, false
}

// reusePortOS is where listeners[].reuse_port works (SO_REUSEPORT spreads
// connections over the sockets that share an address on Linux only).
const reusePortOS = "linux"

func (c *Config) validate(d *decoder) {
	bad := func(key, format string, args ...any) { d.addf(d.lineOf(key), key, format, args...) }
	checkAddr := func(key, addr string) {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			bad(key, "expected host:port such as 127.0.0.1:8000, got %q", addr)
		} else if _, err := net.LookupPort("tcp", port); err != nil {
			bad(key, "the port of %q is neither a number from 0 to 65535 nor a service name this machine knows (/etc/services): write it as a number", addr)
		}
	}
	if c.Admin.Address != "off" {
		checkAddr("admin.address", c.Admin.Address)
		c.validateAdmin(d, bad)
	}
	clusters := map[string]bool{}
	for i, cl := range c.Clusters {
		key := fmt.Sprintf("clusters[%d]", i)
		switch {
		case cl.Name == "":
			bad(key+".name", "is required")
		case clusters[cl.Name]:
			bad(key+".name", "%q is used by another cluster; cluster names must be unique", cl.Name)
		}
		clusters[cl.Name] = true
		if len(cl.Endpoints) == 0 {
			bad(key+".endpoints", "needs at least one host:port")
		}
		for j, ep := range cl.Endpoints {
			checkAddr(fmt.Sprintf("%s.endpoints[%d]", key, j), ep)
		}
		switch {
		case cl.Protocol != HTTP1 && cl.Protocol != H2C && cl.Protocol != H2:
			bad(key+".protocol", "must be http1, h2c or h2, got %q", cl.Protocol)
		case cl.Protocol == H2 && cl.TLS == nil:
			bad(key+".protocol", "h2 is HTTP/2 over TLS: add a tls block (tls: {}) or use h2c for HTTP/2 in plaintext")
		case cl.Protocol == H2C && cl.TLS != nil:
			bad(key+".protocol", "h2c is HTTP/2 in plaintext, but the cluster has a tls block: use h2 for HTTP/2 over TLS")
		}
		if cl.TLS != nil {
			cl.TLS.validate(key+".tls", d, bad)
		}
		if cl.ConnectTimeout < 0 {
			bad(key+".connect_timeout", "must not be negative")
		}
	}
	names := map[string]bool{}
	admin, adminBound := parseBind(c.Admin.Address) // false for "off"
	for i, l := range c.Listeners {
		key := fmt.Sprintf("listeners[%d]", i)
		switch {
		case l.Name == "":
			bad(key+".name", "is required")
		case names[l.Name]:
			bad(key+".name", "%q is used by another listener; listener names must be unique", l.Name)
		}
		names[l.Name] = true
		if l.Address == "" {
			bad(key+".address", "is required (host:port)")
		} else {
			checkAddr(key+".address", l.Address)
			if other, ok := overlapping(l.Address, c.Listeners[:i]); ok {
				// Bound twice in one process: an error without reuse_port,
				// and with it the kernel would split the connections
				// between the two listeners' routes.
				bad(key+".address", "%s and listener %q's %s share a port and an address (a wildcard host covers all): give one of them another port", l.Address, other.Name, other.Address)
			} else if k, ok := parseBind(l.Address); ok && adminBound && k.overlaps(admin) {
				// The admin server binds first, without reuse_port:
				// tracehop would stop at start on "address already in use".
				bad(key+".address", "%s and the admin server's %s share a port and an address (a wildcard host covers all): give the listener another port, or move the admin server (admin.address, 127.0.0.1:9901 unless set)", l.Address, c.Admin.Address)
			}
		}
		if l.Direction != Ingress && l.Direction != Egress {
			bad(key+".direction", "must be ingress or egress, got %q", l.Direction)
		}
		if l.ReusePort && runtime.GOOS != reusePortOS {
			bad(key+".reuse_port", "works on Linux only (SO_REUSEPORT spreads connections there alone): remove it, and run one tracehop per address")
		}
		if len(l.Routes) == 0 {
			bad(key+".routes", "needs at least one route")
		}
		for j, r := range l.Routes {
			rk := fmt.Sprintf("%s.routes[%d]", key, j)
			if r.Cluster == "" {
				bad(rk+".cluster", "is required")
			} else if !clusters[r.Cluster] {
				bad(rk+".cluster", "no cluster is named %q (clusters: %s)", r.Cluster, strings.Join(sortedKeys(clusters), ", "))
			}
			if r.Match.Prefix != "" && r.Match.Path != "" {
				bad(rk+".match", "set prefix or path, not both")
			}
			if p := r.Match.Prefix + r.Match.Path; p != "" && !strings.HasPrefix(p, "/") {
				bad(rk+".match", "a path or prefix must start with /, got %q", p)
			}
			for k, h := range r.Match.Headers {
				if h.Name == "" {
					bad(fmt.Sprintf("%s.match.headers[%d].name", rk, k), "is required")
				}
			}
			if m := r.Match.Method; m != "" {
				checkMethod(rk+".match.method", m, bad)
			}
			if r.Timeout != nil && *r.Timeout < 0 {
				bad(rk+".timeout", "must not be negative")
			}
			if ph := checkOperation(r.Operation); ph != "" {
				bad(rk+".operation", "unknown placeholder %s (known: %s)", ph, strings.Join(placeholders, ", "))
			}
			if r.MaxRequestBodyBytes != nil && *r.MaxRequestBodyBytes < 0 {
				bad(rk+".max_request_body_bytes", "must not be negative (0: no bound on this route)")
			}
			validateBuffering(rk+".buffer_request_body", r.BufferRequestBody, bad)
			if rt := r.Tracing; rt != nil {
				if c.Tracing == nil {
					bad(rk+".tracing", "needs a tracing block: without one tracehop traces nothing")
				}
				validateSampling(rk+".tracing.sampling", rt.Sampling, false, bad)
				validateCustomTags(rk+".tracing.custom_tags", rt.CustomTags, bad)
			}
		}
		if ph := checkOperation(l.Operation); ph != "" {
			bad(key+".operation", "unknown placeholder %s (known: %s)", ph, strings.Join(placeholders, ", "))
		}
		if l.MaxHeaderBytes < 0 {
			bad(key+".max_header_bytes", "must not be negative")
		}
		l.validateLimits(key, bad)
		if l.BodyReadTimeout < 0 {
			bad(key+".body_read_timeout", "must not be negative")
		}
		switch l.HeadersWithUnderscores {
		case UnderscoresAllow, UnderscoresDrop, UnderscoresReject:
		default:
			bad(key+".headers_with_underscores", "must be allow, drop or reject, got %q", l.HeadersWithUnderscores)
		}
		if l.TLS != nil {
			l.TLS.validate(key+".tls", d, bad)
		}
	}
	if c.Tracing != nil {
		c.validateTracing(bad)
	}
	c.Overload.validate(bad)
}

// validateLimits checks a listener's connection and body limits.
func (l *Listener) validateLimits(key string, bad func(key, format string, args ...any)) {
	for _, n := range []struct {
		key string
		v   int64
	}{
		{"max_connections", int64(l.MaxConnections)}, {"max_requests_per_connection", int64(l.MaxRequestsPerConnection)},
		{"max_connection_age", int64(l.MaxConnectionAge)}, {"max_request_body_bytes", l.MaxRequestBodyBytes},
	} {
		if n.v < 0 {
			bad(key+"."+n.key, "must not be negative (0: no bound)")
		}
	}
	validateBuffering(key+".buffer_request_body", l.BufferRequestBody, bad)
}

// validateBuffering checks a buffer_request_body block.
func validateBuffering(key string, b *BufferRequestBody, bad func(key, format string, args ...any)) {
	if b != nil && b.MaxBytes <= 0 {
		bad(key+".max_bytes", "is required: the largest body read whole before the upstream is dialed, in bytes (such as 1048576), got %d", b.MaxBytes)
	}
}

func (o *Overload) validate(bad func(key, format string, args ...any)) {
	if o.MaxConnections < 0 {
		bad("overload.max_connections", "must not be negative (0: derived from RLIMIT_NOFILE)")
	}
	if o.MemoryBytes < 0 {
		bad("overload.memory_bytes", "must not be negative (0: the container's memory limit, if any)")
	}
	for _, p := range []struct {
		key string
		v   float64
	}{{"connections_percent", o.Connections()}, {"memory_percent", o.Memory()}, {"span_queue_percent", o.SpanQueuePercent}} {
		if p.v < 0 || p.v > 100 {
			bad("overload."+p.key, "must be between 0 (off) and 100, got %v", p.v)
		}
	}
}

// validateSampling checks a sampling block at key; a route's may not set a
// rate limit (the limit is per tracehop, shared by its routes) or a remote
// source.
func validateSampling(key string, s Sampling, global bool, bad func(key, format string, args ...any)) {
	if r := s.Remote; r != nil {
		if !global {
			bad(key+".remote", "is set per tracehop (tracing.sampling), not per route: its operation strategies apply to routes by name")
		} else {
			validateRemote(key+".remote", r, bad)
		}
	}
	for _, p := range []struct {
		key string
		v   *float64
	}{{"random", s.Random}, {"client", s.Client}, {"overall", s.Overall}} {
		if p.v == nil {
			continue
		}
		k := key + "." + p.key
		if *p.v < 0 || *p.v > 100 {
			bad(k, "must be between 0 and 100, got %v", *p.v)
		} else if r := *p.v * 100; math.Abs(r-math.Round(r)) > 1e-9 {
			bad(k, "is a percentage in steps of 0.01, got %v", *p.v)
		}
	}
	switch m := s.MaxTracesPerSecond; {
	case m == nil:
	case !global:
		bad(key+".max_traces_per_second", "is set per tracehop (tracing.sampling), not per route: a route's traces count against it")
	case !(*m > 0) || math.IsInf(*m, 0):
		bad(key+".max_traces_per_second", "must be a number above 0 (unset it for no cap), got %v", *m)
	}
}

// validateCustomTags checks a custom_tags list at key.
func validateCustomTags(key string, tags []CustomTag, bad func(key, format string, args ...any)) {
	for i, ct := range tags {
		key := fmt.Sprintf("%s[%d]", key, i)
		if ct.Tag == "" {
			bad(key+".tag", "is required")
		}
		if ct.Span != "" && ct.Span != TagSpanServer && ct.Span != TagSpanClient {
			bad(key+".span", "must be server or client (or unset: both), got %q", ct.Span)
		}
		n := 0
		if ct.Literal != "" {
			n++
		}
		if ct.Environment != nil {
			n++
			if ct.Environment.Name == "" {
				bad(key+".environment.name", "is required")
			}
		}
		for i, h := range []*TagFromHeader{ct.RequestHeader, ct.ResponseHeader} {
			name := [...]string{"request_header", "response_header"}[i]
			if h == nil {
				continue
			}
			n++
			switch {
			case h.Name == "":
				bad(key+"."+name+".name", "is required")
			case !httpguts.ValidHeaderFieldName(h.Name):
				bad(key+"."+name+".name", "%q is not a header name (letters, digits and !#$%%&'*+-.^_`|~ only)", h.Name)
			}
		}
		if n != 1 {
			bad(key, "needs exactly one of literal, environment, request_header, response_header; got %d", n)
		}
	}
}

func (c *Config) validateTracing(bad func(key, format string, args ...any)) {
	t := c.Tracing
	if t.Driver != nil && len(t.Drivers) > 0 {
		bad("tracing.drivers", "set tracing.driver or tracing.drivers, not both")
	}
	if len(t.AllDrivers()) == 0 {
		bad("tracing", "names no driver: add driver: {name: file, config: {path: spans.jsonl}} (or remove the tracing block to proxy without tracing)")
	}
	check := func(key string, d DriverEntry) {
		if d.Name == "" {
			bad(key+".name", "is required (the driver tracehop-driver-NAME to run, such as file or zipkin)")
		} else if err := wire.ValidateName(d.Name); err != nil {
			bad(key+".name", "%v", err)
		}
		if d.Checksum != "" {
			if _, err := wire.ParseChecksum(d.Checksum); err != nil {
				bad(key+".checksum", "%v", err)
			}
		}
		if d.Nice != nil && (*d.Nice < 0 || *d.Nice > 19) {
			bad(key+".nice", "must be between 0 (tracehop's priority) and 19, got %d", *d.Nice)
		}
		if d.Transport != "" && !slices.Contains(wire.Transports, d.Transport) {
			bad(key+".transport", "must be one of %s, got %q", strings.Join(wire.Transports, ", "), d.Transport)
		}
	}
	if t.Driver != nil {
		check("tracing.driver", *t.Driver)
	}
	for i, d := range t.Drivers {
		check(fmt.Sprintf("tracing.drivers[%d]", i), d)
	}
	for i, f := range t.Propagation {
		if !slices.Contains(knownFormats, f) {
			bad(fmt.Sprintf("tracing.propagation[%d]", i), "unknown format %q (known: %s)", f, strings.Join(knownFormats, ", "))
		}
	}
	validateSampling("tracing.sampling", t.Sampling, true, bad)
	validateCustomTags("tracing.custom_tags", t.CustomTags, bad)
	for i, k := range t.BaggageTags {
		if !httpguts.ValidHeaderFieldName(k) {
			bad(fmt.Sprintf("tracing.baggage_tags[%d]", i), "%q is not a W3C baggage key (a token: letters, digits and !#$%%&'*+-.^_`|~)", k)
		}
	}
	if t.MaxPathTagLength < 0 {
		bad("tracing.max_path_tag_length", "must not be negative")
	}
	if err := t.Queue.Pipeline().Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			k, msg, _ := strings.Cut(line, ": ")
			k = strings.Replace(k, "queue_size", "size", 1)
			bad("tracing.queue."+k, "%s", strings.Replace(msg, "queue_size", "size", 1))
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
