//go:build e2e

package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestE2ETraceViewInABrowser runs `tracehop trace view -http` as a real
// process over the file driver's spans and loads the page in headless
// Chromium: the rendered DOM must hold the trace's four spans and three
// services, the error in red; a screenshot is kept as an artefact
// ($TRACEHOP_ARTIFACT_DIR, default /tmp/tracehop-artifacts).
func TestE2ETraceViewInABrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: make e2e-deps installs it (Debian's chromium package)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tracehop")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The sandbox's trace as the file driver writes it (Zipkin v2 JSON lines).
	spans := filepath.Join(dir, "spans.jsonl")
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	line := func(id, parent, svc, name, kind string, ts, dur int, tags string) string {
		p := ""
		if parent != "" {
			p = `"parentId":"` + parent + `",`
		}
		return fmt.Sprintf(`{"traceId":"%s","id":"%s",%s"name":"%s","kind":"%s","timestamp":%d,"duration":%d,"localEndpoint":{"serviceName":"%s"},"tags":{%s}}`+"\n",
			tid, id, p, name, kind, ts, dur, svc, tags)
	}
	base := int(time.Now().UnixMicro())
	data := line("a000000000000001", "", "front-proxy", "checkavailability", "SERVER", base, 3000, `"http.status_code":"200"`) +
		line("a000000000000002", "a000000000000001", "service1", "checkavailability", "SERVER", base+300, 2400, `"http.status_code":"200"`) +
		line("a000000000000003", "a000000000000002", "service1", "checkstock", "CLIENT", base+900, 1100, `"http.status_code":"503","error":"true"`) +
		line("a000000000000004", "a000000000000003", "service2", "ingress", "SERVER", base+1200, 500, `"http.status_code":"503"`)
	if err := os.WriteFile(spans, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	view := exec.Command(bin, "trace", "view", "-http", addr, "-file", spans)
	view.Stdout, view.Stderr = os.Stderr, os.Stderr
	if err := view.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { view.Process.Signal(os.Interrupt); view.Wait() })
	url := "http://" + addr + "/"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url + "api/traces"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("trace view did not start")
		}
	}
	browser := func(extra ...string) []byte {
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--user-data-dir=" + filepath.Join(dir, "chromium"), "--virtual-time-budget=5000", "--window-size=1280,600"}, extra...)
		out, err := exec.Command(chromium, append(args, url)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", extra, err)
		}
		return out
	}
	dom := string(browser("--dump-dom"))
	if !strings.Contains(dom, `data-ready="true"`) {
		t.Fatalf("the page did not finish loading its traces:\n%s", dom)
	}
	rows := regexp.MustCompile(`class="span-row[^"]*"`).FindAllString(dom, -1)
	errorRows := regexp.MustCompile(`class="span-row error"`).FindAllString(dom, -1)
	if len(rows) != 4 || len(errorRows) != 1 {
		t.Errorf("%d span rows (%d in error), want 4 (1)", len(rows), len(errorRows))
	}
	for _, svc := range []string{"front-proxy", "service1", "service2"} {
		if !strings.Contains(dom, `data-service="`+svc+`"`) {
			t.Errorf("service %s is not drawn", svc)
		}
	}
	if !strings.Contains(dom, "4 spans · 3 services") {
		t.Errorf("the trace's title lacks its span and service counts")
	}
	artifacts := os.Getenv("TRACEHOP_ARTIFACT_DIR")
	if artifacts == "" {
		artifacts = "/tmp/tracehop-artifacts"
	}
	os.MkdirAll(artifacts, 0o755)
	shot := filepath.Join(artifacts, "trace-view.png")
	browser("--screenshot=" + shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 5000 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
	t.Logf("screenshot of the trace view: %s", shot)
}
