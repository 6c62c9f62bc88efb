package drivertest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestDocsWebhook follows docs/writing-a-driver.md from zero: it writes the
// webhook example's files (the page's ```go file=PATH blocks) into a new
// module outside this one, depending on tracehop as the page says, and
// runs the kit there. The page cannot drift from what works.
func TestDocsWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module and runs the kit; run without -short")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(root, "docs", "writing-a-driver.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go file=(\\S+)\n(.*?)```").FindAllStringSubmatch(string(page), -1)
	if len(blocks) < 3 {
		t.Fatalf("the page has %d file blocks; want the webhook driver, its main and its test", len(blocks))
	}
	dir := t.TempDir()
	for _, b := range blocks {
		path := filepath.Join(dir, b[1])
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(b[2]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, n := range map[string]int{"webhook.go": 60} {
		src, _ := os.ReadFile(filepath.Join(dir, name))
		if lines := strings.Count(string(src), "\n"); lines > n {
			t.Errorf("%s has %d lines; the page promises at most %d", name, lines, n)
		}
	}
	gocmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gocmd, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// As the page says: a module of its own, tracehop replaced by a checkout.
	run("mod", "init", "example.com/webhook")
	run("mod", "edit", "-require", "github.com/tracehop/tracehop@v0.0.0", "-replace", "github.com/tracehop/tracehop="+root)
	run("mod", "tidy")
	out := run("test", "-count=1", "./...")
	if !strings.Contains(out, "ok  \texample.com/webhook") {
		t.Fatalf("the kit did not pass the page's webhook driver:\n%s", out)
	}
}
