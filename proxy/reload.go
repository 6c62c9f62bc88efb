package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/proxy/config"
)

// Apply makes cfg the configuration in force, with tracer and p (nil
// without tracing) built for it, without dropping a connection: a
// listener whose address stays keeps its bound listener; new addresses are bound
// first, and if one cannot be, nothing changes and the error names it.
// Requests in flight finish on the snapshot they began on; it is retired
// (its net/http connections closed when idle, its pipeline shut down
// where no driver carries over, clusters that are gone closed) once they
// are done, or after RetireAfter.
func (s *Server) Apply(cfg *config.Config, tracer *Tracer, p *pipeline.Pipeline) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return errors.New("tracehop is shutting down")
	}
	// A bound address keeps the reuse_port it was bound with (the socket
	// cannot be rebound beside itself either way): refused before anything
	// is built for cfg.
	// (Before Start nothing is bound: Start binds with the new value.)
	for _, lc := range cfg.Listeners {
		for _, sock := range s.listeners {
			if s.started && sock.addr == lc.Address && (!ephemeral(lc.Address) || sock.name == lc.Name) && sock.reusePort != lc.ReusePort {
				return fmt.Errorf("listener %q: reuse_port cannot change while tracehop has %s bound (it is %t there): restart tracehop to change it, or put back reuse_port: %t",
					lc.Name, lc.Address, sock.reusePort, sock.reusePort)
			}
		}
	}
	prev := s.snap.Load()
	// From the build (which makes the new routes' series) to the switch,
	// no retirement forgets series.
	s.metricsMu.Lock()
	defer s.metricsMu.Unlock()
	next, err := s.builder().build(cfg, tracer, p, prev)
	if err != nil {
		return err
	}

	// Sockets carry over by address (a port 0 address only by name too:
	// each binds a new port).
	kept := make([]*listener, len(cfg.Listeners))
	used := map[*listener]bool{}
	for i, lc := range cfg.Listeners {
		for _, sock := range s.listeners {
			if !used[sock] && sock.addr == lc.Address && (!ephemeral(lc.Address) || sock.name == lc.Name) {
				if !s.started {
					sock.reusePort = lc.ReusePort // binds at Start
				}
				kept[i], used[sock] = sock, true
				break
			}
		}
	}
	var opened []*listener
	for i, lc := range cfg.Listeners {
		if kept[i] != nil || !s.started {
			continue
		}
		ln, err := bindListener(lc.Name, lc.Address, lc.ReusePort)
		if err != nil {
			for _, sock := range opened {
				sock.ln.Close()
			}
			return err
		}
		sock := s.newListener(lc.Name, lc.Address, lc.ReusePort)
		sock.ln = ln
		kept[i] = sock
		opened = append(opened, sock)
	}
	// The switch.
	for i, sock := range kept {
		if sock == nil { // not started: the listener binds at Start
			sock = s.newListener(cfg.Listeners[i].Name, cfg.Listeners[i].Address, cfg.Listeners[i].ReusePort)
			sock.cur.Store(next.frontends[i])
			kept[i] = sock
			continue
		}
		if s.started {
			s.attach(sock, next.frontends[i])
		} else {
			sock.cur.Store(next.frontends[i])
		}
	}
	s.snap.Store(next)
	for _, sock := range opened {
		s.serveSocket(sock)
	}
	var removed []*listener
	for _, sock := range s.listeners {
		if !used[sock] {
			removed = append(removed, sock)
		}
	}
	s.listeners = kept
	s.publishListeners()
	s.setLimits(cfg)
	s.metrics.configInfo.Reset()
	s.metrics.configInfo.WithLabelValues(next.hash).Set(1)
	s.retiring.Go(func() { s.retire(prev, next, removed) })
	return nil
}

func ephemeral(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err != nil || port == "0" || port == ""
}

// retirementGrace is how long a replaced snapshot is left alone before
// its retirement looks at its requests in flight: a request that loaded
// it just before the switch has begun by then.
const retirementGrace = 200 * time.Millisecond

// retire stops what a reload replaced, once nothing uses it.
func (s *Server) retire(prev, next *snapshot, removed []*listener) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), s.retireAfter)
	defer cancel()
	var wg sync.WaitGroup
	for _, sock := range removed {
		if sock.ln != nil {
			sock.ln.Close()
		}
		wg.Go(func() { sock.drain(ctx) })
	}
	time.Sleep(retirementGrace)
	for _, l := range prev.frontends {
		if l.handoff != nil {
			// Connections it took finish their request and close.
			wg.Go(func() { l.srv.Shutdown(ctx) })
		}
	}
	wg.Wait()
	s.log.Debug("retiring a replaced config", "waited_for_connections", time.Since(start))
	if t := prev.tracer; t != nil {
		// Twice at 0, a grace apart: a request that loaded the replaced
		// listener just before the switch has begun (and counted itself)
		// by the second look.
		for zeros := 0; zeros < 2 && ctx.Err() == nil; {
			if t.inflight.Load() > 0 {
				zeros = 0
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if zeros++; zeros < 2 {
				time.Sleep(retirementGrace)
			}
		}
		if n := t.inflight.Load(); n > 0 {
			s.log.Warn("a replaced config still has requests in flight after the drain timeout; the spans of those whose driver was removed will be counted as dropped", "requests", n)
		}
	}
	if prev.pipeline != nil && prev.pipeline != next.pipeline {
		// Its own deadline: waiting for requests above may have used the
		// first one up, and what a removed driver has queued must still
		// be flushed into it.
		fctx, fcancel := context.WithTimeout(context.Background(), s.retireAfter)
		if err := prev.pipeline.Shutdown(fctx); err != nil {
			s.log.Warn("a driver removed by the reload did not stop cleanly", "error", err)
		}
		fcancel()
	}
	for name, c := range prev.clusters {
		if next.clusters[name] != c {
			c.Close()
		}
	}
	// Unless a newer reload is in force (or being built) by now: its
	// routes decide.
	s.metricsMu.Lock()
	if s.snap.Load() == next {
		s.metrics.forget(prev.frontends, next.frontends)
	}
	s.metricsMu.Unlock()
}
