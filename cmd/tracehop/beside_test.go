package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// tracehop inject runs tracehop-inject from beside tracehop, with the same
// streams and exit code, and says where to get it when it is missing.
func TestInjectRunsBeside(t *testing.T) {
	dir := t.TempDir()
	gocmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, pkg := range []string{"tracehop", "tracehop-inject"} {
		if out, err := exec.Command(gocmd, "build", "-o", filepath.Join(dir, pkg), "github.com/tracehop/tracehop/cmd/"+pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	cmd := exec.Command(filepath.Join(dir, "tracehop"), "inject", "-f", "../../internal/inject/testdata/apps.yaml")
	cmd.Env = append(os.Environ(), "PATH=/nonexistent")
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "- name: tracehop\n") {
		t.Fatalf("tracehop inject: %v\n%s", err, out)
	}
	cmd = exec.Command(filepath.Join(dir, "tracehop"), "inject", "-f", "../../internal/inject/testdata/bad_port_clash.yaml")
	cmd.Env = append(os.Environ(), "PATH=/nonexistent")
	b, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInvalid || !strings.Contains(string(b), `container "app" uses port 9901`) {
		t.Errorf("a refused manifest: %v, want exit %d with the reason:\n%s", err, exitInvalid, b)
	}

	os.Remove(filepath.Join(dir, "tracehop-inject"))
	cmd = exec.Command(filepath.Join(dir, "tracehop"), "inject")
	cmd.Env = append(os.Environ(), "PATH=/nonexistent")
	b, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage || !strings.Contains(string(b), "tracehop-inject is neither beside tracehop ("+dir+") nor on $PATH: make build puts it in ./bin") {
		t.Errorf("without tracehop-inject: %v:\n%s", err, b)
	}
}
