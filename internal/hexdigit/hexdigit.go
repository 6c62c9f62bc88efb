// Package hexdigit reads one hexadecimal digit, the step every hex parser
// in tracehop shares: trace and span ids in the propagation headers
// (core/propagation) and chunk sizes on the HTTP/1.1 fast path
// (proxy/internal/h1). It is small enough to be inlined into their loops,
// and needs only the standard library, so that core may import it.
//
// It is not for whole numbers: each caller has its own rules (length,
// leading zeros, what may follow), and keeps them.
package hexdigit

// Value returns the value of the hex digit c (0-9, a-f, A-F), or Invalid
// when c is not one.
func Value(c byte) byte { return values[c] }

// Invalid is what Value returns for a byte that is not a hex digit.
const Invalid = 0xff

// values maps every byte to its digit's value, or Invalid: one load per
// digit, as encoding/hex reads them.
var values = func() (t [256]byte) {
	for c := range t {
		t[c] = Invalid
	}
	for i := range 10 {
		t['0'+i] = byte(i)
	}
	for i := range 6 {
		t['a'+i], t['A'+i] = byte(10+i), byte(10+i)
	}
	return t
}()
