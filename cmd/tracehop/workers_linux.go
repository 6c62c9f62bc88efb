package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
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

// configFile returns an anonymous memory file holding raw, to hand to a
// worker: nothing on disk, nothing to remove, sealed against writes.
func configFile(raw []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("tracehop-config", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("a worker's config: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "tracehop-config")
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return nil, fmt.Errorf("a worker's config: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("a worker's config: %w", err)
	}
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL)
	return f, nil
}
