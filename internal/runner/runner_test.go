package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
)

// testEvent is a minimal event.
type testEvent struct {
	Name string `json:"name"`
}

func (e testEvent) Type() string    { return "io.imsflow.test.v1" }
func (e testEvent) Subject() string { return "imsflow.out.test." + e.Name }
func (e testEvent) ID() string      { return "test:" + e.Name }

// settlements is what Config.Settled reports, one per settled delivery.
type settlements struct{ *testenv.Recorder[Settlement] }

func (s settlements) next(t *testing.T) Settlement {
	t.Helper()
	return s.Next(t, 1)[0]
}

type env struct {
	js   jetstream.JetStream
	nc   *nats.Conn
	logs settlements
	out  chan *nats.Msg
	dlq  chan *nats.Msg
	stop func()
}

// start runs a runner with handler h on imsflow.in.test on an embedded
// NATS, with fast backoff.
func start(t *testing.T, h Handler, mutate func(*Config)) *env {
	t.Helper()
	n := testenv.StartNATS(t)
	nc, js := n.Connect(t)
	ctx := t.Context()
	if err := Ensure(ctx, js, DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, nc: nc, logs: settlements{testenv.NewRecorder[Settlement]()}, out: make(chan *nats.Msg, 100), dlq: make(chan *nats.Msg, 100)}
	if _, err := nc.ChanSubscribe("imsflow.out.>", e.out); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.ChanSubscribe("imsflow.dlq.>", e.dlq); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Function: "test", Stream: StreamIn, Subjects: []string{"imsflow.in.test"},
		BackoffInitial: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Workers: 2, Settled: e.logs.Add}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := New(js, cfg, h, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := testenv.Await(t, done, "Run to return"); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(e.stop)
	return e
}

func (e *env) publish(t *testing.T, data string) {
	t.Helper()
	if _, err := e.js.Publish(t.Context(), "imsflow.in.test", []byte(data)); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, ch chan *nats.Msg) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(testenv.Patience):
		t.Fatalf("no message in %s", testenv.Patience)
		return nil
	}
}

// settled checks that the consumer holds nothing: no pending and no
// unacknowledged message. Term is not confirmed by the server, so the
// check polls its condition for a while (the nats.go checkFor pattern).
func (e *env) settled(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, "a consumer with nothing pending", func() bool {
		cons, err := e.js.Consumer(t.Context(), StreamIn, "test")
		if err != nil {
			t.Fatal(err)
		}
		ci, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return ci.NumPending == 0 && ci.NumAckPending == 0
	})
}

func TestAck(t *testing.T) {
	t.Parallel()
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		return []events.Event{testEvent{Name: string(m.Data)}}, nil
	}, nil)
	e.publish(t, "a")
	out := recv(t, e.out)
	if l := e.logs.next(t); l.Outcome != "ack" || l.Delivery != 1 {
		t.Errorf("log = %+v", l)
	}
	if out.Subject != "imsflow.out.test.a" || out.Header.Get(events.HeaderMsgID) != "test:a" ||
		out.Header.Get(events.HeaderType) != "io.imsflow.test.v1" || out.Header.Get(events.HeaderSource) != "imsflow/test" ||
		out.Header.Get(events.HeaderSpecVersion) != "1.0" || string(out.Data) != `{"name":"a"}` {
		t.Errorf("published %s %v %s", out.Subject, out.Header, out.Data)
	}
	e.settled(t)
}

// TestDuplicateEventsAreDropped: the same event from two messages is
// stored once (Nats-Msg-Id de-duplication).
func TestDuplicateEventsAreDropped(t *testing.T) {
	t.Parallel()
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		return []events.Event{testEvent{Name: "same"}}, nil
	}, nil)
	e.publish(t, "1")
	e.publish(t, "2")
	e.logs.next(t)
	e.logs.next(t)
	s, err := e.js.Stream(t.Context(), StreamOut)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(t.Context())
	if info.State.Msgs != 1 {
		t.Errorf("output stream has %d messages, want 1", info.State.Msgs)
	}
}

func TestTermPublishesThenTerminates(t *testing.T) {
	t.Parallel()
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		return []events.Event{testEvent{Name: "rejected"}}, Term("not an image")
	}, nil)
	e.publish(t, "x")
	if out := recv(t, e.out); out.Subject != "imsflow.out.test.rejected" {
		t.Errorf("published %s", out.Subject)
	}
	if l := e.logs.next(t); l.Outcome != "term" || l.Reason != "not an image" {
		t.Errorf("log = %+v", l)
	}
	e.settled(t)
}

func TestTransientThenSuccess(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("ims 503")
		}
		return []events.Event{testEvent{Name: "ok"}}, nil
	}, nil)
	e.publish(t, "x")
	if l := e.logs.next(t); l.Outcome != "nak" || l.Delivery != 1 || !strings.Contains(l.Reason, "ims 503") {
		t.Errorf("first = %+v", l)
	}
	if l := e.logs.next(t); l.Outcome != "ack" || l.Delivery != 2 {
		t.Errorf("second = %+v", l)
	}
	recv(t, e.out)
	e.settled(t)
}

func TestDelay(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		if calls.Add(1) == 1 {
			return nil, Delay(20*time.Millisecond, "waiting for the bitmap")
		}
		return nil, nil
	}, nil)
	e.publish(t, "x")
	if l := e.logs.next(t); l.Outcome != "delay" || !strings.Contains(l.Reason, "bitmap") {
		t.Errorf("first = %+v", l)
	}
	if l := e.logs.next(t); l.Outcome != "ack" || l.Delivery != 2 {
		t.Errorf("second = %+v", l)
	}
}

type notRetryable struct{}

func (notRetryable) Error() string   { return "IMG.0059 file too large" }
func (notRetryable) Retryable() bool { return false }

func TestPermanentErrorsGoToDeadLetters(t *testing.T) {
	t.Parallel()
	for name, herr := range map[string]error{
		"ErrPermanent":     fmt.Errorf("bad config: %w", ErrPermanent),
		"Retryable false":  fmt.Errorf("submit: %w", notRetryable{}),
		"panic is handled": nil,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
				if herr == nil {
					panic("boom")
				}
				return nil, herr
			}, nil)
			e.publish(t, "payload")
			if l := e.logs.next(t); l.Outcome != "dlq" || l.Delivery != 1 {
				t.Errorf("log = %+v", l)
			}
			dl := recv(t, e.dlq)
			var got events.DeadLetter
			if err := json.Unmarshal(dl.Data, &got); err != nil {
				t.Fatal(err)
			}
			if dl.Subject != "imsflow.dlq.test" || got.Subject != "imsflow.in.test" || string(got.Data) != "payload" ||
				got.Reason == "" || dl.Header.Get(events.HeaderReason) != got.Reason || got.Deliveries != 1 {
				t.Errorf("dead letter %s %+v", dl.Subject, got)
			}
			e.settled(t)
		})
	}
}

func TestOutOfDeliveries(t *testing.T) {
	t.Parallel()
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		return nil, errors.New("still failing")
	}, func(c *Config) { c.MaxFailures = 3 })
	e.publish(t, "x")
	for i, want := range []Outcome{OutcomeNak, OutcomeNak, OutcomeDLQ} {
		if l := e.logs.next(t); l.Outcome != want || l.Delivery != uint64(i+1) {
			t.Errorf("delivery %d: %+v, want %s", i+1, l, want)
		}
	}
	var got events.DeadLetter
	if err := json.Unmarshal(recv(t, e.dlq).Data, &got); err != nil || got.Deliveries != 3 || !strings.Contains(got.Reason, "still failing") {
		t.Errorf("dead letter %+v, %v", got, err)
	}
	e.settled(t)
}

// TestWaitsDoNotSpendFailures: planned waits, however many, do not count
// against MaxFailures; failures alone do, and the backoff follows them.
func TestWaitsDoNotSpendFailures(t *testing.T) {
	t.Parallel()
	const waits = 5
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		if m.Delivery <= waits {
			return nil, Delay(time.Millisecond, "slots full")
		}
		return nil, errors.New("still failing")
	}, func(c *Config) { c.MaxFailures = 2 })
	e.publish(t, "x")
	for i := range waits {
		if l := e.logs.next(t); l.Outcome != OutcomeDelay {
			t.Fatalf("delivery %d = %+v, want a delay", i+1, l)
		}
	}
	if l := e.logs.next(t); l.Outcome != OutcomeNak || !strings.Contains(l.Reason, "failure 1 of 2") {
		t.Errorf("first failure = %+v", l)
	}
	if l := e.logs.next(t); l.Outcome != OutcomeDLQ || l.Delivery != waits+2 {
		t.Errorf("second failure = %+v, want the dead letter on delivery %d", l, waits+2)
	}
	var got events.DeadLetter
	if err := json.Unmarshal(recv(t, e.dlq).Data, &got); err != nil || !strings.Contains(got.Reason, "gave up after 2 failures") {
		t.Errorf("dead letter %+v, %v", got, err)
	}
	e.settled(t)
}

// TestFailuresAreForgottenOnSuccess: a message that failed and then
// succeeded leaves no count behind.
func TestFailuresAreForgottenOnSuccess(t *testing.T) {
	t.Parallel()
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		if m.Delivery == 1 {
			return nil, errors.New("once")
		}
		return nil, nil
	}, nil)
	e.publish(t, "x")
	first, second := e.logs.next(t), e.logs.next(t)
	if first.Outcome != OutcomeNak || second.Outcome != OutcomeAck {
		t.Fatalf("outcomes %s, %s", first.Outcome, second.Outcome)
	}
	kv, err := e.js.KeyValue(t.Context(), BucketAttempts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), fmt.Sprintf("test.%d", second.StreamSeq)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("count after success: %v, want none", err)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want verdict
	}{
		{nil, verdictAck},
		{Term("bad"), verdictTerm},
		{fmt.Errorf("wrapped: %w", Delay(time.Second, "later")), verdictWait},
		{fmt.Errorf("x: %w", ErrPermanent), verdictPermanent},
		{errors.New("boom"), verdictFail},
	} {
		if got, _, _ := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if _, reason, wait := classify(Delay(3*time.Second, "slots full")); reason != "slots full" || wait != 3*time.Second {
		t.Errorf("Delay classified as %q, %s", reason, wait)
	}
}

// TestDrainFinishesMessagesInHand: cancelling Run lets a handler that is
// running finish and its message be acknowledged before Run returns.
func TestDrainFinishesMessagesInHand(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	e := start(t, func(ctx context.Context, m Msg) ([]events.Event, error) {
		close(entered)
		<-release
		return []events.Event{testEvent{Name: "late"}}, nil
	}, nil)
	e.publish(t, "x")
	testenv.Await(t, entered, "the handler to be called")
	stopped := make(chan struct{})
	go func() { e.stop(); close(stopped) }()
	close(release)
	testenv.Await(t, stopped, "Run to drain and return")
	// Settled before Run returned.
	if all := e.logs.All(); len(all) != 1 || all[0].Outcome != OutcomeAck {
		t.Errorf("settled when Run returned: %+v, want the ack", all)
	}
	recv(t, e.out)
}

func TestConfigChecks(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{},
		{Function: "f", Stream: "S"},
		{Function: "f", Stream: "S", Subjects: []string{"a"}, AckWait: time.Second, HandleTimeout: 2 * time.Second},
	} {
		if _, err := New(nil, c, nil, zerolog.Nop()); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	for range 2 {
		if err := Ensure(t.Context(), js, DefaultTopology(1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{StreamIn, StreamJobs, StreamOut, StreamDLQ} {
		if _, err := js.Stream(t.Context(), s); err != nil {
			t.Errorf("stream %s: %v", s, err)
		}
	}
	for _, b := range []string{BucketImports, BucketExports, BucketSlots, BucketJobs} {
		if _, err := js.KeyValue(t.Context(), b); err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
}

// lineSignal is a log writer that signals each line written.
type lineSignal struct{ lines chan string }

func (w lineSignal) Write(p []byte) (int, error) {
	select {
	case w.lines <- string(p):
	default:
	}
	return len(p), nil
}

// TestEnsureWaitsForJetStream: a process that starts before NATS answers
// (a cluster still electing, a server restarting) waits and says so,
// instead of exiting on its first try.
func TestEnsureWaitsForJetStream(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	n.Shutdown()
	w := lineSignal{lines: make(chan string, 16)}
	done := make(chan error, 1)
	go func() { done <- EnsureWait(t.Context(), js, DefaultTopology(1), zerolog.New(w)) }()
	line := testenv.Await(t, w.lines, "a log line about the wait")
	if !strings.Contains(line, "JetStream is not ready") || !strings.Contains(line, "trying again") {
		t.Errorf("log line %q does not say what it waits for", line)
	}
	n.Restart(t)
	if err := testenv.Await(t, done, "EnsureWait to return"); err != nil {
		t.Fatalf("EnsureWait after NATS came back: %v", err)
	}
	if _, err := js.Stream(t.Context(), StreamIn); err != nil {
		t.Errorf("stream after EnsureWait: %v", err)
	}
}
