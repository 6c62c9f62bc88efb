package driverhost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tracehop/tracehop/core/wire"
)

// EnvPluginDir names the environment variable that adds a directory to the
// driver search.
const EnvPluginDir = "TRACEHOP_PLUGIN_DIR"

// Search is where drivers are looked for, in this order: PluginDir
// (tracing.plugin_dir), EnvDir ($TRACEHOP_PLUGIN_DIR), ExeDir (the directory
// of the tracehop executable), then every directory of PathList ($PATH). An
// explicit tracing.driver.path bypasses the search.
type Search struct {
	PluginDir string
	EnvDir    string
	ExeDir    string
	PathList  string
}

// DefaultSearch returns the search for a config's plugin_dir, filled from
// this process's environment and executable.
func DefaultSearch(pluginDir string) Search {
	s := Search{PluginDir: pluginDir, EnvDir: os.Getenv(EnvPluginDir), PathList: os.Getenv("PATH")}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		s.ExeDir = filepath.Dir(exe)
	}
	return s
}

type place struct {
	source string // how the user names it: "tracing.plugin_dir", "$PATH", ...
	dir    string
}

func (s Search) places() []place {
	var ps []place
	add := func(source, dir string) {
		if dir != "" {
			ps = append(ps, place{source, dir})
		}
	}
	add("tracing.plugin_dir", s.PluginDir)
	add("$"+EnvPluginDir, s.EnvDir)
	add("the tracehop executable's directory", s.ExeDir)
	for _, dir := range filepath.SplitList(s.PathList) {
		if dir == "" {
			dir = "."
		}
		add("$PATH", dir)
	}
	return ps
}

// ErrNotFound is wrapped by the error Find returns when no executable was
// found anywhere.
var ErrNotFound = errors.New("driver not found")

// Find returns the executable for driver name. An explicit path (from
// tracing.driver.path) is used as it is and must exist. The error for a
// driver found nowhere lists every place that was looked at and how to fix it.
func (s Search) Find(name, explicitPath string) (string, error) {
	if err := wire.ValidateName(name); err != nil {
		return "", err
	}
	if explicitPath != "" {
		if err := checkExecutable(explicitPath); err != nil {
			return "", fmt.Errorf("driver %q: tracing.driver.path: %w", name, err)
		}
		return filepath.Abs(explicitPath)
	}
	bin := wire.BinaryPrefix + name
	var looked, pathDirs []string
	for _, p := range s.places() {
		candidate := filepath.Join(p.dir, bin)
		err := checkExecutable(candidate)
		if err == nil {
			return filepath.Abs(candidate)
		}
		if p.source == "$PATH" && errors.Is(err, os.ErrNotExist) {
			if !slices.Contains(pathDirs, p.dir) {
				pathDirs = append(pathDirs, p.dir)
			}
			continue
		}
		looked = append(looked, fmt.Sprintf("  %s: %s", p.source, describe(candidate, err)))
	}
	if len(pathDirs) > 0 {
		looked = append(looked, fmt.Sprintf("  $PATH: in none of its %d directories (%s)", len(pathDirs), strings.Join(pathDirs, ":")))
	}
	if s.PluginDir == "" {
		looked = slices.Insert(looked, 0, "  tracing.plugin_dir: not set")
	}
	if s.EnvDir == "" {
		looked = slices.Insert(looked, 1, "  $"+EnvPluginDir+": not set")
	}
	return "", fmt.Errorf("%w: driver %q needs the executable %s, which is in none of these places:\n%s\n"+
		"fix: build it (make build puts every shipped driver in ./bin), then set tracing.plugin_dir to its "+
		"directory, or set $%s, or give tracing.driver.path",
		ErrNotFound, name, bin, strings.Join(looked, "\n"), EnvPluginDir)
}

func describe(path string, err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return path + " (not there)"
	}
	return path + " (" + err.Error() + ")"
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", path, os.ErrNotExist)
		}
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable (chmod +x it)", path)
	}
	return nil
}

// Found is one driver executable the search can see.
type Found struct {
	Name string
	Path string
	// Source says which search location it came from.
	Source string
	// Shadowed is true when an earlier location has a driver of the same
	// name, so this one is never used.
	Shadowed bool
}

// List returns every driver executable in the search locations, in search
// order.
func (s Search) List() []Found {
	var out []Found
	seen := map[string]bool{}
	for _, p := range s.places() {
		entries, err := os.ReadDir(p.dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name, ok := strings.CutPrefix(e.Name(), wire.BinaryPrefix)
			if !ok || wire.ValidateName(name) != nil {
				continue
			}
			path := filepath.Join(p.dir, e.Name())
			if checkExecutable(path) != nil {
				continue
			}
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			if slices.ContainsFunc(out, func(f Found) bool { return f.Path == path }) {
				continue // the same directory reached twice
			}
			out = append(out, Found{Name: name, Path: path, Source: p.source, Shadowed: seen[name]})
			seen[name] = true
		}
	}
	return out
}
