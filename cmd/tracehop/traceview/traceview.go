// Package traceview draws traces as a waterfall in the terminal: services,
// span names nested under their parents, bars to scale, durations, and
// errors in red. It reads the file driver's Zipkin v2 JSON lines, a Jaeger
// query API or a Zipkin query API, so a trace can be looked at where no UI
// runs.
package traceview

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Span is what the waterfall needs of a span.
type Span struct {
	TraceID, SpanID, ParentID string
	Service, Name, Kind       string
	Start                     time.Time
	Duration                  time.Duration
	Error                     bool
	Status                    string // http.status_code, if any
	// Tags are the span's tags, for the web view's span details.
	Tags map[string]string
}

// zipkinSpan is the Zipkin v2 JSON model.
type zipkinSpan struct {
	TraceID       string                       `json:"traceId"`
	ID            string                       `json:"id"`
	ParentID      string                       `json:"parentId"`
	Name          string                       `json:"name"`
	Kind          string                       `json:"kind"`
	Timestamp     int64                        `json:"timestamp"`
	Duration      int64                        `json:"duration"`
	LocalEndpoint struct{ ServiceName string } `json:"localEndpoint"`
	Tags          map[string]string            `json:"tags"`
}

func (z *zipkinSpan) span() Span {
	_, isErr := z.Tags["error"]
	return Span{
		TraceID: padID(z.TraceID), SpanID: z.ID, ParentID: z.ParentID,
		Service: z.LocalEndpoint.ServiceName, Name: z.Name, Kind: strings.ToLower(z.Kind),
		Start: time.UnixMicro(z.Timestamp), Duration: time.Duration(z.Duration) * time.Microsecond,
		Error: isErr, Status: z.Tags["http.status_code"], Tags: z.Tags,
	}
}

// padID writes 64-bit trace ids as 32 hex digits, so that 64- and 128-bit
// forms of one id compare equal.
func padID(id string) string {
	if len(id) < 32 {
		return strings.Repeat("0", 32-len(id)) + id
	}
	return id
}

// ReadZipkin reads Zipkin v2 JSON: one span per line (the file driver's
// format) or JSON arrays of spans (or of traces).
func ReadZipkin(r io.Reader) ([]Span, error) {
	var out []Span
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var zs []zipkinSpan
		var err error
		switch line[0] {
		case '{':
			var z zipkinSpan
			err = json.Unmarshal(line, &z)
			zs = append(zs, z)
		case '[':
			if err = json.Unmarshal(line, &zs); err != nil {
				var traces [][]zipkinSpan
				if json.Unmarshal(line, &traces) == nil {
					err = nil
					zs = slices.Concat(traces...)
				}
			}
		default:
			err = fmt.Errorf("not JSON")
		}
		if err != nil {
			return out, fmt.Errorf("line %d: %w", n, err)
		}
		for i := range zs {
			out = append(out, zs[i].span())
		}
	}
	return out, sc.Err()
}

// FetchJaeger reads traces from a Jaeger query API (such as
// http://127.0.0.1:16686): the trace with traceID, or the n most recent
// traces of service.
func FetchJaeger(ctx context.Context, base, service, traceID string, n int) ([]Span, error) {
	base = strings.TrimSuffix(base, "/")
	var u string
	switch {
	case traceID != "":
		u = base + "/api/traces/" + url.PathEscape(traceID)
	case service != "":
		u = fmt.Sprintf("%s/api/traces?service=%s&limit=%d&lookback=1h", base, url.QueryEscape(service), n)
	default:
		var services struct{ Data []string }
		if err := getJSON(ctx, base+"/api/services", &services); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("give -service (Jaeger knows: %s) or -trace", strings.Join(services.Data, ", "))
	}
	var resp struct {
		Data []struct {
			Spans []struct {
				TraceID       string `json:"traceID"`
				SpanID        string `json:"spanID"`
				OperationName string `json:"operationName"`
				References    []struct {
					RefType string `json:"refType"`
					SpanID  string `json:"spanID"`
				} `json:"references"`
				StartTime int64  `json:"startTime"`
				Duration  int64  `json:"duration"`
				ProcessID string `json:"processID"`
				Tags      []struct {
					Key   string `json:"key"`
					Value any    `json:"value"`
				} `json:"tags"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := getJSON(ctx, u, &resp); err != nil {
		return nil, err
	}
	var out []Span
	for _, tr := range resp.Data {
		for _, js := range tr.Spans {
			s := Span{
				TraceID: padID(js.TraceID), SpanID: js.SpanID, Name: js.OperationName,
				Service: tr.Processes[js.ProcessID].ServiceName,
				Start:   time.UnixMicro(js.StartTime), Duration: time.Duration(js.Duration) * time.Microsecond,
			}
			for _, r := range js.References {
				if r.RefType == "CHILD_OF" {
					s.ParentID = r.SpanID
				}
			}
			s.Tags = make(map[string]string, len(js.Tags))
			for _, t := range js.Tags {
				v := fmt.Sprint(t.Value)
				s.Tags[t.Key] = v
				switch t.Key {
				case "error":
					s.Error = v == "true"
				case "otel.status_code":
					s.Error = s.Error || v == "ERROR"
				case "span.kind":
					s.Kind = v
				case "http.status_code", "http.response.status_code":
					s.Status = v
				case "dd.span.Resource":
					// Datadog names spans by operation (http.request); the
					// resource says which one.
					s.Name = v
				}
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// FetchZipkin reads traces from a Zipkin query API (such as
// http://127.0.0.1:9411).
func FetchZipkin(ctx context.Context, base, service, traceID string, n int) ([]Span, error) {
	base = strings.TrimSuffix(base, "/")
	var traces [][]zipkinSpan
	var err error
	switch {
	case traceID != "":
		var one []zipkinSpan
		err = getJSON(ctx, base+"/api/v2/trace/"+url.PathEscape(traceID), &one)
		traces = [][]zipkinSpan{one}
	case service != "":
		err = getJSON(ctx, fmt.Sprintf("%s/api/v2/traces?serviceName=%s&limit=%d", base, url.QueryEscape(service), n), &traces)
	default:
		return nil, fmt.Errorf("give -service or -trace")
	}
	var out []Span
	for _, tr := range traces {
		for i := range tr {
			out = append(out, tr[i].span())
		}
	}
	return out, err
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// Trace is the spans of one trace, ordered for display.
type Trace struct {
	ID    string
	Spans []Span
	Start time.Time
	End   time.Time
}

// Group sorts spans into traces, most recent last.
func Group(spans []Span) []Trace {
	byID := map[string]*Trace{}
	var order []string
	for _, s := range spans {
		t, ok := byID[s.TraceID]
		if !ok {
			t = &Trace{ID: s.TraceID, Start: s.Start, End: s.Start.Add(s.Duration)}
			byID[s.TraceID] = t
			order = append(order, s.TraceID)
		}
		t.Spans = append(t.Spans, s)
		if s.Start.Before(t.Start) {
			t.Start = s.Start
		}
		if e := s.Start.Add(s.Duration); e.After(t.End) {
			t.End = e
		}
	}
	out := make([]Trace, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	slices.SortStableFunc(out, func(a, b Trace) int { return a.Start.Compare(b.Start) })
	return out
}

// Options shape the picture.
type Options struct {
	// Width is the width of the whole line in columns (default 100).
	Width int
	Color bool
}

const (
	red   = "\x1b[31m"
	bold  = "\x1b[1m"
	dim   = "\x1b[2m"
	reset = "\x1b[0m"
)

var serviceColors = []string{"\x1b[36m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[33m", "\x1b[96m"}

type row struct {
	span  Span
	depth int
}

// order returns the trace's spans depth first, children by start time;
// spans whose parent is missing are roots.
func order(spans []Span) []row {
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	children := map[string][]Span{}
	var roots []Span
	for _, s := range spans {
		if s.ParentID == "" || !ids[s.ParentID] || s.ParentID == s.SpanID {
			roots = append(roots, s)
		} else {
			children[s.ParentID] = append(children[s.ParentID], s)
		}
	}
	byStart := func(a, b Span) int { return cmp.Or(a.Start.Compare(b.Start), strings.Compare(a.SpanID, b.SpanID)) }
	var out []row
	seen := map[string]bool{}
	var walk func(s Span, depth int)
	walk = func(s Span, depth int) {
		key := s.SpanID + "/" + s.Kind
		if seen[key] {
			return
		}
		seen[key] = true
		out = append(out, row{s, depth})
		kids := children[s.SpanID]
		slices.SortFunc(kids, byStart)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	slices.SortFunc(roots, byStart)
	for _, r := range roots {
		walk(r, 0)
	}
	return out
}

// Render draws each trace as a waterfall.
func Render(w io.Writer, traces []Trace, opts Options) {
	if opts.Width <= 0 {
		opts.Width = 100
	}
	paint := func(code, s string) string {
		if !opts.Color {
			return s
		}
		return code + s + reset
	}
	colorOf := map[string]string{}
	for i, tr := range traces {
		if i > 0 {
			fmt.Fprintln(w)
		}
		total := tr.End.Sub(tr.Start)
		services := map[string]bool{}
		for _, s := range tr.Spans {
			services[s.Service] = true
			if _, ok := colorOf[s.Service]; !ok {
				colorOf[s.Service] = serviceColors[len(colorOf)%len(serviceColors)]
			}
		}
		errs := 0
		for _, s := range tr.Spans {
			if s.Error {
				errs++
			}
		}
		head := fmt.Sprintf("trace %s  %d spans, %d services, %s", tr.ID, len(tr.Spans), len(services), fmtDur(total))
		if errs > 0 {
			head += paint(red, fmt.Sprintf(", %d errors", errs))
		}
		fmt.Fprintln(w, paint(bold, head))

		const labelW, tailW = 44, 14
		barW := max(opts.Width-labelW-tailW-2, 10)
		fmt.Fprintf(w, "%s%s\n", pad("", labelW+1), paint(dim, axis(barW, total)))
		for _, r := range order(tr.Spans) {
			s := r.span
			label := strings.Repeat("  ", r.depth) + s.Service + " " + paint(dim, s.Name)
			plain := strings.Repeat("  ", r.depth) + s.Service + " " + s.Name
			if utf8.RuneCountInString(plain) > labelW {
				cut := labelW - 1
				plain = truncate(plain, cut) + "…"
				label = plain
			}
			offset, length := 0, barW
			if total > 0 {
				offset = int(float64(s.Start.Sub(tr.Start)) / float64(total) * float64(barW))
				length = int(float64(s.Duration)/float64(total)*float64(barW) + 0.5)
			}
			offset = min(max(offset, 0), barW-1)
			length = min(max(length, 1), barW-offset)
			color := colorOf[s.Service]
			tail := fmtDur(s.Duration)
			if s.Status != "" {
				tail += " " + s.Status
			}
			if s.Error {
				color = red
				tail += " ✗"
			}
			bar := strings.Repeat(" ", offset) + paint(color, strings.Repeat("█", length)) + strings.Repeat(" ", barW-offset-length)
			fmt.Fprintf(w, "%s%s %s %s\n", label, pad("", labelW-utf8.RuneCountInString(plain)), bar, paintIf(s.Error, opts.Color, red, tail))
		}
	}
}

func paintIf(cond, color bool, code, s string) string {
	if cond && color {
		return code + s + reset
	}
	return s
}

func axis(width int, total time.Duration) string {
	left, mid, right := []rune("0"), []rune(fmtDur(total/2)), []rune(fmtDur(total))
	line := []rune(strings.Repeat("·", width))
	put := func(pos int, s []rune) {
		for i, r := range s {
			if pos+i >= 0 && pos+i < len(line) {
				line[pos+i] = r
			}
		}
	}
	put(0, left)
	if midAt := width/2 - len(mid)/2; midAt > len(left)+1 && midAt+len(mid)+1 < width-len(right) {
		put(midAt, mid)
	}
	put(width-len(right), right)
	return string(line)
}

func pad(s string, n int) string {
	if n <= 0 {
		return s
	}
	return s + strings.Repeat(" ", n)
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	case d >= time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
	default:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + "µs"
	}
}
