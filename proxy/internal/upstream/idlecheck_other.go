//go:build unix && !linux

package upstream

import (
	"syscall"
)

// idleState peeks at an idle connection without blocking or consuming.
func (uc *Conn) idleState() int {
	if uc.fd < 0 {
		return idleQuiet
	}
	var b [1]byte
	n, _, err := syscall.Recvfrom(uc.fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return idleQuiet
	case err == nil && n > 0:
		return idleSpoke
	}
	return idleClosed
}
