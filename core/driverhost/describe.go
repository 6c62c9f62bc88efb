package driverhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

// Describe asks the driver executable at path what it is (its tracehop
// version, protocol version and Go version) without starting it as a
// plugin: the SDK answers wire.InfoEnv and exits. A driver built with an
// SDK older than that answer, or a program that is no driver, gives an
// error that says so.
func Describe(ctx context.Context, path string) (wire.DriverInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path)
	// The basics a launch gives too (PATH, HOME, ...): a driver that is a
	// script (#!/usr/bin/env node) needs PATH to start at all.
	// (A Process with no Spec: environ gives exactly those.)
	cmd.Env = append(new(Process).environ(), wire.InfoEnv+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var info wire.DriverInfo
	if jerr := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &info); err != nil || jerr != nil || info.Protocol == 0 {
		return wire.DriverInfo{}, fmt.Errorf("%s did not say what it is (a driver built with an SDK older than tracehop's version report, or not a tracehop driver): %s",
			path, firstLine(strings.TrimSpace(errOut.String()+" "+fmt.Sprint(err))))
	}
	return info, nil
}

// Compatibility says how a driver that described itself as info fits this
// tracehop: "" when it is built from the same version and speaks the same
// protocol, else what differs and what to do.
func Compatibility(info wire.DriverInfo) string {
	switch {
	case info.Protocol != wire.ProtocolVersion:
		return fmt.Sprintf("speaks driver protocol %d, this tracehop speaks %d: tracehop will refuse it; install the driver from the same tracehop release, or rebuild it against a matching SDK",
			info.Protocol, wire.ProtocolVersion)
	case info.Version != core.Version:
		return fmt.Sprintf("built from tracehop %s, not %s (same protocol: it works)", info.Version, core.Version)
	}
	return ""
}
