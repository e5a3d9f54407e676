package poller

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestTenThousandJobsInFlight: 10,000 jobs handed off at once are all
// tracked, while the poller holds no goroutine per job: waiting jobs live
// in the KV bucket and as scheduled messages in the stream.
func TestTenThousandJobsInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 jobs")
	}
	// Not parallel: the goroutines counted below are the process's, and
	// no other test's poller may be at work meanwhile.
	const n, window = 10000, 500
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.FirstPoll = time.Hour })
	ctx := t.Context()
	runtime.GC()
	before := runtime.NumGoroutine()
	// Published asynchronously, a window at a time: the client refuses more
	// than a few thousand unacknowledged messages.
	acks := make([]jetstream.PubAckFuture, 0, window)
	for i := range n {
		h := events.JobSubmitted{JobID: fmt.Sprintf("%032x", i+1), JobType: "imsImportDataImageJob", Kind: events.KindImport,
			Method: events.MethodNormal, SubmittedAt: time.Now().UTC()}
		ack, err := hs.js.PublishAsync(events.SubjectJobSubmitted, mustJSON(h), jetstream.WithMsgID(h.ID()))
		if err != nil {
			t.Fatal(err)
		}
		if acks = append(acks, ack); len(acks) == window || i == n-1 {
			for _, a := range acks {
				select {
				case <-a.Ok():
				case err := <-a.Err():
					t.Fatal(err)
				}
			}
			acks = acks[:0]
		}
	}
	jobs, _ := hs.js.KeyValue(ctx, runner.BucketJobs)
	testenv.Eventually(t, fmt.Sprintf("%d jobs tracked", n), func() bool {
		st, err := jobs.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Values() >= n
	})
	// Every hand-off has been settled: none is still in a worker's hands.
	hs.settled.Final(t, n)
	stream, _ := hs.js.Stream(ctx, runner.StreamJobs)
	info, _ := stream.Info(ctx, jetstream.WithSubjectFilter("imsflow.sched.poll.>"))
	if info.State.Msgs < n {
		t.Errorf("%d timers armed, want %d", info.State.Msgs, n)
	}
	// Nothing else keeps a goroutine per job either (a subscription, a
	// watcher): the process has about as many as before the hand-offs.
	if g := runtime.NumGoroutine(); g > before+50 {
		t.Errorf("%d goroutines with %d jobs waiting, %d before: waiting jobs must not hold goroutines", g, n, before)
	}
	if g := pollerGoroutines(); g != 0 {
		t.Errorf("%d goroutines in the poller's code with %d jobs waiting: waiting jobs must not hold goroutines", g, n)
	}
	if hs.emu.Stats().Requests[imsemu.OpJobProgress] != 0 {
		t.Error("status queries before the first poll was due")
	}
}

// pollerGoroutines counts the goroutines running the poller's own code
// (a handler at work); the runner's idle workers wait in the runner.
func pollerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "functions/poller/poller.(*poller)") {
			count++
		}
	}
	return count
}
