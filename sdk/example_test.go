package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tracehop/tracehop/sdk"
)

// countDriver is a complete driver: it "reports" spans by counting them per
// service. A real driver converts each span to its back end's format and
// sends the batch in Export.
type countDriver struct {
	cfg struct {
		Prefix string `json:"prefix"`
	}
	counts map[string]int
}

func (d *countDriver) Configure(_ context.Context, raw []byte, _ sdk.HostInfo) (sdk.Capabilities, error) {
	if err := sdk.DecodeConfig(raw, &d.cfg); err != nil {
		return sdk.Capabilities{}, err // names the key, e.g. "prefx: unknown key (valid keys: prefix)"
	}
	d.counts = map[string]int{}
	return sdk.Capabilities{Propagation: []string{sdk.FormatB3}, TraceID128: true, Precision: time.Microsecond}, nil
}

func (d *countDriver) Export(_ context.Context, spans []sdk.Span) error {
	if d.counts == nil {
		return sdk.Permanent(errors.New("not configured"))
	}
	for _, s := range spans {
		d.counts[d.cfg.Prefix+s.LocalService]++
	}
	return nil
}

func (d *countDriver) Shutdown(context.Context) error { return nil }

// A driver implements three methods; its main is `sdk.Serve(&countDriver{})`.
// Here the host's calls are made by hand to show the lifecycle.
func Example() {
	d := &countDriver{}
	ctx := context.Background()

	_, err := d.Configure(ctx, []byte(`{"prefx": "svc:"}`), sdk.HostInfo{})
	fmt.Println("bad config:", err)

	caps, _ := d.Configure(ctx, []byte(`{"prefix": "svc:"}`), sdk.HostInfo{})
	fmt.Println("reads:", caps.Propagation)

	d.Export(ctx, []sdk.Span{{LocalService: "front-proxy"}, {LocalService: "service1"}, {LocalService: "service1"}})
	fmt.Println(d.counts["svc:front-proxy"], d.counts["svc:service1"])
	d.Shutdown(ctx)
	// Output:
	// bad config: prefx: unknown key (did you mean "prefix"? valid keys: prefix)
	// reads: [b3]
	// 1 2
}

// Export passes on what the back end said: a delay it asked for before the
// next attempt, or the spans of an accepted batch it refused.
func ExampleRetryAfter() {
	// e.g. HTTP 429 with "Retry-After: 2"
	err := sdk.RetryAfter(errors.New("429 Too Many Requests"), 2*time.Second)
	fmt.Println(sdk.IsPermanent(err), sdk.RetryDelay(err))

	// e.g. an OTLP response with partial_success.rejected_spans = 3
	err = sdk.PartiallyRejected(3, "3 spans have an invalid trace id")
	fmt.Println(err)
	fmt.Println(sdk.PartiallyRejected(0, "") == nil)
	// Output:
	// false 2s
	// back end rejected 3 spans of the batch: 3 spans have an invalid trace id
	// true
}
