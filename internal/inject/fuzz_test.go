package inject_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tracehop/tracehop/internal/inject"
)

// Inject never panics; what it accepts it writes as YAML that it then
// refuses to inject again (every injected workload is marked), and what
// it refuses it refuses with nothing written.
func FuzzInject(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: x}]}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, res, err := inject.Inject(in, "fuzz.yaml", inject.DefaultOptions())
		if err != nil {
			if out != nil {
				t.Fatalf("refused (%v) but wrote output", err)
			}
			return
		}
		if len(res.Injected) == 0 {
			return
		}
		_, _, err = inject.Inject(out, "again.yaml", inject.DefaultOptions())
		if !errors.Is(err, inject.ErrAlreadyInjected) {
			t.Fatalf("the output of an injection was not refused as injected: %v\ninput:\n%s\noutput:\n%s", err, in, out)
		}
	})
}
