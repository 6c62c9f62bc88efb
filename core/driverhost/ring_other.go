//go:build !linux

package driverhost

import (
	"errors"
	"os"
)

// openRing: the shared-memory span transport needs Linux's sealed memory
// files; elsewhere drivers get their spans over gRPC.
func openRing(int) (*os.File, []byte, error) {
	return nil, nil, errors.New("the shared-memory span transport needs Linux")
}

func closeRing(*os.File, []byte) {}
