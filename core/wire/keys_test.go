package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

// TagKeyNumber knows the table's own copies and nothing else: not an equal
// string from elsewhere, not a part of a key, not two keys' bytes run
// together.
func TestTagKeyNumber(t *testing.T) {
	for n := 1; n <= wire.TagKeyCount; n++ {
		k := wire.TagKeyName(n)
		for _, c := range []byte(k) {
			if c <= ' ' || c >= 0x7f { // drivers skip their UTF-8 and JSON checks
				t.Fatalf("key %q is not printable ASCII", k)
			}
		}
		if got := wire.TagKeyNumber(k); got != n {
			t.Fatalf("TagKeyNumber(TagKeyName(%d) = %q) = %d", n, k, got)
		}
		if got := wire.TagKeyNumber(wire.TagKey(k)); got != n {
			t.Fatalf("TagKeyNumber(TagKey(%q)) = %d, want %d", k, got, n)
		}
		if copied := strings.Clone(k); wire.TagKeyNumber(copied) != 0 {
			t.Fatalf("a copy of %q has a number", k)
		}
		if wire.TagKeyNumber(k[:len(k)-1]) != 0 || wire.TagKeyNumber(k[1:]) != 0 {
			t.Fatalf("a part of %q has a number", k)
		}
		if n < wire.TagKeyCount {
			// The keys lie back to back: a string over two of them.
			both := unsafeSlice(k, 0, len(k)+len(wire.TagKeyName(n+1)))
			if wire.TagKeyNumber(both) != 0 {
				t.Fatalf("%q (two keys' bytes) has a number", both)
			}
		}
	}
	for _, s := range []string{"", "x", "http.method", "component"} {
		if wire.TagKeyNumber(s) != 0 {
			t.Fatalf("TagKeyNumber(%q) = %d, want 0", s, wire.TagKeyNumber(s))
		}
	}
	if wire.TagKeyName(0) != "" || wire.TagKeyName(wire.TagKeyCount+1) != "" {
		t.Fatal("TagKeyName out of range is not empty")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("TagKey of an unknown name did not panic")
		}
	}()
	wire.TagKey("not.a.key")
}

// Numbered keys: the bytes say each key's number once, the decoder gives
// back the table's copies, and a batch decodes to what a base-layout
// batch decodes to.
func TestTagKeysRoundTrip(t *testing.T) {
	in := sampleSpans()
	full := wire.AppendBatchLayout(nil, in, wire.Full)
	base := wire.AppendBatch(nil, in)
	if len(full) >= len(base) {
		t.Fatalf("numbered keys took %d bytes, written out %d", len(full), len(base))
	}
	if bytes.Contains(full, []byte("http.method")) {
		t.Fatal("a well-known key is written out in a Full batch")
	}
	if !bytes.Contains(full, []byte("component")) {
		t.Fatal("a key with a table key's bytes but not its copy was not written out")
	}
	out, err := wire.DecodeBatch(nil, full, len(in), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := wire.DecodeBatch(nil, base, len(in), fixedNow)
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("numbered keys decode to\n%+v\nwritten out to\n%+v", out, want)
	}
	if got := wire.TagKeyNumber(out[0].Tags[0].Key); got == 0 {
		t.Fatal("a decoded well-known key is not the table's copy")
	}
	if got := wire.TagKeyNumber(out[0].Tags[4].Key); got != 0 {
		t.Fatal("a key written out decoded as the table's copy")
	}
}

// The base layout does not depend on where a key lies: a driver built
// with an older SDK reads the bytes it always read.
func TestTagKeysBaseLayoutUnchanged(t *testing.T) {
	in := sampleSpans()
	cloned := sampleSpans()
	for i := range cloned {
		for j := range cloned[i].Tags {
			cloned[i].Tags[j].Key = strings.Clone(cloned[i].Tags[j].Key)
		}
	}
	if !bytes.Equal(wire.AppendBatch(nil, in), wire.AppendBatch(nil, cloned)) {
		t.Fatal("AppendBatch wrote a table key differently from its copy")
	}
	full := wire.AppendBatchLayout(nil, cloned, wire.Full)
	for _, tag := range cloned[0].Tags {
		if !bytes.Contains(full, []byte(tag.Key)) {
			t.Fatalf("%q, not the table's copy, was numbered", tag.Key)
		}
	}
}

// A driver that knows fewer keys than the host gets the others written
// out.
func TestTagKeysUpToTheDriversCount(t *testing.T) {
	method := wire.TagKey("http.method") // number 7
	s := []core.Span{{SpanID: 1, Tags: []core.Tag{{Key: wire.TagKey("component"), Value: "proxy"}, {Key: method, Value: "GET"}}}}
	few := wire.AppendBatchLayout(nil, s, wire.Layout{TagKeys: 1})
	if !bytes.Contains(few, []byte("http.method")) || bytes.Contains(few, []byte("component")) {
		t.Fatalf("with 1 key known: %q", few)
	}
	if wire.LayoutOf(true, 1000) != wire.Full {
		t.Fatalf("LayoutOf(true, 1000) = %+v, want %+v", wire.LayoutOf(true, 1000), wire.Full)
	}
	if l := (wire.Layout{TagKeys: 3}); !l.Reads(wire.Layout{TagKeys: 2}) || l.Reads(wire.Layout{TagKeys: 4}) || l.Reads(wire.Layout{TraceState: true}) {
		t.Fatal("Layout.Reads is wrong")
	}
	if u := (wire.Layout{TagKeys: 3}).Union(wire.Layout{TraceState: true, TagKeys: 1}); u != (wire.Layout{TraceState: true, TagKeys: 3}) {
		t.Fatalf("Union = %+v", u)
	}
}

// A key number beyond the table, or a batch cut at a key number, loses the
// batch with ErrMalformedBatch.
func TestTagKeysMalformed(t *testing.T) {
	s := []core.Span{{SpanID: 1, Tags: []core.Tag{{Key: wire.TagKey("component"), Value: "proxy"}}}}
	good := wire.AppendBatchLayout(nil, s, wire.Full)
	// The key number is the byte before the value "proxy"'s length.
	at := bytes.Index(good, []byte("\x05proxy")) - 1
	if good[at] != 1 {
		t.Fatalf("byte %d is %d, not component's number", at, good[at])
	}
	for name, buf := range map[string][]byte{
		"beyond the table": func() []byte { b := bytes.Clone(good); b[at] = byte(wire.TagKeyCount + 1); return b }(),
		"two-byte number":  append(append(bytes.Clone(good[:at]), 0x81, 0x01), good[at+1:]...),
		"cut at the key":   good[:at],
	} {
		if _, err := wire.DecodeBatch(nil, buf, 1, fixedNow); !errors.Is(err, wire.ErrMalformedBatch) {
			t.Errorf("%s: err = %v, want ErrMalformedBatch", name, err)
		}
	}
	// Key number 0 is followed by the key.
	literal := append(append(bytes.Clone(good[:at]), 0, 9), "component"...)
	literal = append(literal, good[at+1:]...)
	out, err := wire.DecodeBatch(nil, literal, 1, fixedNow)
	if err != nil || out[0].Tags[0] != (core.Tag{Key: "component", Value: "proxy"}) {
		t.Fatalf("key number 0: %+v, %v", out, err)
	}
}

// The spec's table of well-known keys (docs/driver-protocol.md, section
// 4.5) is this package's, number for number: a driver written from the
// spec alone reads what the host writes.
func TestTagKeysAsTheSpecSays(t *testing.T) {
	doc, err := os.ReadFile("../../docs/driver-protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "| number | key |\n|---:|---|\n")
	if !ok {
		t.Fatal("docs/driver-protocol.md has no table of well-known keys (| number | key |)")
	}
	n := 0
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "| ") {
			break
		}
		n++
		if want := fmt.Sprintf("| %d | `%s` |", n, wire.TagKeyName(n)); line != want {
			t.Errorf("the spec's row %d is %q, the table's %q", n, line, want)
		}
	}
	if n != wire.TagKeyCount {
		t.Errorf("the spec lists %d well-known keys, the table %d", n, wire.TagKeyCount)
	}
}
