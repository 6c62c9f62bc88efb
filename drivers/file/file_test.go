package file_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tracehop/tracehop/drivers/file"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

func readFile(path string) func() ([]sdk.Span, error) {
	return func() ([]sdk.Span, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return file.ReadSpans(f)
	}
}

// rawTraceIDs reads the traceId fields of the file as JSON text, not
// through the driver's ReadSpans: the kit's anchor against byte-order bugs.
func rawTraceIDs(path string) func() ([]string, error) {
	return func() ([]string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var s struct {
				TraceID string `json:"traceId"`
			}
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				return nil, err
			}
			out = append(out, s.TraceID)
		}
		return out, nil
	}
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Suite{
		Name:        "file",
		New:         func() sdk.Driver { return file.New() },
		MainPackage: "github.com/tracehop/tracehop/cmd/tracehop-driver-file",
		Backend: func(t *testing.T) drivertest.Backend {
			path := filepath.Join(t.TempDir(), "spans.jsonl")
			return drivertest.Backend{Config: map[string]any{"path": path}, Received: readFile(path), TraceIDs: rawTraceIDs(path)}
		},
		NoFailures: "the file driver writes a local file: there is no back end to go down, stall or refuse",
		Invalid: []drivertest.InvalidConfig{
			{Name: "missing path", Config: map[string]any{}, Key: "path"},
			{Name: "unknown key", Config: map[string]any{"path": "x", "colour": "blue"}, Key: "colour"},
			{Name: "wrong type", Config: map[string]any{"path": 42}, Key: "path"},
			{Name: "unwritable", Config: map[string]any{"path": "/proc/tracehop/spans.jsonl"}, Key: "path"},
		},
	})
}

// Several processes (here: drivers) appending to one file must never
// interleave lines.
func TestSharedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.jsonl")
	const writers, batches, per = 4, 20, 50
	var wg sync.WaitGroup
	for w := range writers {
		d := file.New()
		if _, err := d.Configure(context.Background(), []byte(`{"path":"`+path+`"}`), sdk.HostInfo{}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer d.Shutdown(context.Background())
			for b := range batches {
				first := uint64(w*batches*per + b*per + 1)
				if err := d.Export(context.Background(), drivertest.Spans(first, per)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got, err := readFile(path)()
	if err != nil {
		t.Fatalf("file has a corrupt line: %v", err)
	}
	if len(got) != writers*batches*per {
		t.Fatalf("got %d spans, want %d", len(got), writers*batches*per)
	}
}
