package drivertest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core/driverhost"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// TestKitCatchesEveryBug runs the kit on the mutant driver once per bug
// the kit used to miss (internal/mutant), each in a test process of its
// own, and checks that the kit fails it in the check that must catch it,
// and that the driver without a bug passes.
func TestKitCatchesEveryBug(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kit once per bug; run without -short")
	}
	bin := filepath.Join(t.TempDir(), "mutant.test")
	gocmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gocmd, "test", "-c", "-o", bin, "./internal/mutant").CombinedOutput(); err != nil {
		t.Fatalf("go test -c ./internal/mutant: %v\n%s", err, out)
	}
	for _, c := range []struct {
		bug, check, says string // the failing check, and what its message says
	}{
		{"", "", ""},
		{"utf8", "CanonicalTrace", "invalid UTF-8"},
		{"classes", "Failures/refusing", "not marked sdk.Permanent"},
		{"byteorder", "CanonicalTrace", "trace id 8448eb211c80319c0af7651916cd43dd, want 0af7651916cd43dd8448eb211c80319c"},
		{"deadline", "Failures/slow", "honour the context"},
		{"zeroparent", "CanonicalTrace", "parentId of zeros"},
		{"throttle", "Failures/throttled", "marked sdk.Permanent"},
		{"owntimeout", "Failures/slow", "a timeout of your own is not enough"},
		{"spanidorder", "CanonicalTrace", "its bytes reversed"},
		{"batchlimit", "Burst", "were lost"},
		{"duplicate", "CanonicalTrace", "arrived twice"},
		{"lockfile", "Plugin/CrashRestart", "must start and configure again"},
	} {
		name := c.bug
		if name == "" {
			name = "none"
		}
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run", "TestKit", "-test.count", "1")
			cmd.Dir = "internal/mutant" // the kit builds the plugin with go build from here
			// A temporary directory of its own, for the lock file the
			// lockfile bug leaves behind.
			cmd.Env = append(os.Environ(), "DRIVERTEST_MUTANT="+c.bug, "TMPDIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			text := string(out)
			if c.bug == "" {
				if err != nil {
					t.Fatalf("the kit fails the driver without a bug: %v\n%s", err, tail(text))
				}
				return
			}
			if err == nil {
				t.Fatalf("the kit passed a driver with bug %q", c.bug)
			}
			check := "InProcess/" + c.check // a check of both halves fails in process first
			if strings.HasPrefix(c.check, "Plugin/") {
				check = c.check // a check of the plugin process alone
			}
			if !strings.Contains(text, "--- FAIL: TestKit/"+check) || !strings.Contains(text, c.says) {
				t.Fatalf("bug %q: the kit failed, but not in %s saying %q:\n%s", c.bug, c.check, c.says, tail(text))
			}
		})
	}
}

func tail(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "--- FAIL") || strings.Contains(line, "drivertest.go:") && !strings.Contains(line, "level=") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// A driver's sdk.Secret fields reach the host as secret keys through the
// plugin protocol, whatever their names, so that tracehop redacts them.
func TestSecretKeysReachTheHost(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tracehop-driver-mutant")
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/sdk/drivertest/internal/mutant/cmd/tracehop-driver-mutant", bin); err != nil {
		t.Fatal(err)
	}
	d, err := driverhost.Start(context.Background(), driverhost.Spec{Name: "mutant", Path: bin, Config: []byte(`{"endpoint": "http://127.0.0.1:1/", "license": "s3cr3t"}`)}, driverhost.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	if keys := d.Capabilities().SecretKeys; !slices.Contains(keys, "license") {
		t.Fatalf("secret keys %v: want license", keys)
	}
}

// A driver binary run by hand says what it is and how tracehop runs it.
func TestDriverRunByHandSaysHowToRunIt(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tracehop-driver-mutant")
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/sdk/drivertest/internal/mutant/cmd/tracehop-driver-mutant", bin); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err == nil {
		t.Fatal("exited 0")
	}
	for _, want := range []string{"tracehop-driver-mutant is a tracehop driver", "tracing.driver: {name: mutant}", "tracehop validate -c CONFIG"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
