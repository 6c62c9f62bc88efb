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
//
// Two query parameters make a request slow or failing, for the tail-sampling
// runs (make k8s-tiers): ?sleep=DURATION (a Go duration, at most 10s) waits
// that long and ?status=CODE (400-599) answers with that code. The service
// at the end of a chain (no -next) acts on them; the others forward the
// query to -next unchanged, so the slowness or the failure starts at the
// deepest hop and every hop above it sees it, as in a real call chain.
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
	"strconv"
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
		sleep, status, err := faults(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if *next != "" {
			url := *next
			if r.URL.RawQuery != "" {
				url += "?" + r.URL.RawQuery
			}
			req, _ := http.NewRequestWithContext(r.Context(), "GET", url, nil)
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
		} else {
			select {
			case <-time.After(sleep):
			case <-r.Context().Done():
				return
			}
			if status != 0 {
				http.Error(w, fmt.Sprintf("failing as asked (status=%d)", status), status)
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

// faults reads the query parameters that make a request slow (sleep) or
// failing (status).
func faults(r *http.Request) (sleep time.Duration, status int, err error) {
	q := r.URL.Query()
	if v := q.Get("sleep"); v != "" {
		if sleep, err = time.ParseDuration(v); err != nil || sleep < 0 || sleep > 10*time.Second {
			return 0, 0, fmt.Errorf("sleep: want a duration between 0 and 10s, got %q", v)
		}
	}
	if v := q.Get("status"); v != "" {
		if status, err = strconv.Atoi(v); err != nil || status < 400 || status > 599 {
			return 0, 0, fmt.Errorf("status: want an HTTP status between 400 and 599, got %q", v)
		}
	}
	return sleep, status, nil
}

// envOr returns the environment variable key, or def when it is unset or empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
