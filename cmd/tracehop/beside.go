package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// runBeside runs a subcommand that is a binary of its own (tracehop-inject
// for `tracehop inject`), found beside the tracehop executable, then on
// $PATH, with the same arguments, streams and exit code. It keeps the
// tracehop that runs in every Pod free of what only a workstation needs
// (the Kubernetes API types).
func runBeside(binary, command string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	exe, _ := os.Executable()
	path := besidePath(filepath.Dir(exe), binary)
	if path == "" {
		fmt.Fprintf(stderr, "tracehop %s: %s is neither beside tracehop (%s) nor on $PATH: "+
			"make build puts it in ./bin, and a release archive has it beside tracehop\n", command, binary, filepath.Dir(exe))
		return exitUsage
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode()
	}
	fmt.Fprintf(stderr, "tracehop %s: running %s: %v\n", command, path, err)
	return exitFailure
}

// besidePath returns dir/binary when it is an executable file, or binary's
// path on $PATH, or "".
func besidePath(dir, binary string) string {
	p := filepath.Join(dir, binary)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return p
	}
	if p, err := exec.LookPath(binary); err == nil {
		return p
	}
	return ""
}
