package main

import (
	"math"
	"strings"
	"testing"
)

// TestComparisonsArePaired: a comparison of two configurations is the
// median of the rounds' comparisons, round i against round i. Here the
// machine's speed moves from round to round (untraced 10, 30, 20 µs)
// and tracing costs 1 µs in every round but the last, which the
// neighbours slowed: the pairs say 1, the difference of the medians
// (31 - 20) would say 11.
func TestComparisonsArePaired(t *testing.T) {
	r := &results{Configs: map[string]*config{
		"tracehop":      {Rounds: []sample{{CPUPerReq: 10, UserCPUPerReq: 4, RPS: 1000}, {CPUPerReq: 30, UserCPUPerReq: 5, RPS: 500}, {CPUPerReq: 20, UserCPUPerReq: 6, RPS: 800}}},
		"tracehop-otlp": {Rounds: []sample{{CPUPerReq: 11, UserCPUPerReq: 6, RPS: 950}, {CPUPerReq: 31, UserCPUPerReq: 7.5, RPS: 480}, {CPUPerReq: 41, UserCPUPerReq: 7, RPS: 100}}},
	}}
	r.finish()
	want := map[string]float64{
		"CPU µs per traced request over tracing off: otlp": 1,
		// Per round 0.95, 0.96, 0.125: the median is 0.95; the medians'
		// ratio would be 480/800 = 0.6.
		"req/s: traced (otlp) / untraced (issue 25)": 0.95,
		// User time per round +2, +2.5, +1: the median is 2 (the
		// medians' difference, 7 - 5, happens to agree).
		"of which user space: otlp": 2,
	}
	checkRows(t, r, want)
}

// checkRows fails t for each row of want that r lacks or has another
// value in.
func checkRows(t *testing.T, r *results, want map[string]float64) {
	t.Helper()
	for _, q := range r.Ratios {
		if w, ok := want[q.Name]; ok {
			if math.Abs(q.Value-w) > 1e-9 {
				t.Errorf("%s = %v, want %v", q.Name, q.Value, w)
			}
			delete(want, q.Name)
		}
	}
	for name := range want {
		t.Errorf("no row %q", name)
	}
}

// TestComparisonsOfARunCutShort: with rounds that do not pair up (a run
// stopped between two configurations of a round), a comparison falls
// back to the medians rather than leaving the target out.
func TestComparisonsOfARunCutShort(t *testing.T) {
	r := &results{Configs: map[string]*config{
		"tracehop":      {Rounds: []sample{{CPUPerReq: 10}, {CPUPerReq: 20}, {CPUPerReq: 30}}},
		"tracehop-file": {Rounds: []sample{{CPUPerReq: 13}, {CPUPerReq: 23}}},
	}}
	r.finish()
	for _, q := range r.Ratios {
		if q.Name == "CPU µs per traced request over tracing off: file" {
			if q.Value != 3 { // medians 23 (the upper of two) and 20
				t.Fatalf("%s = %v, want 3, the medians' difference", q.Name, q.Value)
			}
			return
		}
	}
	t.Fatal("no CPU row for a run cut short")
}

// TestOutsideTracehop: what traced requests cost the rest of the machine
// is reported per process, paired by round, and the whole machine's CPU
// per request gives the req/s ratio it allows; results from before the
// others' CPU was recorded get no such rows.
func TestOutsideTracehop(t *testing.T) {
	others := func(up, recv, wrk float64) map[string]float64 {
		return map[string]float64{"upstream": up, "receiver": recv, "wrk": wrk}
	}
	r := &results{Configs: map[string]*config{
		"tracehop":      {Rounds: []sample{{CPUPerReq: 10, OthersCPU: others(15, 0, 5)}, {CPUPerReq: 12, OthersCPU: others(16, 0, 6)}}},
		"tracehop-otlp": {Rounds: []sample{{CPUPerReq: 13, OthersCPU: others(16, 0.5, 5)}, {CPUPerReq: 15, OthersCPU: others(17, 0.5, 6)}}},
		"tracehop-file": {Rounds: []sample{{CPUPerReq: 13}, {CPUPerReq: 15}}},
	}}
	r.finish()
	want := map[string]float64{
		"CPU µs per traced request over tracing off, outside tracehop, in the upstream: otlp":      1,
		"CPU µs per traced request over tracing off, outside tracehop, in the span receiver: otlp": 0.5,
		"CPU µs per traced request over tracing off, outside tracehop, in wrk: otlp":               0,
		// Rounds 30/34.5 and 34/38.5: the upper of the two is 34/38.5.
		"whole machine's CPU per request, untraced / traced: the req/s ratio it allows: otlp": 34 / 38.5,
	}
	for _, q := range r.Ratios {
		if strings.Contains(q.Name, ": file") && strings.Contains(q.Name, "outside") {
			t.Errorf("row %q for a configuration without the others' CPU", q.Name)
		}
	}
	checkRows(t, r, want)
}

// TestReusePortRows: with -workers 2, the rows of one tracehop process per
// worker are compared with the peers (the issue's 1.0), with one process of
// two processors, and traced with untraced, round by round.
func TestReusePortRows(t *testing.T) {
	r := &results{Configs: map[string]*config{
		"tracehop":           {Rounds: []sample{{RPS: 900}, {RPS: 800}, {RPS: 1000}}},
		"tracehop-reuseport": {Rounds: []sample{{RPS: 1080, CPUPerReq: 10}, {RPS: 1000, CPUPerReq: 12}, {RPS: 1100, CPUPerReq: 11}}},
		// Tracing costs 2.5, 2 and 4 µs per round: the median is 2.5.
		// With no tracehop-otlp row, the receiver's count is on this one.
		"tracehop-otlp-reuseport": {Rounds: []sample{{RPS: 972, CPUPerReq: 12.5}, {RPS: 900, CPUPerReq: 14}, {RPS: 880, CPUPerReq: 15}}, SpansSampled: 400, SpansReceived: 300},
		"nginx":                   {Rounds: []sample{{RPS: 1000}, {RPS: 1000}, {RPS: 1000}}},
		"haproxy":                 {Rounds: []sample{{RPS: 1200}, {RPS: 1250}, {RPS: 1100}}},
	}}
	r.finish()
	checkRows(t, r, map[string]float64{
		"req/s: untraced, a process per worker (reuse_port) / nginx (issue 25)":                  1.08,
		"req/s: untraced, a process per worker (reuse_port) / HAProxy (issue 25)":                0.9,
		"req/s: untraced, a process per worker (reuse_port) / one process of as many processors": 1.2,
		"CPU µs per traced request over tracing off, a process per worker (reuse_port): otlp":    2.5,
		// Per round 0.9, 0.9, 0.8.
		"req/s: traced (otlp) / untraced, a process per worker (reuse_port) (issue 25)": 0.9,
		"spans received by the OTLP receiver / spans sampled (otlp)":                    0.75,
	})
	for _, q := range r.Ratios {
		if q.Name == "req/s: untraced, a process per worker (reuse_port) / HAProxy (issue 25)" && q.Met {
			t.Errorf("%s = %v reported as met; its target is 1.0", q.Name, q.Value)
		}
	}
}

// TestIssue25Tables: the README's accounting of traced requests is the
// rounds' paired medians, tracehop's share with the driver's beside it,
// the baseline's from its own rows, and the peers' rows beside untraced.
func TestIssue25Tables(t *testing.T) {
	round := func(cpu, host, drv, user, up, recv, wrk, rps float64) sample {
		s := sample{CPUPerReq: cpu, UserCPUPerReq: user, RPS: rps,
			CPUByProcess:     map[string]float64{"tracehop": host},
			UserCPUByProcess: map[string]float64{"tracehop": user - drv/2},
			OthersCPU:        map[string]float64{"upstream": up, "receiver": recv, "wrk": wrk}}
		if drv > 0 {
			s.CPUByProcess["tracehop-driver"] = drv
			s.UserCPUByProcess["tracehop-driver"] = drv / 2
		}
		return s
	}
	r := &results{Settings: map[string]string{"rounds": "3"}, Configs: map[string]*config{
		// The machine slows in round 2: pairs say tracing costs 3 µs
		// (1 in the driver), medians of all rounds would say 12.
		"tracehop":      {Rounds: []sample{round(10, 10, 0, 2, 15, 0, 5, 1000), round(20, 20, 0, 3, 15, 0, 5, 600), round(11, 11, 0, 2, 15, 0, 5, 900)}},
		"tracehop-otlp": {Rounds: []sample{round(13, 12, 1, 4, 16, 0.5, 5, 900), round(40, 39, 1, 5, 16, 0.5, 5, 300), round(14, 13, 1, 4, 16, 0.5, 5, 810)}},
		"tracehop@base": {Rounds: []sample{round(10, 10, 0, 2, 15, 0, 5, 1000), round(20, 20, 0, 3, 15, 0, 5, 600), round(11, 11, 0, 2, 15, 0, 5, 900)}},
		"nginx":         {Rounds: []sample{round(12, 12, 0, 3, 15, 0, 5, 800), round(22, 22, 0, 3, 15, 0, 5, 500), round(12, 12, 0, 3, 15, 0, 5, 800)}},
	}}
	r.finish()
	got := r.issue25()
	for _, want := range []string{
		// 13-10, 40-20, 14-11: 3; tracehop's share 12-10, 39-20, 13-11: 2; the driver 1.
		// User space 4-2, 5-3, 4-2: 2; tracehop's 3.5-2, 4.5-3, 3.5-2: 1.5.
		// No tracehop-otlp@base row: the baseline's cells are "-".
		"| `otlp` | 3.0 (tracehop 2.0, driver 1.0) | - | 2.0 (tracehop 1.5, driver 0.5) | - |",
		// Outside tracehop: the upstream +1, the receiver +0.5, wrk 0;
		// the whole machine +4.5 (3 + 1 + 0.5); untraced 30/34.5,
		// 40/61.5, 31/35.5 allows 0.87; measured 0.9, 0.5, 0.9: 0.90.
		"| `otlp` | 2.0 | 1.0 | 1.0 | 0.5 | 0.0 | 4.5 | 0.87 | 0.90 |",
		// nginx: median req/s 800, CPU 12, user 3, the upstream 15, wrk
		// 5, the machine 32; tracehop over nginx 1.25, 1.2, 1.125: 1.20.
		"| nginx | 800 | 12.0 | 3.0 | 15.0 | 5.0 | 32.0 | 1.20 |",
		"| tracehop | 900 | 11.0 | 2.0 | 15.0 | 5.0 | 31.0 | - |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no line %q in:\n%s", want, got)
		}
	}
	if (&results{Configs: map[string]*config{}}).issue25() != "" {
		t.Error("a run without untraced tracehop has issue 25's tables")
	}
}
