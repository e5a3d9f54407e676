package poller

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/runner"
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
	t.Parallel()
	const n = 10000
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.FirstPoll = time.Hour })
	runtime.GC()
	before := runtime.NumGoroutine()
	ctx := t.Context()
	acks := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		h := events.JobSubmitted{JobID: fmt.Sprintf("%032x", i+1), JobType: "imsImportDataImageJob", Kind: events.KindImport,
			Method: events.MethodNormal, SubmittedAt: time.Now().UTC()}
		ack, err := hs.js.PublishAsync(events.SubjectJobSubmitted, mustJSON(h), jetstream.WithMsgID(h.ID()))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	for _, a := range acks {
		select {
		case <-a.Ok():
		case err := <-a.Err():
			t.Fatal(err)
		}
	}
	jobs, _ := hs.js.KeyValue(ctx, runner.BucketJobs)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st, err := jobs.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Values() >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs tracked after 3 minutes", st.Values(), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stream, _ := hs.js.Stream(ctx, runner.StreamJobs)
	info, _ := stream.Info(ctx, jetstream.WithSubjectFilter("imsflow.sched.poll.>"))
	if info.State.Msgs < n {
		t.Errorf("%d timers armed, want %d", info.State.Msgs, n)
	}
	if g := runtime.NumGoroutine(); g > before+50 {
		t.Errorf("%d goroutines with %d jobs waiting, %d before: waiting jobs must not hold goroutines", g, n, before)
	}
	if hs.emu.Stats().Requests[imsemu.OpJobProgress] != 0 {
		t.Error("status queries before the first poll was due")
	}
}
