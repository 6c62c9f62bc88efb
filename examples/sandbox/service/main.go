// Command service is the sandbox's demo application, run as service1 and
// service2 behind tracehop sidecars like the services of Envoy's
// jaeger-tracing sandbox. GET /trace/N answers "Hello from behind tracehop
// (service N)"; with -next set, it first calls the next service through its
// sidecar's egress listener, forwarding the incoming trace headers as
// -propagate says:
//
//	all         every trace header of every format tracehop writes (default)
//	false       none: the seed's experiment, which splits the trace in two
//	request-id  only x-request-id: tracehop's linking joins the trace anyway
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// traceHeaders are the headers an application forwards so that tracing
// works with any tracehop driver.
var traceHeaders = []string{
	"x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
	"traceparent", "tracestate", "x-datadog-trace-id", "x-datadog-parent-id", "x-datadog-sampling-priority",
	"x-datadog-origin", "x-datadog-tags", "ot-tracer-traceid", "ot-tracer-spanid", "ot-tracer-sampled",
	"baggage",
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	name := flag.String("name", "1", "the service's number, as in /trace/N")
	next := flag.String("next", "", "URL of the next service, through the sidecar's egress listener (e.g. http://127.0.0.1:9000/trace/2); empty: answer directly")
	propagate := flag.String("propagate", envOr("PROPAGATE", "all"), "which incoming headers to forward to -next: all, false or request-id (default from $PROPAGATE, as the Kubernetes sandbox sets it from a ConfigMap)")
	flag.Parse()
	switch *propagate {
	case "all", "false", "request-id":
	default:
		fmt.Fprintf(os.Stderr, "service: -propagate must be all, false or request-id, got %q\n", *propagate)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", *name)
	client := &http.Client{Timeout: 10 * time.Second}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /trace/{n}", func(w http.ResponseWriter, r *http.Request) {
		if *next != "" {
			req, _ := http.NewRequestWithContext(r.Context(), "GET", *next, nil)
			for _, h := range traceHeaders {
				if v := r.Header.Get(h); v != "" && (*propagate == "all" || *propagate == "request-id" && h == "x-request-id") {
					req.Header.Set(h, v)
				}
			}
			resp, err := client.Do(req)
			if err != nil {
				log.Error("calling the next service", "url", *next, "error", err)
				http.Error(w, "next service failed: "+err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				http.Error(w, fmt.Sprintf("next service answered %d", resp.StatusCode), http.StatusBadGateway)
				return
			}
		}
		fmt.Fprintf(w, "Hello from behind tracehop (service %s)!\n", *name)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })

	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("serving", "address", *listen, "next", *next, "propagate", *propagate, "forwards", strings.Join(traceHeaders, ","))
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "error", err)
		os.Exit(1)
	}
}

// envOr returns the environment variable key, or def when it is unset or empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
