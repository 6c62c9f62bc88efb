package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// saturated is one wrk run at full speed.
type saturated struct {
	Requests int64
	RPS      float64
	P99      time.Duration
	Errors   int64 // socket errors and non-2xx/3xx answers
	// CPU is what wrk itself used (user and system): the load generator
	// shares the machine's cores with everything measured.
	CPU time.Duration
}

// runWrk runs `wrk -t1 -c50 -dD --latency URL`, the peers' saturating load.
func runWrk(ctx context.Context, wrk, url string, conns int, d time.Duration, extra ...string) (saturated, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	args := append([]string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency"}, extra...)
	cmd := exec.CommandContext(ctx, wrk, append(args, url)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return saturated{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	s, err := parseWrk(out)
	s.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return s, err
}

func parseWrk(out []byte) (saturated, error) {
	var s saturated
	inDist := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
		case f[0] == "Latency" && len(f) >= 2 && f[1] == "Distribution":
			inDist = true
		case inDist && f[0] == "99%" && len(f) == 2:
			s.P99, _ = parseWrkDuration(f[1])
			inDist = false
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			s.Requests, _ = strconv.ParseInt(f[0], 10, 64)
		case f[0] == "Requests/sec:" && len(f) == 2:
			s.RPS, _ = strconv.ParseFloat(f[1], 64)
		case f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 3; i < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i], ","), 10, 64)
				s.Errors += n
			}
		case f[0] == "Non-2xx":
			n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
			s.Errors += n
		}
	}
	if s.RPS == 0 {
		return s, fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	return s, nil
}

// parseWrkDuration reads wrk's "412.00us", "1.23ms", "2.00s".
func parseWrkDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return time.Duration(f * float64(u.unit)), err
		}
	}
	return 0, fmt.Errorf("wrk duration %q", s)
}

// fixedRate is one fortio run at a fixed request rate.
type fixedRate struct {
	Requests      int64
	QPS           float64
	P50, P90, P99 time.Duration
	Errors        int64
}

// runFortio runs `fortio load -qps QPS -c 16 -t D -uniform` and reads its
// JSON report.
func runFortio(ctx context.Context, fortio, url string, qps, conns int, d time.Duration) (fixedRate, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	args := []string{"load", "-qps", strconv.Itoa(qps), "-c", strconv.Itoa(conns),
		"-t", d.String(), "-r", "0.00001", "-uniform", "-p", "50,90,99", "-json", "-", "-quiet"}
	if strings.HasPrefix(url, "https:") {
		args = append(args, "-k") // the bench's own CA: not verified, as wrk does not
	}
	cmd := exec.CommandContext(ctx, fortio, append(args, url)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fixedRate{}, fmt.Errorf("fortio: %w: %s", err, stderr.Bytes())
	}
	return parseFortio(out)
}

func parseFortio(out []byte) (fixedRate, error) {
	var r struct {
		ActualQPS         float64
		RetCodes          map[string]int64
		DurationHistogram struct {
			Count       int64
			Percentiles []struct{ Percentile, Value float64 }
		}
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return fixedRate{}, fmt.Errorf("fortio's JSON report: %w", err)
	}
	f := fixedRate{Requests: r.DurationHistogram.Count, QPS: r.ActualQPS}
	for code, n := range r.RetCodes {
		if code != "200" {
			f.Errors += n
		}
	}
	for _, p := range r.DurationHistogram.Percentiles {
		d := time.Duration(p.Value * float64(time.Second))
		switch p.Percentile {
		case 50:
			f.P50 = d
		case 90:
			f.P90 = d
		case 99:
			f.P99 = d
		}
	}
	return f, nil
}
