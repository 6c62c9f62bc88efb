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

// Every byte value, at every offset of an 8-byte read, is looked at as a
// byte at a time would.
func TestAppendJSONStringEveryByteEveryOffset(t *testing.T) {
	for c := 0; c < 256; c++ {
		for off := 0; off < 17; off++ {
			s := strings.Repeat("a", off) + string(rune(0)) + strings.Repeat("b", 20-off)
			s = strings.Replace(s, "\x00", string([]byte{byte(c)}), 1)
			want, _ := json.Marshal(strings.ToValidUTF8(s, "\uFFFD"))
			if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
				t.Fatalf("byte %#x at %d: got %s, want %s", c, off, got, want)
			}
		}
	}
}
