package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The upstream propagation table: `make bench-upstream` runs
// BenchmarkUpstreamPropagation (upstream_test.go) and pipes its output to
// `tracehop-bench -upstream -readme README.md`, which writes the medians
// between these markers.
const upstreamBegin, upstreamEnd = "<!-- upstream:begin -->", "<!-- upstream:end -->"

// upstreamRow is one case's medians.
type upstreamRow struct {
	name          string
	ns, bytes, al float64
}

// renderUpstream reads `go test -bench UpstreamPropagation` output and
// prints the table, rewriting the README's when readme is set.
func renderUpstream(in io.Reader, readme string) error {
	samples := map[string][][3]float64{}
	var order []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || !strings.HasPrefix(f[0], "BenchmarkUpstreamPropagation/") {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkUpstreamPropagation/")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // the GOMAXPROCS suffix, absent at 1
			}
		}
		var v [3]float64 // ns/op, bytes, allocs/op
		for i := 2; i+1 < len(f); i += 2 {
			x, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				v[0] = x
			case "bytes":
				v[1] = x
			case "allocs/op":
				v[2] = x
			}
		}
		if _, ok := samples[name]; !ok {
			order = append(order, name)
		}
		samples[name] = append(samples[name], v)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(samples["none"]) == 0 {
		return fmt.Errorf("no BenchmarkUpstreamPropagation/none results in the input: pipe `go test -bench UpstreamPropagation ./bench` into it")
	}
	med := func(name string, k int) float64 {
		var xs []float64
		for _, v := range samples[name] {
			xs = append(xs, v[k])
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	var b strings.Builder
	base := upstreamRow{"none", med("none", 0), med("none", 1), med("none", 2)}
	fmt.Fprintf(&b, "| formats (`tracing.propagation`) | request head bytes | the upstream's CPU per request, ns | over none, ns | allocations (over none) |\n|---|---:|---:|---:|---:|\n")
	for _, name := range order {
		r := upstreamRow{name, med(name, 0), med(name, 1), med(name, 2)}
		fmt.Fprintf(&b, "| %s | %.0f (+%.0f) | %.0f | %+.0f | %.0f (+%.0f) |\n", name, r.bytes, r.bytes-base.bytes, r.ns, r.ns-base.ns, r.al, r.al-base.al)
	}
	fmt.Fprintf(&b, "\n%d runs each, medians; GOMAXPROCS=1.\n", len(samples["none"]))
	fmt.Print(b.String())
	if readme == "" {
		return nil
	}
	return replaceBetween(readme, upstreamBegin, upstreamEnd, b.String())
}
