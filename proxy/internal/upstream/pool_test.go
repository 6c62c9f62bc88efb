package upstream

import (
	"io"
	"net"
	"testing"
	"time"
)

// Idle upstream connections are closed once idle for the pool's timeout,
// oldest first, and the ones used since stay.
func TestConnPoolReapsIdleConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	const idle = time.Second
	p := &connPool{addr: ln.Addr().String(), dialer: new(net.Dialer), maxIdle: 4, idleTimeout: idle}
	defer p.closeIdle()
	old, err := p.get()
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := p.get()
	if err != nil {
		t.Fatal(err)
	}
	oldServer, freshServer := <-accepted, <-accepted
	p.put(old)
	time.Sleep(idle / 2)
	p.put(fresh)
	// The old connection's end: the server side reads EOF.
	oldServer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := oldServer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the connection idle for %s was not closed: %v", idle, err)
	}
	p.mu.Lock()
	left := len(p.idle)
	p.mu.Unlock()
	if left != 1 {
		t.Fatalf("%d idle connections left, want the fresh one", left)
	}
	freshServer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := freshServer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the fresh connection was not closed in its turn: %v", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 0 || p.reaper != nil {
		t.Fatalf("after every connection was reaped: %d idle, reaper %v", len(p.idle), p.reaper != nil)
	}
}

// BenchmarkIdleCheck is what the fast path pays per reused upstream
// connection to know it is still fit for a request: one non-blocking peek.
func BenchmarkIdleCheck(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	uc := &Conn{NetConn: c, fd: connFD(c)}
	if uc.fd < 0 {
		b.Fatal("no descriptor")
	}
	for b.Loop() {
		if uc.idleState() != idleQuiet {
			b.Fatal("a quiet connection looked spoken to")
		}
	}
}
