package sdk

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/tracehop/tracehop/core/wire"
)

// mapRing maps, read-only, the span ring the host passed (wire.RingFDEnv);
// nil when it passed none. The mapping lasts as long as the process.
func mapRing() ([]byte, error) {
	v := os.Getenv(wire.RingFDEnv)
	if v == "" || os.Getenv(noRingEnv) == "1" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a file descriptor", wire.RingFDEnv, v)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("the span ring (fd %d): %w", fd, err)
	}
	if st.Size <= wire.RingHeaderBytes || st.Size > 1<<30 {
		return nil, fmt.Errorf("the span ring (fd %d) has %d bytes", fd, st.Size)
	}
	mem, err := syscall.Mmap(fd, 0, int(st.Size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the span ring (fd %d): %w", fd, err)
	}
	// The descriptor is not needed once mapped; a child of the driver
	// does not inherit it either.
	syscall.Close(fd)
	return mem, nil
}
