package main

import (
	"strings"
	"testing"
	"time"
)

// perf stat -x, output as perf 6.1 writes it, with an event it could not
// count and one it did not see at all.
const perfOut = `12000,,raw_syscalls:sys_enter,8004446330,100.00,,
1000,,context-switches,8004430402,100.00,,
7000,,syscalls:sys_enter_read,8004456740,100.00,,
4000,,syscalls:sys_enter_write,8004462146,100.00,,
600,,syscalls:sys_enter_recvfrom,8004462146,100.00,,
200,,syscalls:sys_enter_epoll_pwait,8004462146,100.00,,
3000,,syscalls:sys_exit_read,8004475384,100.00,,
600,,syscalls:sys_exit_recvfrom,8004475384,100.00,,
`

// TestSyscallTable: the counts become per-request figures; failing reads
// are taken off the reads that return data, and what no counter names is
// "others", so that the row adds up to the total.
func TestSyscallTable(t *testing.T) {
	counts, err := parsePerfStat([]byte(perfOut))
	if err != nil {
		t.Fatal(err)
	}
	if counts["syscalls:sys_enter_read"] != 7000 || counts["context-switches"] != 1000 {
		t.Fatalf("parsed %v", counts)
	}
	per := func(n float64) float64 { return n / 2000 } // 2,000 requests
	c := syscallCount{Name: "tracehop", Requests: 2000, All: per(12000), ContextSwitches: per(1000),
		Calls:  map[string]float64{"read": per(7000), "write": per(4000), "recvfrom": per(600), "epoll_pwait": per(200)},
		EAGAIN: map[string]float64{"read": per(3000), "recvfrom": per(600)}}
	r := syscallRun{Date: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), Machine: map[string]string{"cpus": "2"}, Duration: "8s", Configs: []syscallCount{c}}
	row := strings.Split(r.table(), "\n")[2]
	want := "| tracehop | 6.00 | 2.00 (`read`) | 1.80 | 2.00 (`write`) | 0.10 `epoll_pwait`, 0.10 others | 0.50 |"
	if row != want {
		t.Errorf("row\n%s\nwant\n%s", row, want)
	}
}

// TestPerfStatUncounted: an event perf could not count fails the run
// with what to do, rather than leaving a zero in the table.
func TestPerfStatUncounted(t *testing.T) {
	_, err := parsePerfStat([]byte("<not supported>,,syscalls:sys_enter_read,0,100.00,,\n"))
	if err == nil || !strings.Contains(err.Error(), "perf_event_paranoid") {
		t.Fatalf("err = %v, want one that says how to make the tracepoints readable", err)
	}
}
