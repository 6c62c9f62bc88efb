package wire_test

import "unsafe"

// unsafeSlice is the n bytes from i bytes past s's start, which must lie
// in one allocation with s: the table's text, whose keys lie back to
// back, for TestTagKeyNumber.
func unsafeSlice(s string, i, n int) string {
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(unsafe.StringData(s)), i)), n)
}
