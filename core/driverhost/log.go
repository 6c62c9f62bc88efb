package driverhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hclogName is the name of the hclog logger handed to go-plugin. go-plugin
// logs its own messages under it and the plugin's stderr under
// hclogName + "." + the executable's name.
const hclogName = "plugin"

// newHCLogger returns an hclog.Logger that writes go-plugin's own messages
// into logger, tagged with the driver's name. The driver's stderr (its log
// lines) is not go-plugin's to parse: its parser trusts the JSON's field
// types, and a line such as {"@message": 1} panicked tracehop. So the
// logger go-plugin names after the driver's executable (exe) is off, and
// stderrTail logs each line itself, checking every type.
func newHCLogger(logger *slog.Logger, exe string) hclog.Logger {
	level := hclog.Info
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return quietDriver{Logger: hclog.New(&hclog.LoggerOptions{
		Name:       hclogName,
		Level:      level,
		Output:     &slogWriter{logger: logger},
		JSONFormat: true,
	}), exe: exe}
}

// quietDriver is an hclog.Logger whose sub-logger named after the driver's
// executable is off: go-plugin then leaves the driver's stderr lines
// unparsed (see newHCLogger).
type quietDriver struct {
	hclog.Logger
	exe string
}

// Named is hclog's, but off for the driver's executable.
func (q quietDriver) Named(name string) hclog.Logger {
	if name == q.exe {
		return hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard})
	}
	return q.Logger.Named(name)
}

// slogWriter receives hclog's JSON lines, one per Write, and re-logs them.
type slogWriter struct {
	logger *slog.Logger
}

func (w *slogWriter) Write(p []byte) (int, error) {
	var entry map[string]any
	if err := json.Unmarshal(p, &entry); err != nil {
		w.logger.Info(strings.TrimSpace(string(p)))
		return len(p), nil
	}
	module, _ := entry["@module"].(string)
	logEntry(w.logger, entry, strings.HasPrefix(module, hclogName+"."))
	return len(p), nil
}

// logEntry logs an hclog JSON entry: the driver's own (fromPlugin) or
// go-plugin's. Every field's type is checked: the entry may come from a
// driver that is broken, or hostile.
func logEntry(logger *slog.Logger, entry map[string]any, fromPlugin bool) {
	msg, _ := entry["@message"].(string)
	lvl, _ := entry["@level"].(string)
	level := slogLevel(lvl)
	if !fromPlugin && level == slog.LevelInfo {
		// go-plugin's own chatter ("plugin started", "configuring
		// client automatic mTLS") is debug material for tracehop's users.
		level = slog.LevelDebug
	}
	keys := make([]string, 0, len(entry))
	for k := range entry {
		switch k {
		case "@message", "@level", "@module", "@timestamp", "timestamp", "@caller":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	if !fromPlugin {
		attrs = append(attrs, slog.String("source", "go-plugin"))
	}
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, entry[k]))
	}
	logger.LogAttrs(context.Background(), level, msg, attrs...)
}

func slogLevel(hclevel string) slog.Level {
	switch strings.ToLower(hclevel) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// stderrTail reads what a driver writes to stderr: it logs each line (the
// SDK writes hclog JSON lines; anything else is logged at debug level, or as
// an error from a Go panic's first line on) and keeps the last lines, so
// that an error about a driver that died can say what it said last.
type stderrTail struct {
	log     *slog.Logger // nil: keep the lines, log nothing
	mu      sync.Mutex
	cur     bytes.Buffer
	lines   []string
	inPanic bool
}

const tailLines = 12

func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		if b == '\n' {
			t.push(t.cur.String())
			t.cur.Reset()
			continue
		}
		if t.cur.Len() < 64<<10 { // a longer line is cut: a driver cannot grow this
			t.cur.WriteByte(b)
		}
	}
	return len(p), nil
}

func (t *stderrTail) push(line string) {
	if line = strings.TrimSpace(line); line == "" {
		return
	}
	// A driver's log line is JSON: keep its message and error.
	var entry map[string]any
	isJSON := json.Unmarshal([]byte(line), &entry) == nil
	if t.log != nil {
		switch {
		case isJSON:
			logEntry(t.log, entry, true)
		case strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") || t.inPanic:
			t.inPanic = true
			t.log.Error(line)
		default:
			// hclog's text form: "[WARN] message".
			level := slog.LevelDebug
			if rest, ok := strings.CutPrefix(line, "["); ok {
				if lvl, _, ok := strings.Cut(rest, "]"); ok && lvl != "TRACE" && lvl != "DEBUG" {
					level = slogLevel(lvl)
				}
			}
			t.log.Log(context.Background(), level, line)
		}
	}
	if isJSON {
		msg, _ := entry["@message"].(string)
		if e, ok := entry["error"]; ok {
			msg += fmt.Sprintf(" error=%v", e)
		}
		line = msg
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
}

// String returns the kept lines, indented, or "" when there are none.
func (t *stderrTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if t.cur.Len() > 0 {
		lines = append(lines[:len(lines):len(lines)], t.cur.String())
	}
	if len(lines) == 0 {
		return ""
	}
	return "\n  driver stderr (last lines):\n    " + strings.Join(lines, "\n    ")
}
