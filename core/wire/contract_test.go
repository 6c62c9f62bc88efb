package wire_test

import (
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core/wire"
)

const module = "github.com/tracehop/tracehop"

// The contract is imported by the YAML config loader (name and checksum
// rules) and by both sides of the plugin protocol: it must not pull
// go-plugin, yamux or gRPC into the first (go list -deps ./proxy/config).
// So wire needs the standard library and core only, and its generated gRPC
// code lives in driverpb.
func TestContractNeedsOnlyStdlibAndCore(t *testing.T) {
	allowed := []string{module + "/core", module + "/core/wire"}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var walk func(path string, from []string)
	walk = func(path string, from []string) {
		if seen[path] {
			return
		}
		seen[path] = true
		pkg, err := build.ImportDir(filepath.Join(root, strings.TrimPrefix(path, module)), 0)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			first, _, _ := strings.Cut(imp, "/")
			switch {
			case !strings.Contains(first, "."):
				// the standard library
			case slices.Contains(allowed, imp):
				walk(imp, append(from, imp))
			default:
				t.Errorf("%s imports %s: the contract may need only the standard library and core", strings.Join(from, " -> "), imp)
			}
		}
	}
	walk(module+"/core/wire", []string{module + "/core/wire"})
}

func TestValidateName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"zipkin", true}, {"my_driver-2", true}, {"0x", true},
		{"", false}, {"Zipkin", false}, {"-x", false}, {"../../etc/passwd", false}, {"a/b", false}, {"a b", false},
	} {
		err := wire.ValidateName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "is not a driver name") {
			t.Errorf("ValidateName(%q): %v does not say what is wrong", c.name, err)
		}
	}
}

func TestParseChecksum(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	if sum, err := wire.ParseChecksum(good); err != nil || len(sum) != 32 || sum[0] != 0xab {
		t.Fatalf("ParseChecksum(%q) = %x, %v", good, sum, err)
	}
	for pin, want := range map[string]string{
		"md5:abc":                            `must start with "sha256:"`,
		strings.Repeat("ab", 32):             `must start with "sha256:"`,
		"sha256:abc":                         "64 hex digits",
		"sha256:" + strings.Repeat("zz", 32): "64 hex digits",
	} {
		if _, err := wire.ParseChecksum(pin); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseChecksum(%q) = %v, want an error saying %q", pin, err, want)
		}
	}
}

// One type on both sides: the driver's text is its problems, the host's
// names the driver.
func TestConfigErrorText(t *testing.T) {
	problems := []wire.ConfigProblem{{Key: "endpoint", Message: "is required"}, {Key: "tls.ca_file", Message: "no such file"}}
	inDriver := &wire.ConfigError{Problems: problems}
	if got, want := inDriver.Error(), "endpoint: is required; tls.ca_file: no such file"; got != want {
		t.Errorf("in the driver: %q, want %q", got, want)
	}
	onHost := &wire.ConfigError{Driver: "zipkin", Message: inDriver.Error(), Problems: problems}
	if got, want := onHost.Error(), `driver "zipkin" rejected its config: endpoint: is required; tls.ca_file: no such file`; got != want {
		t.Errorf("on the host: %q, want %q", got, want)
	}
}
