//go:build !linux

package proxy

import (
	"errors"
	"syscall"
)

// reusePortWorks says whether listeners can share an address: SO_REUSEPORT
// spreads connections over the sockets that share one on Linux only
// (elsewhere the last bound takes them all, or the option is missing).
// The config refuses reuse_port here; these refuse a Config built without
// its checks.
const reusePortWorks = false

var errNoReusePort = errors.New("reuse_port is supported on Linux only: remove it from the listener")

func reusePortControl(network, address string, c syscall.RawConn) error { return errNoReusePort }

func bindReusePort(addr string) error { return errNoReusePort }
