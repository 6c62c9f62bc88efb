package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"time"

	"github.com/tracehop/tracehop/core/sampling"
	"github.com/tracehop/tracehop/proxy/config"
)

// RemoteStatus is the state of the remote sampling source, as GET
// /sampling shows it.
type RemoteStatus struct {
	URL          string        `json:"url"`
	Service      string        `json:"service"`
	PollInterval time.Duration `json:"poll_interval_ns"`
	Polls        uint64        `json:"polls"`
	Failures     uint64        `json:"failures"`
	// LastSuccess is when the endpoint last answered with a strategy; zero
	// before the first answer, when the file's sampling applies.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the last poll's failure, "" when it succeeded: the last
	// good strategy then stays in force.
	LastError string `json:"last_error,omitempty"`
}

// remotePoller polls a Jaeger remote sampling endpoint in the background,
// off the request path, and hands each new strategy to apply. A failed
// poll keeps the last good strategy in force; before the first success
// nothing is applied, and the file's rules stand.
type remotePoller struct {
	cfg    config.RemoteSampling
	client *http.Client
	apply  func(*sampling.Strategy)
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	last   *sampling.Strategy
	status RemoteStatus
}

// startRemote starts polling at once, then every poll interval, until
// stop. seed is the last strategy of a poller of the same source that
// this one replaces (a reload that changed only the interval), or nil.
func startRemote(cfg config.RemoteSampling, seed *sampling.Strategy, apply func(*sampling.Strategy), log *slog.Logger) *remotePoller {
	ctx, cancel := context.WithCancel(context.Background())
	p := &remotePoller{
		cfg: cfg, apply: apply, cancel: cancel, done: make(chan struct{}),
		log:    log.With("component", "remote-sampling", "url", cfg.URL, "service", cfg.Service),
		client: &http.Client{Timeout: min(cfg.PollInterval, 10*time.Second)},
		status: RemoteStatus{URL: cfg.URL, Service: cfg.Service, PollInterval: cfg.PollInterval},
		last:   seed,
	}
	go p.run(ctx)
	return p
}

func (p *remotePoller) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(p.cfg.PollInterval)
	defer tick.Stop()
	for {
		p.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll asks for the strategy once and applies it when it changed.
func (p *remotePoller) poll(ctx context.Context) {
	st, err := p.fetch(ctx)
	if ctx.Err() != nil {
		return // stopping
	}
	p.mu.Lock()
	p.status.Polls++
	hadError := p.status.LastError != "" || p.status.LastSuccess.IsZero()
	if err != nil {
		p.status.Failures++
		first := p.status.LastError != err.Error()
		p.status.LastError = err.Error()
		kept := p.last != nil
		p.mu.Unlock()
		if first { // once per kind of failure, not once per poll
			if kept {
				p.log.Warn("remote sampling endpoint failed: the last strategy it gave stays in force", "error", err)
			} else {
				p.log.Warn("remote sampling endpoint failed: the config's sampling stays in force until it answers", "error", err)
			}
		}
		return
	}
	changed := !reflect.DeepEqual(st, p.last)
	p.last = st
	p.status.LastSuccess, p.status.LastError = time.Now(), ""
	p.mu.Unlock()
	if changed {
		p.apply(st)
		p.log.Info("remote sampling strategy in force", "probability", st.Probability, "rate_limited", st.RateLimited,
			"max_traces_per_second", st.MaxTracesPerSecond, "operations", len(st.Operations), "lower_bound_traces_per_second", st.LowerBound)
	} else if hadError {
		p.log.Info("remote sampling endpoint answers again")
	}
}

// fetch GETs URL?service=SERVICE and parses Jaeger's answer.
func (p *remotePoller) fetch(ctx context.Context) (*sampling.Strategy, error) {
	u, err := url.Parse(p.cfg.URL)
	if err != nil {
		return nil, err
	}
	u.RawQuery = url.Values{"service": {p.cfg.Service}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		if len(body) > 200 {
			body = body[:200]
		}
		return nil, fmt.Errorf("%s: %q", resp.Status, body)
	}
	return sampling.ParseJaegerStrategy(body)
}

// Last returns the last strategy the endpoint gave, nil before the first.
func (p *remotePoller) Last() *sampling.Strategy {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// Status returns the source's state.
func (p *remotePoller) Status() *RemoteStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status
	return &st
}

// stop ends the polling and waits for it; nil-safe.
func (p *remotePoller) stop() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
}
