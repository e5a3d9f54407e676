// Package runnertest runs imsflow's functions in tests: a runner started
// and stopped with the test, and a record of every settled message to
// wait on, in place of timing or log scraping.
package runnertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
)

// Settled records every message a runner settles (its Config.Settled).
type Settled struct {
	*testenv.Recorder[runner.Settlement]
}

// NewSettled returns an empty record.
func NewSettled() *Settled {
	return &Settled{testenv.NewRecorder[runner.Settlement]()}
}

// Outcomes waits for the next n settlements and returns their outcomes,
// sorted.
func (s *Settled) Outcomes(t testing.TB, n int) []string {
	t.Helper()
	return outcomes(s.Next(t, n))
}

// Final waits until n distinct messages have been settled for good (ack,
// term or dead letter), however many deliveries each took, and returns
// the last settlement of each message by stream sequence.
func (s *Settled) Final(t testing.TB, n int) map[uint64]runner.Settlement {
	t.Helper()
	final := map[uint64]runner.Settlement{}
	s.WaitFor(t, fmt.Sprintf("%d messages settled for good", n), func(all []runner.Settlement) bool {
		clear(final)
		for _, st := range all {
			if st.Outcome.Final() {
				final[st.StreamSeq] = st
			}
		}
		return len(final) >= n
	})
	return final
}

// FinalOutcomes is Final's outcomes, sorted.
func (s *Settled) FinalOutcomes(t testing.TB, n int) []string {
	t.Helper()
	return outcomes(slices.Collect(maps.Values(s.Final(t, n))))
}

// outcomes are the settlements' outcomes, sorted.
func outcomes(sts []runner.Settlement) []string {
	out := make([]string, 0, len(sts))
	for _, st := range sts {
		out = append(out, string(st.Outcome))
	}
	slices.Sort(out)
	return out
}

// Count returns how many settlements so far had outcome o.
func (s *Settled) Count(o runner.Outcome) int {
	n := 0
	for _, st := range s.All() {
		if st.Outcome == o {
			n++
		}
	}
	return n
}

// Start runs a runner with cfg and h until stop is called or the test
// ends; stop returns once the runner has drained.
func Start(t testing.TB, js jetstream.JetStream, cfg runner.Config, h runner.Handler, log zerolog.Logger) (stop func()) {
	t.Helper()
	r, err := runner.New(js, cfg, h, log)
	if err != nil {
		t.Fatal(err)
	}
	return Run(t, r)
}

// Run runs r until stop is called or the test ends; stop returns once
// the runner has drained. A runner that fails to start fails the test.
func Run(t testing.TB, r *runner.Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			// A runner stopped before it consumed returns ctx's error.
			if err := testenv.Await(t, done, "the runner to drain"); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("runner: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// NoRetries fails the test for every delivery so far that ended in an
// error (nak or dead letter): for tests that inject no fault.
func (s *Settled) NoRetries(t testing.TB) {
	t.Helper()
	for _, st := range s.All() {
		if st.Outcome == runner.OutcomeNak || st.Outcome == runner.OutcomeDLQ {
			t.Errorf("message %d, delivery %d: %s (%s)", st.StreamSeq, st.Delivery, st.Outcome, st.Reason)
		}
	}
}

// ExpireAbandonedClaims returns a Settled hook that passes each settlement
// to next, and advances clock (the function's) by ttl whenever an attempt
// waited for an earlier attempt's claim. With an AckWait far above any
// handler's run, that earlier attempt has ended, keeping its claim because
// IMS may have started the job: the claim is abandoned, and a test waits
// for its takeover instead of a real claim TTL.
func ExpireAbandonedClaims(clock interface{ Advance(time.Duration) }, ttl time.Duration, next func(runner.Settlement)) func(runner.Settlement) {
	return func(st runner.Settlement) {
		next(st)
		if st.Outcome == runner.OutcomeDelay && strings.Contains(st.Reason, "under way") {
			clock.Advance(ttl)
		}
	}
}
