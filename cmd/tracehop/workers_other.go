//go:build !linux

package main

import "syscall"

// workerSysProcAttr: -workers is refused off Linux (checkWorkers).
func workerSysProcAttr() *syscall.SysProcAttr { return nil }
