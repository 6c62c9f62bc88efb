package app

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
)

// maxSamplingBody bounds a PUT /sampling body: a sampling block is a few
// dozen bytes.
const maxSamplingBody = 64 << 10

// samplingReply is what GET, PUT and DELETE /sampling answer: the sampling
// in force, and the remote source's state when there is one.
type samplingReply struct {
	proxy.SamplingState
	RemoteSource *RemoteStatus `json:"remote_source,omitempty"`
}

// withSampling adds GET, PUT and DELETE /sampling to the admin server's
// other endpoints (inner), and puts every request that changes state
// behind admin.token_file when it is set.
func (a *Admin) withSampling(s *proxy.Server, inner http.Handler) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, t *proxy.Tracer) {
		out := samplingReply{SamplingState: t.SamplingState()}
		if f := a.remoteStatus.Load(); f != nil {
			out.RemoteSource = (*f)()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	}
	tracer := func(w http.ResponseWriter) *proxy.Tracer {
		t := s.InForce().Tracer
		if t == nil {
			http.Error(w, "the config has no tracing block: nothing is sampled", http.StatusConflict)
		}
		return t
	}
	mux.HandleFunc("GET /sampling", func(w http.ResponseWriter, _ *http.Request) {
		if t := tracer(w); t != nil {
			reply(w, t)
		}
	})
	mux.HandleFunc("PUT /sampling", func(w http.ResponseWriter, r *http.Request) {
		t := tracer(w)
		if t == nil {
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxSamplingBody+1))
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > maxSamplingBody {
			http.Error(w, "the body is over 64 KiB: a sampling block is a few keys", http.StatusRequestEntityTooLarge)
			return
		}
		block, err := config.ParseSampling("PUT /sampling", body)
		if err == nil {
			err = t.SetSampling(block)
		}
		if err != nil {
			http.Error(w, "sampling refused; the sampling in force stays:\n"+err.Error(), http.StatusUnprocessableEntity)
			return
		}
		a.log.Warn("sampling changed through the admin API (PUT /sampling): in force until DELETE /sampling or the next config reload, which puts the file's back",
			"sampling", block.String(), "peer", r.RemoteAddr)
		reply(w, t)
	})
	mux.HandleFunc("DELETE /sampling", func(w http.ResponseWriter, r *http.Request) {
		t := tracer(w)
		if t == nil {
			return
		}
		if t.ResetSampling() {
			a.log.Info("the sampling set through PUT /sampling is dropped (DELETE /sampling): the config's is in force again", "peer", r.RemoteAddr)
		}
		reply(w, t)
	})
	mux.Handle("/", inner)
	return a.requireToken(s, mux)
}

// requireToken puts requests that change state (any method but GET and
// HEAD: PUT and DELETE /sampling, POST /reload) behind the bearer token in
// the admin.token_file of the config in force, read on each such request
// so that it can be rotated in place. Without a token file they pass: the
// admin address (loopback by default) is then the only guard.
func (a *Admin) requireToken(s *proxy.Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		file := s.InForce().Config.Admin.TokenFile
		if file == "" {
			next.ServeHTTP(w, r)
			return
		}
		raw, err := os.ReadFile(file)
		token := bytes.TrimSpace(raw)
		if err != nil || len(token) == 0 {
			a.log.Error("admin.token_file cannot be read: requests that change state are refused", "file", file, "error", err)
			http.Error(w, "the admin token cannot be read: see tracehop's log", http.StatusServiceUnavailable)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tracehop admin"`)
			http.Error(w, fmt.Sprintf("%s %s needs the admin token: Authorization: Bearer TOKEN (admin.token_file)", r.Method, r.URL.Path), http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
