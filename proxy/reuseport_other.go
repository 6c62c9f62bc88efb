//go:build !linux

package proxy

import (
	"errors"
	"syscall"
)

// reusePortControl refuses: SO_REUSEPORT spreads connections over the
// sockets that share an address on Linux only (elsewhere the last bound
// takes them all, or the option is missing).
func reusePortControl(network, address string, c syscall.RawConn) error {
	return errors.New("reuse_port is supported on Linux only: remove it from the listener")
}

// bindReusePort refuses, as reusePortControl does.
func bindReusePort(addr string) error {
	return errors.New("reuse_port is supported on Linux only: remove it from the listener")
}
