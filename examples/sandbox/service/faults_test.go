package main

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		query   string
		sleep   time.Duration
		status  int
		wantErr bool
	}{
		{"", 0, 0, false},
		{"sleep=400ms", 400 * time.Millisecond, 0, false},
		{"status=500", 0, 500, false},
		{"sleep=1s&status=503", time.Second, 503, false},
		{"sleep=11s", 0, 0, true},   // over the 10s cap
		{"sleep=-1s", 0, 0, true},   // negative
		{"sleep=soon", 0, 0, true},  // not a duration
		{"status=200", 0, 0, true},  // not a failure
		{"status=600", 0, 0, true},  // not HTTP
		{"status=five", 0, 0, true}, // not a number
	} {
		t.Run(tc.query, func(t *testing.T) {
			sleep, status, err := faults(httptest.NewRequest("GET", "/trace/1?"+tc.query, nil))
			if (err != nil) != tc.wantErr || err == nil && (sleep != tc.sleep || status != tc.status) {
				t.Errorf("faults(%q) = %v, %d, %v; want %v, %d, error %v", tc.query, sleep, status, err, tc.sleep, tc.status, tc.wantErr)
			}
		})
	}
}
