package main

import (
	"os"
	"path/filepath"
	"syscall"
)

// workerSysProcAttr has the kernel send a worker SIGTERM when its
// supervisor dies, even by SIGKILL, so that no worker is left serving
// unsupervised (and holding the listeners a new supervisor wants).
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// A worker is started as /proc/self/exe, which the kernel would name it
// ("exe" in ps, top and /proc/PID/comm): it takes back its executable's
// name, the one its supervisor's command line gave.
func init() {
	if _, _, ok := workerIndex(); ok {
		os.WriteFile("/proc/self/comm", []byte(filepath.Base(os.Args[0])), 0)
	}
}
