// Package ledger is the claim ledger that the import and export functions
// share: one record per unit of work (an object version, an export
// request) in a JetStream KV bucket, so that redelivery, replicas and
// crashes never submit the same IMS job twice. In the spirit of
// watermill's deduplicator middleware, but durable and with takeover:
//
//	no record            the work is fresh: Claim creates the record
//	claimed, live        another attempt is under way: wait (runner.Delay)
//	claimed, expired     that attempt died or hangs: Claim takes it over,
//	                     and the caller first looks for what it may have done
//	submitted, rejected  done: repeat the recorded event, do nothing else
//
// Every write is a compare-and-set on the revision read, so two attempts
// never both believe they hold a claim.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
)

// States of a record.
const (
	Claimed   = "claimed"   // an attempt is submitting
	Submitted = "submitted" // IMS accepted it; Handoff says what
	Rejected  = "rejected"  // refused; Rejected says why
)

// Record is the durable state of one unit of work.
type Record struct {
	State     string    `json:"state"`
	ClaimedAt time.Time `json:"claimed_at"`
	// Slot is the in-flight slot the claim holds (imports only), so that a
	// takeover keeps it and a sweep can tell a held slot from a leaked one;
	// SlotRev is the revision that created it, which tells this holding of
	// the slot from a later one under the same name (0 in records written
	// before it was kept: then the name alone tells).
	Slot     string               `json:"slot,omitempty"`
	SlotRev  uint64               `json:"slot_rev,omitempty"`
	Handoff  *events.JobSubmitted `json:"handoff,omitempty"`
	Rejected *events.Rejected     `json:"rejected,omitempty"`
}

// Slot is one holding of an in-flight slot: its key in the slots bucket
// and the revision that created it. The zero Slot is none.
type Slot struct {
	Name string
	Rev  uint64
}

// HeldSlot is the slot the record holds.
func (r Record) HeldSlot() Slot { return Slot{Name: r.Slot, Rev: r.SlotRev} }

// Holds reports whether the record holds s: the same name and, where both
// revisions are known, the same revision.
func (r Record) Holds(s Slot) bool {
	return s.Name != "" && r.Slot == s.Name && (r.SlotRev == 0 || s.Rev == 0 || r.SlotRev == s.Rev)
}

// Final reports whether the work is done (submitted or rejected).
func (r Record) Final() bool { return r.State == Submitted || r.State == Rejected }

// Event is the event a final record stands for: the hand-off or the
// rejection.
func (r Record) Event() events.Event {
	if r.Handoff != nil {
		return *r.Handoff
	}
	return *r.Rejected
}

// Live reports whether a claim is still its attempt's at now.
func (r Record) Live(now time.Time, ttl time.Duration) bool {
	return r.State == Claimed && now.Sub(r.ClaimedAt) < ttl
}

// Conflict reports whether a KV write lost a compare-and-set race: the
// key exists (Create) or moved on (Update, Delete with a revision). On a
// replicated bucket the server reports both as "wrong last sequence"
// (10164), which nats.go maps to ErrKeyExists only in some paths (not when
// Create meets a deleted key), so all are checked.
func Conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Ledger is a bucket of records.
type Ledger struct {
	KV jetstream.KeyValue
	// TTL is how long a claim is its attempt's; after it, it is taken over.
	TTL time.Duration
	Now func() time.Time
}

// recheck is how soon a duplicate looks again at a claim under way:
// usually the attempt has finished by then.
const recheck = 2 * time.Second

// Entry is a key's record as read, with its revision (0: no record).
type Entry struct {
	Key    string
	Rev    uint64
	Record Record
	// Inherited: this attempt's claim took over an earlier one, which may
	// have acted (submitted to IMS) without recording it.
	Inherited bool
}

// Takeover reports whether the entry is an expired claim being taken over.
func (e Entry) Takeover() bool { return e.Rev != 0 && e.Record.State == Claimed }

// Open reads key. A final record comes back as is (Record.Final); a live
// claim is a runner.Delay error (another attempt is under way); otherwise
// the entry is fresh (Rev 0) or an expired claim to take over.
func (l *Ledger) Open(ctx context.Context, key string) (Entry, error) {
	e, err := l.Read(ctx, key)
	if err != nil {
		return e, err
	}
	return l.Assess(e)
}

// Assess is Open's judgement of an entry already read.
func (l *Ledger) Assess(e Entry) (Entry, error) {
	if e.Rev == 0 || e.Record.Final() {
		return e, nil
	}
	if age := l.Now().Sub(e.Record.ClaimedAt); age < l.TTL {
		return e, runner.Delay(min(l.TTL-age, recheck), "another attempt at this is under way")
	}
	return e, nil
}

// Read returns key's entry as stored (Rev 0 when there is none).
func (l *Ledger) Read(ctx context.Context, key string) (Entry, error) {
	kve, err := l.KV.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return Entry{Key: key}, nil
	case err != nil:
		return Entry{}, fmt.Errorf("read state %s: %w", key, err)
	}
	e := Entry{Key: key, Rev: kve.Revision()}
	if err := json.Unmarshal(kve.Value(), &e.Record); err != nil {
		return Entry{}, fmt.Errorf("%w: state %s is not JSON: %v", runner.ErrPermanent, key, err)
	}
	return e, nil
}

// Claim makes the entry this attempt's, holding slot (the zero Slot for
// none): it creates the record of a fresh entry or takes over an expired
// claim. Losing the race to another attempt is a short runner.Delay.
func (l *Ledger) Claim(ctx context.Context, e *Entry, slot Slot) error {
	rec := Record{State: Claimed, ClaimedAt: l.Now(), Slot: slot.Name, SlotRev: slot.Rev}
	b, _ := json.Marshal(rec)
	var rev uint64
	var err error
	if e.Rev == 0 {
		rev, err = l.KV.Create(ctx, e.Key, b)
	} else {
		rev, err = l.KV.Update(ctx, e.Key, b, e.Rev)
	}
	switch {
	case Conflict(err):
		return lostRace{runner.Delay(time.Second, "another attempt claimed this first")}
	case err != nil:
		return fmt.Errorf("claim %s: %w", e.Key, err)
	}
	e.Inherited = e.Inherited || e.Rev != 0
	e.Rev, e.Record = rev, rec
	return nil
}

// lostRace is Claim's error when another attempt wrote the record first:
// a short runner.Delay, which LostRace tells apart.
type lostRace struct{ error }

func (e lostRace) Unwrap() error { return e.error }

// LostRace reports whether Claim failed because the record was written
// by another attempt (or, for a fresh entry, already existed).
func LostRace(err error) bool {
	_, ok := errors.AsType[lostRace](err)
	return ok
}

// Refresh renews a claim the attempt keeps while it waits (an earlier
// attempt's export still running).
func (l *Ledger) Refresh(ctx context.Context, e *Entry) error {
	return l.Claim(ctx, e, e.Record.HeldSlot())
}

// Settle records the outcome and returns the event it stands for. If it
// cannot be written the message is retried: the next attempt finds the
// claim and looks for what this one did.
func (l *Ledger) Settle(ctx context.Context, e Entry, rec Record) ([]events.Event, error) {
	b, _ := json.Marshal(rec)
	if _, err := l.KV.Update(ctx, e.Key, b, e.Rev); err != nil {
		return nil, fmt.Errorf("record %s as %s: %w", e.Key, rec.State, err)
	}
	return []events.Event{rec.Event()}, nil
}

// Drop deletes a claim whose attempt certainly did nothing, so the work
// is fresh again. Use Abandon after a failed attempt: it keeps what an
// inherited claim knows.
func (l *Ledger) Drop(ctx context.Context, e Entry) {
	if e.Rev != 0 {
		_ = l.KV.Delete(ctx, e.Key, jetstream.LastRevision(e.Rev))
	}
}

// Abandon gives up a claim after an attempt that certainly did nothing
// itself (IMS answered that it did not take the request). A fresh claim
// is dropped. An inherited one is not: the attempt it took over may have
// acted, so the record stays, as a claim expired at once, and the next
// attempt takes it over and looks for what was done before it acts.
func (l *Ledger) Abandon(ctx context.Context, e Entry) {
	if !e.Inherited {
		l.Drop(ctx, e)
		return
	}
	b, _ := json.Marshal(Record{State: Claimed})
	_, _ = l.KV.Update(ctx, e.Key, b, e.Rev)
}
