package zipkin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tracehop/tracehop/drivers/internal/zipkinmodel"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/attrnames"
)

// Config is the zipkin driver's config block.
type Config struct {
	CollectorEndpoint string                `json:"collector_endpoint"`
	Encoding          string                `json:"encoding"`
	Timeout           sdk.Duration          `json:"timeout"`
	MaxBatchSpans     int                   `json:"max_batch_spans"`
	Headers           map[string]sdk.Secret `json:"headers"`
	SharedSpanContext bool                  `json:"shared_span_context"`
	TraceID128Bit     *bool                 `json:"trace_id_128bit"`
	// AttributeNames is envoy (the default: the proxy's tags as Zipkin
	// users know them), otel or both (sdk/attrnames).
	AttributeNames string `json:"attribute_names"`
}

// Defaults.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultMaxBatchSpans = 1000
)

// Validate reports every problem with the config.
func (c *Config) Validate() error {
	var p sdk.Problems
	if c.CollectorEndpoint == "" {
		p.Add("collector_endpoint", "is required, e.g. http://127.0.0.1:9411/api/v2/spans")
	} else if u, err := url.Parse(c.CollectorEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.Add("collector_endpoint", "must be an http or https URL, got %q", c.CollectorEndpoint)
	}
	if c.Encoding != "json" && c.Encoding != "proto" && c.Encoding != "json_v1" {
		p.Add("encoding", "must be json, proto or json_v1 (Zipkin v1 JSON, for /api/v1/spans), got %q", c.Encoding)
	}
	if c.Timeout <= 0 {
		p.Add("timeout", "must be positive, got %s", time.Duration(c.Timeout))
	}
	if c.MaxBatchSpans <= 0 {
		p.Add("max_batch_spans", "must be positive, got %d", c.MaxBatchSpans)
	}
	for k := range c.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			p.Add("headers", "%q is not a header name", k)
		}
	}
	if _, err := attrnames.Parse(c.AttributeNames, attrnames.Envoy); err != nil {
		p.Add("attribute_names", "%v", err)
	}
	return p.Err()
}

// Driver posts spans to a Zipkin collector.
type Driver struct {
	cfg    Config
	names  attrnames.Mode
	client *http.Client
	header http.Header

	shutdown sdk.ShutdownOnce
	// bufs recycles payloads and scratch space between Exports.
	bufs sync.Pool
}

var _ sdk.Driver = (*Driver)(nil)

// New returns an unconfigured zipkin driver.
func New() *Driver { return &Driver{} }

// Configure decodes and checks the config and prepares the HTTP client. It
// does not contact the collector.
func (d *Driver) Configure(_ context.Context, raw []byte, _ sdk.HostInfo) (sdk.Capabilities, error) {
	d.cfg = Config{Encoding: "json", Timeout: sdk.Duration(DefaultTimeout), MaxBatchSpans: DefaultMaxBatchSpans}
	if err := sdk.DecodeConfig(raw, &d.cfg); err != nil {
		return sdk.Capabilities{}, err
	}
	d.names, _ = attrnames.Parse(d.cfg.AttributeNames, attrnames.Envoy)
	d.header = http.Header{}
	for k, v := range d.cfg.Headers {
		d.header.Set(k, v.Value())
	}
	contentType := "application/json"
	if d.cfg.Encoding == "proto" {
		contentType = "application/x-protobuf"
	}
	d.header.Set("Content-Type", contentType)
	// Do not trace the tracer: Zipkin's convention for reports.
	d.header.Set("b3", "0")
	d.client = &http.Client{
		Timeout:   time.Duration(d.cfg.Timeout),
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true},
	}
	return sdk.Capabilities{
		Propagation: []string{sdk.FormatB3},
		TraceID128:  d.cfg.TraceID128Bit == nil || *d.cfg.TraceID128Bit,
		Precision:   time.Microsecond,
		SharedSpans: d.cfg.SharedSpanContext,
	}, nil
}

// Export posts the spans in chunks of at most max_batch_spans and returns
// once the collector has accepted all of them.
func (d *Driver) Export(ctx context.Context, spans []sdk.Span) error {
	if d.client == nil || d.shutdown.Done() {
		return sdk.Permanent(errors.New("zipkin driver is not configured or already shut down"))
	}
	// Both encodings are written straight from the spans
	// (zipkinmodel.AppendProto and AppendJSONList, tested to match
	// zipkin-go's serializers byte for byte or field for field), into
	// reused buffers.
	bufs, _ := d.bufs.Get().(*[2][]byte)
	if bufs == nil {
		bufs = new([2][]byte)
	}
	spans = attrnames.Rename(spans, d.names)
	for start := 0; start < len(spans); start += d.cfg.MaxBatchSpans {
		chunk := spans[start:min(start+d.cfg.MaxBatchSpans, len(spans))]
		switch d.cfg.Encoding {
		case "proto":
			bufs[0], bufs[1] = zipkinmodel.AppendProto(bufs[0][:0], bufs[1], chunk)
		case "json_v1":
			bufs[0] = zipkinmodel.AppendJSONV1List(bufs[0][:0], chunk)
		default:
			bufs[0] = zipkinmodel.AppendJSONList(bufs[0][:0], chunk)
		}
		body := bytes.NewReader(bufs[0])
		err := d.send(ctx, body, len(chunk))
		if body.Len() > 0 {
			// net/http may still be reading the body (the collector
			// answered before taking all of it): leave the buffer to it.
			return err
		}
		if err != nil {
			d.bufs.Put(bufs)
			return err
		}
	}
	d.bufs.Put(bufs)
	return nil
}

// send posts one encoded payload of n spans.
func (d *Driver) send(ctx context.Context, body *bytes.Reader, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.CollectorEndpoint, body)
	if err != nil {
		return sdk.Permanent(err)
	}
	req.Header = d.header.Clone()
	resp, err := d.client.Do(req)
	if err != nil {
		// Connection refused, reset, timeout: the collector may come back.
		return sdk.Retryable(fmt.Errorf("POST %s: %w", d.cfg.CollectorEndpoint, unwrapURLError(err)))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("POST %s: %d spans refused with %s: %s", d.cfg.CollectorEndpoint, n, resp.Status, strings.TrimSpace(string(msg)))
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return sdk.Retryable(err)
	default:
		return sdk.Permanent(err)
	}
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Shutdown releases idle connections. Export is synchronous, so nothing is
// buffered.
func (d *Driver) Shutdown(context.Context) error {
	return d.shutdown.Do(func() error {
		if d.client != nil {
			d.client.CloseIdleConnections()
		}
		return nil
	})
}
