package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/proxy/config"
)

func TestGoodFull(t *testing.T) {
	t.Setenv("SERVICE2_ADDR", "127.0.0.1:18081")
	cfg, err := config.Load("testdata/good_full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Service != "service1" || len(cfg.Listeners) != 2 || len(cfg.Clusters) != 2 {
		t.Fatalf("decoded %+v", cfg)
	}
	if got := cfg.Clusters[1].Endpoints[0]; got != "127.0.0.1:18081" {
		t.Errorf("${SERVICE2_ADDR:-...} = %q, want the environment's value", got)
	}
	if !cfg.Listeners[1].Trusted() || cfg.Listeners[1].ReadHeaderTimeout != config.DefaultReadHeaderTimeout {
		t.Errorf("listener defaults not applied: %+v", cfg.Listeners[1])
	}
	if *cfg.Listeners[1].Routes[0].Timeout != 15*time.Second || cfg.Clusters[0].ConnectTimeout != time.Second {
		t.Errorf("route/cluster defaults not applied")
	}
	tr := cfg.Tracing
	if tr.Driver.Name != "zipkin" || tr.Driver.Config["timeout"] != "5s" || *tr.Sampling.Random != 12.5 {
		t.Errorf("tracing = %+v", tr)
	}
	if want, _ := filepath.Abs("bin"); !strings.HasSuffix(tr.PluginDir, "bin") || filepath.Clean(tr.PluginDir) != filepath.Join("testdata", "..", "bin") && tr.PluginDir != want {
		t.Errorf("plugin_dir = %q, want it resolved against the config's directory", tr.PluginDir)
	}
	if rh := tr.CustomTags[3].ResponseHeader; rh == nil || rh.Name != "x-cache" || rh.Default != "none" || len(tr.BaggageTags) != 2 {
		t.Errorf("response_header tag %+v, baggage_tags %v", rh, tr.BaggageTags)
	}
	if q := tr.Queue.Pipeline(); q.QueueSize != 4096 || q.BatchSize != 256 || q.BatchDelay != 100*time.Millisecond {
		t.Errorf("queue = %+v", q)
	}
	l := cfg.Listeners[0]
	if l.TrustsBaggage() || !cfg.Listeners[1].TrustsBaggage() || l.MaxConnections != 1000 || l.MaxConnectionAge != time.Hour ||
		l.BufferRequestBody.MaxBytes != 65536 || *l.Routes[1].MaxRequestBodyBytes != 0 {
		t.Errorf("limits of listener 0: %+v", l)
	}
	if o := cfg.Overload; o.MaxConnections != 5000 || o.Ready() || o.Connections() != config.DefaultConnectionsPercent || o.SpanQueuePercent != 90 {
		t.Errorf("overload = %+v", o)
	}
}

// Each testdata/bad_*.yaml states, in its leading "# want: " lines, the
// exact error it must produce.
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad_*.yaml")
	if len(files) < 5 {
		t.Fatalf("found only %d bad configs", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, line := range strings.Split(string(raw), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					want = append(want, w)
				}
			}
			_, err = config.Load(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if got := err.Error(); got != strings.Join(want, "\n") {
				t.Fatalf("error:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
		})
	}
}

func TestEmptyFile(t *testing.T) {
	_, err := config.Parse("empty.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), "empty.yaml: the file is empty") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		raw, _ := os.ReadFile(file)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := config.Parse("fuzz.yaml", raw)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
	})
}

// In a driver's free-form config, an unquoted ${VAR} takes the type of its
// value, a quoted one stays a string.
func TestDriverConfigExpansionTypes(t *testing.T) {
	t.Setenv("TRACEHOP_TEST_PORT", "8360")
	cfg, err := config.Parse("x.yaml", []byte(`tracing:
  driver:
    name: lightstep
    config:
      collector:
        port: ${TRACEHOP_TEST_PORT}
        plaintext: ${TRACEHOP_TEST_UNSET_BOOL:-true}
      access_token: "${TRACEHOP_TEST_PORT}"
`))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Tracing.Driver.Config
	col := c["collector"].(map[string]any)
	if col["port"] != 8360 || col["plaintext"] != true || c["access_token"] != "8360" {
		t.Fatalf("port %#v plaintext %#v token %#v", col["port"], col["plaintext"], c["access_token"])
	}
}

// The admin server exposes the config: it binds to loopback unless told
// otherwise.
func TestAdminDefaultsToLoopback(t *testing.T) {
	cfg, err := config.Parse("x.yaml", []byte("node: {id: a}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.Address != "127.0.0.1:9901" {
		t.Fatalf("default admin address %q, want 127.0.0.1:9901", cfg.Admin.Address)
	}
}
