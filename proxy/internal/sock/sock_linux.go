package sock

import (
	"syscall"
	"unsafe"
)

// Read reads fd into p once, retrying only an interrupted call: n bytes,
// 0 and no error at the end of the stream, syscall.EAGAIN when nothing is
// there yet.
func Read(fd int, p []byte) (int, error) { return call(syscall.SYS_READ, fd, p) }

// Write writes p to fd once, retrying only an interrupted call: n bytes,
// perhaps fewer than len(p), or syscall.EAGAIN when the socket's buffer
// is full.
func Write(fd int, p []byte) (int, error) { return call(syscall.SYS_WRITE, fd, p) }

// call makes read or write (trap) on fd with p.
func call(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno == 0 {
			return int(n), nil
		}
		if errno != syscall.EINTR {
			return 0, errno
		}
	}
}
