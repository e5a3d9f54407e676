package testenv

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// Patience is how long a test waits for something that should happen
// before it fails, instead of hanging until go test's own timeout. It is
// generous: a wait ends as soon as its condition holds, so a long
// patience costs nothing when all is well, and a loaded 2-core machine
// running the race detector can be many times slower than a quiet one.
// IMSFLOW_TEST_PATIENCE (a duration) changes it.
var Patience = patience()

func patience() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("IMSFLOW_TEST_PATIENCE")); err == nil && d > 0 {
		return d
	}
	return 2 * time.Minute
}

// Eventually waits until cond holds, checking it every few milliseconds,
// and fails the test with what (a description of the awaited state) if it
// has not held within Patience. cond runs on the test's goroutine.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Patience)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s: %s", Patience, what)
		}
		time.Sleep(wait)
	}
}

// Recorder collects values that other goroutines report (a runner's
// settled messages, received events) and lets a test wait for them. It
// never drops a value and never blocks the reporter.
type Recorder[T any] struct {
	mu      sync.Mutex
	items   []T
	read    int           // how many Next has returned
	changed chan struct{} // closed and replaced on every Add
}

// NewRecorder returns an empty recorder.
func NewRecorder[T any]() *Recorder[T] {
	return &Recorder[T]{changed: make(chan struct{})}
}

// Add records v.
func (r *Recorder[T]) Add(v T) {
	r.mu.Lock()
	r.items = append(r.items, v)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// All returns every value recorded so far.
func (r *Recorder[T]) All() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.items...)
}

// Next waits for the next n values not yet returned by Next, failing the
// test if they have not all come within Patience.
func (r *Recorder[T]) Next(t testing.TB, n int) []T {
	t.Helper()
	var out []T
	r.WaitFor(t, fmt.Sprintf("%d more values", n), func(all []T) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(all)-r.read < n {
			return false
		}
		out = append(out, all[r.read:r.read+n]...)
		r.read += n
		return true
	})
	return out
}

// WaitFor waits until cond holds for every value recorded so far, and
// returns them; it fails the test with what if cond has not held within
// Patience. cond must not keep or change all; WaitFor returns a copy.
func (r *Recorder[T]) WaitFor(t testing.TB, what string, cond func(all []T) bool) []T {
	t.Helper()
	timeout := time.NewTimer(Patience)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		// items only grows: the values below len are never written
		// again, so cond reads them without a copy while Add appends.
		all, changed := r.items[:len(r.items):len(r.items)], r.changed
		r.mu.Unlock()
		if cond(all) {
			return slices.Clone(all)
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("still waiting after %s for %s; %d values recorded", Patience, what, len(all))
		}
	}
}

// Missing reports a prerequisite of the test that this machine lacks
// (a program, a package): the test is skipped on a developer's machine,
// and fails under CI (CI set, as CI services and .ci/run set it), where
// a skipped test would pass unnoticed.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI=%s: a missing prerequisite fails the run)", what, os.Getenv("CI"))
	}
	t.Skip(what)
}

// Await receives one value from ch, failing the test with what (the
// awaited event) if none has come within Patience: a channel wait that
// cannot hang the suite.
func Await[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	timeout := time.NewTimer(Patience)
	defer timeout.Stop()
	select {
	case v := <-ch:
		return v
	case <-timeout.C:
		t.Fatalf("still waiting after %s: %s", Patience, what)
		var zero T
		return zero
	}
}
