package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tracehop/tracehop/internal/editdist"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	File string
	Line int
	// Key is the dotted path of the setting, such as
	// tracing.sampling.random or listeners[0].address.
	Key string
	Msg string
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc += ":" + strconv.Itoa(p.Line)
	}
	if p.Key == "" {
		return loc + ": " + p.Msg
	}
	return loc + ": " + p.Key + ": " + p.Msg
}

// Error lists every problem found in one config file.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%s: %d problems:\n  %s", e.Problems[0].File, len(lines), strings.Join(lines, "\n  "))
}

// decoder walks a YAML node tree into Go values, collecting problems and
// remembering the line of every key for later validation messages.
type decoder struct {
	file     string
	problems []Problem
	warnings []Problem
	lines    map[string]int
	// literal turns ${VAR} expansion off: for what arrives over the admin
	// API, which must not read tracehop's environment.
	literal bool
}

func (d *decoder) addf(line int, key, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// warnf records something allowed but risky: the config loads, and
// tracehop says so at start and in validate.
func (d *decoder) warnf(line int, key, format string, args ...any) {
	d.warnings = append(d.warnings, Problem{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// lineOf returns the line where key was set, or of its nearest parent.
func (d *decoder) lineOf(key string) int {
	for {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
}

var durationType = reflect.TypeFor[time.Duration]()

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expand replaces ${VAR} and ${VAR:-default} in a scalar.
func (d *decoder) expand(n *yaml.Node, key string) string {
	if d.literal {
		return n.Value
	}
	return envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v, ok := os.LookupEnv(m[1]); ok && (v != "" || m[2] == "") {
			return v
		}
		if m[2] != "" {
			return m[3]
		}
		d.addf(n.Line, key, "environment variable %s is not set (set it, or write ${%s:-default})", m[1], m[1])
		return ""
	})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// decode sets v from n; key is n's dotted path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the default
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), key)
		return
	}
	switch {
	case v.Type() == durationType:
		if n.Kind != yaml.ScalarNode {
			d.addf(n.Line, key, "expected a duration such as 1s or 250ms, got %s", kindName(n))
			return
		}
		s := d.expand(n, key)
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.addf(n.Line, key, "expected a duration such as 1s or 250ms, got %q", s)
			return
		}
		v.SetInt(int64(dur))
		return
	case v.Kind() == reflect.Interface:
		// Free-form (a driver's own config): decoded as plain YAML after
		// expansion, checked by the driver itself.
		d.expandNodes(n, key)
		var out any
		if err := n.Decode(&out); err != nil {
			d.addf(n.Line, key, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(out))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, key)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.addf(n.Line, key, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			ck := fmt.Sprintf("%s[%d]", key, i)
			d.lines[ck] = c.Line
			d.decode(c, s.Index(i), ck)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.addf(n.Line, key, "expected a map, got %s", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ck := join(key, k.Value)
			d.lines[ck] = k.Line
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, ck)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.addf(n.Line, key, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(d.expand(n, key))
	case reflect.Bool:
		s := d.scalar(n, key, "true or false")
		if s == nil {
			return
		}
		b, err := strconv.ParseBool(*s)
		if err != nil {
			d.addf(n.Line, key, "expected true or false, got %q", *s)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		s := d.scalar(n, key, "a whole number")
		if s == nil {
			return
		}
		i, err := strconv.ParseInt(*s, 10, 64)
		if err != nil {
			d.addf(n.Line, key, "expected a whole number, got %q", *s)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		s := d.scalar(n, key, "a number")
		if s == nil {
			return
		}
		f, err := strconv.ParseFloat(*s, 64)
		if err != nil {
			d.addf(n.Line, key, "expected a number, got %q", *s)
			return
		}
		v.SetFloat(f)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
}

func (d *decoder) scalar(n *yaml.Node, key, want string) *string {
	if n.Kind != yaml.ScalarNode {
		d.addf(n.Line, key, "expected %s, got %s", want, kindName(n))
		return nil
	}
	s := d.expand(n, key)
	return &s
}

// expandNodes expands ${VAR} references throughout a free-form subtree. As
// in YAML itself, a plain (unquoted) scalar then takes the type of what it
// expands to (port: ${PORT:-8360} is a number); a quoted one stays a string.
func (d *decoder) expandNodes(n *yaml.Node, key string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if strings.Contains(n.Value, "${") {
			n.Value = d.expand(n, key)
			if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				n.Tag = "" // let YAML resolve the expanded text
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.expandNodes(n.Content[i+1], join(key, n.Content[i].Value))
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.expandNodes(c, fmt.Sprintf("%s[%d]", key, i))
		}
	}
}

type field struct {
	name  string
	index int
}

func yamlFields(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fs = append(fs, field{name, i})
	}
	return fs
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.addf(n.Line, key, "expected a map, got %s", kindName(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		ck := join(key, k.Value)
		idx := slices.IndexFunc(fields, func(f field) bool { return f.name == k.Value })
		if idx < 0 {
			names := make([]string, len(fields))
			for j, f := range fields {
				names[j] = f.name
			}
			hint := ""
			if s := closest(k.Value, names); s != "" {
				hint = fmt.Sprintf("did you mean %q? ", s)
			}
			d.addf(k.Line, ck, "unknown key (%svalid keys here: %s)", hint, strings.Join(names, ", "))
			continue
		}
		if seen[k.Value] {
			d.addf(k.Line, ck, "set twice; keep one")
			continue
		}
		seen[k.Value] = true
		d.lines[ck] = k.Line
		d.decode(val, v.Field(fields[idx].index), ck)
	}
}

// closest returns the candidate nearest to s when it is near enough to be
// a likely typo: within 2 edits, or 3 for longer words.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	if len(s) >= 6 {
		bestD = 4
	}
	for _, c := range candidates {
		if dist := editdist.Distance(s, c); dist < bestD {
			best, bestD = c, dist
		}
	}
	return best
}
