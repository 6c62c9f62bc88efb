package proxy

import (
	"strings"

	"github.com/tracehop/tracehop/proxy/config"
)

// nameTemplate is a route's span name: a literal, or a template whose
// {method}, {path} and {host} are filled per request ({route} is the
// route's and filled when the route is built).
type nameTemplate struct {
	literal string     // the name, when it has no per-request placeholder
	parts   []namePart // else its pieces
	size    int        // the literal pieces' length
}

// namePart is a literal piece of a name, or a placeholder (kind not 0).
type namePart struct {
	text string
	kind byte // 0 (text), 'm' {method}, 'p' {path}, 'h' {host}
}

// newNameTemplate compiles a route's operation (config checked its
// placeholders); route is what {route} stands for.
func newNameTemplate(op, route string) *nameTemplate {
	if op == "" {
		return nil
	}
	op = strings.ReplaceAll(op, config.PlaceholderRoute, route)
	t := &nameTemplate{}
	for rest := op; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, namePart{text: rest})
			break
		}
		kind := byte(0)
		switch {
		case strings.HasPrefix(rest[i:], config.PlaceholderMethod):
			kind = 'm'
		case strings.HasPrefix(rest[i:], config.PlaceholderPath):
			kind = 'p'
		case strings.HasPrefix(rest[i:], config.PlaceholderHost):
			kind = 'h'
		}
		if kind == 0 {
			t.parts = append(t.parts, namePart{text: rest[:i+1]})
			rest = rest[i+1:]
			continue
		}
		if i > 0 {
			t.parts = append(t.parts, namePart{text: rest[:i]})
		}
		t.parts = append(t.parts, namePart{kind: kind})
		rest = rest[i+strings.IndexByte(rest[i:], '}')+1:]
	}
	dynamic := false
	for _, p := range t.parts {
		t.size += len(p.text)
		dynamic = dynamic || p.kind != 0
	}
	if !dynamic {
		return &nameTemplate{literal: op}
	}
	return t
}

// name fills the template for one request (uri: its target, path and
// query), in b when it fits.
func (t *nameTemplate) name(b *spanBuf, method, uri, host string) string {
	if t.parts == nil {
		return t.literal
	}
	path, _, _ := strings.Cut(uri, "?")
	start, n := len(b.text), 0
	for _, p := range t.parts {
		switch p.kind {
		case 0:
			n += len(p.text)
		case 'm':
			n += len(method)
		case 'p':
			n += len(path)
		case 'h':
			n += len(host)
		}
	}
	if cap(b.text)-start < n {
		var sb strings.Builder
		for _, p := range t.parts {
			sb.WriteString(p.fill(method, path, host))
		}
		return sb.String()
	}
	for _, p := range t.parts {
		b.text = append(b.text, p.fill(method, path, host)...)
	}
	return b.view(start)
}

// fill is the part's text for a request.
func (p namePart) fill(method, path, host string) string {
	switch p.kind {
	case 'm':
		return method
	case 'p':
		return path
	case 'h':
		return host
	}
	return p.text
}
