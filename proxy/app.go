package proxy

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/proxy/config"
)

// App is a started tracehop: drivers, pipeline, tracer and server.
type App struct {
	Server  *Server
	Tracer  *Tracer // nil without tracing
	Drivers []StartedDriver
	Addrs   []Addr
}

// AppOptions tune Start.
type AppOptions struct {
	Logger    *slog.Logger
	AccessLog bool
}

// Start launches what cfg describes: its drivers (each configured, or an
// error naming every driver that refused), the span pipeline, and every
// listener. On error nothing is left running.
func Start(ctx context.Context, cfg *config.Config, opts AppOptions) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	app := &App{}
	var p *pipeline.Pipeline
	if cfg.Tracing != nil {
		drivers, err := StartDrivers(ctx, cfg, opts.Logger)
		if err != nil {
			return nil, err
		}
		app.Drivers = drivers
		targets := make([]pipeline.Target, len(drivers))
		caps := make([]core.Capabilities, len(drivers))
		for i, d := range drivers {
			targets[i] = pipeline.Target{Name: d.Name, Driver: d.Driver}
			caps[i] = d.Driver.Capabilities()
		}
		p, err = pipeline.New(cfg.Tracing.Queue.Pipeline(), targets, opts.Logger.With("component", "pipeline"))
		if err != nil {
			StopDrivers(context.Background(), drivers)
			return nil, fmt.Errorf("tracing.queue: %w", err)
		}
		app.Tracer, err = NewTracer(cfg, TracerOptions{Sink: p, Capabilities: caps})
		if err != nil {
			p.Shutdown(context.Background())
			return nil, err
		}
	}
	app.Server = NewServer(cfg, Options{Logger: opts.Logger, Tracer: app.Tracer, Pipeline: p, AccessLog: opts.AccessLog})
	addrs, err := app.Server.Start()
	if err != nil {
		if p != nil {
			p.Shutdown(context.Background())
		}
		return nil, err
	}
	app.Addrs = addrs
	return app, nil
}

// Shutdown drains requests, flushes spans and stops the drivers.
func (a *App) Shutdown(ctx context.Context) error { return a.Server.Shutdown(ctx) }
