// Command testdriver is a driver for tracehop's own tests of the driver host:
// its config tells it to record what it receives, discard it, stall, reject
// its config or crash, so that tests can drive a real plugin process into
// every situation the host must handle. It is not shipped.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tracehop/tracehop/sdk"
)

type config struct {
	// Record appends each received span id (decimal, one per line) to
	// this file before acknowledging the batch.
	Record string `json:"record"`
	// Stall makes Export block until its context ends.
	Stall bool `json:"stall"`
	// Reject makes Configure refuse the config with this message.
	Reject string `json:"reject"`
	// ExitOnConfigure makes the process print to stderr and exit with
	// status 3 during Configure.
	ExitOnConfigure bool `json:"exit_on_configure"`
	// PanicOnConfigure makes Configure panic.
	PanicOnConfigure bool `json:"panic_on_configure"`
	// DumpEnv writes the process's environment to this file.
	DumpEnv string `json:"dump_env"`
	// FailFirst makes the first N Export calls fail with a retryable
	// error that looks like a collector's connection refusal.
	FailFirst int `json:"fail_first"`
	// RetryAfter makes those failures ask for this delay (sdk.RetryAfter).
	RetryAfter sdk.Duration `json:"retry_after"`
	// RejectEach makes every Export report this many spans rejected
	// (sdk.PartiallyRejected) after recording the batch.
	RejectEach int `json:"reject_each"`
	// NotReady makes Configure fail as retryable (a secret store still
	// sealed) while this file holds fewer than ReadyAfter lines; each
	// Configure call appends one line to it first.
	NotReady   string `json:"not_ready"`
	ReadyAfter int    `json:"ready_after"`
	// Stderr lines are written to the process's standard error at
	// Configure, as they are: what a broken or hostile driver may write.
	Stderr []string `json:"stderr"`
}

type driver struct {
	cfg   config
	mu    sync.Mutex
	out   *os.File
	fails int
	done  bool
}

func (d *driver) Configure(_ context.Context, raw []byte, host sdk.HostInfo) (sdk.Capabilities, error) {
	if err := sdk.DecodeConfig(raw, &d.cfg); err != nil {
		return sdk.Capabilities{}, err
	}
	for _, line := range d.cfg.Stderr {
		os.Stderr.WriteString(line + "\n")
	}
	switch {
	case d.cfg.Reject != "":
		return sdk.Capabilities{}, errors.New(d.cfg.Reject)
	case d.cfg.ExitOnConfigure:
		fmt.Fprintln(os.Stderr, "testdriver: fatal: cannot reach the moon")
		os.Exit(3)
	case d.cfg.PanicOnConfigure:
		panic("testdriver: configured to panic")
	case d.cfg.NotReady != "":
		if n, err := countConfigure(d.cfg.NotReady); err != nil || n <= d.cfg.ReadyAfter {
			return sdk.Capabilities{}, sdk.Retryable(fmt.Errorf("secret store sealed (attempt %d)", n))
		}
	}
	if d.cfg.DumpEnv != "" {
		if err := os.WriteFile(d.cfg.DumpEnv, []byte(strings.Join(os.Environ(), "\n")), 0o600); err != nil {
			return sdk.Capabilities{}, err
		}
	}
	if d.cfg.Record != "" {
		f, err := os.OpenFile(d.cfg.Record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return sdk.Capabilities{}, fmt.Errorf("record: %w", err)
		}
		d.out = f
	}
	slog.Info("testdriver configured", "driver_name", host.DriverName, "pid", os.Getpid())
	return sdk.Capabilities{Propagation: []string{sdk.FormatB3}, TraceID128: true, Precision: time.Nanosecond}, nil
}

func (d *driver) Export(ctx context.Context, spans []sdk.Span) error {
	if d.cfg.Stall {
		<-ctx.Done()
		return sdk.Retryable(ctx.Err())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return sdk.Permanent(errors.New("shut down"))
	}
	if d.fails < d.cfg.FailFirst {
		d.fails++
		return sdk.RetryAfter(errors.New("dial tcp 127.0.0.1:9411: connect: connection refused"), time.Duration(d.cfg.RetryAfter))
	}
	if d.out == nil {
		return sdk.PartiallyRejected(d.cfg.RejectEach, rejectMessage(d.cfg.RejectEach))
	}
	buf := make([]byte, 0, 21*len(spans))
	for i := range spans {
		buf = strconv.AppendUint(buf, uint64(spans[i].SpanID), 10)
		buf = append(buf, '\n')
	}
	if _, err := d.out.Write(buf); err != nil {
		return err
	}
	return sdk.PartiallyRejected(d.cfg.RejectEach, rejectMessage(d.cfg.RejectEach))
}

func rejectMessage(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("testdriver: refused %d spans as told", n)
}

func (d *driver) Shutdown(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = true
	if d.out != nil {
		d.out.Close()
		d.out = nil
	}
	return nil
}

func main() { sdk.Serve(&driver{}) }

// countConfigure appends a line to path and returns how many it holds.
func countConfigure(path string) (int, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	_, err = f.WriteString("configure\n")
	f.Close()
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(path)
	return strings.Count(string(b), "\n"), err
}
