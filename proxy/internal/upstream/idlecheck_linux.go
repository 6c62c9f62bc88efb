package upstream

import (
	"syscall"
	"unsafe"
)

// idleState peeks at an idle connection without blocking or consuming:
// one recvfrom(MSG_PEEK|MSG_DONTWAIT), a raw system call because it cannot
// block and need not involve the scheduler.
func (uc *Conn) idleState() int {
	if uc.fd < 0 {
		return idleQuiet
	}
	var b byte
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(uc.fd), uintptr(unsafe.Pointer(&b)), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return idleQuiet
	case errno == 0 && n > 0:
		return idleSpoke
	}
	return idleClosed
}
