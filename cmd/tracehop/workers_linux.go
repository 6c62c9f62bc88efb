package main

import "syscall"

// workerSysProcAttr has the kernel send a worker SIGTERM when its
// supervisor dies, even by SIGKILL, so that no worker is left serving
// unsupervised (and holding the listeners a new supervisor wants).
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
