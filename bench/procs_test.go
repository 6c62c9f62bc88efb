package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
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

// treeMem counts this process's memory: more than nothing and no more
// than its RSS, which counts the same pages and no others.
func TestTreeMem(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RssAnon and RssFile are Linux's")
	}
	mem := treeMem(os.Getpid())
	var rss int64
	for _, r := range treeRSS(os.Getpid()) {
		rss += r[0]
	}
	if mem <= 0 || mem > rss+1<<20 {
		t.Fatalf("%d bytes against RSS %d: want more than 0 and no more than the RSS", mem, rss)
	}
}

// Two processes of one executable: treeMem counts its file pages once,
// where the RSS of the two counts them twice.
func TestTreeMemCountsAnExecutableOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RssAnon and RssFile are Linux's")
	}
	cmd := exec.Command("sh", "-c", "sleep 5 & sleep 5 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var sleeps []int
	for deadline := time.Now().Add(5 * time.Second); len(sleeps) < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		sleeps = tree(cmd.Process.Pid)[1:]
	}
	if len(sleeps) != 2 {
		t.Fatalf("the two sleeps did not start: %v", sleeps)
	}
	time.Sleep(50 * time.Millisecond) // both exec'd
	var rss, file int64
	for _, r := range treeRSS(cmd.Process.Pid) {
		rss += r[0]
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", sleeps[0]))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			file = kb << 10
		}
	}
	if mem := treeMem(cmd.Process.Pid); file == 0 || rss-mem < file/2 {
		t.Fatalf("treeMem %d, RSS %d, one sleep's file pages %d: want the second sleep's file pages left out", mem, rss, file)
	}
}
