package main

import (
	"strings"
	"testing"

	proxyconfig "github.com/tracehop/tracehop/proxy/config"
)

// A dump in callgrind's format, as callgrind 3.19 writes it: compressed
// names, relative positions, calls whose following line is inclusive.
const dump = `# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /bin/tracehop run
part: 2

positions: line
events: Ir
summary: 1205

ob=(1) /bin/tracehop
fl=(1) /src/a.go
fn=(1) main.a
10 100
+2 50
cfl=(1)
cfn=(2) main.b
calls=3 20
+1 900
* 7
fn=(2)
20 800
fn=(3) main.a'2
5 193
fl=(2) /usr/local/go/src/runtime/proc.go
fn=(4) runtime.findRunnable
1 40
fn=(5) runtime.memhash64
2 5
fl=(1)
fn=(1)
12 10

totals: 1205
`

func TestReadCallgrind(t *testing.T) {
	p, err := readCallgrind(strings.NewReader(dump))
	if err != nil {
		t.Fatal(err)
	}
	// main.a: 100 + 50 + 7 of its own, and 193 at recursion depth 2; the
	// 900 of its call to main.b is main.b's, counted there (800).
	want := map[string]int64{"main.a": 360, "main.b": 800, "runtime.findRunnable": 40, "runtime.memhash64": 5}
	if p.total != 1205 || len(p.byFunc) != len(want) {
		t.Fatalf("total %d, by function %v; want 1205, %v", p.total, p.byFunc, want)
	}
	if p.sched != 40 { // a map's hashing is the request's, wherever it lies
		t.Errorf("scheduler: %d instructions, want findRunnable's 40", p.sched)
	}
	for k, v := range want {
		if p.byFunc[k] != v {
			t.Errorf("%s: %d instructions, want %d", k, p.byFunc[k], v)
		}
	}
	var top strings.Builder
	p.top(&top, 1, 10)
	if got := strings.Fields(top.String()); len(got) != 6 || got[3] != "80" || got[4] != "66.4%" || got[5] != "main.b" {
		t.Errorf("top 1 per 10:\n%s", got)
	}
}

func TestReadCallgrindTotalsDisagree(t *testing.T) {
	if _, err := readCallgrind(strings.NewReader(strings.Replace(dump, "totals: 1205", "totals: 1151", 1))); err == nil {
		t.Fatal("a file whose cost lines do not add up to its totals was read without an error")
	}
}

// Every configuration the harness writes must be one tracehop takes.
func TestConfigsParse(t *testing.T) {
	for name, tracing := range map[string]string{
		"off":         "",
		"zipkin":      tracingYAML("/bin", "zipkin", "", "", zipkinConfig("127.0.0.1:1")),
		"zipkin-grpc": tracingYAML("/bin", "zipkin", "grpc", `TRACEHOP_DRIVER_CPUPROFILE: "/tmp/x"`, zipkinConfig("127.0.0.1:1")),
		"otlp":        tracingYAML("/bin", "otlp", "", "", otlpConfig("127.0.0.1:1")),
		"file":        tracingYAML("/bin", "file", "", "", fileConfig),
	} {
		raw := tracehopYAML("127.0.0.1:2", "127.0.0.1:3", "", "127.0.0.1:4", tracing)
		c, err := proxyconfig.Parse(name+".yaml", []byte(raw))
		if err != nil {
			t.Errorf("%s: %v\n%s", name, err, raw)
			continue
		}
		if tracing != "" && c.Tracing == nil {
			t.Errorf("%s: no tracing in\n%s", name, raw)
		}
	}
}

// The table takes the scheduler off before comparing: tracing's cost over
// tracing off, and this build against the baseline, per configuration.
func TestInstrTable(t *testing.T) {
	run := instrRun{Requests: 100, Rounds: 3, Configs: []*instrResult{
		{Name: "tracehop", Desc: "off", Host: []float64{1000, 1100, 900}, Sched: []float64{100, 300, 50}},
		{Name: "tracehop@base", Desc: "off", Host: []float64{1200, 1200, 1200}, Sched: []float64{200, 200, 200}},
		{Name: "tracehop-otlp", Desc: "otlp", Host: []float64{2000, 2000, 2000}, Driver: []float64{500, 700, 600}, Sched: []float64{0, 0, 0}},
		{Name: "tracehop-otlp@base", Desc: "otlp", Host: []float64{2500, 2500, 2500}, Driver: []float64{600, 600, 600}, Sched: []float64{100, 100, 100}},
	}}
	got := run.table()
	for _, want := range []string{
		"| tracehop-otlp: otlp | 2000 | 600 | 2600 | 0 | +1750 |", // 2600 - median(900, 800, 850)
		"| tracehop-otlp@base: otlp | 2500 | 600 | 3100 | 100 | +2000 |",
		"| tracehop | 850 | 1000 | -150 (-15.0%) |",
		"| tracehop-otlp | 2600 | 3000 | -400 (-13.3%) |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the table lacks %q:\n%s", want, got)
		}
	}
}

// A dump of other events than instructions, or of instruction addresses,
// is refused with what to change, not misread.
func TestReadCallgrindOtherSettings(t *testing.T) {
	for _, swap := range [][2]string{{"events: Ir", "events: Ir Dr Dw"}, {"positions: line", "positions: instr line"}} {
		_, err := readCallgrind(strings.NewReader(strings.Replace(dump, swap[0], swap[1], 1)))
		if err == nil || !strings.Contains(err.Error(), "VALGRIND_OPTS") {
			t.Errorf("%s: %v", swap[1], err)
		}
	}
}
