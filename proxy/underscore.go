package proxy

import (
	"net/http"
	"strings"

	"github.com/tracehop/tracehop/proxy/config"
)

// guardedHeaders are the request headers that frame, route or identify a
// request, or carry its trace. A name with underscores that reads as one of
// them once '_' is '-' (Content_Length, X_Forwarded_For) is never
// forwarded: CGI-style applications (PHP, WSGI, Rack) map '-' and '_' to
// the same variable, so the look-alike would pass for the real header that
// tracehop checked or wrote.
// (untrustedHeaders holds every propagation format's headers.)
var guardedHeaders = func() map[string]bool {
	m := map[string]bool{}
	for _, h := range append(append([]string{"Content-Length", "Host", "Expect", "X-Real-Ip"}, requestHopHeaders...), untrustedHeaders...) {
		m[http.CanonicalHeaderKey(h)] = true
	}
	return m
}()

// dropUnderscored reports whether a header name is not forwarded under the
// listener's headers_with_underscores mode (reject is answered before).
func dropUnderscored(name, mode string) bool {
	if strings.IndexByte(name, '_') < 0 {
		return false
	}
	return mode != config.UnderscoresAllow || guardedHeaders[http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-"))]
}
