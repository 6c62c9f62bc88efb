package traceview_test

import (
	"strings"
	"testing"

	"github.com/tracehop/tracehop/cmd/tracehop/traceview"
)

// Four spans of the sandbox's trace, as the file driver writes them, out
// of order, plus a span of another trace.
const spansJSON = `{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"0000000000000003","parentId":"0000000000000002","name":"checkstock","kind":"CLIENT","timestamp":1000000002000,"duration":6000,"localEndpoint":{"serviceName":"service1"},"tags":{"http.status_code":"503","error":"true"}}
{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"0000000000000001","name":"checkavailability","kind":"SERVER","timestamp":1000000000000,"duration":10000,"localEndpoint":{"serviceName":"front-proxy"},"tags":{"http.status_code":"503"}}
{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"0000000000000004","parentId":"0000000000000003","name":"ingress","kind":"SERVER","timestamp":1000000003000,"duration":5000,"localEndpoint":{"serviceName":"service2"},"tags":{"http.status_code":"503","error":"true"}}
{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"0000000000000002","parentId":"0000000000000001","name":"checkavailability","kind":"SERVER","timestamp":1000000001000,"duration":8000,"localEndpoint":{"serviceName":"service1"},"tags":{"http.status_code":"503"}}
{"traceId":"1111111111111111","id":"0000000000000009","name":"other","kind":"SERVER","timestamp":999000000000,"duration":1000,"localEndpoint":{"serviceName":"x"}}
`

func TestRender(t *testing.T) {
	spans, err := traceview.ReadZipkin(strings.NewReader(spansJSON))
	if err != nil {
		t.Fatal(err)
	}
	traces := traceview.Group(spans)
	if len(traces) != 2 || traces[1].ID != "0af7651916cd43dd8448eb211c80319c" || traces[0].ID != "00000000000000001111111111111111" {
		t.Fatalf("traces %v", traces)
	}
	var out strings.Builder
	traceview.Render(&out, traces[1:], traceview.Options{Width: 80})
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	t.Log("\n" + out.String())
	if !strings.HasPrefix(lines[0], "trace 0af7651916cd43dd8448eb211c80319c  4 spans, 3 services, 10.00ms, 2 errors") {
		t.Errorf("header %q", lines[0])
	}
	// Nested by parent, in this order, each indented one step more.
	want := []string{"front-proxy checkavailability", "  service1 checkavailability", "    service1 checkstock", "      service2 ingress"}
	for i, w := range want {
		if !strings.HasPrefix(lines[2+i], w) {
			t.Errorf("line %d = %q, want it to start with %q", 2+i, lines[2+i], w)
		}
	}
	// Bars to scale: the root spans the whole bar width (80-44-14-2 = 20),
	// service2's 5ms starting at 3ms covers half of it from 30%.
	if n := strings.Count(lines[2], "█"); n != 20 {
		t.Errorf("root bar is %d wide, want 20", n)
	}
	if bar := lines[5][45:]; !strings.HasPrefix(bar, "      ██████████ ") {
		t.Errorf("service2 bar %q, want 6 spaces then 10 blocks", bar)
	}
	if !strings.HasSuffix(lines[5], "5.00ms 503 ✗") || strings.HasSuffix(lines[3], "✗") {
		t.Errorf("error marks: %q / %q", lines[5], lines[3])
	}
	// Labels with multi-byte units keep the axis intact.
	spans[4].Duration = 955_000
	var small strings.Builder
	traceview.Render(&small, traceview.Group(spans[4:]), traceview.Options{Width: 80})
	if axis := strings.Split(small.String(), "\n")[1]; !strings.HasSuffix(axis, "955µs") || strings.Contains(axis, "µ·") {
		t.Errorf("axis %q", axis)
	}
	// With color, errors are red.
	out.Reset()
	traceview.Render(&out, traces[1:], traceview.Options{Width: 80, Color: true})
	if !strings.Contains(out.String(), "\x1b[31m██████████") {
		t.Errorf("no red bar for the error span")
	}
}
