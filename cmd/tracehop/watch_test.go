package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A config file that cannot be read for a while (out of descriptors, a
// ConfigMap mid-update) is no change (issue 26: descriptor exhaustion
// triggered reloads of the unchanged config). It is logged once; a real
// change after it is still seen.
func TestWatchIgnoresAnUnreadableFile(t *testing.T) {
	var mu sync.Mutex
	content, fail := "a", false
	read := func(string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, &pathError{syscall.EMFILE}
		}
		return []byte(content), nil
	}
	set := func(c string, f bool) {
		mu.Lock()
		content, fail = c, f
		mu.Unlock()
	}
	var logs syncBuffer
	w := fileWatch{path: "tracehop.yaml", read: read, every: 5 * time.Millisecond, log: slog.New(slog.NewTextHandler(&logs, nil))}
	loaded, err := w.sum()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloads := make(chan struct{}, 1)
	go w.run(ctx, loaded, reloads)
	set("a", true)
	select {
	case <-reloads:
		t.Fatal("an unreadable config file was taken for a change")
	case <-time.After(200 * time.Millisecond):
	}
	set("a", false) // readable again, unchanged
	select {
	case <-reloads:
		t.Fatal("the same config, readable again, was taken for a change")
	case <-time.After(100 * time.Millisecond):
	}
	if n := strings.Count(logs.String(), "cannot read the config file"); n != 1 {
		t.Errorf("the unreadable file was logged %d times, want once:\n%s", n, logs.String())
	}
	set("b", false)
	select {
	case <-reloads:
	case <-time.After(2 * time.Second):
		t.Fatal("a real change after the file was unreadable was not seen")
	}
}

type pathError struct{ err error }

func (e *pathError) Error() string { return "open tracehop.yaml: " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A change that a reload (SIGHUP) read already is not reloaded again
// when the watch sees it; the next change is.
func TestWatchSkipsWhatWasReloaded(t *testing.T) {
	var mu sync.Mutex
	content := "a"
	read := func(string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		return []byte(content), nil
	}
	set := func(c string) {
		mu.Lock()
		content = c
		mu.Unlock()
	}
	w := fileWatch{path: "tracehop.yaml", read: read, every: 5 * time.Millisecond, log: slog.New(slog.DiscardHandler), seen: new(atomic.Pointer[[32]byte])}
	loaded, _ := w.sum()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloads := make(chan struct{}, 1)
	set("b")
	sum, _ := w.sum()
	w.saw(sum) // SIGHUP reloaded b before the watch looked
	go w.run(ctx, loaded, reloads)
	select {
	case <-reloads:
		t.Fatal("a change reloaded already was reloaded again")
	case <-time.After(200 * time.Millisecond):
	}
	set("c")
	select {
	case <-reloads:
	case <-time.After(2 * time.Second):
		t.Fatal("the next change was not seen")
	}
}
