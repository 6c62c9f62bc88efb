package zipkinmodel

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzAppendJSONString: appendJSONString writes what encoding/json writes
// for the string made valid as strings.ToValidUTF8 makes it, whatever the
// bytes and wherever they fall against its 8-byte reads.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{
		"", "a", "GET /api/v1/items?id=42&x=<y>", "0123456\"", "01234567\\", "012345670123456\x1f",
		"\xff", "ab\xff\xfe\xfdcd", "\xe2\x80", "Zoë ☃ \u2028\u2029 \ufffd\xef\xbf", "\x7f\x00\t\n\r\b\f",
		strings.Repeat("plain-ascii-", 9) + ">", strings.Repeat("x", 15) + "\xc3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(strings.ToValidUTF8(s, "\uFFFD"))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString([]byte("x"), s); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("appendJSONString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	})
}

// Every byte value, at every position of strings of every length up to
// 21 (so at every offset of an 8-byte read, in the tail and in strings
// shorter than a word), is written as encoding/json writes it.
func TestAppendJSONStringEveryByteEveryOffset(t *testing.T) {
	for n := 1; n <= 21; n++ {
		for off := 0; off < n; off++ {
			for c := 0; c < 256; c++ {
				b := []byte(strings.Repeat("a", n))
				b[off] = byte(c)
				s := string(b)
				want, _ := json.Marshal(strings.ToValidUTF8(s, "\uFFFD"))
				if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
					t.Fatalf("byte %#x at %d of %d: got %s, want %s", c, off, n, got, want)
				}
			}
		}
	}
	if got := appendJSONString(nil, ""); string(got) != `""` {
		t.Fatalf("the empty string: %s", got)
	}
}

// Keys whose prefixes differ order as the keys do, whether they differ in
// their first 8 bytes, after them, or are shorter.
func TestKeyPrefix(t *testing.T) {
	keys := []string{"", "a", "a\x00", "a\x00b", "error", "http.url", "http.method", "http.status_code", "upstream_cluster",
		"upstream_address", "upstream", "upstream_", "response_size", "response_flags", "\xff\xfe", "guid:x-request-id", "zzzzzzzz", "zzzzzzzza"}
	for _, a := range keys {
		for _, b := range keys {
			if pa, pb := keyPrefix(a), keyPrefix(b); pa != pb && (pa < pb) != (a < b) {
				t.Errorf("keyPrefix(%q) = %#x, keyPrefix(%q) = %#x, but %q < %q is %v", a, pa, b, pb, a, b, a < b)
			}
		}
	}
}
