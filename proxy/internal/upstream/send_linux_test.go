package upstream

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// sendServer listens on loopback and hands each accepted connection to
// serve; the test's pool dials it.
func sendServer(t *testing.T, serve func(net.Conn)) *connPool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	p := &connPool{addr: ln.Addr().String(), dialer: new(net.Dialer), maxIdle: 4}
	t.Cleanup(p.closeIdle)
	return p
}

// answerLines answers each line it reads with "ok " and the line, after
// delay.
func answerLines(delay time.Duration) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			time.Sleep(delay)
			if _, err := io.WriteString(c, "ok "+line); err != nil {
				return
			}
		}
	}
}

func dialArmed(t *testing.T, p *connPool) *Conn {
	t.Helper()
	uc, err := p.dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(uc.Close)
	if uc.raw == nil {
		t.Fatal("a plaintext TCP connection has no deferred write")
	}
	return uc
}

// The first step of the read writes the request and waits: it does not
// read. A byte the upstream sent before (unasked) is still unread after it,
// which a read would have taken.
func TestSendWritesThenWaitsWithoutARead(t *testing.T) {
	got := make(chan string, 1)
	p := sendServer(t, func(c net.Conn) {
		io.WriteString(c, "?")
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
	})
	uc := dialArmed(t, p)
	for deadline := time.Now().Add(10 * time.Second); uc.idleState() != idleSpoke; {
		if time.Now().After(deadline) {
			t.Fatal("the upstream's byte never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	if err := uc.Send([]byte("GET\n")); err != nil {
		t.Fatal(err)
	}
	if uc.pending == nil {
		t.Fatal("Send wrote at once; want its write deferred to the read")
	}
	var wait bool
	uc.raw.Read(func(fd uintptr) bool {
		wait = !uc.rawStep(fd)
		return true
	})
	if !wait || uc.pending != nil {
		t.Fatalf("after the first step: wait %v, pending %q; want a wait with the request written", wait, uc.pending)
	}
	if s := uc.idleState(); s != idleSpoke {
		t.Fatalf("the first step read the socket (peek: %d): it must only write", s)
	}
	select {
	case line := <-got:
		if line != "GET\n" {
			t.Fatalf("the upstream read %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
}

// An answer that comes late wakes the read; the connection serves the
// next request the same way.
func TestSendAnswerComesLate(t *testing.T) {
	uc := dialArmed(t, sendServer(t, answerLines(20*time.Millisecond)))
	uc.NetConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, req := range []string{"one\n", "two\n"} {
		if err := uc.Send([]byte(req)); err != nil {
			t.Fatal(err)
		}
		line, err := uc.Reader.ReadString('\n')
		if err != nil || line != "ok "+req {
			t.Fatalf("answer %q, %v; want %q", line, err, "ok "+req)
		}
	}
}

// A request larger than the socket's buffers goes in part in the first
// step and the rest through the connection's own write, which waits for
// room; the answer is read after it.
func TestSendLargerThanTheSocketBuffer(t *testing.T) {
	const size = 8 << 20
	p := sendServer(t, func(c net.Conn) {
		if n, _ := io.CopyN(io.Discard, c, size); n < size {
			io.WriteString(c, "short\n")
			return
		}
		io.WriteString(c, "done\n")
	})
	uc := dialArmed(t, p)
	uc.NetConn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := uc.Send(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	line, err := uc.Reader.ReadString('\n')
	if err != nil || line != "done\n" {
		t.Fatalf("answer %q, %v; want every byte of the request taken", line, err)
	}
}

// An upstream that closed the connection before the request (its
// keep-alive timeout) answers it with a reset: the read fails at once,
// neither hanging until its deadline nor blaming a timeout.
func TestSendIntoAClosedConnectionFails(t *testing.T) {
	p := sendServer(t, func(c net.Conn) {})
	uc := dialArmed(t, p)
	for deadline := time.Now().Add(10 * time.Second); uc.idleState() != idleClosed; {
		if time.Now().After(deadline) {
			t.Fatal("the upstream's close never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	uc.NetConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := uc.Send([]byte("GET\n")); err != nil {
		t.Fatal(err)
	}
	_, err := uc.Reader.Peek(1)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a request into a closed connection: %v; want the close or reset at once", err)
	}
}

// An upstream that does not answer leaves the read to its deadline.
func TestSendWaitsUntilTheDeadline(t *testing.T) {
	got := make(chan struct{})
	p := sendServer(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		close(got)
		io.Copy(io.Discard, c)
	})
	uc := dialArmed(t, p)
	uc.NetConn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := uc.Send([]byte("GET\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := uc.Reader.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from a silent upstream: %v; want its deadline", err)
	}
	<-got // and the request went
}

// A write that fails before any byte went says so: the request may go
// again on another connection.
func TestSendWriteErrorSaysNothingWent(t *testing.T) {
	p := sendServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	uc := dialArmed(t, p)
	if err := uc.NetConn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := uc.Send([]byte("GET\n")); err != nil {
		t.Fatal(err)
	}
	_, err := uc.Reader.Peek(1)
	var se *SendError
	if !errors.As(err, &se) || se.Written != 0 || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write into a shut connection: %v; want a SendError with nothing written, EPIPE", err)
	}
}
