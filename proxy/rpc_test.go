package proxy

import (
	"net/url"
	"testing"
)

// grpc-message is decoded in the span's buffer exactly as url.PathUnescape
// would, and kept as sent when an escape is malformed; a buffer without
// room falls back to url.PathUnescape itself.
func TestGRPCMessageDecodedInPlace(t *testing.T) {
	for _, m := range []string{
		"plain", "upstream%20unavailable", "caf%C3%A9 %E2%98%83", "100%25", "a+b%2Bc",
		"bad%2", "bad%zz", "%", "trailing%4",
	} {
		want := m
		if d, err := url.PathUnescape(m); err == nil {
			want = d
		}
		for _, room := range []int{0, 256} {
			var sb spanBuf
			sb.reset(room)
			if got := grpcMessage(&sb, m); got != want {
				t.Errorf("grpcMessage(%q) with %d bytes of room = %q, want %q", m, room, got, want)
			}
		}
	}
}
