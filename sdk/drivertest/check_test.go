package drivertest

import (
	"slices"
	"strings"
	"testing"
)

// Check's recorder: Fatal and Skip end a check alone, Errorf goes on,
// cleanups run last first, a parent's line gives way to its subchecks',
// and a failed subcheck fails the report.
func TestCheckRecorder(t *testing.T) {
	var rep Report
	root := &checkT{report: &rep}
	var order []string
	run(root, "A", func(t T) {
		t.Cleanup(func() { order = append(order, "A1") })
		t.Cleanup(func() { order = append(order, "A2") })
		t.Errorf("first %d", 1)
		t.Log("a note")
		t.Fatalf("second")
		t.Errorf("never")
	})
	run(root, "B", func(t T) { t.Skip("not applicable here") })
	run(root, "C", func(t T) {
		run(t, "ok", func(t T) {})
		run(t, "bad", func(t T) { t.Fatal("broken") })
	})
	var got []string
	for _, r := range rep.Results {
		got = append(got, r.Name+":"+map[bool]string{true: "fail", false: "ok"}[r.Failed]+":"+strings.Join(r.Problems, "|"))
	}
	want := []string{"A:fail:first 1|second", "B:ok:not applicable here", "C/ok:ok:", "C/bad:fail:broken"}
	if !slices.Equal(got, want) {
		t.Errorf("results %q, want %q", got, want)
	}
	if !rep.Results[1].Skipped || rep.OK() {
		t.Errorf("B skipped %v, report OK %v; want skipped and not OK", rep.Results[1].Skipped, rep.OK())
	}
	if !slices.Equal(order, []string{"A2", "A1"}) || !slices.Equal(rep.Results[0].Log, []string{"a note"}) {
		t.Errorf("cleanups ran %v, log %q", order, rep.Results[0].Log)
	}
	var b strings.Builder
	rep.Write(&b, false)
	for _, line := range []string{"FAIL  A (", "      first 1", "      log: a note", "SKIP  B (", "PASS  C/ok (", "1 passed, 2 failed, 1 skipped"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("report lacks %q:\n%s", line, b.String())
		}
	}
}

// Check says everything a Target lacks, at once, before running anything.
func TestCheckTargetLacks(t *testing.T) {
	rep := Check(Target{})
	if len(rep.Results) != 1 || rep.OK() || !strings.Contains(rep.Results[0].Problems[0], "Target.Name, Target.Path, Target.Backend, Target.Invalid") {
		t.Fatalf("results %+v", rep.Results)
	}
	rep = Check(Target{Name: "x", Path: "/bin/true", Invalid: []InvalidConfig{{Name: "n", Key: "k"}}, Backend: func(t T) Backend { return Backend{} }})
	if p := rep.Results[0].Problems[0]; !strings.Contains(p, "Backend.Config, Backend.Received, Backend.Fail (or Target.NoFailures") {
		t.Fatalf("problem %q", p)
	}
}
