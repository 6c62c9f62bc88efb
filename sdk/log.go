package sdk

import (
	"io"
	"log/slog"
	"strings"
)

// hclogTimeFormat is the timestamp layout go-plugin's host parses.
const hclogTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// newLogHandler returns a slog handler that writes the JSON lines the host's
// go-plugin parses (@level, @message, @timestamp, then attributes), so that
// a driver's slog lines arrive in tracehop's log with their level and
// attributes intact.
func newLogHandler(w io.Writer) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format(hclogTimeFormat))
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	})
}

// Logger returns the driver process's logger. Serve makes it slog's default
// too, so slog.Info and the standard log package work as well; every line
// reaches tracehop's log tagged with the driver's name.
func Logger() *slog.Logger { return slog.Default() }
