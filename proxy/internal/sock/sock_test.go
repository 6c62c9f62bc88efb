package sock

import (
	"bytes"
	"syscall"
	"testing"
)

// pair is a connected pair of non-blocking stream sockets, as the fast
// path's are.
func pair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if err := syscall.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
	}
	return fds[0], fds[1]
}

// Read answers EAGAIN on an empty socket, the bytes once they are there,
// and 0 with no error at the end of the stream.
func TestRead(t *testing.T) {
	a, b := pair(t)
	buf := make([]byte, 16)
	if n, err := Read(a, buf); err != syscall.EAGAIN {
		t.Fatalf("read of an empty socket: %d, %v; want EAGAIN", n, err)
	}
	if n, err := Write(b, []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if n, err := Read(a, buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %q, %v; want hello", buf[:n], err)
	}
	syscall.Shutdown(b, syscall.SHUT_WR)
	if n, err := Read(a, buf); n != 0 || err != nil {
		t.Fatalf("read at the end of the stream: %d, %v; want 0 and no error", n, err)
	}
}

// Write takes what the socket's buffer has room for and answers EAGAIN
// when it has none; every byte taken is read whole and in order.
func TestWriteFillsTheBuffer(t *testing.T) {
	a, b := pair(t)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	var sent []byte
	for {
		n, err := Write(a, chunk)
		if err == syscall.EAGAIN {
			break
		}
		if err != nil || n <= 0 {
			t.Fatalf("write: %d, %v", n, err)
		}
		sent = append(sent, chunk[:n]...)
		if len(sent) > 64<<20 {
			t.Fatal("64 MiB went into a socket nobody reads: the write never found the buffer full")
		}
	}
	var got []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := Read(b, buf)
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(sent))
	}
}

// Empty buffers make no call.
func TestEmpty(t *testing.T) {
	if n, err := Read(-1, nil); n != 0 || err != nil {
		t.Fatalf("read of nothing: %d, %v", n, err)
	}
	if n, err := Write(-1, nil); n != 0 || err != nil {
		t.Fatalf("write of nothing: %d, %v", n, err)
	}
}
