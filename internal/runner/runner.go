// Package runner is imsflow's one JetStream binding: every function is a
// handler that the runner feeds from a durable pull consumer. For each
// message it calls the handler, publishes what the handler returns (each
// event with its deterministic Nats-Msg-Id and CloudEvents headers) and
// only then settles the message:
//
//	handler returns            runner does
//	nil                        publish events, Ack
//	Term(reason)               publish events (the rejected event), TermWithReason
//	Delay(d, reason)           publish events, NakWithDelay(d): a planned wait,
//	                           which is not a failure and spends no budget
//	permanent error            publish DeadLetter to imsflow.dlq.<function>, TermWithReason
//	                           (errors.Is ErrPermanent, or Retryable() false)
//	any other error            count a failure; NakWithDelay(capped exponential
//	                           backoff on the failures so far); at MaxFailures
//	                           failures, DeadLetter and Term
//	publishing fails           the same as an error: nothing is acked unpublished
//
// JetStream counts deliveries, not failures: a message that waits for a
// free slot or a companion file is delivered again and again without
// failing. So the consumer's own MaxDeliver is unlimited and the runner
// counts failures itself, in the imsflow_attempts bucket under
// <function>.<stream sequence>: nothing is written for a message that
// never fails, and a message's count is dropped when it is settled for
// good. The decision itself is a pure function, classify.
//
// Delivery is at least once; handlers are idempotent and the Msg-Id of
// each event lets JetStream drop a republished duplicate. The handler's
// context ends HandleTimeout after the message arrived (less than
// AckWait), and is not cancelled by shutdown: Run drains, letting the
// messages in hand finish.
//
// An Observer (Config.Observer; internal/telemetry has one) is told what
// the runner does: whether its consumer is bound, a heartbeat while no
// message is stuck in a handler, every settled message, and every event
// JetStream stored as new, whether the runner published it or the handler
// did with Publish under its context.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/pkg/events"
)

// ErrPermanent marks an error that repeating cannot fix; wrap it with %w.
var ErrPermanent = errors.New("permanent")

// Msg is one delivered message as a handler sees it.
type Msg struct {
	Subject   string
	Data      []byte
	Header    nats.Header
	Delivery  uint64 // 1 on the first delivery
	StreamSeq uint64
	Published time.Time
}

// Handler handles one message and returns the events to publish.
type Handler func(ctx context.Context, m Msg) ([]events.Event, error)

// termError ends a message that cannot be processed after its events (a
// rejected event) are published.
type termError struct{ reason string }

func (e *termError) Error() string { return "terminated: " + e.reason }

// Term returns the error that terminates the message with reason, after
// the handler's events are published. Use it for bad input, with a
// rejected event among the events.
func Term(reason string) error { return &termError{reason: reason} }

// delayError asks for the message again after d.
type delayError struct {
	d      time.Duration
	reason string
}

func (e *delayError) Error() string { return fmt.Sprintf("delayed %s: %s", e.d, e.reason) }

// Delay returns the error that asks for the message again after d, for a
// handler that must wait (a companion file, a free slot, throttling, a
// claim under way). A wait is not a failure: it spends no MaxFailures.
func Delay(d time.Duration, reason string) error { return &delayError{d: d, reason: reason} }

// IsDelay reports whether err is a planned wait (Delay), and its length.
func IsDelay(err error) (time.Duration, bool) {
	var d *delayError
	if errors.As(err, &d) {
		return d.d, true
	}
	return 0, false
}

// Config of a Runner. Zero fields take the defaults.
type Config struct {
	// Function names the durable consumer and the dead-letter subject.
	Function string
	// Stream and Subjects (filter subjects) select what it consumes.
	Stream   string
	Subjects []string
	// AckWait is how long a message may stay unacknowledged (default 60s);
	// HandleTimeout bounds one handler call and must be less (default 45s).
	AckWait       time.Duration
	HandleTimeout time.Duration
	// MaxFailures is the number of failed deliveries after which a
	// message goes to the dead letters (default 100). Planned waits
	// (Delay) do not count.
	MaxFailures int
	// Workers is how many messages are handled at once (default 4).
	Workers int
	// MaxAckPending is how many messages may be out at once, in hand or
	// waiting to be delivered again after a Delay (default 4096): large, so
	// that messages waiting for a slot or a bitmap do not hold back the
	// messages behind them, which may need neither.
	MaxAckPending int
	// BackoffInitial and BackoffMax shape the redelivery delay after an
	// error (defaults 2s and 5m).
	BackoffInitial, BackoffMax time.Duration
	// Published, when set, is called with every message's events after
	// they are published and before the message is settled (batch
	// totals); an error redelivers the message.
	Published func(ctx context.Context, evs []events.Event) error
	// Settled, when set, is called after each message is settled, from
	// the worker that handled it: the hook for tests that wait on
	// outcomes. It must not block.
	Settled func(Settlement)
	// Observer, when set, is told what the runner does (see Observer):
	// the hook for metrics and health checks.
	Observer Observer
}

// Observer is told what a Runner does, for metrics and health checks. Its
// methods are called from the runner's goroutines and must return at once.
type Observer interface {
	// Consuming reports that the durable consumer is bound and messages
	// flow (true, once Run consumes), or no longer (false, once Run drains).
	Consuming(bound bool)
	// Alive is the runner's heartbeat, every few seconds from the start of
	// Run to its end, as long as no message has been in a handler for
	// longer than twice AckWait (a handler that ignores its deadline): the
	// next comes within next, or the runner is stuck.
	Alive(next time.Duration)
	// Settled is told of every settled delivery, before Config.Settled.
	Settled(Settlement)
	// Published is told of every event JetStream stored as new (not a
	// duplicate of one stored within the stream's window): the events the
	// runner publishes for its handler, and those the handler publishes
	// itself with Publish under the context it was given.
	Published(events.Event)
}

// Outcome is how the runner settled a message.
type Outcome string

// The outcomes of a message.
const (
	OutcomeAck   Outcome = "ack"   // handled; acknowledged
	OutcomeTerm  Outcome = "term"  // refused (bad input); terminated after its rejected event
	OutcomeDelay Outcome = "delay" // the handler asked for it again later (Delay)
	OutcomeNak   Outcome = "nak"   // failed; redelivered after a backoff
	OutcomeDLQ   Outcome = "dlq"   // failed for good; a dead letter, then terminated
)

// Final reports whether the message will not be delivered again.
func (o Outcome) Final() bool { return o == OutcomeAck || o == OutcomeTerm || o == OutcomeDLQ }

// Settlement is one settled delivery of a message.
type Settlement struct {
	Subject   string
	StreamSeq uint64
	Delivery  uint64
	Outcome   Outcome
	// Reason says why a message was not acknowledged (empty for ack).
	Reason string
	// Err is what the handler returned.
	Err error
	// Events is the number of events published for it.
	Events   int
	Duration time.Duration
}

func (c *Config) setDefaults() error {
	if c.Function == "" || c.Stream == "" || len(c.Subjects) == 0 {
		return errors.New("runner: Function, Stream and Subjects are required")
	}
	if c.AckWait == 0 {
		c.AckWait = 60 * time.Second
	}
	if c.HandleTimeout == 0 {
		c.HandleTimeout = DefaultHandleTimeout(c.AckWait)
	}
	if c.HandleTimeout >= c.AckWait {
		return fmt.Errorf("runner: HandleTimeout %s must be less than AckWait %s", c.HandleTimeout, c.AckWait)
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 100
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = max(c.Workers*16, 4096)
	}
	if c.BackoffInitial == 0 {
		c.BackoffInitial = 2 * time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 5 * time.Minute
	}
	return nil
}

// DefaultHandleTimeout is the bound of one handler call under ackWait
// when Config.HandleTimeout is not set: three quarters of it. It is also
// how long a runner's drain on shutdown can take.
func DefaultHandleTimeout(ackWait time.Duration) time.Duration { return ackWait * 3 / 4 }

// Runner consumes one function's messages.
type Runner struct {
	js       jetstream.JetStream
	cfg      Config
	h        Handler
	log      zerolog.Logger
	attempts jetstream.KeyValue // failures per message; set by Run
	// inHand holds, per worker, when it took the message it handles
	// (unix nanoseconds; 0: idle), for the heartbeat.
	inHand []atomic.Int64
}

// New checks cfg and returns a runner; Run starts it.
func New(js jetstream.JetStream, cfg Config, h Handler, log zerolog.Logger) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Runner{js: js, cfg: cfg, h: h, log: log.With().Str("function", cfg.Function).Logger(), inHand: make([]atomic.Int64, cfg.Workers)}, nil
}

// ConsumerConfig is the durable consumer the runner creates or updates.
// MaxDeliver is unlimited: the runner counts failures itself, so that
// planned waits do not spend them (see the package documentation).
func (r *Runner) ConsumerConfig() jetstream.ConsumerConfig { return r.cfg.consumer() }

// consumer is the durable consumer of a configuration with its defaults.
func (c Config) consumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.Function,
		Description:    "imsflow " + c.Function + " function",
		FilterSubjects: c.Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  c.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// Consumer is a function's durable consumer as a runner with default
// settings makes it: what a reconciler makes for a function that is not
// running (its runner sets its own settings when it starts).
type Consumer struct {
	Stream string
	Config jetstream.ConsumerConfig
}

// DefaultConsumer is the Consumer of function on stream, filtered to
// subjects.
func DefaultConsumer(function, stream string, subjects ...string) Consumer {
	c := Config{Function: function, Stream: stream, Subjects: subjects}
	_ = c.setDefaults() // defaults alone always pass
	return Consumer{Stream: stream, Config: c.consumer()}
}

// Run consumes until ctx ends, then drains: messages already pulled are
// handled and settled before it returns.
func (r *Runner) Run(ctx context.Context) error {
	if o := r.cfg.Observer; o != nil {
		stop := r.heartbeat(o)
		defer stop()
	}
	attempts, err := r.js.KeyValue(ctx, BucketAttempts)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", BucketAttempts, err)
	}
	r.attempts = attempts
	var cons jetstream.Consumer
	err = retryStart(ctx, r.log, "create consumer "+r.cfg.Function+" on "+r.cfg.Stream, func(ctx context.Context) (err error) {
		cons, err = r.js.CreateOrUpdateConsumer(ctx, r.cfg.Stream, r.ConsumerConfig())
		return err
	})
	if err != nil {
		return err
	}
	work := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for i := range r.cfg.Workers {
		wg.Go(func() {
			for m := range work {
				r.inHand[i].Store(time.Now().UnixNano())
				r.handle(m)
				r.inHand[i].Store(0)
			}
		})
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { work <- m },
		jetstream.PullMaxMessages(r.cfg.Workers),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			r.log.Warn().Err(err).Msg("consume")
		}))
	if err != nil {
		close(work)
		wg.Wait()
		return fmt.Errorf("consume %s: %w", r.cfg.Function, err)
	}
	r.log.Info().Str("stream", r.cfg.Stream).Strs("subjects", r.cfg.Subjects).Int("workers", r.cfg.Workers).Msg("consuming")
	if o := r.cfg.Observer; o != nil {
		o.Consuming(true)
	}
	<-ctx.Done()
	if o := r.cfg.Observer; o != nil {
		o.Consuming(false)
	}
	cc.Drain()
	<-cc.Closed()
	close(work)
	wg.Wait()
	r.log.Info().Msg("drained")
	return nil
}

// handle runs the handler on one message and settles it (see the package
// documentation).
func (r *Runner) handle(jm jetstream.Msg) {
	begin := time.Now()
	m := Msg{Subject: jm.Subject(), Data: jm.Data(), Header: jm.Headers()}
	if md, err := jm.Metadata(); err == nil {
		m.Delivery, m.StreamSeq, m.Published = md.NumDelivered, md.Sequence.Stream, md.Timestamp
	}
	log := r.log.With().Str("subject", m.Subject).Uint64("stream_seq", m.StreamSeq).Uint64("delivery", m.Delivery).Logger()
	ctx, cancel := context.WithTimeout(withObserver(log.WithContext(context.Background()), r.cfg.Observer), r.cfg.HandleTimeout)
	defer cancel()

	out, herr := r.call(ctx, m)
	outcome, reason := r.settle(ctx, jm, m, out, herr)
	if outcome.Final() && m.Delivery > 1 {
		r.forget(ctx, m)
	}
	took := time.Since(begin)
	ev := log.Info()
	if outcome == OutcomeNak || outcome == OutcomeDLQ {
		ev = log.Warn()
	}
	ev.Str("outcome", string(outcome)).Int("events", len(out)).Dur("duration", took).Err(herr).Str("reason", reason).Msg("message")
	st := Settlement{Subject: m.Subject, StreamSeq: m.StreamSeq, Delivery: m.Delivery, Outcome: outcome,
		Reason: reason, Err: herr, Events: len(out), Duration: took}
	if r.cfg.Observer != nil {
		r.cfg.Observer.Settled(st) // first: a test waiting on Settled finds it counted
	}
	if r.cfg.Settled != nil {
		r.cfg.Settled(st)
	}
}

// call runs the handler, turning a panic into a permanent error.
func (r *Runner) call(ctx context.Context, m Msg) (out []events.Event, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("%w: handler panicked: %v", ErrPermanent, p)
		}
	}()
	return r.h(ctx, m)
}

// verdict is what a handler's result asks for, before anything is done.
type verdict int

const (
	verdictAck       verdict = iota // publish, then Ack
	verdictTerm                     // publish, then Term
	verdictWait                     // publish, then NakWithDelay; not a failure
	verdictFail                     // count a failure; retry or dead-letter
	verdictPermanent                // dead-letter at once
)

// classify is the pure part of settling: what the handler's error asks
// for, with the reason and the wait it names.
func classify(herr error) (v verdict, reason string, wait time.Duration) {
	var term *termError
	var delay *delayError
	switch {
	case herr == nil:
		return verdictAck, "", 0
	case errors.As(herr, &term):
		return verdictTerm, term.reason, 0
	case errors.As(herr, &delay):
		return verdictWait, delay.reason, delay.d
	case permanent(herr):
		return verdictPermanent, herr.Error(), 0
	}
	return verdictFail, herr.Error(), 0
}

// afterFailure is the pure rule after a message's nth failure: dead-letter
// it at MaxFailures, else retry after a backoff that grows with its
// failures (not its deliveries, which planned waits also spend).
func (r *Runner) afterFailure(n uint64) (deadLetter bool, wait time.Duration) {
	if n >= uint64(r.cfg.MaxFailures) {
		return true, 0
	}
	return false, r.backoff(n)
}

func (r *Runner) settle(ctx context.Context, jm jetstream.Msg, m Msg, out []events.Event, herr error) (Outcome, string) {
	v, reason, wait := classify(herr)
	if v <= verdictWait {
		if err := r.publish(ctx, out); err != nil {
			v, reason = verdictFail, "publishing events: "+err.Error()
		} else if r.cfg.Published != nil && len(out) > 0 {
			if err := r.cfg.Published(ctx, out); err != nil {
				v, reason = verdictFail, "after publishing: "+err.Error()
			}
		}
	}
	switch v {
	case verdictAck:
		// A plain Ack, not confirmed: an ack that is lost brings the
		// message again after its ack wait, and its handler answers with
		// what it recorded (the ledgers, the poller's job state), which
		// JetStream then drops as a duplicate of the event already out
		// (the streams' windows outlast the ack waits). Waiting for the
		// server's confirmation would cost every message a round trip.
		if err := jm.Ack(); err != nil {
			return OutcomeAck, "ack not sent: " + err.Error()
		}
		return OutcomeAck, ""
	case verdictTerm:
		_ = jm.TermWithReason(reason)
		return OutcomeTerm, reason
	case verdictWait:
		_ = jm.NakWithDelay(wait)
		return OutcomeDelay, fmt.Sprintf("%s; again in %s", reason, wait.Round(time.Millisecond))
	case verdictPermanent:
		return r.deadLetter(ctx, jm, m, reason)
	}
	n, err := r.fail(ctx, m)
	if err != nil {
		// Failures cannot be counted now (NATS itself is in trouble):
		// retry soon without counting rather than dead-letter on a guess.
		// (The delivery count is no guide: planned waits raise it.)
		d := r.backoff(1)
		_ = jm.NakWithDelay(d)
		return OutcomeNak, fmt.Sprintf("%s (failures not counted: %v); again in %s", reason, err, d.Round(time.Millisecond))
	}
	if dead, d := r.afterFailure(n); !dead {
		_ = jm.NakWithDelay(d)
		return OutcomeNak, fmt.Sprintf("%s (failure %d of %d); again in %s", reason, n, r.cfg.MaxFailures, d.Round(time.Millisecond))
	}
	return r.deadLetter(ctx, jm, m, fmt.Sprintf("gave up after %d failures: %s", n, reason))
}

// attemptKey is a message's key in BucketAttempts.
func (r *Runner) attemptKey(m Msg) string {
	return r.cfg.Function + "." + strconv.FormatUint(m.StreamSeq, 10)
}

// fail counts one more failure of m and returns the count.
func (r *Runner) fail(ctx context.Context, m Msg) (uint64, error) {
	key := r.attemptKey(m)
	var n uint64
	if m.Delivery > 1 { // a first delivery has no failures yet
		e, err := r.attempts.Get(ctx, key)
		switch {
		case err == nil:
			n, _ = strconv.ParseUint(string(e.Value()), 10, 64)
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return 0, err
		}
	}
	n++
	if _, err := r.attempts.Put(ctx, key, []byte(strconv.FormatUint(n, 10))); err != nil {
		return 0, err
	}
	return n, nil
}

// forget drops the failure count of a message settled for good, if it
// has one; the bucket's TTL removes what a crash leaves behind.
func (r *Runner) forget(ctx context.Context, m Msg) {
	key := r.attemptKey(m)
	if _, err := r.attempts.Get(ctx, key); err == nil {
		_ = r.attempts.Delete(ctx, key)
	}
}

// permanent reports whether repeating cannot help: ErrPermanent, or an
// error (such as *imsapi.APIError) that says it is not retryable.
func permanent(err error) bool {
	if errors.Is(err, ErrPermanent) {
		return true
	}
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && !r.Retryable()
}

// backoff is the redelivery delay before delivery n+1: exponential from
// BackoffInitial, capped at BackoffMax, with jitter.
func (r *Runner) backoff(n uint64) time.Duration {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = r.cfg.BackoffInitial, r.cfg.BackoffMax, 0
	b.Reset()
	d := b.InitialInterval
	for i := uint64(0); i < max(n, 1) && i < 64; i++ {
		d = b.NextBackOff()
	}
	return d
}

func (r *Runner) publish(ctx context.Context, out []events.Event) error {
	return Publish(ctx, r.js, r.cfg.Function, out...)
}

// Publish sends every event with its deterministic ID (as Nats-Msg-Id),
// its CloudEvents headers with ce-source imsflow/<function>, and a
// confirmed PubAck. Handlers that must know an event is out before they
// record it (the poller) call it themselves; under a handler's context,
// the runner's Observer is told of each event stored as new.
func Publish(ctx context.Context, js jetstream.JetStream, function string, evs ...events.Event) error {
	o := observerOf(ctx)
	for _, e := range evs {
		data, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode %s: %w", e.Type(), err)
		}
		msg := &nats.Msg{Subject: e.Subject(), Data: data, Header: nats.Header(events.CEHeaders(e, function, time.Now()))}
		ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID()))
		if err != nil {
			return fmt.Errorf("publish %s: %w", e.Subject(), err)
		}
		if o != nil && !ack.Duplicate {
			o.Published(e)
		}
	}
	return nil
}

// observerKey keys a handler context's Observer.
type observerKey struct{}

// withObserver returns ctx carrying o (ctx itself when o is nil).
func withObserver(ctx context.Context, o Observer) context.Context {
	if o == nil {
		return ctx
	}
	return context.WithValue(ctx, observerKey{}, o)
}

// observerOf returns the Observer ctx carries, or nil.
func observerOf(ctx context.Context) Observer {
	o, _ := ctx.Value(observerKey{}).(Observer)
	return o
}

// heartbeat tells o the runner is alive every few seconds, until stop
// is called, unless a message has been in hand longer than stuckAfter.
func (r *Runner) heartbeat(o Observer) (stop func()) {
	every := min(5*time.Second, r.cfg.AckWait/4)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		warned := false
		for {
			if held := longestInHand(r.inHand, time.Now()); held <= r.stuckAfter() {
				o.Alive(3 * every)
				warned = false
			} else if !warned {
				r.log.Error().Dur("held", held).Msg("a message has been in its handler for more than twice the ack wait: the handler ignores its deadline; no heartbeat until it returns")
				warned = true
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// stuckAfter is how long a message may be in a handler before the runner
// is taken to be stuck: the handler's context ended long before.
func (r *Runner) stuckAfter() time.Duration { return 2 * r.cfg.AckWait }

// longestInHand is how long the oldest message in hand has been, of the
// workers' start times (unix nanoseconds, 0 for an idle worker); 0 when
// every worker is idle.
func longestInHand(inHand []atomic.Int64, now time.Time) time.Duration {
	var longest time.Duration
	for i := range inHand {
		if since := inHand[i].Load(); since != 0 {
			longest = max(longest, now.Sub(time.Unix(0, since)))
		}
	}
	return longest
}

// deadLetter publishes the message to imsflow.dlq.<function> with the
// reason, then terminates it. If the dead letter cannot be published the
// message is redelivered instead, so nothing is lost.
func (r *Runner) deadLetter(ctx context.Context, jm jetstream.Msg, m Msg, reason string) (Outcome, string) {
	dl := events.DeadLetter{Function: r.cfg.Function, Subject: m.Subject, Reason: reason, Deliveries: m.Delivery,
		StreamSeq: m.StreamSeq, Data: m.Data, At: time.Now().UTC()}
	if len(m.Header) > 0 {
		dl.Headers = map[string]string{}
		for k := range m.Header {
			dl.Headers[k] = m.Header.Get(k)
		}
	}
	data, _ := json.Marshal(dl)
	msg := &nats.Msg{Subject: events.SubjectDLQPrefix + r.cfg.Function, Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderReason, reason)
	id := fmt.Sprintf("dlq:%s:%d", r.cfg.Function, m.StreamSeq)
	if _, err := r.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
		_ = jm.NakWithDelay(r.backoff(m.Delivery))
		return OutcomeNak, "dead letter not published: " + err.Error()
	}
	_ = jm.TermWithReason(reason)
	return OutcomeDLQ, reason
}
