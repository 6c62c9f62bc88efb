package main

import (
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestLaunchRefusesATakenAddress: a process left on the harness's port
// from another run answered waitListening in place of the one started,
// which then failed to bind unnoticed, and its numbers were the
// stranger's.
func TestLaunchRefusesATakenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	_, err = launchInto(&procs, t.TempDir(), "upstream", ln.Addr().String(), nil, "sleep", "5")
	if err == nil || !strings.Contains(err.Error(), "already listens on "+ln.Addr().String()) {
		t.Fatalf("launching onto a taken address: err = %v, want it to say the address is taken", err)
	}
	if len(procs) != 0 {
		t.Fatalf("%d processes started onto a taken address, want none", len(procs))
	}
	free := ln.Addr().String()
	ln.Close()
	if err := addrFree(free); err != nil {
		t.Fatalf("a closed listener's address: %v, want free", err)
	}
}

// treePSS counts this process's pages, each once over its sharers: more
// than nothing and no more than its RSS.
func TestTreePSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/smaps_rollup is Linux's")
	}
	pss := treePSS(os.Getpid())
	var rss int64
	for _, r := range treeRSS(os.Getpid()) {
		rss += r[0]
	}
	if pss <= 0 || pss > rss+1<<20 {
		t.Fatalf("PSS %d bytes against RSS %d: want more than 0 and no more than the RSS", pss, rss)
	}
}
