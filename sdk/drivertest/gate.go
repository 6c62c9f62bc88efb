package drivertest

import (
	"io"
	"net"
	"sync"
	"time"
)

// Gate is a TCP front for a test back end that can make it unreachable
// (Down: connection refused), unresponsive (Stall: connections taken and
// never answered) or late (AnswerLate: requests reach the back end at once,
// its answers come back later), whatever its protocol: the FailDown and
// FailSlow of Backend.Fail, and Backend.AnswerLate. Point the driver's
// config at Addr instead of the back end.
type Gate struct {
	addr, target string

	mu      sync.Mutex
	ln      net.Listener
	stalled bool
	late    time.Duration
	conns   map[net.Conn]struct{}
}

// NewGate starts a gate in front of target (host:port); it closes with the
// test.
func NewGate(t T, target string) *Gate {
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

// AnswerLate holds every byte the back end sends back for after before
// passing it on, until restore is called; requests pass at once. The back
// end thus takes (and stores) each request as it comes and its answer
// arrives after: a distant or loaded collector. Connections already open
// are late too (a driver keeps its connections alive).
func (g *Gate) AnswerLate(after time.Duration) (restore func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.late = after
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.late = 0
	}
}

func (g *Gate) lateBy() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.late
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
	go func() { g.answer(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	g.mu.Lock()
	delete(g.conns, c)
	delete(g.conns, up)
	g.mu.Unlock()
}

// answer copies what the back end sends from up to c, each chunk once the
// delay AnswerLate set when it was read has passed: a delay line, so that
// a late answer in several chunks is late once, not once per chunk.
func (g *Gate) answer(c, up net.Conn) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	line := make(chan chunk, 64)
	go func() {
		defer close(line)
		for {
			b := make([]byte, 32<<10)
			n, err := up.Read(b)
			if n > 0 {
				line <- chunk{b[:n], time.Now().Add(g.lateBy())}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for ck := range line {
		if failed {
			continue // drain, so that the reader ends when up closes
		}
		time.Sleep(time.Until(ck.due))
		if _, err := c.Write(ck.b); err != nil {
			failed = true
			c.Close()
			up.Close()
		}
	}
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
