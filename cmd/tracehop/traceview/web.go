package traceview

import (
	"context"
	"embed"
	"encoding/json"
	"net/http"
	"time"
)

// The page is one self-contained file (no CDN, no build step): the trace
// list and a waterfall per trace, drawn by a little plain JavaScript from
// /api/traces.
//
//go:embed web/index.html
var webFiles embed.FS

// Loader reads the spans to show, afresh for each page load, so that new
// traces appear on reload.
type Loader func(ctx context.Context) ([]Span, error)

// Handler serves the trace view for a browser: / is the page, /api/traces
// the n most recent traces that load finds, as JSON.
func Handler(load Loader, n int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		page, _ := webFiles.ReadFile("web/index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Write(page)
	})
	mux.HandleFunc("GET /api/traces", func(w http.ResponseWriter, r *http.Request) {
		spans, err := load(r.Context())
		if err != nil {
			http.Error(w, "tracehop trace view: "+err.Error(), http.StatusBadGateway)
			return
		}
		traces := Group(spans)
		if n > 0 && len(traces) > n {
			traces = traces[len(traces)-n:]
		}
		out := make([]webTrace, 0, len(traces))
		for i := len(traces) - 1; i >= 0; i-- { // most recent first
			out = append(out, toWeb(traces[i]))
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	return mux
}

// webTrace is a trace as the page draws it: spans in waterfall order, times
// in microseconds from the trace's start.
type webTrace struct {
	ID         string    `json:"id"`
	Start      time.Time `json:"start"`
	DurationUs int64     `json:"durationUs"`
	Services   []string  `json:"services"`
	Spans      []webSpan `json:"spans"`
}

type webSpan struct {
	SpanID     string            `json:"spanId"`
	ParentID   string            `json:"parentId,omitempty"`
	Service    string            `json:"service"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind,omitempty"`
	Depth      int               `json:"depth"`
	OffsetUs   int64             `json:"offsetUs"`
	DurationUs int64             `json:"durationUs"`
	Error      bool              `json:"error"`
	Status     string            `json:"status,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
}

func toWeb(t Trace) webTrace {
	wt := webTrace{ID: t.ID, Start: t.Start, DurationUs: t.End.Sub(t.Start).Microseconds()}
	seen := map[string]bool{}
	for _, r := range order(t.Spans) {
		s := r.span
		if !seen[s.Service] {
			seen[s.Service] = true
			wt.Services = append(wt.Services, s.Service)
		}
		wt.Spans = append(wt.Spans, webSpan{
			SpanID: s.SpanID, ParentID: s.ParentID, Service: s.Service, Name: s.Name, Kind: s.Kind, Depth: r.depth,
			OffsetUs: s.Start.Sub(t.Start).Microseconds(), DurationUs: s.Duration.Microseconds(),
			Error: s.Error, Status: s.Status, Tags: s.Tags,
		})
	}
	return wt
}
