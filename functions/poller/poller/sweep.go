package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
)

// The sweep is the poller's reconciler. A repeating JetStream schedule
// (imsflow.sched.sweep, every POLL_SWEEP) fires imsflow.jobs.sweep into
// the poller's own consumer, so one replica sweeps per tick, a restart
// changes nothing, and no replica needs to be elected. Each sweep repairs
// what a crash or a lost message between two writes can leave behind:
//
//   - a tracked job whose next query is overdue (its timer was lost), or
//     whose deadline has passed, or whose end is recorded but not yet
//     published: its timer is armed again, so JOB_DEADLINE holds even if
//     no poll ever comes;
//   - an in-flight slot that no live claim or tracked job holds: freed;
//   - a submitted import whose hand-off never became a tracked job: the
//     hand-off is published again;
//   - a job published longer than JOBS_RETAIN ago: its state is deleted.
const (
	subjectSweep      = runner.SubjectSweep
	subjectSweepSched = runner.SubjectSweepSched
)

// sweepGrace is how long a slot may be held before its owner's claim
// records it: the moment between taking a slot and claiming.
const sweepGrace = time.Minute

// handoffLost is after how long a submitted import with no tracked job is
// taken to have lost its hand-off: longer than IMSFLOW_JOBS's duplicate
// window, so that publishing it again is not dropped as a duplicate.
const handoffLost = 11 * time.Minute

// sweepReport counts what one sweep did, and the jobs it found tracked
// and not yet ended, by kind.
type sweepReport struct {
	Jobs, Rearmed, Expired, Slots, Freed, Handoffs, Consumers int
	InFlight                                                  map[events.Kind]int
}

// armSweep makes sure the repeating schedule exists with the configured
// interval; a schedule already in place is left alone. Its ticks expire
// after one interval, so they do not pile up while no poller runs.
func armSweep(ctx context.Context, js jetstream.JetStream, every time.Duration) error {
	stream, err := js.Stream(ctx, runner.StreamJobs)
	if err != nil {
		return fmt.Errorf("stream %s: %w", runner.StreamJobs, err)
	}
	want := "@every " + every.String()
	if m, err := stream.GetLastMsgForSubject(ctx, subjectSweepSched); err == nil && m.Header.Get("Nats-Schedule") == want {
		return nil
	}
	_, err = js.Publish(ctx, subjectSweepSched, nil, jetstream.WithScheduleEvery(every),
		jetstream.WithScheduleTarget(subjectSweep), jetstream.WithScheduleTTL(every))
	if err != nil {
		return fmt.Errorf("schedule the sweep: %w", err)
	}
	return nil
}

// sweep runs one pass over the jobs and the slots.
func (p *poller) sweep(ctx context.Context) error {
	r := sweepReport{InFlight: map[events.Kind]int{}}
	jerr := p.sweepJobs(ctx, &r)
	if jerr == nil { // a sweep cut short would count too few
		p.tel.JobsInFlight(r.InFlight, p.now())
	}
	err := errors.Join(jerr, p.sweepSlots(ctx, &r), p.sweepConsumers(ctx, &r))
	ev := zerolog.Ctx(ctx).Info()
	if r.Rearmed+r.Freed+r.Handoffs+r.Consumers == 0 {
		ev = zerolog.Ctx(ctx).Debug()
	}
	ev.Int("jobs", r.Jobs).Int("rearmed", r.Rearmed).Int("expired", r.Expired).Int("slots", r.Slots).
		Int("slots_freed", r.Freed).Int("handoffs_republished", r.Handoffs).Int("consumers_made", r.Consumers).Msg("sweep")
	return err
}

// each calls f with every key and value of kv.
func each(ctx context.Context, kv jetstream.KeyValue, f func(jetstream.KeyValueEntry) error) error {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			return nil // every current value has been seen
		}
		if err := f(e); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// overdue is how late a job's query may be before its timer is taken to
// be lost: a timer fires on time, but a busy poller may take a while.
func (p *poller) overdue() time.Duration { return max(2*p.cfg.AckWait, time.Minute) }

func (p *poller) sweepJobs(ctx context.Context, r *sweepReport) error {
	now := p.now()
	return each(ctx, p.jobs, func(e jetstream.KeyValueEntry) error {
		r.Jobs++
		var st jobState
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return nil // not ours to repair; poll reports it
		}
		if !st.Published {
			r.InFlight[st.Handoff.Kind]++
		}
		switch {
		case st.Published:
			if st.Final != nil && now.Sub(st.Final.FinishedAt) > p.cfg.Retain {
				if err := p.jobs.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision())); err == nil {
					r.Expired++
				}
			}
			return nil
		case st.Final != nil, now.After(st.NextPoll.Add(p.overdue())), now.After(st.Deadline.Add(p.overdue())):
			r.Rearmed++
			return p.schedule(ctx, e.Key(), now)
		}
		return nil
	})
}

func (p *poller) sweepSlots(ctx context.Context, r *sweepReport) error {
	now := p.now()
	imports := ledger.Ledger{KV: p.imports}
	return each(ctx, p.slots, func(e jetstream.KeyValueEntry) error {
		r.Slots++
		owner := string(e.Value())
		if now.Sub(e.Created()) < sweepGrace {
			return nil // one being claimed
		}
		var held bool
		var err error
		switch {
		case strings.HasPrefix(e.Key(), "repl."):
			held, err = p.replicationHeld(ctx, ledger.Slot{Name: e.Key(), Rev: e.Revision()}, owner)
		case strings.HasPrefix(owner, "v."):
			held, err = p.slotHeld(ctx, imports, ledger.Slot{Name: e.Key(), Rev: e.Revision()}, owner, r)
		default:
			return nil // an older kind of slot: its TTL frees it
		}
		if err != nil || held {
			return err
		}
		if err := p.slots.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision())); err == nil {
			r.Freed++
			zerolog.Ctx(ctx).Info().Str("slot", e.Key()).Str("owner", owner).Msg("freed an in-flight slot that no claim or job holds")
		}
		return nil
	})
}

// replicationHeld reports whether a replication slot's owner, a
// lifecycle leg's run (<lifecycle>/<leg>/<attempt>), still holds it: the
// leg runs that attempt and names this slot, or names none yet (claimed,
// its job not recorded: a takeover reuses the slot). A release that failed
// in a NATS fault would otherwise hold the slot for DISTRIBUTE_SLOT_TTL.
func (p *poller) replicationHeld(ctx context.Context, slot ledger.Slot, owner string) (bool, error) {
	id, rest, ok := strings.Cut(owner, "/")
	i := strings.LastIndex(rest, "/")
	if !ok || i < 0 {
		return true, nil // not ours to judge: its TTL frees it
	}
	leg, attempt := rest[:i], rest[i+1:]
	rec, _, err := p.lifecycles.Load(ctx, id)
	switch {
	case errors.Is(err, lifecycle.ErrNotFound):
		return false, nil
	case err != nil:
		return true, err
	}
	l := rec.Leg(leg)
	return l != nil && strconv.Itoa(l.Attempt) == attempt && l.State == lifecycle.LegRunning &&
		(l.Slot == "" || l.Slot == slot.Name), nil
}

// slotHeld reports whether owner's record still holds slot: a claim that
// names it (live, or expired and about to be taken over, which keeps it),
// or a submitted import whose job is still tracked. A submitted import
// with no tracked job long after its submission lost its hand-off: it is
// published again.
func (p *poller) slotHeld(ctx context.Context, imports ledger.Ledger, slot ledger.Slot, owner string, r *sweepReport) (bool, error) {
	e, err := imports.Read(ctx, owner)
	if err != nil || e.Rev == 0 || !e.Record.Holds(slot) {
		return false, err
	}
	switch e.Record.State {
	case ledger.Claimed:
		return true, nil
	case ledger.Submitted:
	default:
		return false, nil
	}
	h := e.Record.Handoff
	if h == nil {
		return false, nil
	}
	st, _, err := p.load(ctx, stateKey(*h))
	switch {
	case err == nil:
		return !st.Published, nil
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return true, err
	}
	if since := p.now().Sub(h.SubmittedAt); since > handoffLost && since < p.cfg.Retain {
		if err := runner.Publish(ctx, p.js, Function, *h); err != nil {
			return true, err
		}
		r.Handoffs++
		zerolog.Ctx(ctx).Warn().Str("job", h.Ref()).Msg("a submitted import was never tracked: its hand-off is published again")
	}
	return true, nil
}

// sweepConsumers makes every consumer of Config.Reconcile that is missing
// (JetStream's data lost or restored while its function slept at zero
// replicas), so that its lag can wake the function again. One that exists
// is left as it is: its function sets it.
func (p *poller) sweepConsumers(ctx context.Context, r *sweepReport) error {
	var errs []error
	for _, c := range p.cfg.Reconcile {
		_, err := p.js.Consumer(ctx, c.Stream, c.Config.Durable)
		switch {
		case err == nil:
			continue
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			errs = append(errs, fmt.Errorf("look for consumer %s: %w", c.Config.Durable, err))
			continue
		}
		if _, err := p.js.CreateConsumer(ctx, c.Stream, c.Config); err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
			errs = append(errs, fmt.Errorf("make consumer %s: %w", c.Config.Durable, err))
			continue
		}
		r.Consumers++
		zerolog.Ctx(ctx).Warn().Str("consumer", c.Config.Durable).Str("stream", c.Stream).
			Msg("made a missing consumer of a function that may be asleep, so that its backlog can wake it")
	}
	return errors.Join(errs...)
}
