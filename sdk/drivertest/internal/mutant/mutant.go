// Package mutant is a small Zipkin v2 JSON driver with bugs to order, one
// per blind spot the kit used to have. drivertest's own tests run the kit
// against each bug and check that the kit fails it; without a bug it
// passes.
package mutant

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tracehop/tracehop/sdk"
)

// The bugs.
const (
	BugUTF8      = "utf8"      // fails the batch on a string that is not UTF-8
	BugClasses   = "classes"   // Retryable and Permanent swapped
	BugByteOrder = "byteorder" // the trace id's halves swapped
	BugDeadline  = "deadline"  // ignores Export's context
	// The blind spots issue 28 found in the kit's second edition.
	BugZeroParent  = "zeroparent"  // a root's parentId written as zeros
	BugThrottle    = "throttle"    // HTTP 429 taken as a refusal (Permanent)
	BugOwnTimeout  = "owntimeout"  // ignores Export's context, with a timeout of its own
	BugSpanIDOrder = "spanidorder" // the span id's bytes reversed
	BugBatchLimit  = "batchlimit"  // sends at most 1,000 spans of a batch
	BugDuplicate   = "duplicate"   // sends a batch's first span twice
	// The kit's CrashRestart check (issue 28, item 3).
	BugLockFile = "lockfile" // a lock file in $TMPDIR that a killed process leaves behind, refused at the next Configure
)

// bugs lists every bug a config may name.
var bugs = []string{"", BugUTF8, BugClasses, BugByteOrder, BugDeadline, BugZeroParent, BugThrottle, BugOwnTimeout,
	BugSpanIDOrder, BugBatchLimit, BugDuplicate, BugLockFile}

// Config is the driver's config.
type Config struct {
	Endpoint string `json:"endpoint"`
	Bug      string `json:"bug"`
	// License is a secret under a name no pattern would guess: the host
	// learns it is one from the SDK.
	License sdk.Secret `json:"license"`
}

// Validate reports every problem.
func (c *Config) Validate() error {
	var p sdk.Problems
	if c.Endpoint == "" {
		p.Add("endpoint", "is required, e.g. http://127.0.0.1:9411/api/v2/spans")
	}
	if !slices.Contains(bugs, c.Bug) {
		p.Add("bug", "unknown bug %q", c.Bug)
	}
	return p.Err()
}

// Driver posts spans as Zipkin v2 JSON.
type Driver struct {
	cfg    Config
	closed atomic.Bool
	lock   string // BugLockFile's file, removed at Shutdown
}

// New returns an unconfigured driver.
func New() *Driver { return &Driver{} }

var _ sdk.Driver = (*Driver)(nil)

// Configure decodes and checks the config.
func (d *Driver) Configure(_ context.Context, raw []byte, _ sdk.HostInfo) (sdk.Capabilities, error) {
	if err := sdk.DecodeConfig(raw, &d.cfg); err != nil {
		return sdk.Capabilities{}, err
	}
	if d.cfg.Bug == BugLockFile {
		// One instance per endpoint, "enforced" with a file that only
		// Shutdown removes.
		lock := filepath.Join(os.TempDir(), fmt.Sprintf("tracehop-mutant-%x.lock", sha256.Sum256([]byte(d.cfg.Endpoint))))
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return sdk.Capabilities{}, fmt.Errorf("another instance holds %s: %w", lock, err)
		}
		f.Close()
		d.lock = lock
	}
	return sdk.Capabilities{Propagation: []string{sdk.FormatB3}, TraceID128: true, Precision: 1000}, nil
}

type endpoint struct {
	ServiceName string `json:"serviceName,omitempty"`
	IPv4        string `json:"ipv4,omitempty"`
	IPv6        string `json:"ipv6,omitempty"`
	Port        uint16 `json:"port,omitempty"`
}

type annotation struct {
	Timestamp int64  `json:"timestamp"`
	Value     string `json:"value"`
}

type span struct {
	TraceID     string            `json:"traceId"`
	ID          string            `json:"id"`
	ParentID    string            `json:"parentId,omitempty"`
	Name        string            `json:"name"`
	Kind        string            `json:"kind,omitempty"`
	Timestamp   int64             `json:"timestamp"`
	Duration    int64             `json:"duration"`
	Local       endpoint          `json:"localEndpoint"`
	Remote      *endpoint         `json:"remoteEndpoint,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Annotations []annotation      `json:"annotations,omitempty"`
}

// Export posts the batch.
func (d *Driver) Export(ctx context.Context, spans []sdk.Span) error {
	if d.closed.Load() {
		return sdk.Permanent(errors.New("mutant: shut down"))
	}
	valid := sdk.ValidUTF8
	if d.cfg.Bug == BugBatchLimit && len(spans) > 1000 {
		spans = spans[:1000] // a fixed buffer, and the rest silently gone
	}
	out := make([]span, len(spans))
	for i, s := range spans {
		hi, lo := s.TraceID.High, s.TraceID.Low
		if d.cfg.Bug == BugByteOrder {
			hi, lo = lo, hi
		}
		id := uint64(s.SpanID)
		if d.cfg.Bug == BugSpanIDOrder {
			id = bits.ReverseBytes64(id)
		}
		z := span{
			TraceID: fmt.Sprintf("%016x%016x", hi, lo), ID: fmt.Sprintf("%016x", id), Name: valid(s.Name),
			Timestamp: s.StartUnixNano / 1000, Duration: max(int64(s.Duration)/1000, 1),
			Local: endpoint{ServiceName: valid(s.LocalService)}, Tags: map[string]string{},
		}
		if s.ParentID != 0 || d.cfg.Bug == BugZeroParent {
			z.ParentID = s.ParentID.String()
		}
		if k := map[sdk.Kind]string{sdk.KindServer: "SERVER", sdk.KindClient: "CLIENT"}[s.Kind]; k != "" {
			z.Kind = k
		}
		if r := s.Remote; !r.IsZero() {
			z.Remote = &endpoint{ServiceName: valid(r.Service), Port: r.Port}
			if r.IP.Is4() {
				z.Remote.IPv4 = r.IP.String()
			} else if r.IP.IsValid() {
				z.Remote.IPv6 = r.IP.String()
			}
		}
		for _, t := range s.Tags {
			if d.cfg.Bug == BugUTF8 && !utf8.ValidString(t.Value) {
				return sdk.Permanent(errors.New("proto: string field contains invalid UTF-8"))
			}
			z.Tags[valid(t.Key)] = valid(t.Value)
		}
		if s.Error {
			z.Tags["error"] = "true"
		}
		for _, e := range s.Events {
			z.Annotations = append(z.Annotations, annotation{Timestamp: e.UnixNano / 1000, Value: valid(e.Value)})
		}
		out[i] = z
	}
	if d.cfg.Bug == BugDuplicate && len(out) > 0 {
		out = append(out, out[0])
	}
	body, err := json.Marshal(out)
	if err != nil {
		return sdk.Permanent(err)
	}
	client := http.DefaultClient
	switch d.cfg.Bug {
	case BugDeadline:
		ctx = context.Background()
	case BugOwnTimeout:
		// Its own timeout, not the host's deadline.
		ctx = context.Background()
		client = &http.Client{Timeout: 1500 * time.Millisecond}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.Endpoint, bytes.NewReader(body))
	if err != nil {
		return sdk.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return d.retryable(err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests && d.cfg.Bug == BugThrottle:
		return sdk.Permanent(errors.New("collector refused the spans: " + resp.Status))
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return d.retryable(errors.New("collector answered " + strconv.Itoa(resp.StatusCode)))
	}
	return d.permanent(errors.New("collector refused the spans: " + resp.Status))
}

func (d *Driver) retryable(err error) error {
	if d.cfg.Bug == BugClasses {
		return sdk.Permanent(err)
	}
	return sdk.Retryable(err)
}

func (d *Driver) permanent(err error) error {
	if d.cfg.Bug == BugClasses {
		return sdk.Retryable(err)
	}
	return sdk.Permanent(err)
}

// Shutdown stops Export; nothing is buffered.
func (d *Driver) Shutdown(context.Context) error {
	d.closed.Store(true)
	if d.lock != "" {
		os.Remove(d.lock)
	}
	return nil
}
