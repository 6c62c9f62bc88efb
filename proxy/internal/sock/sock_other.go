//go:build !linux

package sock

import "syscall"

// Read reads fd into p once, retrying only an interrupted call: n bytes,
// 0 and no error at the end of the stream, syscall.EAGAIN when nothing is
// there yet.
func Read(fd int, p []byte) (int, error) { return call(syscall.Read, fd, p) }

// Write writes p to fd once, retrying only an interrupted call: n bytes,
// perhaps fewer than len(p), or syscall.EAGAIN when the socket's buffer
// is full.
func Write(fd int, p []byte) (int, error) { return call(syscall.Write, fd, p) }

// call makes f (syscall.Read or Write) on fd with p.
func call(f func(int, []byte) (int, error), fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := f(fd, p)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}
