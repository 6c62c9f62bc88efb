package driverhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/core/wire/driverpb"
)

// Handshake is the go-plugin handshake both sides use.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  wire.ProtocolVersion,
	MagicCookieKey:   wire.MagicCookieKey,
	MagicCookieValue: wire.MagicCookieValue,
}

// Spec says which driver to run and how, as the tracing config gives it.
type Spec struct {
	// Name is tracing.driver.name; the executable is tracehop-driver-NAME.
	Name string
	// Path, when set, is the executable to run; the search is skipped.
	Path string
	// Checksum, when set, pins the executable: "sha256:" and 64 hex digits.
	Checksum string
	// Config is the driver's own config block as JSON.
	Config []byte
	// Env is set in the driver's environment. The driver sees only these,
	// the variables named in PassEnv and a few basics (PATH, HOME, TMPDIR,
	// TZ, LANG, LC_ALL, SSL_CERT_FILE, SSL_CERT_DIR), never the rest of
	// tracehop's environment: a stray DD_TRACE_ENABLED=false in the proxy's
	// environment must not silently change what a driver does.
	Env map[string]string
	// PassEnv names variables of tracehop's environment the driver may see.
	PassEnv []string
	// Transport is how batches reach the driver: wire.TransportAuto (default:
	// the shared-memory span ring where the platform and the driver can),
	// wire.TransportShm (the ring, or the driver does not start) or
	// wire.TransportGRPC (inside each Export).
	Transport string
	// Nice lowers the driver process's scheduling priority by this much
	// below tracehop's (a nice increment, 0 to 19): a driver's batch work
	// then waits for a core rather than delaying requests that share it.
	// Nil is DefaultNice.
	Nice *int
}

// DefaultNice is Spec.Nice when unset: the driver's work is background
// work, and a burst of it (a batch encoded and sent) should not show in the
// requests' latency.
const DefaultNice = 10

// Options tune how drivers are started and supervised. Zero fields take
// their defaults.
type Options struct {
	Search Search
	Host   core.HostInfo
	Logger *slog.Logger
	// StartTimeout bounds launching and handshaking with the process
	// (default 10s).
	StartTimeout time.Duration
	// ConfigureTimeout bounds the driver's Configure (default 10s).
	ConfigureTimeout time.Duration
	// PingInterval is how often a live driver is health-checked (default
	// 1s); PingTimeout is how long it has to answer (default 3s) before it
	// is killed and restarted.
	PingInterval, PingTimeout time.Duration
	// RestartMin and RestartMax bound the backoff between restarts
	// (defaults 100ms and 10s).
	RestartMin, RestartMax time.Duration
}

func (o Options) withDefaults() Options {
	set := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&o.StartTimeout, 10*time.Second)
	set(&o.ConfigureTimeout, 10*time.Second)
	set(&o.PingInterval, time.Second)
	set(&o.PingTimeout, 3*time.Second)
	set(&o.RestartMin, 100*time.Millisecond)
	set(&o.RestartMax, 10*time.Second)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Process is a driver process under supervision: Start launches and
// configures it, and it is restarted (and configured again) whenever it
// exits, its connection breaks or it stops answering health checks. It
// implements core.Driver, so the pipeline cannot tell it from an in-process
// driver; Export waits (within its context) while a crashed process is
// restarted.
type Process struct {
	spec Spec
	path string
	opts Options
	log  *slog.Logger
	caps core.Capabilities

	mu       sync.Mutex
	cur      *instance     // nil while the process is being restarted
	ready    chan struct{} // closed when cur is set again
	shutdown bool

	restarts atomic.Uint64
	up       atomic.Bool
	stop     chan struct{}
	done     chan struct{}
	bufs     sync.Pool // *[]byte: packed batches, reused (gRPC marshals before Export returns)

	// ring is the shared-memory span ring offered to the driver (nil:
	// gRPC only); ringUsers counts the Exports writing into it, which
	// Shutdown waits for before it unmaps it.
	ring      *spanRing
	ringUsers sync.WaitGroup
	// layout is the live instance's (or the last one's) layout, read for
	// every span the pipeline queues; nil: the base layout.
	layout atomic.Pointer[wire.Layout]
}

var _ pipeline.BatchDriver = (*Process)(nil)

// instance is one run of the driver's process.
type instance struct {
	cmd    *exec.Cmd
	client *goplugin.Client
	rpc    driverpb.DriverClient
	conn   *grpc.ClientConn
	tail   *stderrTail
	failed chan struct{} // closed by markFailed
	once   sync.Once
	ring   bool // the driver took the span ring
	// sockDir holds the driver's Unix socket; removed by kill.
	sockDir string
	// layout: what the driver's decoder reads beyond the base layout
	// (ConfigureResponse.span_trace_state and span_tag_keys).
	layout wire.Layout
}

func (in *instance) markFailed() { in.once.Do(func() { close(in.failed) }) }

// kill stops the process. go-plugin's Kill first asks the plugin to exit
// over gRPC and waits on it without a deadline, which hangs on a frozen
// process; unless the process just answered a graceful Shutdown, kill it
// outright first.
func (in *instance) kill(graceful bool) {
	if !graceful {
		killGroup(in.cmd)
	}
	// go-plugin asks the driver to exit (GRPCController.Shutdown) with no
	// deadline of its own: a driver that never answers must not hold
	// tracehop's shutdown. Past killGrace the group is killed, which ends
	// the call.
	done := make(chan struct{})
	go func() { in.client.Kill(); close(done) }()
	select {
	case <-done:
	case <-time.After(killGrace):
		killGroup(in.cmd)
		<-done
	}
	// A driver that exited when asked may leave children behind (a
	// wrapper script's, a helper it started): the group goes with it.
	killGroup(in.cmd)
	removeSockDir(in.sockDir)
}

// removeSockDir removes a driver's socket directory once its process is
// gone ("" when there was none).
func removeSockDir(dir string) {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// killGrace bounds the wait for a driver asked to exit (go-plugin then
// waits up to 2 s more for the process, and kills it).
const killGrace = 5 * time.Second

// killGroup kills the driver's process group: the driver and anything it
// spawned, which would otherwise hold its pipes open and keep go-plugin
// waiting.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Start finds the driver's executable, launches it, checks it is a tracehop
// driver speaking this protocol (and the pinned checksum), and configures it.
// Every way this can fail yields an error that names the driver and says
// what to do; tracehop must refuse to start on any of them.
func Start(ctx context.Context, spec Spec, opts Options) (*Process, error) {
	opts = opts.withDefaults()
	path, err := opts.Search.Find(spec.Name, spec.Path)
	if err != nil {
		return nil, err
	}
	if spec.Checksum != "" {
		if _, err := wire.ParseChecksum(spec.Checksum); err != nil {
			return nil, fmt.Errorf("driver %q: tracing.driver.checksum: %w", spec.Name, err)
		}
	}
	p := &Process{
		spec: spec,
		path: path,
		opts: opts,
		log:  opts.Logger.With("driver", spec.Name),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	p.bufs.New = func() any { return new([]byte) }
	if spec.Transport != wire.TransportGRPC {
		ring, err := newSpanRing(DefaultRingBytes)
		switch {
		case err != nil && spec.Transport == wire.TransportShm:
			return nil, fmt.Errorf("driver %q: transport shm: %w; set transport: grpc (or auto)", spec.Name, err)
		case err != nil:
			p.log.Info("spans go to the driver over gRPC: no shared-memory span ring here", "reason", err)
		default:
			p.ring = ring
		}
	}
	in, caps, err := p.launchRetrying(ctx)
	if err != nil {
		if p.ring != nil {
			p.ring.close()
		}
		return nil, err
	}
	p.caps = caps
	p.cur = in
	p.up.Store(true)
	go p.supervise()
	p.log.Info("driver started", "path", path, "propagation", caps.Propagation, "trace_id_128bit", caps.TraceID128, "precision", caps.Precision,
		"transport", p.Transport())
	return p, nil
}

// Pid returns the process id of the live driver process, or 0 while it is
// being restarted.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	if rc := p.cur.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Path returns the executable the driver runs from.
func (p *Process) Path() string { return p.path }

// Capabilities returns what the driver declared at its first Configure.
func (p *Process) Capabilities() core.Capabilities { return p.caps }

// Restarts counts how often the process was restarted.
func (p *Process) Restarts() uint64 { return p.restarts.Load() }

// Up reports whether a configured process is serving right now.
func (p *Process) Up() bool { return p.up.Load() }

// Configure is part of core.Driver; Start has already configured the
// process (and configures every restarted one), so it only returns the
// capabilities.
func (p *Process) Configure(context.Context, []byte, core.HostInfo) (core.Capabilities, error) {
	return p.caps, nil
}

// baseEnv lists the variables every driver inherits from tracehop.
var baseEnv = []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR"}

// driverGOMAXPROCS is a driver's GOMAXPROCS unless its config's env or
// pass_env sets one. A driver's work is a stream of batches that one
// processor carries at any rate one tracehop reaches (about 1 µs per span,
// README: Performance, where every driver runs so); Go's default, a
// processor per CPU of the node, costs CPU per span for nothing: the otlp
// driver spent 6-57% more per request with 2 than with 1 at 100 to 5,000
// req/s (docs/deploying.md).
const driverGOMAXPROCS = "1"

func (p *Process) environ() []string {
	vals := map[string]string{}
	for _, k := range slices.Concat(baseEnv, p.spec.PassEnv) {
		if v, ok := os.LookupEnv(k); ok {
			vals[k] = v
		}
	}
	for k, v := range p.spec.Env {
		vals[k] = v
	}
	if _, ok := vals["GOMAXPROCS"]; !ok {
		vals["GOMAXPROCS"] = driverGOMAXPROCS
	}
	env := make([]string, 0, len(vals))
	for k, v := range vals {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// startAttempts bounds the launches Start makes while the driver says its
// Configure failed for now (a retryable error): a few, with the restart
// backoff between them, so that tracehop's start waits out a dependency
// that is about to be ready but does not hang on one that never is.
const startAttempts = 5

// launchRetrying is launch, again while the driver's Configure fails as
// retryable, up to startAttempts times.
func (p *Process) launchRetrying(ctx context.Context) (*instance, core.Capabilities, error) {
	backoff := p.opts.RestartMin
	for attempt := 1; ; attempt++ {
		in, caps, err := p.launch(ctx)
		if c, marked := core.ClassOf(err); err == nil || !marked || c != core.ClassRetryable {
			return in, caps, err
		}
		if attempt == startAttempts {
			return nil, caps, fmt.Errorf("%w; still so after %d attempts (its config was not refused: make ready what its message names, then start tracehop again)", err, attempt)
		}
		p.log.Warn("driver could not take its config yet; starting it again", "error", err, "attempt", attempt, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, caps, fmt.Errorf("%w; gave up after %d attempts: %v", err, attempt, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.opts.RestartMax)
	}
}

func (p *Process) launch(ctx context.Context) (*instance, core.Capabilities, error) {
	name := p.spec.Name
	cmd := exec.Command(p.path)
	cmd.Env = p.environ()
	if p.ring != nil {
		// The ring is the child's first descriptor after stdio: 3.
		cmd.ExtraFiles = []*os.File{p.ring.file}
		cmd.Env = append(cmd.Env, wire.RingFDEnv+"=3")
	}
	// A group of its own: tracehop stops its drivers itself (after
	// flushing them), so a Ctrl-C to tracehop's terminal must not reach
	// them first, and killGroup can take their children along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The driver's Unix socket goes in a directory of tracehop's, removed
	// once the process is gone: a driver that is killed (a crash, SIGKILL)
	// cannot remove its socket itself, and every restart would leave one
	// more in the temporary directory.
	sockDir, err := os.MkdirTemp("", "tracehop-driver-")
	if err == nil {
		cmd.Env = append(cmd.Env, goplugin.EnvUnixSocketDir+"="+sockDir)
	}
	var secure *goplugin.SecureConfig
	if p.spec.Checksum != "" {
		sum, _ := wire.ParseChecksum(p.spec.Checksum)
		secure = &goplugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	tail := &stderrTail{log: p.log}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          goplugin.PluginSet{wire.PluginName: &grpcPlugin{}},
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		Logger:           newHCLogger(p.log, filepath.Base(p.path)),
		Stderr:           tail,
		// A driver configured to write to standard output (the file
		// driver's path "-") writes to tracehop's.
		SyncStdout:      os.Stdout,
		StartTimeout:    p.opts.StartTimeout,
		GRPCDialOptions: driverpb.DialOptions(),
	})
	// Until the handshake is done the program may not be a driver at all
	// and is killed outright; after it, it can be asked to exit.
	handshaken := false
	fail := func(err error) (*instance, core.Capabilities, error) {
		if !handshaken {
			killGroup(cmd)
		}
		client.Kill()
		removeSockDir(sockDir)
		return nil, core.Capabilities{}, err
	}
	proto, err := client.Client()
	if err != nil {
		return fail(p.startError(err, tail))
	}
	p.lowerPriority(cmd)
	raw, err := proto.Dispense(wire.PluginName)
	if err != nil {
		return fail(fmt.Errorf("driver %q (%s): does not serve the tracehop driver service: %v; "+
			"is it built with the tracehop SDK (sdk.Serve)?", name, p.path, err))
	}
	handshaken = true
	h := raw.(*grpcHandle)
	in := &instance{cmd: cmd, client: client, rpc: h.rpc, conn: h.conn, tail: tail, failed: make(chan struct{}), sockDir: sockDir}

	cctx, cancel := context.WithTimeout(ctx, p.opts.ConfigureTimeout)
	defer cancel()
	req := &driverpb.ConfigureRequest{ConfigJson: p.spec.Config, Host: driverpb.HostInfoToWire(p.host())}
	if p.ring != nil {
		req.SpanRingBytes = uint64(len(p.ring.mem))
	}
	resp, err := in.rpc.Configure(cctx, req)
	if err != nil {
		st, _ := status.FromError(err)
		switch {
		case client.Exited() || st.Code() == codes.Unavailable:
			// Give the pipes a moment so the tail holds the crash.
			waitExited(client, 500*time.Millisecond)
			if !client.Exited() {
				// Alive, but the call never reached it: the connection
				// (TLS: the driver's certificate, ALPN h2) failed.
				return fail(fmt.Errorf("driver %q is running but tracehop could not call its Configure: %s "+
					"(a driver not built with the SDK must serve gRPC over TLS as docs/driver-protocol.md says: "+
					"a certificate for localhost, ALPN h2, the host's client certificate verified)%s", name, st.Message(), tail))
			}
			return fail(fmt.Errorf("driver %q crashed during Configure: %s%s", name, st.Message(), tail))
		case st.Code() == codes.Aborted:
			// The driver's Configure error was marked retryable: the
			// config is not refused, something it needs is not ready
			// yet (a secret store, a file another container writes).
			return fail(core.Retryable(fmt.Errorf("driver %q could not take its config yet: %s%s", name, st.Message(), tail)))
		case st.Code() == codes.DeadlineExceeded:
			return fail(fmt.Errorf("driver %q did not finish Configure within %s; "+
				"a driver must not wait on its collector while configuring", name, p.opts.ConfigureTimeout))
		default:
			// A refused config: a *wire.ConfigError naming the keys.
			return fail(driverpb.ConfigureError(name, err))
		}
	}
	in.ring = p.ring != nil && resp.SpanRing
	in.layout = wire.LayoutOf(resp.SpanTraceState, resp.SpanTagKeys)
	p.layout.Store(&in.layout)
	if p.ring != nil && !resp.SpanRing {
		if p.spec.Transport == wire.TransportShm {
			return fail(fmt.Errorf("driver %q did not take the shared-memory span ring (transport: shm): "+
				"tracehop %s offers it on driver protocol %d; the driver was built with an SDK that predates it "+
				"(or cannot map shared memory): rebuild it with the current SDK, or set transport: grpc", name, core.Version, wire.ProtocolVersion))
		}
		p.log.Info("spans go to the driver over gRPC: it did not take the shared-memory span ring (an SDK that predates it, or no shared memory where it runs)")
	}
	return in, driverpb.CapabilitiesFromWire(resp.Capabilities), nil
}

// Transport says how batches reach the driver now: "shm" (the span ring)
// or "grpc".
func (p *Process) Transport() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && p.cur.ring {
		return wire.TransportShm
	}
	return wire.TransportGRPC
}

// useRing reserves the span ring for one Export; false once Shutdown has
// begun (it unmaps the ring when the last user is done).
func (p *Process) useRing(in *instance) bool {
	if !in.ring {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutdown {
		return false
	}
	p.ringUsers.Add(1)
	return true
}

func (p *Process) host() core.HostInfo {
	h := p.opts.Host
	h.DriverName = p.spec.Name
	return h
}

func waitExited(c *goplugin.Client, max time.Duration) {
	deadline := time.Now().Add(max)
	for !c.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
}

// startError turns go-plugin's launch errors into ones that say what to do.
func (p *Process) startError(err error, tail *stderrTail) error {
	name, path := p.spec.Name, p.path
	msg := err.Error()
	switch {
	case errors.Is(err, goplugin.ErrChecksumsDoNotMatch):
		actual := "unknown"
		if f, ferr := os.Open(path); ferr == nil {
			h := sha256.New()
			if _, ferr := io.Copy(h, f); ferr == nil {
				actual = "sha256:" + hex.EncodeToString(h.Sum(nil))
			}
			f.Close()
		}
		return fmt.Errorf("driver %q: refusing to run %s: its checksum is %s but tracing.driver.checksum pins %s; "+
			"the binary changed since it was pinned: reinstall the driver you trust, or update the pin",
			name, path, actual, p.spec.Checksum)
	case strings.Contains(msg, "incompatible API version"), strings.Contains(msg, "incompatible core API version"):
		return fmt.Errorf("driver %q (%s) speaks another protocol version than this tracehop (%d): %s; "+
			"rebuild the driver against a matching tracehop SDK", name, path, wire.ProtocolVersion, msg)
	case strings.Contains(msg, "Unrecognized remote plugin message"),
		strings.Contains(msg, "exited before we could connect"),
		strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("driver %q: %s is not a tracehop driver: it did not answer the tracehop driver handshake (%s); "+
			"point tracing.driver.path or tracing.plugin_dir at a tracehop-driver-* binary built with the tracehop SDK%s",
			name, path, firstLine(msg), tail)
	}
	return fmt.Errorf("driver %q (%s): could not start: %w%s", name, path, err, tail)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// current returns the live instance, waiting for a restart within ctx.
func (p *Process) current(ctx context.Context) (*instance, error) {
	for {
		p.mu.Lock()
		in, ready, down := p.cur, p.ready, p.shutdown
		p.mu.Unlock()
		if down {
			return nil, core.Permanent(fmt.Errorf("driver %q is shut down", p.spec.Name))
		}
		if in != nil {
			return in, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, core.Retryable(fmt.Errorf("driver %q is restarting: %w", p.spec.Name, ctx.Err()))
		}
	}
}

// Export sends one batch to the driver process. Transport failures and a
// dead process are retryable (the process is restarted; the pipeline
// re-sends); the driver's own errors keep the class it gave them.
func (p *Process) Export(ctx context.Context, spans []core.Span) error {
	return p.exportWith(ctx, len(spans), func(dst []byte, l wire.Layout) []byte {
		return wire.AppendBatchLayout(dst, spans, l)
	})
}

// Layout reports what the driver's decoder reads beyond the base batch
// layout (ConfigureResponse.span_trace_state and span_tag_keys): the
// pipeline encodes spans for it.
func (p *Process) Layout() wire.Layout {
	if l := p.layout.Load(); l != nil {
		return *l
	}
	return wire.Layout{}
}

// ExportBatch is Export for spans the pipeline encoded as it queued them,
// in layout l: the batch goes into the span ring or the request as it
// lies. Only a batch the driver does not read (it was restarted as another
// build since) is decoded and encoded again.
func (p *Process) ExportBatch(ctx context.Context, runs [][]byte, count int, l wire.Layout) error {
	return p.exportWith(ctx, count, func(dst []byte, reads wire.Layout) []byte {
		start := len(dst)
		for _, r := range runs {
			dst = append(dst, r...)
		}
		if !reads.Reads(l) {
			spans, err := wire.DecodeBatch(nil, slices.Clone(dst[start:]), count, time.Now)
			if err == nil {
				return wire.AppendBatchLayout(dst[:start], spans, reads)
			}
		}
		return dst
	})
}

// exportWith sends one batch of count spans, which fill appends in the
// batch layout, for a decoder that reads the layout it is given.
func (p *Process) exportWith(ctx context.Context, count int, fill func(dst []byte, l wire.Layout) []byte) error {
	in, err := p.current(ctx)
	if err != nil {
		return err
	}
	resp, err := p.export(ctx, in, count, fill)
	if driverpb.Unreachable(err) {
		// The connection or the process is gone: replace it.
		in.markFailed()
		return core.Retryable(fmt.Errorf("driver %q is unreachable: %s", p.spec.Name, status.Convert(err).Message()))
	}
	err = driverpb.ExportError(resp, err)
	if err == nil || core.AsPartialRejection(err) != nil {
		return err
	}
	return fmt.Errorf("driver %q: %w", p.spec.Name, err)
}

// export sends one batch: in the span ring when the driver took it and
// the batch fits, else inside the request.
func (p *Process) export(ctx context.Context, in *instance, count int, fill func([]byte, wire.Layout) []byte) (*driverpb.ExportResponse, error) {
	req := &driverpb.ExportRequest{BatchId: core.BatchID(ctx), SpanCount: uint32(count)}
	if p.useRing(in) {
		defer p.ringUsers.Done()
		if reg, ok := p.ring.put(count, func(dst []byte) []byte { return fill(dst, in.layout) }); ok {
			req.RingOffset, req.RingLength, req.RingSeq = uint64(reg.Offset), uint32(reg.Length), reg.Seq
			// The region is reused only once the RPC has returned:
			// answered, failed, or the process gone.
			defer p.ring.release(reg)
			return in.rpc.Export(ctx, req)
		}
	}
	buf := p.bufs.Get().(*[]byte)
	*buf = fill((*buf)[:0], in.layout)
	req.Spans = *buf
	resp, err := in.rpc.Export(ctx, req)
	if cap(*buf) <= 4<<20 { // don't keep the odd giant batch's buffer
		p.bufs.Put(buf)
	}
	return resp, err
}

// Shutdown stops supervision, lets the driver flush within ctx and stops the
// process. It is idempotent.
func (p *Process) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.shutdown {
		p.mu.Unlock()
		return nil
	}
	p.shutdown = true
	in := p.cur
	if p.ready != nil {
		close(p.ready) // wake Export calls waiting for a restart
		p.ready = nil
	}
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	p.up.Store(false)
	defer p.closeRing(ctx)
	if in == nil {
		return nil
	}
	_, err := in.rpc.Shutdown(ctx, &driverpb.ShutdownRequest{})
	in.kill(err == nil)
	if err != nil {
		return fmt.Errorf("driver %q: shutdown: %s", p.spec.Name, status.Convert(err).Message())
	}
	return nil
}

// supervise watches the live process and replaces it when it exits, its
// connection breaks, or it stops answering health checks.
func (p *Process) supervise() {
	defer close(p.done)
	backoff := p.opts.RestartMin
	for {
		p.mu.Lock()
		in := p.cur
		p.mu.Unlock()
		reason := p.watch(in)
		if reason == "" {
			return // stopping
		}
		p.up.Store(false)
		p.mu.Lock()
		p.cur = nil
		p.ready = make(chan struct{})
		p.mu.Unlock()
		waitExited(in.client, 200*time.Millisecond)
		p.log.Error("driver process failed; restarting it", "reason", reason, "last_stderr", strings.TrimSpace(in.tail.String()))
		in.kill(false)

		for {
			ctx, cancel := context.WithTimeout(context.Background(), p.opts.StartTimeout+p.opts.ConfigureTimeout)
			next, _, err := p.launch(ctx)
			cancel()
			if err == nil {
				p.restarts.Add(1)
				p.mu.Lock()
				if p.shutdown {
					p.mu.Unlock()
					next.kill(false)
					return
				}
				p.cur = next
				close(p.ready)
				p.ready = nil
				p.mu.Unlock()
				p.up.Store(true)
				p.log.Warn("driver process restarted", "restarts", p.restarts.Load())
				backoff = p.opts.RestartMin
				break
			}
			p.log.Error("driver restart failed; will retry", "error", err, "retry_in", backoff)
			select {
			case <-p.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, p.opts.RestartMax)
		}
	}
}

// watch blocks until in fails (returning why) or the driver is stopped
// (returning "").
func (p *Process) watch(in *instance) string {
	ping := time.NewTicker(p.opts.PingInterval)
	defer ping.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-p.stop:
			return ""
		case <-in.failed:
			return "the connection to the driver broke"
		case <-poll.C:
			if in.client.Exited() {
				return "the driver process exited"
			}
		case <-ping.C:
			ctx, cancel := context.WithTimeout(context.Background(), p.opts.PingTimeout)
			_, err := healthpb.NewHealthClient(in.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: goplugin.GRPCServiceName})
			cancel()
			if err != nil {
				select {
				case <-p.stop:
					return ""
				default:
				}
				return fmt.Sprintf("the driver did not answer a health check within %s: %v", p.opts.PingTimeout, err)
			}
		}
	}
}

// grpcPlugin is the host half of go-plugin's GRPCPlugin for drivers.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
}

type grpcHandle struct {
	rpc  driverpb.DriverClient
	conn *grpc.ClientConn
}

func (grpcPlugin) GRPCServer(*goplugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the tracehop host does not serve drivers")
}

func (grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &grpcHandle{rpc: driverpb.NewDriverClient(conn), conn: conn}, nil
}

// closeRing unmaps the span ring once no Export writes into it, within
// ctx; past it the ring stays mapped (a few MiB, until tracehop exits)
// rather than be unmapped under a writer.
func (p *Process) closeRing(ctx context.Context) {
	if p.ring == nil {
		return
	}
	done := make(chan struct{})
	go func() { p.ringUsers.Wait(); close(done) }()
	select {
	case <-done:
		p.ring.close()
	case <-ctx.Done():
		p.log.Warn("an Export was still writing into the span ring at the end of the shutdown: it stays mapped")
	}
}

// lowerPriority makes the driver's process group nicer than tracehop by
// Spec.Nice. A failure (a platform without it) is logged, not fatal.
func (p *Process) lowerPriority(cmd *exec.Cmd) {
	nice := DefaultNice
	if p.spec.Nice != nil {
		nice = *p.spec.Nice
	}
	if nice <= 0 || cmd.Process == nil {
		return
	}
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err == nil {
		// The system call answers 20 - nice.
		err = syscall.Setpriority(syscall.PRIO_PGRP, cmd.Process.Pid, min(20-raw+nice, 19))
	}
	if err != nil {
		p.log.Debug("the driver's scheduling priority stays tracehop's", "error", err)
	}
}
