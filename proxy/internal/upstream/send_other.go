//go:build !linux

package upstream

import (
	"net"
	"syscall"
)

// sender is unused where Send writes at once: raw stays nil, and so does
// pending.
type sender struct {
	raw     syscall.RawConn
	pending []byte
}

func (uc *Conn) arm(net.Conn) bool { return false }

func (uc *Conn) sendAndRead(p []byte) (int, error) { return uc.NetConn.Read(p) }
