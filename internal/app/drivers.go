package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/driverhost"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/proxy/config"
)

// RunningDriver is one configured driver and its process: the config
// entry's name, and the host's supervisor of the process.
type RunningDriver struct {
	Name   string
	Driver *driverhost.Process
}

// HostInfo describes this tracehop to its drivers.
func HostInfo(cfg *config.Config) core.HostInfo {
	return core.HostInfo{Version: core.Version, NodeID: cfg.Node.ID, Service: cfg.Node.Service, Zone: cfg.Node.Zone}
}

// StartDrivers launches and configures every driver of the tracing block, in
// parallel. If any fails, the others are stopped and the error lists every
// failure.
func StartDrivers(ctx context.Context, cfg *config.Config, logger *slog.Logger) ([]RunningDriver, error) {
	if cfg.Tracing == nil {
		return nil, nil
	}
	all := make([]int, len(cfg.Tracing.AllDrivers()))
	for i := range all {
		all[i] = i
	}
	return startDrivers(ctx, cfg, all, logger)
}

// startDrivers starts the drivers of cfg at indexes (of AllDrivers), so
// that a refusal names each driver's own key and line.
func startDrivers(ctx context.Context, cfg *config.Config, indexes []int, logger *slog.Logger) ([]RunningDriver, error) {
	specs := cfg.Tracing.AllDrivers()
	started := make([]RunningDriver, len(indexes))
	errs := make([]error, len(indexes))
	var wg sync.WaitGroup
	for j, i := range indexes {
		d := specs[i]
		wg.Go(func() {
			// A missing config block marshals as null, which
			// sdk.DecodeConfig takes as "all defaults".
			raw, err := json.Marshal(d.Config)
			if err != nil {
				errs[j] = fmt.Errorf("driver %q: config: %w", d.Name, err)
				return
			}
			drv, err := driverhost.Start(ctx, driverhost.Spec{
				Name: d.Name, Path: d.Path, Checksum: d.Checksum, Config: raw, Env: d.Env, PassEnv: d.PassEnv,
				Transport: d.Transport, Nice: d.Nice,
			}, driverhost.Options{
				Search: driverhost.DefaultSearch(cfg.Tracing.PluginDir),
				Host:   HostInfo(cfg),
				Logger: logger,
			})
			errs[j] = placed(cfg, i, err)
			started[j] = RunningDriver{Name: d.Name, Driver: drv}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		StopDrivers(context.Background(), started)
		return nil, &DriverError{Err: err}
	}
	return started, nil
}

// placed turns a driver's refusal of its config into problems at the YAML
// lines of the keys it names (tracehop.yaml:17:
// tracing.driver.config.endpont: unknown key ...), when the driver names
// them (the SDK's DecodeConfig and Problems do).
func placed(cfg *config.Config, i int, err error) error {
	var ce *wire.ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) == 0 {
		return err
	}
	out := &config.Error{}
	for _, p := range ce.Problems {
		key := cfg.DriverKey(i) + ".config." + p.Key
		file, line := cfg.Place(key)
		out.Problems = append(out.Problems, config.Problem{File: file, Line: line, Key: key, Msg: fmt.Sprintf("%s (driver %q)", p.Message, ce.Driver)})
	}
	slices.SortStableFunc(out.Problems, func(a, b config.Problem) int { return a.Line - b.Line })
	return out
}

// DriverError reports drivers that could not be started: not found, not a
// driver, a checksum mismatch, a refused config. tracehop exits with 3 on
// it, as for an invalid config.
type DriverError struct {
	Err error
}

func (e *DriverError) Error() string { return e.Err.Error() }
func (e *DriverError) Unwrap() error { return e.Err }

// StopDrivers shuts down every started driver.
func StopDrivers(ctx context.Context, ds []RunningDriver) {
	for _, d := range ds {
		if d.Driver != nil {
			d.Driver.Shutdown(ctx)
		}
	}
}
