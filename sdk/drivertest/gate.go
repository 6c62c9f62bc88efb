package drivertest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Gate is a TCP front for a test back end that can make it unreachable
// (Down: connection refused) or unresponsive (Stall: connections taken and
// never answered), whatever its protocol: the FailDown and FailSlow of
// Backend.Fail. Point the driver's config at Addr instead of the back end.
type Gate struct {
	addr, target string

	mu      sync.Mutex
	ln      net.Listener
	stalled bool
	conns   map[net.Conn]struct{}
}

// NewGate starts a gate in front of target (host:port); it closes with the
// test.
func NewGate(t testing.TB, target string) *Gate {
	t.Helper()
	g := &Gate{target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	g.serve(ln)
	t.Cleanup(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.ln != nil {
			g.ln.Close()
		}
		g.closeAll()
	})
	return g
}

// Addr is the address the driver should send to.
func (g *Gate) Addr() string { return g.addr }

// Down closes the gate's port and every connection through it until
// restore is called.
func (g *Gate) Down() (restore func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	g.closeAll()
	return func() {
		var ln net.Listener
		var err error
		for range 100 { // the port may linger a moment after the close
			if ln, err = net.Listen("tcp", g.addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			panic("drivertest: gate cannot listen again on " + g.addr + ": " + err.Error())
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		g.serve(ln)
	}
}

// Stall makes the back end take connections and requests and never answer,
// until restore is called (which closes what it held).
func (g *Gate) Stall() (restore func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stalled = true
	g.closeAll() // kept-alive connections must stall too: they reconnect
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.stalled = false
		g.closeAll()
	}
}

// serve accepts on ln; g.mu is held.
func (g *Gate) serve(ln net.Listener) {
	g.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			g.conns[c] = struct{}{}
			stalled := g.stalled
			g.mu.Unlock()
			if stalled {
				go io.Copy(io.Discard, c) // read and never answer
				continue
			}
			go g.forward(c)
		}
	}()
}

func (g *Gate) forward(c net.Conn) {
	up, err := net.Dial("tcp", g.target)
	if err != nil {
		c.Close()
		return
	}
	g.mu.Lock()
	g.conns[up] = struct{}{}
	g.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	g.mu.Lock()
	delete(g.conns, c)
	delete(g.conns, up)
	g.mu.Unlock()
}

// closeAll closes every connection through the gate; g.mu is held.
func (g *Gate) closeAll() {
	for c := range g.conns {
		c.Close()
		delete(g.conns, c)
	}
}

// Fail is Backend.Fail for a back end behind the gate: FailDown and
// FailSlow are the gate's; answer makes the back end itself answer
// FailOverloaded and FailRefuse as its protocol says (an HTTP 503 and 400,
// gRPC UNAVAILABLE and INVALID_ARGUMENT) and returns what restores it.
func (g *Gate) Fail(f Failure, answer func(Failure) (restore func())) (restore func()) {
	switch f {
	case FailDown:
		return g.Down()
	case FailSlow:
		return g.Stall()
	}
	return answer(f)
}
