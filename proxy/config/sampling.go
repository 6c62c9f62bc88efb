package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"

	"golang.org/x/net/http/httpguts"
	"gopkg.in/yaml.v3"
)

// checkMethod checks a route's match.method: an HTTP token, and not a
// lowercase spelling of a standard method (methods are case-sensitive:
// "get" would match no client's GET).
func checkMethod(key, m string, bad func(key, format string, args ...any)) {
	if !httpguts.ValidHeaderFieldName(m) {
		bad(key, "%q is not an HTTP method (a token such as GET or POST)", m)
		return
	}
	for _, std := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"} {
		if m != std && strings.EqualFold(m, std) {
			bad(key, "methods are case-sensitive: %q matches no %s request (did you mean %q?)", m, std, std)
			return
		}
	}
}

// validateRemote checks tracing.sampling.remote (defaults applied).
func validateRemote(key string, r *RemoteSampling, bad func(key, format string, args ...any)) {
	switch u, err := url.Parse(r.URL); {
	case r.URL == "":
		bad(key+".url", "is required: Jaeger's remote sampling endpoint, such as http://jaeger:5778/api/sampling")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		bad(key+".url", "must be an http:// or https:// URL such as http://jaeger:5778/api/sampling, got %q", r.URL)
	case u.RawQuery != "":
		bad(key+".url", "must not have a query: tracehop adds ?service=%s itself, got %q", r.Service, r.URL)
	}
	if r.PollInterval < 0 {
		bad(key+".poll_interval", "must be above 0 (default 60s), got %v", r.PollInterval)
	}
}

// validateAdmin checks the admin block's token file, and warns when the
// admin server listens beyond loopback without one.
func (c *Config) validateAdmin(d *decoder, bad func(key, format string, args ...any)) {
	if f := c.Admin.TokenFile; f != "" {
		raw, err := os.ReadFile(f)
		switch {
		case err != nil:
			bad("admin.token_file", "cannot read the admin token: %v", err)
		case len(bytes.TrimSpace(raw)) == 0:
			bad("admin.token_file", "%s is empty: it must hold the bearer token that PUT /sampling and POST /reload require", f)
		}
		return
	}
	host, _, err := net.SplitHostPort(c.Admin.Address)
	if err != nil {
		return // reported by checkAddr
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return
	}
	d.warnf(d.lineOf("admin.address"), "admin.address",
		"%s is not loopback and admin.token_file is not set: whoever reaches it can read the config, change sampling (PUT /sampling) and reload (POST /reload)", c.Admin.Address)
}

// ParseSampling decodes and validates a sampling block sent to the admin
// API (PUT /sampling): JSON or YAML with tracing.sampling's keys (random,
// client, overall, max_traces_per_second), checked exactly as the file's
// block is, every problem at once in an *Error whose keys start with
// "sampling". ${VAR} is not expanded, and remote is refused: the admin API
// does not point tracehop at other servers.
func ParseSampling(name string, raw []byte) (Sampling, error) {
	d := &decoder{file: name, lines: map[string]int{}, literal: true}
	var s Sampling
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Sampling{}, &Error{Problems: []Problem{{File: name, Msg: `the body is empty: send the sampling block as JSON, such as {"random": 10}`}}}
		}
		return Sampling{}, &Error{Problems: []Problem{{File: name, Msg: "not valid JSON or YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	if len(doc.Content) > 0 {
		d.decode(doc.Content[0], reflect.ValueOf(&s).Elem(), "sampling")
	}
	bad := func(key, format string, args ...any) { d.addf(d.lineOf(key), key, format, args...) }
	if len(d.problems) == 0 {
		if s.Remote != nil {
			bad("sampling.remote", "is set in the config file only: the admin API does not point tracehop at other servers")
			s.Remote = nil
		}
		validateSampling("sampling", s, true, bad)
	}
	if len(d.problems) > 0 {
		return Sampling{}, &Error{Problems: d.problems}
	}
	return s, nil
}

// String writes the block as its keys: "random 10%, client 100%, ..." for
// logs and tracehop validate; an unset percentage is 100.
func (s Sampling) String() string {
	pct := func(p *float64) string {
		if p == nil {
			return "100%"
		}
		return fmt.Sprintf("%v%%", *p)
	}
	out := fmt.Sprintf("random %s, client %s, overall %s", pct(s.Random), pct(s.Client), pct(s.Overall))
	if m := s.MaxTracesPerSecond; m != nil {
		out += fmt.Sprintf(", at most %v new traces/s", *m)
	}
	return out
}
