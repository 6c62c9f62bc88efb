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
)

// DecodeConfig decodes a driver's raw config (the JSON the host sends to
// Configure) strictly into dst, a pointer to the driver's config struct with
// json tags and its defaults already set. Unknown keys and wrong types are
// errors that name the key; if dst has a Validate() error method, it runs
// last. An empty or null config leaves the defaults alone.
func DecodeConfig(raw []byte, dst any) error {
	decodedSecrets.Lock()
	decodedSecrets.keys = SecretKeys(dst)
	decodedSecrets.Unlock()
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(dst); err != nil {
			return decodeError(err, dst)
		}
	}
	if v, ok := dst.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}

func decodeError(err error, dst any) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return fmt.Errorf("config: must be a map of settings, got %s", typeErr.Value)
		}
		return fmt.Errorf("%s: expected %s, got %s", typeErr.Field, describeType(typeErr.Type), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("config is not valid JSON at byte %d: %v", syntaxErr.Offset, err)
	}
	msg := err.Error()
	if key, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("%s: unknown key (valid keys: %s)", strings.Trim(key, `"`), strings.Join(jsonKeys(dst), ", "))
	}
	return errors.New(strings.TrimPrefix(msg, "json: "))
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

func jsonKeys(dst any) []string {
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys = append(keys, name)
	}
	slices.Sort(keys)
	return keys
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
	list []string
}

// Add records a problem with key.
func (p *Problems) Add(key, format string, args ...any) {
	p.list = append(p.list, key+": "+fmt.Sprintf(format, args...))
}

// Err returns nil when nothing was added, else one error listing every
// problem.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	return errors.New(strings.Join(p.list, "; "))
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
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			collectSecrets(f.Type, joinKey(prefix, name), out, depth+1)
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
