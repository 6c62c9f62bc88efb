package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
)

// Admin is the admin server: liveness, readiness, metrics, the config in
// force and reloads, on an address of its own (admin.address).
type Admin struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
	// remoteStatus, when set, reports the remote sampling source for GET
	// /sampling (App.remoteStatus).
	remoteStatus atomic.Pointer[func() *RemoteStatus]
}

// ListenAdmin binds the admin server of s to addr (nil, nil for "off");
// Serve starts it. gather is what /metrics serves, reload what POST
// /reload runs (nil: 501, tracehop was not started from a file).
func ListenAdmin(addr string, s *proxy.Server, gather prometheus.Gatherer, reload func(context.Context) error, log *slog.Logger) (*Admin, error) {
	if addr == "off" {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, proxy.ListenError("admin", addr, false, err)
	}
	a := &Admin{ln: ln, log: log}
	a.srv = &http.Server{Handler: a.withSampling(s, adminHandler(s, gather, reload, ln.Addr().String())), ReadHeaderTimeout: 5 * time.Second}
	return a, nil
}

// AdminAddress returns where the admin server of addr listens with its
// port moved by offset (tracehop run -workers: worker i's is at + 1 + i).
// Port 0 (any free port) and "off" stay as they are.
func AdminAddress(addr string, offset int) (string, error) {
	if addr == "off" || offset == 0 {
		return addr, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("the port of %s is not a number", addr)
	}
	if p == 0 {
		return addr, nil
	}
	if p+offset > 65535 {
		return "", fmt.Errorf("port %d + %d is past 65535: lower it (tracehop run -workers N puts its workers' admin servers on the N ports after it)", p, offset)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+offset)), nil
}

// Addr is the bound address.
func (a *Admin) Addr() string { return a.ln.Addr().String() }

// Serve serves in the background until Shutdown or Close.
func (a *Admin) Serve() {
	go func() {
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin server stopped", "address", a.Addr(), "error", err)
		}
	}()
}

// Shutdown stops the admin server once its requests are answered.
func (a *Admin) Shutdown(ctx context.Context) error { return a.srv.Shutdown(ctx) }

// Close stops the admin server at once; nil-safe, for a start that failed.
func (a *Admin) Close() error {
	if a == nil {
		return nil
	}
	a.ln.Close()
	return a.srv.Close()
}

func adminHandler(s *proxy.Server, gather prometheus.Gatherer, reload func(context.Context) error, at string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(AdminHeader, "tracehop")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if s.Draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		if over, why := s.Overloaded(); over {
			if !s.ReadyWhenOverloaded() {
				http.Error(w, "overloaded: "+why, http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready (overloaded: "+why+")")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{
		// Exemplars (a sampled request's trace_id on the duration
		// histogram) are served to scrapers that ask for OpenMetrics; the
		// plain text format stays as it was.
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		in := s.InForce()
		v := RedactedConfig(in.Config, in.SecretKeys...)
		if m, ok := v.(map[string]any); ok {
			m["Hash"] = in.Hash // as tracehop_config_info says it
			// Where this admin server is, which admin.address need not
			// say: a worker of tracehop run -workers is on its port + 1 + i.
			m["AdminListening"] = at
			if in.Tracer != nil {
				// The sampling in force: a PUT /sampling or the remote
				// strategy may have replaced the file's.
				m["SamplingInForce"] = in.Tracer.SamplingState()
			}
		}
		w.Header().Set("X-Tracehop-Config-Hash", in.Hash)
		enc.Encode(v)
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		if reload == nil {
			http.Error(w, "this tracehop was not started from a config file: nothing to reload", http.StatusNotImplemented)
			return
		}
		if err := reload(r.Context()); err != nil {
			var handed Accepted
			if errors.As(err, &handed) {
				w.WriteHeader(http.StatusAccepted)
				fmt.Fprintln(w, string(handed))
				return
			}
			http.Error(w, "reload failed; the running config stays in force:\n"+err.Error(), http.StatusUnprocessableEntity)
			return
		}
		fmt.Fprintf(w, "reloaded: config %s in force\n", s.ConfigHash())
	})
	return mux
}

// AdminHeader marks the answers of tracehop's admin servers' /healthz, so
// that tracehop validate can tell a running tracehop from another program
// on the same address.
const AdminHeader = "X-Tracehop-Admin"

// Redacted is printed instead of a secret.
const Redacted = "[REDACTED]"

// secretKey matches config keys whose values are secrets.
var secretKey = regexp.MustCompile(`(?i)(secret|token|password|passwd|api[_-]?key|auth|credential|private|cookie)`)

// RedactedConfig returns cfg as plain data with every secret replaced: values of
// secret-looking keys in drivers' configs, every value of a driver's
// headers (they carry gateway credentials) and of its environment, and the
// keys each driver declared secret (secretKeys[i] for the i-th driver:
// core.Capabilities.SecretKeys, its sdk.Secret fields), whatever their names.
func RedactedConfig(cfg *config.Config, secretKeys ...[]string) any {
	raw, _ := json.Marshal(cfg)
	var v map[string]any
	json.Unmarshal(raw, &v)
	tracing, _ := v["Tracing"].(map[string]any)
	if tracing == nil {
		return v
	}
	var drivers []any
	if d, ok := tracing["Driver"].(map[string]any); ok {
		drivers = append(drivers, d)
	}
	if ds, ok := tracing["Drivers"].([]any); ok {
		drivers = append(drivers, ds...)
	}
	for i, d := range drivers {
		dm, _ := d.(map[string]any)
		if env, ok := dm["Env"].(map[string]any); ok {
			for k := range env {
				env[k] = Redacted
			}
		}
		redactMap(dm["Config"], false)
		if i < len(secretKeys) {
			for _, key := range secretKeys[i] {
				redactPath(dm["Config"], strings.Split(key, "."))
			}
		}
	}
	return v
}

// redactPath replaces the value at path ("*" for every key of a map).
func redactPath(v any, path []string) {
	m, ok := v.(map[string]any)
	if !ok || len(path) == 0 {
		return
	}
	for k, e := range m {
		if path[0] != "*" && k != path[0] {
			continue
		}
		if len(path) == 1 {
			m[k] = Redacted
		} else {
			redactPath(e, path[1:])
		}
	}
}

func redactMap(v any, all bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch {
			case all || secretKey.MatchString(k):
				if _, nested := e.(map[string]any); nested {
					redactMap(e, true)
				} else {
					x[k] = Redacted
				}
			case k == "headers":
				redactMap(e, true)
			default:
				redactMap(e, false)
			}
		}
	case []any:
		for _, e := range x {
			redactMap(e, all)
		}
	}
}
