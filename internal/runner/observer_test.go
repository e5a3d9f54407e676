package runner

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
)

// recordingObserver records what a runner tells its Observer.
type recordingObserver struct {
	bound     atomic.Bool
	alive     atomic.Int64 // heartbeats
	mu        sync.Mutex
	published []string // event IDs
	settled   *testenv.Recorder[Settlement]
}

func newRecordingObserver() *recordingObserver {
	return &recordingObserver{settled: testenv.NewRecorder[Settlement]()}
}

func (o *recordingObserver) Consuming(bound bool)  { o.bound.Store(bound) }
func (o *recordingObserver) Alive(time.Duration)   { o.alive.Add(1) }
func (o *recordingObserver) Settled(st Settlement) { o.settled.Add(st) }
func (o *recordingObserver) Published(e events.Event) {
	o.mu.Lock()
	o.published = append(o.published, e.ID())
	o.mu.Unlock()
}

func (o *recordingObserver) events() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.published...)
}

// TestObserver: the observer hears that the consumer is bound, beats,
// every settlement, and each event once however often it is published,
// by the runner or by the handler itself; then that the consumer drains.
func TestObserver(t *testing.T) {
	t.Parallel()
	obs := newRecordingObserver()
	var e *env
	e = start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		if string(m.Data) == "self" {
			// Published by the handler, twice: told once.
			for range 2 {
				if err := Publish(ctx, e.js, "test", testEvent{Name: "self"}); err != nil {
					return nil, err
				}
			}
			return nil, nil
		}
		return []events.Event{testEvent{Name: string(m.Data)}}, nil
	}, func(c *Config) { c.Observer = obs })
	testenv.Eventually(t, "the consumer bound and a heartbeat", func() bool { return obs.bound.Load() && obs.alive.Load() > 0 })

	for _, data := range []string{"a", "a", "self"} { // "a" twice: the second is a duplicate
		e.publish(t, data)
	}
	sts := obs.settled.Next(t, 3)
	for _, st := range sts {
		if st.Outcome != OutcomeAck {
			t.Errorf("settlement %+v, want ack", st)
		}
	}
	got := obs.events()
	slices.Sort(got)
	if len(got) != 2 || got[0] != "test:a" || got[1] != "test:self" {
		t.Errorf("events told = %v, want [test:a test:self], each once", got)
	}
	e.stop()
	if obs.bound.Load() {
		t.Error("the consumer is still bound after the runner drained")
	}
}

// TestHeartbeatStopsWhileAHandlerIsStuck: a handler that ignores its
// deadline for more than twice the ack wait stops the heartbeat until it
// returns.
func TestHeartbeatStopsWhileAHandlerIsStuck(t *testing.T) {
	t.Parallel()
	obs := newRecordingObserver()
	release := make(chan struct{})
	began := make(chan time.Time, 10)
	const ackWait = 400 * time.Millisecond
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		began <- time.Now()
		<-release // ignores ctx
		return nil, nil
	}, func(c *Config) { c.Observer, c.AckWait, c.Workers = obs, ackWait, 1 })
	testenv.Eventually(t, "a first heartbeat", func() bool { return obs.alive.Load() > 0 })
	e.publish(t, "x")
	start := testenv.Await(t, began, "the handler to start")
	every := ackWait / 4
	testenv.Eventually(t, "the handler stuck past twice the ack wait", func() bool { return time.Since(start) > 2*ackWait+3*every })
	stuck := obs.alive.Load()
	testenv.Eventually(t, "a few more ticks", func() bool { return time.Since(start) > 2*ackWait+8*every })
	if n := obs.alive.Load(); n != stuck {
		t.Errorf("%d heartbeats while the handler was stuck", n-stuck)
	}
	close(release)
	testenv.Eventually(t, "heartbeats again once the handler returned", func() bool { return obs.alive.Load() > stuck })
}

func TestLongestInHand(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	in := make([]atomic.Int64, 3)
	if d := longestInHand(in, now); d != 0 {
		t.Errorf("idle workers: %s, want 0", d)
	}
	in[0].Store(now.Add(-time.Second).UnixNano())
	in[2].Store(now.Add(-3 * time.Second).UnixNano())
	if d := longestInHand(in, now); d != 3*time.Second {
		t.Errorf("longestInHand = %s, want 3s", d)
	}
}
