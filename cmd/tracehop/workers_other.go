//go:build !linux

package main

import (
	"errors"
	"os"
	"syscall"
)

// workerSysProcAttr: -workers is refused off Linux (checkWorkers).
func workerSysProcAttr() *syscall.SysProcAttr { return nil }

// configFile: -workers is refused off Linux (checkWorkers).
func configFile([]byte) (*os.File, error) {
	return nil, errors.New("tracehop run -workers needs Linux")
}
