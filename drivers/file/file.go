package file

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/openzipkin/zipkin-go/model"

	"github.com/tracehop/tracehop/drivers/internal/zipkinmodel"
	"github.com/tracehop/tracehop/sdk"
)

// Config is the file driver's config block.
type Config struct {
	// Path is the file to append to, created (with its directory) if
	// missing; "-" is standard output.
	Path string `json:"path"`
}

// Validate reports every problem with the config.
func (c *Config) Validate() error {
	var p sdk.Problems
	if c.Path == "" {
		p.Add("path", `is required: name the file to append spans to, or "-" for standard output`)
	}
	return p.Err()
}

// Driver writes spans as Zipkin v2 JSON lines.
type Driver struct {
	mu       sync.Mutex
	out      *os.File
	owned    bool // out was opened by Configure and is closed by Shutdown
	shutdown sdk.ShutdownOnce
	// buffers holds the batches' line buffers for reuse: a fresh one per
	// batch is about 350 KiB of garbage for 512 spans.
	buffers sync.Pool
}

var _ sdk.Driver = (*Driver)(nil)

// New returns an unconfigured file driver.
func New() *Driver { return &Driver{} }

// Configure opens the file for appending.
func (d *Driver) Configure(_ context.Context, raw []byte, _ sdk.HostInfo) (sdk.Capabilities, error) {
	cfg := Config{}
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return sdk.Capabilities{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cfg.Path == "-" {
		d.out = os.Stdout
	} else {
		if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
			return sdk.Capabilities{}, fmt.Errorf("path: cannot create the directory of %s: %w", cfg.Path, err)
		}
		f, err := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return sdk.Capabilities{}, fmt.Errorf("path: cannot open %s for appending: %w", cfg.Path, err)
		}
		d.out, d.owned = f, true
	}
	return sdk.Capabilities{
		// A file reads no header: W3C's traceparent is what today's
		// tracers read, and each other format costs every upstream
		// request a few µs to parse (README: Propagation). tracing.
		// propagation adds b3 where applications need it.
		Propagation: []string{sdk.FormatTraceContext},
		TraceID128:  true,
		Precision:   time.Microsecond,
	}, nil
}

// Export appends the batch with one write under an exclusive lock on the
// file, so that processes sharing the file never interleave lines.
func (d *Driver) Export(_ context.Context, spans []sdk.Span) error {
	bp, _ := d.buffers.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := (*bp)[:0]
	buf = zipkinmodel.AppendJSONLines(buf, spans)
	defer func() {
		if cap(buf) <= 4<<20 { // don't keep the odd giant batch's buffer
			*bp = buf
			d.buffers.Put(bp)
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.out == nil || d.shutdown.Done() {
		return sdk.Permanent(errors.New("file driver is not configured or already shut down"))
	}
	fd := int(d.out.Fd())
	if d.owned {
		if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
			return sdk.Retryable(fmt.Errorf("lock %s: %w", d.out.Name(), err))
		}
		defer syscall.Flock(fd, syscall.LOCK_UN)
	}
	if _, err := d.out.Write(buf); err != nil {
		return sdk.Retryable(fmt.Errorf("write %s: %w", d.out.Name(), err))
	}
	return nil
}

// Shutdown closes the file. Writes are not buffered, so there is nothing to
// flush.
func (d *Driver) Shutdown(context.Context) error {
	return d.shutdown.Do(func() error {
		d.mu.Lock() // after the write in flight
		defer d.mu.Unlock()
		if d.owned {
			return d.out.Close()
		}
		return nil
	})
}

// ReadSpans reads spans written by the file driver (or any Zipkin v2 JSON
// lines), for tools and tests.
func ReadSpans(r io.Reader) ([]sdk.Span, error) {
	var out []sdk.Span
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var m model.SpanModel
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return out, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, zipkinmodel.FromModel(&m))
	}
	return out, sc.Err()
}
