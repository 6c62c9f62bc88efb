package driverhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// newHCLogger returns an hclog.Logger that writes into logger, so that
// go-plugin's messages and the driver's own log lines (which reach the host
// as JSON on the driver's stderr) land in tracehop's slog log, tagged with
// the driver's name.
func newHCLogger(logger *slog.Logger) hclog.Logger {
	level := hclog.Info
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       hclogName,
		Level:      level,
		Output:     &slogWriter{logger: logger},
		JSONFormat: true,
	})
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
	msg, _ := entry["@message"].(string)
	lvl, _ := entry["@level"].(string)
	module, _ := entry["@module"].(string)
	level := slogLevel(lvl)
	fromPlugin := strings.HasPrefix(module, hclogName+".")
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
	w.logger.LogAttrs(context.Background(), level, msg, attrs...)
	return len(p), nil
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

// stderrTail keeps the last lines a driver wrote to stderr, so that an error
// about a driver that died can say what it said last (a panic, a fatal log).
type stderrTail struct {
	mu    sync.Mutex
	cur   bytes.Buffer
	lines []string
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
		if t.cur.Len() < 1024 {
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
	if json.Unmarshal([]byte(line), &entry) == nil {
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
