package driverhost_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/driverhost"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// testDriverBin is a real driver executable (sdk/internal/testdriver), built
// once for the package's tests.
var testDriverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tracehop-plugin-test-")
	if err != nil {
		panic(err)
	}
	testDriverBin = filepath.Join(dir, wire.BinaryPrefix+"fault")
	gocmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gocmd, "build", "-o", testDriverBin, "github.com/tracehop/tracehop/sdk/internal/testdriver").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the test driver: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func jsonConfig(t *testing.T, v map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func start(t *testing.T, spec driverhost.Spec, opts driverhost.Options) (*driverhost.Process, error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = drivertest.TestLogger(t)
	}
	d, err := driverhost.Start(context.Background(), spec, opts)
	if err == nil {
		t.Cleanup(func() { d.Shutdown(context.Background()) })
	}
	return d, err
}

// copyBinary puts the test driver at dir/tracehop-driver-NAME.
func copyBinary(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(testDriverBin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, wire.BinaryPrefix+name)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFindSearchOrder(t *testing.T) {
	dirs := map[string]string{}
	for _, k := range []string{"plugin_dir", "env", "exe", "path1", "path2"} {
		dirs[k] = t.TempDir()
	}
	s := driverhost.Search{
		PluginDir: dirs["plugin_dir"], EnvDir: dirs["env"], ExeDir: dirs["exe"],
		PathList: dirs["path1"] + string(os.PathListSeparator) + dirs["path2"],
	}
	// Put the driver in the last place first, then in each earlier one:
	// every time, the earliest place must win.
	for _, k := range []string{"path2", "path1", "exe", "env", "plugin_dir"} {
		want := copyBinary(t, dirs[k], "fault")
		got, err := s.Find("fault", "")
		if err != nil {
			t.Fatalf("with the driver in %s: %v", k, err)
		}
		if got != want {
			t.Fatalf("with the driver in %s: found %s, want %s", k, got, want)
		}
	}
	// An explicit path wins over the search.
	explicit := copyBinary(t, t.TempDir(), "other")
	if got, err := s.Find("fault", explicit); err != nil || got != explicit {
		t.Fatalf("explicit path: got %s, %v; want %s", got, err, explicit)
	}
	list := s.List()
	if len(list) != 5 || list[0].Source != "tracing.plugin_dir" || list[0].Shadowed || !list[4].Shadowed {
		t.Fatalf("List() = %+v; want 5 entries, the first from tracing.plugin_dir, the others shadowed", list)
	}
}

func TestFindNotFoundListsEveryPlace(t *testing.T) {
	pd, pathDir := t.TempDir(), t.TempDir()
	s := driverhost.Search{PluginDir: pd, ExeDir: "/opt/tracehop/bin", PathList: pathDir}
	_, err := s.Find("zipkin", "")
	if !errors.Is(err, driverhost.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	for _, want := range []string{
		"tracehop-driver-zipkin",
		"tracing.plugin_dir: " + filepath.Join(pd, "tracehop-driver-zipkin") + " (not there)",
		"$TRACEHOP_PLUGIN_DIR: not set",
		"the tracehop executable's directory: /opt/tracehop/bin/tracehop-driver-zipkin (not there)",
		"$PATH: in none of its 1 directories (" + pathDir + ")",
		"make build", "tracing.driver.path",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("not-found error lacks %q:\n%v", want, err)
		}
	}
	if _, err := s.Find("../../etc/passwd", ""); err == nil || !strings.Contains(err.Error(), "not a driver name") {
		t.Errorf("a path-like name must be refused, got %v", err)
	}
	if _, err := s.Find("x", "/nonexistent/tracehop-driver-x"); err == nil || !strings.Contains(err.Error(), "tracing.driver.path") {
		t.Errorf("a missing explicit path must be an error naming tracing.driver.path, got %v", err)
	}
}

func TestStartByNameAndLogs(t *testing.T) {
	dir := t.TempDir()
	copyBinary(t, dir, "fault")
	logs := &logBuffer{}
	d, err := start(t, driverhost.Spec{Name: "fault", Config: []byte(`{}`)},
		driverhost.Options{Search: driverhost.Search{PluginDir: dir}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if caps := d.Capabilities(); !caps.TraceID128 || len(caps.Propagation) != 1 || caps.Propagation[0] != "b3" {
		t.Fatalf("capabilities = %+v", caps)
	}
	if err := d.Export(context.Background(), []core.Span{{SpanID: 1, TraceID: core.TraceID{Low: 1}}}); err != nil {
		t.Fatal(err)
	}
	// The driver's own slog line reaches the host's log, tagged with its name.
	if l := logs.String(); !strings.Contains(l, `msg="testdriver configured"`) || !strings.Contains(l, "driver=fault") || !strings.Contains(l, "driver_name=fault") {
		t.Fatalf("the driver's log line did not reach the host's log:\n%s", l)
	}
}

func TestChecksum(t *testing.T) {
	bin := copyBinary(t, t.TempDir(), "fault")
	b, _ := os.ReadFile(bin)
	sum := sha256.Sum256(b)
	pin := "sha256:" + hex.EncodeToString(sum[:])
	if _, err := start(t, driverhost.Spec{Name: "fault", Path: bin, Checksum: pin}, driverhost.Options{}); err != nil {
		t.Fatalf("the right pin was refused: %v", err)
	}
	// Tamper with the binary: one extra byte (in a new file, since the
	// running driver keeps the old one busy).
	if err := os.WriteFile(bin+".new", append(b, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	_, err := start(t, driverhost.Spec{Name: "fault", Path: bin, Checksum: pin}, driverhost.Options{})
	if err == nil || !strings.Contains(err.Error(), "refusing to run") || !strings.Contains(err.Error(), pin) {
		t.Fatalf("a tampered binary must be refused naming the pin, got %v", err)
	}
	_, err = start(t, driverhost.Spec{Name: "fault", Path: bin, Checksum: "md5:abc"}, driverhost.Options{})
	if err == nil || !strings.Contains(err.Error(), "tracing.driver.checksum") {
		t.Fatalf("a malformed pin must be refused naming the key, got %v", err)
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), wire.BinaryPrefix+"bogus")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRefusesWhatIsNotADriver(t *testing.T) {
	cases := []struct {
		name, script, want string
	}{
		{"prints junk", `echo "hello, I am a shell script"; sleep 1`, "is not a tracehop driver"},
		{"exits at once", `echo "usage: foo" >&2; exit 2`, "is not a tracehop driver"},
		{"never answers", `sleep 30`, "is not a tracehop driver"},
		{"other protocol version", `echo "1|99|tcp|127.0.0.1:1|grpc"; sleep 1`, "speaks another protocol version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := start(t, driverhost.Spec{Name: "bogus", Path: writeScript(t, c.script)}, driverhost.Options{StartTimeout: time.Second})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `driver "bogus"`) {
				t.Fatalf("err = %v, want it to name the driver and say %q", err, c.want)
			}
		})
	}
}

// TestConfigureNotReadyYet: a Configure error the driver marks retryable
// (something it needs is not ready) is not a refused config: Start launches
// the driver again, a few times, and says so if it never gets ready.
func TestConfigureNotReadyYet(t *testing.T) {
	t.Run("ready on the third attempt", func(t *testing.T) {
		count := filepath.Join(t.TempDir(), "configure-calls")
		d, err := start(t, driverhost.Spec{Name: "sealed", Path: testDriverBin, Config: jsonConfig(t, map[string]any{"not_ready": count, "ready_after": 2})}, driverhost.Options{})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		d.Shutdown(context.Background())
		if b, _ := os.ReadFile(count); strings.Count(string(b), "\n") != 3 {
			t.Errorf("Configure called %d times, want 3", strings.Count(string(b), "\n"))
		}
	})
	t.Run("never ready", func(t *testing.T) {
		count := filepath.Join(t.TempDir(), "configure-calls")
		_, err := start(t, driverhost.Spec{Name: "sealed", Path: testDriverBin, Config: jsonConfig(t, map[string]any{"not_ready": count, "ready_after": 1000})}, driverhost.Options{})
		if err == nil {
			t.Fatal("Start succeeded")
		}
		for _, w := range []string{`driver "sealed" could not take its config yet: secret store sealed`, "after 5 attempts", "not refused"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error lacks %q:\n%v", w, err)
			}
		}
		var ce *wire.ConfigError
		if errors.As(err, &ce) {
			t.Errorf("reported as a refused config: %v", err)
		}
		if b, _ := os.ReadFile(count); strings.Count(string(b), "\n") != 5 {
			t.Errorf("Configure called %d times, want 5", strings.Count(string(b), "\n"))
		}
	})
}

func TestConfigureFailures(t *testing.T) {
	cases := []struct {
		name   string
		config map[string]any
		want   []string
	}{
		{"rejected", map[string]any{"reject": "collector_endpoint: must be an http(s) URL, got \"ftp://x\""},
			[]string{`driver "fault" rejected its config: collector_endpoint: must be an http(s) URL, got "ftp://x"`}},
		{"unknown key", map[string]any{"colour": "blue"}, []string{`driver "fault" rejected its config: colour: unknown key`}},
		{"exits", map[string]any{"exit_on_configure": true}, []string{`driver "fault" crashed during Configure`, "cannot reach the moon"}},
		{"panics", map[string]any{"panic_on_configure": true}, []string{`driver "fault"`, "configured to panic"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin, Config: jsonConfig(t, c.config)}, driverhost.Options{})
			if err == nil {
				t.Fatal("Start succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestExplicitEnvironment(t *testing.T) {
	t.Setenv("DD_TRACE_ENABLED", "false") // must not leak into the driver
	t.Setenv("TRACEHOP_TEST_PASSED", "yes")
	t.Setenv("GOMAXPROCS", "7") // nor this: a driver runs one processor unless its config says
	dump := filepath.Join(t.TempDir(), "env")
	_, err := start(t, driverhost.Spec{
		Name: "fault", Path: testDriverBin, Config: jsonConfig(t, map[string]any{"dump_env": dump}),
		Env:     map[string]string{"DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false"},
		PassEnv: []string{"TRACEHOP_TEST_PASSED"},
	}, driverhost.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	env := "\n" + string(b) + "\n"
	// PLUGIN_CLIENT_CERT is how go-plugin hands the driver the host's
	// certificate for AutoMTLS: without it the channel is not mutual TLS.
	for _, want := range []string{"\nDD_INSTRUMENTATION_TELEMETRY_ENABLED=false\n", "\nTRACEHOP_TEST_PASSED=yes\n", "\nPATH=", "\nPLUGIN_CLIENT_CERT=-----BEGIN CERTIFICATE-----", "\nGOMAXPROCS=1\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("driver environment lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(env, "DD_TRACE_ENABLED") {
		t.Errorf("the host's DD_TRACE_ENABLED leaked into the driver's environment")
	}
}

// readRecord returns the span ids the test driver acknowledged.
func readRecord(t *testing.T, path string) map[uint64]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, line := range strings.Fields(string(b)) {
		id, err := strconv.ParseUint(line, 10, 64)
		if err != nil {
			t.Fatalf("corrupt record line %q", line)
		}
		seen[id]++
	}
	return seen
}

func span(id uint64) core.Span {
	return core.Span{
		TraceID: core.TraceID{High: 1, Low: id}, SpanID: core.SpanID(id), Name: "op", Kind: core.KindServer,
		StartUnixNano: time.Now().UnixNano(), Duration: time.Millisecond, Sampled: true,
		Tags: []core.Tag{{Key: "http.method", Value: "GET"}},
	}
}

// SIGKILL the driver again and again while spans stream through the
// pipeline: the host must restart it and re-send what was not acknowledged,
// so that every span arrives.
func TestDriverKilledMidStream(t *testing.T) {
	// Over the span ring, the batches a killed driver did not acknowledge
	// are in the host's pipeline still, and go to the restarted driver, as
	// over gRPC.
	for _, transport := range []string{wire.TransportShm, wire.TransportGRPC} {
		t.Run(transport, func(t *testing.T) {
			record := filepath.Join(t.TempDir(), "record")
			d, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin, Config: jsonConfig(t, map[string]any{"record": record}), Transport: transport},
				driverhost.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Transport(); got != transport {
				t.Fatalf("transport %s, want %s", got, transport)
			}
			p, err := pipeline.New(pipeline.Config{QueueSize: 65536, BatchSize: 256, BatchDelay: 5 * time.Millisecond, RetryInitial: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond},
				[]pipeline.Target{{Name: "fault", Driver: d}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			const total, kills = 30000, 4
			var sent, lastPid int
			for k := range kills {
				pid := d.Pid()
				for pid == 0 || pid == lastPid { // the last kill is not handled yet
					time.Sleep(5 * time.Millisecond)
					pid = d.Pid()
				}
				lastPid = pid
				for ; sent < (k+1)*total/(kills+1); sent++ {
					p.Enqueue(span(uint64(sent + 1)))
					if sent%100 == 0 {
						time.Sleep(time.Millisecond) // a steady stream, not one burst
					}
				}
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatalf("kill %d: %v", pid, err)
				}
			}
			for ; sent < total; sent++ {
				p.Enqueue(span(uint64(sent + 1)))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := p.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			st := p.Stats()[0]
			seen := readRecord(t, record)
			var missing []uint64
			for id := uint64(1); id <= total; id++ {
				if seen[id] == 0 {
					missing = append(missing, id)
				}
			}
			t.Logf("restarts=%d exported=%d dropped=%v export_errors=%d unique_received=%d", st.Restarts, st.Exported, st.Dropped, st.ExportErrors, len(seen))
			if len(missing) > 0 {
				t.Fatalf("%d of %d spans never reached the driver (first: %v)", len(missing), total, missing[:min(10, len(missing))])
			}
			if st.Restarts < kills {
				t.Fatalf("restarts = %d, want at least %d", st.Restarts, kills)
			}
			if st.DroppedTotal() != 0 {
				t.Fatalf("dropped %v, want none", st.Dropped)
			}
		})
	}
}

// A driver that stops answering (here: SIGSTOP) is found by the health
// check and replaced.
func TestDriverHungIsRestarted(t *testing.T) {
	d, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin},
		driverhost.Options{PingInterval: 100 * time.Millisecond, PingTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pid := d.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(20 * time.Second)
	for d.Restarts() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d.Restarts() == 0 {
		t.Fatal("a stopped driver was not restarted")
	}
	if err := d.Export(context.Background(), []core.Span{span(1)}); err != nil {
		t.Fatalf("Export after the restart: %v", err)
	}
}

// Two drivers, one stalled: the other still gets every span, and the
// stalled one only fills (and drops from) its own queue.
func TestFanOutWithStalledDriver(t *testing.T) {
	record := filepath.Join(t.TempDir(), "record")
	good, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin, Config: jsonConfig(t, map[string]any{"record": record})}, driverhost.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stalled, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin, Config: jsonConfig(t, map[string]any{"stall": true})}, driverhost.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(pipeline.Config{QueueSize: 1024, BatchSize: 128, BatchDelay: 5 * time.Millisecond, ExportTimeout: time.Hour},
		[]pipeline.Target{{Name: "good", Driver: good}, {Name: "stalled", Driver: stalled}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Feed a quarter of a queue at a time and wait for the healthy driver
	// to acknowledge it: it must keep up although the other never answers.
	const total, step = 5000, 250
	for sent := 0; sent < total; sent += step {
		for i := sent; i < sent+step; i++ {
			p.Enqueue(span(uint64(i + 1)))
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(readRecord(t, record)) < sent+step && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := len(readRecord(t, record)); n < sent+step {
			t.Fatalf("the healthy driver is stuck at %d spans while the other is stalled", n)
		}
	}
	st := p.Stats()
	if st[0].DroppedTotal() != 0 {
		t.Errorf("the healthy driver dropped %v", st[0].Dropped)
	}
	if st[1].Dropped[pipeline.DropQueueFull] == 0 {
		t.Errorf("the stalled driver's queue never filled: %+v", st[1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	p.Shutdown(ctx) // the stalled driver cannot drain; Shutdown must still return
}

// A driver says what it is without a handshake: its tracehop version and
// protocol version, which tracehop version -drivers compares with its own.
func TestDescribe(t *testing.T) {
	info, err := driverhost.Describe(context.Background(), testDriverBin)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != core.Version || info.Protocol != wire.ProtocolVersion || info.Go == "" {
		t.Fatalf("described as %+v", info)
	}
	if note := driverhost.Compatibility(info); note != "" {
		t.Errorf("a driver of this very build: %q", note)
	}
	other := filepath.Join(t.TempDir(), "tracehop-driver-other")
	if out, err := exec.Command("go", "build", "-o", other, "-ldflags", "-X github.com/tracehop/tracehop/core.Version=v9.9.9",
		"github.com/tracehop/tracehop/sdk/internal/testdriver").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	info, err = driverhost.Describe(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	if note := driverhost.Compatibility(info); info.Version != "v9.9.9" || !strings.Contains(note, "built from tracehop v9.9.9") {
		t.Errorf("a driver from another release: %+v, %q", info, note)
	}
	info.Protocol = wire.ProtocolVersion + 1
	if note := driverhost.Compatibility(info); !strings.Contains(note, fmt.Sprintf("protocol %d, this tracehop speaks %d", wire.ProtocolVersion+1, wire.ProtocolVersion)) || !strings.Contains(note, "install the driver from the same tracehop release") {
		t.Errorf("another protocol: %q", note)
	}
	if _, err := driverhost.Describe(context.Background(), "/bin/true"); err == nil || !strings.Contains(err.Error(), "did not say what it is") {
		t.Errorf("a program that is no driver: %v", err)
	}
}

// A back end's retry delay and its partial rejections cross the process
// boundary: the SDK sends them, the host hands them to the pipeline.
func TestExportCarriesRetryDelayAndPartialRejection(t *testing.T) {
	t.Run("retry_after", func(t *testing.T) {
		d, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin,
			Config: jsonConfig(t, map[string]any{"fail_first": 1, "retry_after": "1500ms"})}, driverhost.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Export(context.Background(), []core.Span{span(1)})
		if err == nil || core.IsPermanent(err) {
			t.Fatalf("Export = %v; want a retryable error", err)
		}
		if got := core.RetryDelay(err); got != 1500*time.Millisecond {
			t.Fatalf("RetryDelay = %s; want the driver's 1.5s", got)
		}
		if err := d.Export(context.Background(), []core.Span{span(1)}); err != nil {
			t.Fatalf("second Export: %v", err)
		}
	})
	t.Run("partial_rejection", func(t *testing.T) {
		record := filepath.Join(t.TempDir(), "record")
		d, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin,
			Config: jsonConfig(t, map[string]any{"record": record, "reject_each": 2})}, driverhost.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		p, err := pipeline.New(pipeline.Config{BatchSize: 5}, []pipeline.Target{{Name: "fault", Driver: d}},
			slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			p.Enqueue(span(uint64(i + 1)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		st := p.Stats()[0]
		if err := p.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if st.Exported != 3 || st.Dropped[pipeline.DropRejected] != 2 || st.ExportErrors != 0 {
			t.Fatalf("stats = %+v; want 3 exported, 2 rejected, no error", st)
		}
		if !strings.Contains(logs.String(), "testdriver: refused 2 spans as told") {
			t.Fatalf("the back end's message is not in the host's log: %s", logs.String())
		}
	})
}

// The transport is negotiated at Configure: a driver whose SDK predates
// the span ring (TRACEHOP_SDK_NO_SPAN_RING makes the SDK answer as such a
// one does) gets its spans over gRPC under auto, and fails to start under
// shm with a message that says what to do; transport: grpc offers no ring.
func TestTransportNegotiation(t *testing.T) {
	old := map[string]string{"TRACEHOP_SDK_NO_SPAN_RING": "1"}
	for _, c := range []struct {
		name, transport string
		env             map[string]string
		want            string // the transport in use, or a start error's words
	}{
		{"auto, current SDK", wire.TransportAuto, nil, wire.TransportShm},
		{"default, current SDK", "", nil, wire.TransportShm},
		{"auto, old SDK", wire.TransportAuto, old, wire.TransportGRPC},
		{"grpc", wire.TransportGRPC, nil, wire.TransportGRPC},
		{"shm, old SDK", wire.TransportShm, old, "set transport: grpc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			record := filepath.Join(t.TempDir(), "record")
			d, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin, Env: c.env, Transport: c.transport,
				Config: jsonConfig(t, map[string]any{"record": record})}, driverhost.Options{})
			if strings.Contains(c.want, " ") {
				if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "protocol") {
					t.Fatalf("start: %v, want an error saying %q and naming the protocol", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Transport(); got != c.want {
				t.Fatalf("transport %s, want %s", got, c.want)
			}
			for i := range 3 {
				if err := d.Export(context.Background(), []core.Span{span(uint64(2*i + 1)), span(uint64(2*i + 2))}); err != nil {
					t.Fatal(err)
				}
			}
			if seen := readRecord(t, record); len(seen) != 6 {
				t.Fatalf("the driver received %d spans of 6: %v", len(seen), seen)
			}
		})
	}
}

// A driver's process runs nicer than tracehop (DefaultNice, or Spec.Nice),
// so that its batch work waits for a core rather than delaying requests.
func TestDriverRunsNicer(t *testing.T) {
	niceOf := func(pid int) int {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Skipf("no /proc here: %v", err) // the priority is Linux's and BSD's; /proc is how this test reads it
		}
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		n, _ := strconv.Atoi(f[16]) // field 19 of stat: nice
		return n
	}
	own := niceOf(os.Getpid())
	zero := 0
	for _, c := range []struct {
		name string
		nice *int
		want int
	}{{"default", nil, min(own+driverhost.DefaultNice, 19)}, {"0", &zero, own}} {
		t.Run(c.name, func(t *testing.T) {
			d, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin, Nice: c.nice}, driverhost.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := niceOf(d.Pid()); got != c.want {
				t.Fatalf("driver nice %d, want %d (tracehop's is %d)", got, c.want, own)
			}
		})
	}
}

// A driver's stderr cannot take tracehop down: JSON lines whose hclog fields
// have other types (go-plugin's parser panicked on {"@message": 1}), huge
// lines and plain text are logged, and the driver works.
func TestHostileStderr(t *testing.T) {
	logs := &logBuffer{}
	hostile := []string{`{"@message": 1}`, `{"@level": [], "@message": "x"}`, `{"@timestamp": 5, "@message": "y"}`,
		`{"@message": "fine", "@level": "warn", "n": 1}`, strings.Repeat("z", 200<<10), "plain text", `{"@message": {"a": 1}}`}
	d, err := start(t, driverhost.Spec{Name: "fault", Path: testDriverBin, Config: jsonConfig(t, map[string]any{"stderr": hostile})},
		driverhost.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Export(context.Background(), []core.Span{span(1)}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "plain text") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, `level=WARN msg=fine`) || !strings.Contains(l, "plain text") {
		t.Fatalf("the driver's lines did not reach the log:\n%.2000s", l)
	}
}

// A killed driver cannot remove its Unix socket: tracehop gives each
// launch a directory for it and removes it once the process is gone, so
// restarts leave nothing behind in the temporary directory.
func TestKilledDriverLeavesNoSocket(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dirs := func() []string {
		m, _ := filepath.Glob(filepath.Join(tmp, "tracehop-driver-*"))
		return m
	}
	d, err := driverhost.Start(context.Background(), driverhost.Spec{Name: "fault", Path: testDriverBin}, driverhost.Options{Logger: drivertest.TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got := dirs(); len(got) != 1 {
		t.Fatalf("socket directories %v, want the live driver's", got)
	}
	socks, _ := filepath.Glob(filepath.Join(dirs()[0], "*"))
	if len(socks) != 1 {
		t.Fatalf("the driver's socket is not in its directory: %v", socks)
	}
	for range 2 {
		pid := d.Pid()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for (d.Pid() == 0 || d.Pid() == pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if err := d.Export(context.Background(), []core.Span{span(1)}); err != nil {
			t.Fatalf("Export after the restart: %v", err)
		}
		if got := dirs(); len(got) != 1 {
			t.Fatalf("after a kill and a restart: socket directories %v, want only the live driver's", got)
		}
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := dirs(); len(got) != 0 {
		t.Fatalf("after Shutdown: %v left behind", got)
	}
}

// A driver that exits when asked takes its process group along: a wrapper
// script's background child does not outlive tracehop's Shutdown.
func TestShutdownTakesTheDriversChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	script := writeScript(t, fmt.Sprintf("sleep 300 &\necho $! > %s\nexec %s", pidFile, testDriverBin))
	d, err := driverhost.Start(context.Background(), driverhost.Spec{Name: "wrapped", Path: script}, driverhost.Options{Logger: drivertest.TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		t.Fatalf("the driver's child %d outlived Shutdown", pid)
	}
}

// alive says whether pid runs (a zombie, killed and not yet reaped, does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
