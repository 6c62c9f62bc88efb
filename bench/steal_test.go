package main

import (
	"strings"
	"testing"
)

// The machine's CPU time is read from /proc/stat, and the table says how
// much of it the hypervisor took during the rounds.
func TestSteal(t *testing.T) {
	total, steal, ok := cpuTicks()
	if !ok || total == 0 || steal > total {
		t.Fatalf("cpuTicks() = %d, %d, %v", total, steal, ok)
	}
	if got := stealPercent(1000, 10, 2000, 260); got != 25 {
		t.Errorf("stealPercent = %v, want 25", got)
	}
	r := &results{Configs: map[string]*config{
		"a": {Rounds: []sample{{StealPct: 1}, {StealPct: 30}}},
		"b": {Rounds: []sample{{StealPct: 20}}},
	}}
	if note := r.stealNote(); !strings.Contains(note, "median 20%, most 30%") || !strings.Contains(note, "not a steady machine") {
		t.Errorf("stealNote() = %q", note)
	}
	r.Configs["a"].Rounds[1].StealPct, r.Configs["b"].Rounds[0].StealPct = 0, 2
	if note := r.stealNote(); !strings.Contains(note, "median 1%, most 2%") || strings.Contains(note, "steady") {
		t.Errorf("stealNote() on a quiet machine = %q", note)
	}
}
