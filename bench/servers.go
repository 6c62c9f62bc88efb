package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The harness runs its helper servers as copies of itself, so that each
// has its own process and its own CPU account: `bench upstream ADDR`,
// `bench sink ADDR`, `bench goproxy ADDR UPSTREAM`.

// upstreamBody is the ~100-byte answer of the peers' measurements.
var upstreamBody = []byte("tracehop bench upstream: this body is exactly one hundred bytes long, as in perf-peers.md .........\n")

func serveUpstream(addr string) error {
	srv := &http.Server{
		Addr:        addr,
		IdleTimeout: 120 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"text/plain"}
			h["Content-Length"] = []string{strconv.Itoa(len(upstreamBody))}
			w.Write(upstreamBody)
		}),
	}
	return srv.ListenAndServe()
}

// serveSink is a Zipkin v2 receiver that counts the spans it is sent (proto
// or JSON, decoded from the real wire format) and discards them.
// GET /count answers the total.
func serveSink(addr string) error {
	return (&http.Server{Addr: addr, Handler: sinkHandler()}).ListenAndServe()
}

// sinkHandler is serveSink's handler.
func sinkHandler() http.Handler {
	var spans, batches, bad, otlpSpans atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/spans", func(w http.ResponseWriter, r *http.Request) {
		body, done, err := readBody(r)
		if err != nil {
			return
		}
		defer done()
		n, err := countSpans(r.Header.Get("Content-Type"), body)
		if err != nil {
			bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		spans.Add(int64(n))
		batches.Add(1)
		w.WriteHeader(http.StatusAccepted)
	})
	// OTLP/HTTP protobuf: the spans are counted, not decoded (a
	// ResourceSpans, ScopeSpans, Span walk with protowire).
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		body, done, err := readBody(r)
		if err != nil {
			return
		}
		defer done()
		n, err := countOTLPSpans(body)
		if err != nil {
			bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		otlpSpans.Add(int64(n))
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d %d %d %d\n", spans.Load(), batches.Load(), bad.Load(), otlpSpans.Load())
	})
	return mux
}

// bodies are the receiver's request buffers, kept from batch to batch: it
// shares the cores with the proxies it measures, and io.ReadAll, growing
// a buffer by doubling for every batch of a few hundred KiB, spent about
// 0.26 µs of CPU per span there (allocating, copying, collecting).
var bodies sync.Pool

// readBody reads r's body into a kept buffer when its length is declared
// (the drivers' POSTs declare it); done gives the buffer back.
func readBody(r *http.Request) (body []byte, done func(), err error) {
	const most = 64 << 20
	if r.ContentLength <= 0 || r.ContentLength > most {
		body, err = io.ReadAll(io.LimitReader(r.Body, most))
		return body, func() {}, err
	}
	bp, _ := bodies.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	if int64(cap(*bp)) < r.ContentLength {
		*bp = make([]byte, r.ContentLength)
	}
	body = (*bp)[:r.ContentLength]
	if _, err = io.ReadFull(r.Body, body); err != nil {
		bodies.Put(bp)
		return nil, nil, err
	}
	return body, func() { bodies.Put(bp) }, nil
}

// countOTLPSpans counts the spans of an ExportTraceServiceRequest:
// resource_spans (1) -> scope_spans (2) -> spans (2).
func countOTLPSpans(body []byte) (int, error) {
	n := 0
	err := eachField(body, 1, func(rs []byte) error {
		return eachField(rs, 2, func(ss []byte) error {
			return eachField(ss, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls f with the bytes of every length-delimited field num of
// the message b.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			if err := f(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
	}
	return nil
}

// countSpans counts the spans of a Zipkin v2 payload: a ListOfSpans
// (repeated field 1) in proto, a JSON array otherwise.
func countSpans(contentType string, body []byte) (int, error) {
	if contentType != "application/x-protobuf" {
		var spans []json.RawMessage
		if err := json.Unmarshal(body, &spans); err != nil {
			return 0, err
		}
		return len(spans), nil
	}
	n := 0
	for len(body) > 0 {
		num, typ, l := protowire.ConsumeTag(body)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		body = body[l:]
		l = protowire.ConsumeFieldValue(num, typ, body)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		if num == 1 && typ == protowire.BytesType {
			n++
		}
		body = body[l:]
	}
	return n, nil
}

// serveGoProxy is the peers' "minimal Go httputil.ReverseProxy": Rewrite
// with SetURL and SetXForwarded, a Transport tuned for keep-alive.
func serveGoProxy(addr, upstream string) error {
	target, err := url.Parse("http://" + upstream)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second,
			DisableCompression: true, ForceAttemptHTTP2: false, Proxy: nil,
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return (&http.Server{Addr: addr, Handler: rp}).ListenAndServe()
}

func runHelper(args []string) {
	var err error
	switch {
	case args[0] == "upstream" && len(args) == 2:
		err = serveUpstream(args[1])
	case args[0] == "sink" && len(args) == 2:
		err = serveSink(args[1])
	case args[0] == "goproxy" && len(args) == 3:
		err = serveGoProxy(args[1], args[2])
	default:
		err = fmt.Errorf("unknown helper %q", args)
	}
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
