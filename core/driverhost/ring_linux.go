package driverhost

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openRing makes the memory of a span ring of size bytes (wire's "The
// shared-memory span transport"): an anonymous memory file, mapped
// read-write here, then sealed so that a process it is handed to can only
// map it read-only, and can neither write to it nor resize it.
func openRing(size int) (*os.File, []byte, error) {
	fd, err := unix.MemfdCreate("tracehop-span-ring", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "tracehop-span-ring")
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("sizing the span ring: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mapping the span ring: %w", err)
	}
	// F_SEAL_FUTURE_WRITE (Linux 5.1) keeps this mapping writable and
	// refuses every later one, and every write(2).
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_FUTURE_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Munmap(mem)
		f.Close()
		return nil, nil, fmt.Errorf("sealing the span ring (needs Linux 5.1 or later): %w", err)
	}
	return f, mem, nil
}

// closeRing unmaps and closes what openRing made.
func closeRing(f *os.File, mem []byte) {
	unix.Munmap(mem)
	f.Close()
}
