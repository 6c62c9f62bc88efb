package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/core/wire/driverpb"
)

var decoders = sync.Pool{New: func() any { return new(wire.Decoder) }}

// ProcessEnv is implemented by drivers whose vendor library reads
// environment variables while the program initializes, before main runs
// (dd-trace-go does). Serve makes the process's environment match: when a
// variable differs, it re-executes the program (same pid, same pipes) with
// them set. An empty value means the variable must not be set. The values
// win over anything tracehop's config passed.
type ProcessEnv interface {
	ProcessEnv() map[string]string
}

// Serve runs d as a tracehop driver plugin and returns when the host is done
// with it. It is meant to be the only call in a driver's main. Run by hand
// (not by tracehop), the program says so and exits.
func Serve(d Driver) {
	if os.Getenv(wire.InfoEnv) == "1" {
		// tracehop version -drivers asks what this driver is.
		json.NewEncoder(os.Stdout).Encode(wire.DriverInfo{Version: core.Version, Protocol: wire.ProtocolVersion, Go: runtime.Version()})
		os.Exit(0)
	}
	if os.Getenv(wire.MagicCookieKey) != wire.MagicCookieValue {
		// Run by hand: go-plugin's own message names no program.
		name := filepath.Base(os.Args[0])
		fmt.Fprintf(os.Stderr, "%s is a tracehop driver: tracehop starts it, it is not run by hand.\n"+
			"Name it in tracehop's config (tracing.driver: {name: %s}, found in tracing.plugin_dir, beside tracehop, or in $PATH;\n"+
			"or tracing.driver.path: /path/to/%s) and run tracehop run -c CONFIG.\n"+
			"tracehop drivers lists the drivers tracehop finds; tracehop validate -c CONFIG starts and checks them.\n",
			name, strings.TrimPrefix(name, "tracehop-driver-"), name)
		os.Exit(1)
	}
	slog.SetDefault(slog.New(newLogHandler(os.Stderr)))
	if pe, ok := d.(ProcessEnv); ok {
		reexecWith(pe.ProcessEnv())
	}
	srv := &server{driver: d, stderr: os.Stderr, stopProfile: startProfile()}
	if ring, err := mapRing(); err != nil {
		// Spans then come inside each Export: slower, not wrong.
		slog.Warn("the shared-memory span ring cannot be used; spans come over gRPC", "error", err)
	} else {
		srv.ring = ring
	}
	// Standard error is a pipe to the host: once the host is gone, a write
	// there would kill the process (SIGPIPE on descriptor 2) before it
	// flushed. Notified (to nobody), a write fails with EPIPE instead; not
	// ignored, which the driver's own children would inherit.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	go srv.exitWithHost(os.Getppid(), time.Second)
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: goplugin.HandshakeConfig{
			ProtocolVersion:  wire.ProtocolVersion,
			MagicCookieKey:   wire.MagicCookieKey,
			MagicCookieValue: wire.MagicCookieValue,
		},
		Plugins: goplugin.PluginSet{wire.PluginName: &grpcPlugin{server: srv}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return goplugin.DefaultGRPCServer(append(opts, driverpb.ServerOptions()...))
		},
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr, JSONFormat: true}),
	})
	// Serving ended: the host stopped it, or is gone and cannot remove
	// the socket's directory itself.
	removeHostSockDir(os.Getenv(goplugin.EnvUnixSocketDir))
}

type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	server *server
}

func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	driverpb.RegisterDriverServer(s, p.server)
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *goplugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("a driver does not dial the host")
}

// server adapts a Driver to the wire protocol: it converts batches, keeps the
// lifecycle honest and sends errors as driverpb maps them to statuses.
type server struct {
	driverpb.UnimplementedDriverServer
	driver Driver
	// stderr is the process's real standard error. go-plugin swaps
	// os.Stderr for a pipe it streams to the host, and that stream loses
	// the last words of a process that crashes; fd 2 goes straight to the
	// host's log and into its crash reports, so Configure puts it back.
	stderr      *os.File
	restoreOnce sync.Once
	stopProfile func() // ends the CPU profile at Shutdown

	// ring is the host's span ring, mapped read-only (nil: none offered,
	// or it could not be mapped); useRing says the driver took it.
	ring    []byte
	useRing bool

	mu         sync.Mutex
	configured bool
	stopped    bool
}

// noRingEnv, set to 1, makes the SDK ignore the span ring the host offers,
// as an SDK older than the ring does: the tests of the gRPC fallback use it.
const noRingEnv = "TRACEHOP_SDK_NO_SPAN_RING"

// recovered turns a driver's panic into a permanent error for that one call,
// so that one poisonous batch cannot crash-loop the process.
func recovered(method string, err *error) {
	if r := recover(); r != nil {
		slog.Error("driver panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = driverpb.ErrorStatus(core.Permanent(fmt.Errorf("driver panicked in %s: %v", method, r)))
	}
}

func (s *server) Configure(ctx context.Context, req *driverpb.ConfigureRequest) (_ *driverpb.ConfigureResponse, err error) {
	defer recovered("Configure", &err)
	if s.stderr != nil {
		s.restoreOnce.Do(func() { os.Stderr = s.stderr })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configured {
		return nil, driverpb.ErrorStatus(core.Permanent(errors.New("Configure called twice")))
	}
	caps, err := s.driver.Configure(ctx, req.ConfigJson, driverpb.HostInfoFromWire(req.Host))
	if err != nil {
		// With the keys of a ConfigError, so that tracehop can say where
		// in its YAML each problem is.
		return nil, driverpb.ConfigureStatus(err)
	}
	s.configured = true
	decodedSecrets.Lock()
	for _, k := range decodedSecrets.keys {
		if !slices.Contains(caps.SecretKeys, k) {
			caps.SecretKeys = append(caps.SecretKeys, k)
		}
	}
	decodedSecrets.Unlock()
	// The host offers a ring of this size: take it if it is the one mapped.
	s.useRing = req.SpanRingBytes > 0 && req.SpanRingBytes == uint64(len(s.ring))
	// The layout the SDK's decoder (wire.Decoder) reads: trace states, and
	// every well-known tag key as its number.
	return &driverpb.ConfigureResponse{Capabilities: driverpb.CapabilitiesToWire(caps), SpanRing: s.useRing, SpanTraceState: wire.Full.TraceState, SpanTagKeys: uint32(wire.Full.TagKeys)}, nil
}

func (s *server) Export(ctx context.Context, req *driverpb.ExportRequest) (_ *driverpb.ExportResponse, err error) {
	defer recovered("Export", &err)
	s.mu.Lock()
	configured, stopped := s.configured, s.stopped
	s.mu.Unlock()
	if !configured || stopped {
		return nil, driverpb.ErrorStatus(core.Permanent(errors.New("Export outside Configure..Shutdown")))
	}
	// Spans are valid only during Export (core.Driver), so their memory
	// serves the next batch.
	dec := decoders.Get().(*wire.Decoder)
	batch := req.Spans
	var reg wire.RingRegion
	defer func() {
		// A batch in the span ring aliases memory mapped for the
		// process's life, which the garbage collector neither frees nor
		// needs to be let go of: clearing the decoder's memory (a batch of
		// 1,024 spans is about 900 KiB of span and tag headers) is then
		// work for nothing. A batch inside the request lies in the heap:
		// let it go.
		if reg.Seq == 0 {
			dec.Release()
		}
		decoders.Put(dec)
	}()
	if req.RingSeq != 0 {
		if !s.useRing {
			return nil, driverpb.ErrorStatus(core.Permanent(errors.New("an Export names the span ring, which this driver did not take at Configure")))
		}
		reg = wire.RingRegion{Offset: int(req.RingOffset), Length: int(req.RingLength), Count: int(req.SpanCount), Seq: req.RingSeq}
		if req.RingOffset > uint64(len(s.ring)) || req.RingLength > uint32(len(s.ring)) {
			reg.Offset, reg.Length = -1, -1 // out of range, whatever the platform's int
		}
		var err error
		if batch, err = wire.RingBatch(s.ring, reg); err != nil {
			return nil, driverpb.ErrorStatus(core.Permanent(err))
		}
	}
	spans, err := dec.Decode(batch, int(req.SpanCount), time.Now)
	if err != nil {
		return nil, driverpb.ErrorStatus(core.Permanent(err))
	}
	err = s.driver.Export(core.WithBatchID(ctx, req.BatchId), spans)
	if req.RingSeq != 0 && wire.RingSeqAgain(s.ring, reg.Offset) != reg.Seq {
		// The host reused the region while the driver read it (it had
		// given up on this Export): what the driver sent may be torn.
		slog.Error("the span ring region was rewritten during Export (it outlived its deadline): the batch is reported failed", "batch", req.BatchId)
		return nil, driverpb.ErrorStatus(core.Permanent(fmt.Errorf("%w: rewritten during Export", wire.ErrRingRegion)))
	}
	return driverpb.ExportResult(err, len(spans))
}

func (s *server) Shutdown(ctx context.Context, _ *driverpb.ShutdownRequest) (_ *driverpb.ShutdownResponse, err error) {
	defer recovered("Shutdown", &err)
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	defer s.stopProfile()
	if err := s.driver.Shutdown(ctx); err != nil {
		return nil, driverpb.ErrorStatus(err)
	}
	return &driverpb.ShutdownResponse{}, nil
}

// exitWithHost ends the process once tracehop, its parent, is gone. A host
// that stops cleanly shuts its drivers down; one that is SIGKILLed (the OOM
// killer, a forced pod deletion) cannot, and its drivers would otherwise
// live on, orphaned, for as long as the machine runs. The driver gets a
// moment to flush what it buffers.
func (s *server) exitWithHost(parent int, every time.Duration) {
	for os.Getppid() == parent {
		time.Sleep(every)
	}
	removeHostSockDir(os.Getenv(goplugin.EnvUnixSocketDir))
	slog.Warn("tracehop, this driver's host, is gone: shutting down", "host_pid", parent)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Shutdown(ctx, &driverpb.ShutdownRequest{})
	os.Exit(0)
}

// removeHostSockDir removes the directory of this driver's socket, which
// its host made and removes once the driver is gone; a host that was
// killed cannot, and each of its deaths would leave one more in the
// temporary directory. Only a directory the host names as its own
// (tracehop-driver-*), only the sockets in it, and the directory only if
// nothing else is.
func removeHostSockDir(dir string) {
	if dir == "" || !strings.HasPrefix(filepath.Base(dir), "tracehop-driver-") {
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Type()&os.ModeSocket != 0 {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	os.Remove(dir)
}

// ProfileEnv names the variable that makes a driver write a CPU profile of
// its whole run, from start to Shutdown, to the file it names: set it in
// the driver's env (tracing.driver.env) to see where a driver's time goes
// (go tool pprof). `make bench -profile` uses it.
const ProfileEnv = "TRACEHOP_DRIVER_CPUPROFILE"

func startProfile() func() {
	path := os.Getenv(ProfileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		slog.Warn("no CPU profile", "variable", ProfileEnv, "error", err)
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}
}

// reexecWith re-executes the program with want applied to its environment,
// unless the environment already matches (as it does after the re-exec).
func reexecWith(want map[string]string) {
	matches := true
	for k, v := range want {
		cur, set := os.LookupEnv(k)
		if v == "" && set || v != "" && cur != v {
			matches = false
		}
	}
	if matches {
		return
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := want[k]; !ours {
			env = append(env, kv)
		}
	}
	for k, v := range want {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, env)
	}
	slog.Warn("could not re-execute with the environment the driver needs; going on without it", "error", err)
}
