package utf8scan

import (
	"encoding/binary"
	"unicode/utf8"
	"unsafe"
)

// OrBytes ORs the bytes of s into acc, 8 at a time: a byte of 0x80 or more
// leaves a high bit set in some byte of acc (ASCII tells). The tail of a
// string of 8 bytes or more is its last 8 bytes, read again in part: one
// load, not up to 7.
func OrBytes(acc uint64, s string) uint64 {
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	n := len(b)
	if n < 8 {
		if n >= 4 {
			return acc | uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint32(b[n-4:]))
		}
		for _, c := range b {
			acc |= uint64(c)
		}
		return acc
	}
	i := 0
	for ; i+8 <= n; i += 8 {
		acc |= binary.LittleEndian.Uint64(b[i:])
	}
	if i < n {
		acc |= binary.LittleEndian.Uint64(b[n-8:])
	}
	return acc
}

// ASCII reports whether acc, bytes ORed by OrBytes, has no byte of 0x80
// or more.
func ASCII(acc uint64) bool { return acc&0x8080808080808080 == 0 }

// Valid reports whether s is valid UTF-8: ASCII at once, else by
// utf8.ValidString.
func Valid(s string) bool { return ASCII(OrBytes(0, s)) || utf8.ValidString(s) }
