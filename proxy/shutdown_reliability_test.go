package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// SIGTERM while the collector has stored a batch and not yet answered it (a
// distant collector: 450 ms per answer): tracehop waits for the answer within
// its drain timeout, exits 0, and every span is stored once. Issue 26: the
// export was cancelled and the batch sent again, and collectors do not
// deduplicate.
func TestReliabilityShutdownDuringLateAnswer(t *testing.T) {
	const rounds, perRound = 3, 10
	var requests, stored, dups int
	for round := range rounds {
		col := newCollector(t)
		col.setMode(t, "late")
		tr := startTraced(t, col, "", nil)
		for i := range perRound {
			resp, err := http.Get(fmt.Sprintf("http://%s/late/%d/%d", tr.addr, round, i))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: status %d", i, resp.StatusCode)
			}
		}
		// The batch timer (200 ms) sends the spans; SIGTERM once the
		// collector has stored them, while it holds its answer.
		for deadline := time.Now().Add(5 * time.Second); col.received() < perRound && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		tr.proc.stop(t)
		requests += perRound
		stored += col.received() + col.duplicates()
		dups += col.duplicates()
	}
	if stored != requests || dups != 0 {
		t.Errorf("%d requests: %d spans stored, %d of them twice; want each once", requests, stored, dups)
	}
	report(t, result{
		Fault:    fmt.Sprintf("SIGTERM while the collector holds its answer (stores at once, answers 450 ms later), %d times", rounds),
		Measured: fmt.Sprintf("%d requests; %d spans stored, duplicates %d; exit 0", requests, stored, dups),
		Bound:    "each span stored once (collectors do not deduplicate); exit 0",
	})
}
