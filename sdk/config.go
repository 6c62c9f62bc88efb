package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/internal/editdist"
)

// DecodeConfig decodes a driver's raw config (the JSON the host sends to
// Configure) strictly into dst, a pointer to the driver's config struct with
// json tags and its defaults already set. Every problem is reported at once,
// each naming its key: unknown keys (with the nearest valid one: "did you
// mean"), values of the wrong type; then, if dst has a Validate() error
// method and the decoding went well, its problems. The error is a
// *ConfigError, which tracehop turns into one line per problem at the YAML
// line of the key. An empty or null config leaves the defaults alone.
func DecodeConfig(raw []byte, dst any) error {
	decodedSecrets.Lock()
	decodedSecrets.keys = SecretKeys(dst)
	decodedSecrets.Unlock()
	raw = bytes.TrimSpace(raw)
	var ce ConfigError
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if !json.Valid(raw) {
			var v any
			err := json.Unmarshal(raw, &v)
			var syntaxErr *json.SyntaxError
			if errors.As(err, &syntaxErr) {
				return fmt.Errorf("config is not valid JSON at byte %d: %v", syntaxErr.Offset, err)
			}
			return fmt.Errorf("config is not valid JSON: %v", err)
		}
		decodeInto(raw, reflect.ValueOf(dst), "", &ce)
	}
	if len(ce.Problems) > 0 {
		return &ce
	}
	if v, ok := dst.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}

// ConfigError lists every problem of a driver's config, each with its key
// (a dotted path inside the driver's config block), in Problems. DecodeConfig
// and Problems.Err return it; sdk.Serve passes the keys to tracehop, which
// prints each problem at its line of the YAML file. Its Error is "key:
// problem; key: problem". It is the contract's own type (wire.ConfigError),
// the one the host receives; its Driver and Message fields are the host's
// to fill in.
type ConfigError = wire.ConfigError

// ConfigProblem is one problem with one key: Key, Message string.
type ConfigProblem = wire.ConfigProblem

// addProblem records a problem with key in e.
func addProblem(e *ConfigError, key, format string, args ...any) {
	e.Problems = append(e.Problems, ConfigProblem{Key: key, Message: fmt.Sprintf(format, args...)})
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// decodeInto decodes raw into v key by key, so that one bad key does not
// hide the next: a struct's keys are matched to its json fields (unknown
// ones reported), and each value decoded on its own.
func decodeInto(raw json.RawMessage, v reflect.Value, key string, ce *ConfigError) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
			addProblem(ce, cmpKey(key), "%s", typeProblem(err, v.Type()))
		}
		return
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		if key == "" {
			addProblem(ce, "config", "must be a map of settings, got %s", jsonKind(raw))
		} else {
			addProblem(ce, key, "expected a map, got %s", jsonKind(raw))
		}
		return
	}
	byName := map[string]int{}
	var names []string
	t := v.Type()
	for i := range t.NumField() {
		name, ok := jsonName(t.Field(i))
		if !ok {
			continue
		}
		byName[name] = i
		names = append(names, name)
	}
	slices.Sort(names)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		i, ok := byName[k]
		if !ok {
			if near := nearest(k, names); near != "" {
				addProblem(ce, joinKey(key, k), "unknown key (did you mean %q? valid keys: %s)", near, strings.Join(names, ", "))
			} else {
				addProblem(ce, joinKey(key, k), "unknown key (valid keys: %s)", strings.Join(names, ", "))
			}
			continue
		}
		decodeInto(fields[k], v.Field(i), joinKey(key, k), ce)
	}
}

// jsonName is the key encoding/json uses for f; false for a field it
// leaves out (unexported, or tagged "-").
func jsonName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return f.Name, true
	}
	return name, true
}

func cmpKey(key string) string {
	if key == "" {
		return "config"
	}
	return key
}

func typeProblem(err error, t reflect.Type) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		want := t
		if typeErr.Type != nil {
			want = typeErr.Type
		}
		return fmt.Sprintf("expected %s, got %s", describeType(want), typeErr.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(raw json.RawMessage) string {
	switch raw[0] {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// nearest returns the name closest to k within an edit distance of 2 (or
// sharing a prefix of 4), or "".
func nearest(k string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		d := editdist.Distance(strings.ToLower(k), strings.ToLower(n))
		if d < bestD || d == bestD && best == "" {
			best, bestD = n, d
		}
	}
	if best != "" && bestD <= 2 {
		return best
	}
	for _, n := range names {
		if len(k) >= 4 && len(n) >= 4 && strings.HasPrefix(n, k[:4]) {
			return n
		}
	}
	return ""
}

func describeType(t reflect.Type) string {
	if t == durationType {
		return `a duration such as "5s" or "250ms"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map, reflect.Struct:
		return "a map"
	case reflect.Slice:
		return "a list"
	}
	return t.String()
}

// Duration is a time.Duration that decodes from a Go duration string such as
// "5s" or "250ms", the form tracehop's YAML config uses.
type Duration time.Duration

// UnmarshalJSON accepts a duration string. Its errors are
// *json.UnmarshalTypeError so that encoding/json adds the key they belong to.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: durationType}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: strconv.Quote(s), Type: durationType}
	}
	*d = Duration(v)
	return nil
}

var durationType = reflect.TypeFor[Duration]()

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Redacted is what a Secret prints as.
const Redacted = "[REDACTED]"

// Secret is a config string that must never reach a log line, an error or a
// config dump: it prints and marshals as [REDACTED]. Value returns the real
// text for the one place that needs it.
type Secret string

// Value returns the secret itself.
func (s Secret) Value() string { return string(s) }

// String returns [REDACTED] (or "" for an empty secret).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return s.String() }

// MarshalJSON writes [REDACTED].
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads the secret from a JSON string.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return &json.UnmarshalTypeError{Value: "a non-string", Type: reflect.TypeFor[string]()}
	}
	*s = Secret(v)
	return nil
}

// Problems collects every problem in a config so that Validate can report
// them all at once, each naming its key.
type Problems struct {
	e ConfigError
}

// Add records a problem with key (a dotted path inside the driver's config
// block, such as "endpoint" or "tls.ca_file").
func (p *Problems) Add(key, format string, args ...any) {
	addProblem(&p.e, key, format, args...)
}

// Err returns nil when nothing was added, else a *ConfigError listing
// every problem.
func (p *Problems) Err() error {
	if len(p.e.Problems) == 0 {
		return nil
	}
	e := p.e
	return &e
}

// SecretKeys returns the dotted paths of the sdk.Secret fields of cfg's
// type (a config struct or a pointer to one), by their json names: "token"
// for a Secret field, "auth.license" for one in a nested struct,
// "headers.*" for every value of a map of Secrets. sdk.Serve tells the
// host these keys (DecodeConfig records them), so that tracehop prints
// their values as [REDACTED] wherever it shows the config, whatever the
// keys are called.
func SecretKeys(cfg any) []string {
	var out []string
	collectSecrets(reflect.TypeOf(cfg), "", &out, 0)
	return out
}

var secretType = reflect.TypeFor[Secret]()

func collectSecrets(t reflect.Type, prefix string, out *[]string, depth int) {
	if t == nil || depth > 8 {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == secretType:
		*out = append(*out, prefix)
	case t.Kind() == reflect.Map && t.Elem() == secretType:
		*out = append(*out, joinKey(prefix, "*"))
	case t.Kind() == reflect.Struct:
		for f := range t.Fields() {
			if name, ok := jsonName(f); ok {
				collectSecrets(f.Type, joinKey(prefix, name), out, depth+1)
			}
		}
	}
}

func joinKey(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// decodedSecrets are the secret keys of the last config DecodeConfig
// decoded: sdk.Serve passes them to the host with the capabilities.
var decodedSecrets struct {
	sync.Mutex
	keys []string
}
