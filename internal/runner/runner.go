// Package runner is imsflow's one JetStream binding: every function is a
// handler that the runner feeds from a durable pull consumer. For each
// message it calls the handler, publishes what the handler returns (each
// event with its deterministic Nats-Msg-Id and CloudEvents headers) and
// only then settles the message:
//
//	handler returns            runner does
//	nil                        publish events, Ack
//	Term(reason)               publish events (the rejected event), TermWithReason
//	Delay(d, reason)           publish events, NakWithDelay(d)
//	permanent error            publish DeadLetter to imsflow.dlq.<function>, TermWithReason
//	                           (errors.Is ErrPermanent, or Retryable() false)
//	any other error            NakWithDelay(capped exponential backoff); on the
//	                           last delivery (MaxDeliver), DeadLetter and Term
//	publishing fails           NakWithDelay(backoff): nothing is acked unpublished
//
// Delivery is at least once; handlers are idempotent and the Msg-Id of
// each event lets JetStream drop a republished duplicate. The handler's
// context ends HandleTimeout after the message arrived (less than
// AckWait), and is not cancelled by shutdown: Run drains, letting the
// messages in hand finish.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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
// handler that must wait (a companion file, a free slot, throttling).
// Deliveries still count against MaxDeliver.
func Delay(d time.Duration, reason string) error { return &delayError{d: d, reason: reason} }

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
	// MaxDeliver is the number of deliveries before a failing message goes
	// to the dead letters (default 100).
	MaxDeliver int
	// Workers is how many messages are handled at once (default 4).
	Workers int
	// BackoffInitial and BackoffMax shape the redelivery delay after an
	// error (defaults 2s and 5m).
	BackoffInitial, BackoffMax time.Duration
	// Published, when set, is called with every message's events after
	// they are published and before the message is settled (batch
	// totals); an error redelivers the message.
	Published func(ctx context.Context, evs []events.Event) error
	// Settled, when set, is called after each message is settled, from
	// the worker that handled it: the hook for metrics and for tests that
	// wait on outcomes. It must not block.
	Settled func(Settlement)
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
		c.HandleTimeout = c.AckWait * 3 / 4
	}
	if c.HandleTimeout >= c.AckWait {
		return fmt.Errorf("runner: HandleTimeout %s must be less than AckWait %s", c.HandleTimeout, c.AckWait)
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 100
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.BackoffInitial == 0 {
		c.BackoffInitial = 2 * time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 5 * time.Minute
	}
	return nil
}

// Runner consumes one function's messages.
type Runner struct {
	js  jetstream.JetStream
	cfg Config
	h   Handler
	log zerolog.Logger
}

// New checks cfg and returns a runner; Run starts it.
func New(js jetstream.JetStream, cfg Config, h Handler, log zerolog.Logger) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Runner{js: js, cfg: cfg, h: h, log: log.With().Str("function", cfg.Function).Logger()}, nil
}

// ConsumerConfig is the durable consumer the runner creates or updates.
func (r *Runner) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        r.cfg.Function,
		Description:    "imsflow " + r.cfg.Function + " function",
		FilterSubjects: r.cfg.Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.cfg.AckWait,
		MaxDeliver:     r.cfg.MaxDeliver,
		MaxAckPending:  max(r.cfg.Workers*16, 256),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// Run consumes until ctx ends, then drains: messages already pulled are
// handled and settled before it returns.
func (r *Runner) Run(ctx context.Context) error {
	cons, err := r.js.CreateOrUpdateConsumer(ctx, r.cfg.Stream, r.ConsumerConfig())
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", r.cfg.Function, r.cfg.Stream, err)
	}
	work := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Go(func() {
			for m := range work {
				r.handle(m)
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
	<-ctx.Done()
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
	ctx, cancel := context.WithTimeout(log.WithContext(context.Background()), r.cfg.HandleTimeout)
	defer cancel()

	out, herr := r.call(ctx, m)
	outcome, reason := r.settle(ctx, jm, m, out, herr)
	took := time.Since(begin)
	ev := log.Info()
	if outcome == OutcomeNak || outcome == OutcomeDLQ {
		ev = log.Warn()
	}
	ev.Str("outcome", string(outcome)).Int("events", len(out)).Dur("duration", took).Err(herr).Str("reason", reason).Msg("message")
	if r.cfg.Settled != nil {
		r.cfg.Settled(Settlement{Subject: m.Subject, StreamSeq: m.StreamSeq, Delivery: m.Delivery, Outcome: outcome,
			Reason: reason, Err: herr, Events: len(out), Duration: took})
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

func (r *Runner) settle(ctx context.Context, jm jetstream.Msg, m Msg, out []events.Event, herr error) (outcome Outcome, reason string) {
	// retry asks for the message again, except on its last delivery: the
	// server would not deliver it again, so it goes to the dead letters.
	retry := func(d time.Duration, why string) (Outcome, string) {
		if m.Delivery >= uint64(r.cfg.MaxDeliver) {
			return r.deadLetter(ctx, jm, m, fmt.Sprintf("gave up after %d deliveries: %s", m.Delivery, why))
		}
		_ = jm.NakWithDelay(d)
		return OutcomeNak, fmt.Sprintf("%s; again in %s", why, d.Round(time.Millisecond))
	}
	var term *termError
	var delay *delayError
	switch {
	case herr == nil, errors.As(herr, &term), errors.As(herr, &delay):
		if err := r.publish(ctx, out); err != nil {
			return retry(r.backoff(m.Delivery), "publishing events: "+err.Error())
		}
		if r.cfg.Published != nil && len(out) > 0 {
			if err := r.cfg.Published(ctx, out); err != nil {
				return retry(r.backoff(m.Delivery), "after publishing: "+err.Error())
			}
		}
		switch {
		case term != nil:
			_ = jm.TermWithReason(term.reason)
			return OutcomeTerm, term.reason
		case delay != nil:
			outcome, reason := retry(delay.d, delay.reason)
			if outcome == OutcomeNak {
				outcome = OutcomeDelay
			}
			return outcome, reason
		}
		if err := jm.DoubleAck(ctx); err != nil {
			return OutcomeAck, "ack not confirmed: " + err.Error()
		}
		return OutcomeAck, ""
	case permanent(herr):
		return r.deadLetter(ctx, jm, m, herr.Error())
	default:
		return retry(r.backoff(m.Delivery), herr.Error())
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
// record it (the poller) call it themselves.
func Publish(ctx context.Context, js jetstream.JetStream, function string, evs ...events.Event) error {
	for _, e := range evs {
		data, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode %s: %w", e.Type(), err)
		}
		msg := &nats.Msg{Subject: e.Subject(), Data: data, Header: nats.Header(events.CEHeaders(e, function, time.Now()))}
		if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID())); err != nil {
			return fmt.Errorf("publish %s: %w", e.Subject(), err)
		}
	}
	return nil
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
