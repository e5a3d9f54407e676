package ledger

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
)

func newLedger(t *testing.T) (*Ledger, *time.Time) {
	t.Helper()
	_, js := testenv.StartNATS(t).Connect(t)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "ledger_test"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return &Ledger{KV: kv, TTL: time.Minute, Now: func() time.Time { return now }}, &now
}

func isDelay(err error) bool {
	_, ok := runner.IsDelay(err)
	return ok
}

// TestLifecycle: fresh, claimed (a duplicate waits), expired (taken
// over), settled (repeated, never claimed again).
func TestLifecycle(t *testing.T) {
	l, now := newLedger(t)
	ctx := t.Context()
	e, err := l.Open(ctx, "v.a")
	if err != nil || e.Rev != 0 || e.Takeover() {
		t.Fatalf("fresh entry = %+v, %v", e, err)
	}
	if err := l.Claim(ctx, &e, Slot{Name: "slot.0001", Rev: 7}); err != nil || e.Rev == 0 || e.Record.HeldSlot() != (Slot{Name: "slot.0001", Rev: 7}) {
		t.Fatalf("claim = %+v, %v", e, err)
	}
	// A duplicate while the claim is live waits, without a failure.
	if _, err := l.Open(ctx, "v.a"); !isDelay(err) {
		t.Errorf("open of a live claim = %v, want a delay", err)
	}
	// Two attempts that both read the fresh entry: one claim wins.
	stale := Entry{Key: "v.a"}
	if err := l.Claim(ctx, &stale, Slot{}); !isDelay(err) {
		t.Errorf("a second create of the claim = %v, want a delay", err)
	}
	// After the TTL the claim is taken over, keeping what it held.
	*now = now.Add(2 * time.Minute)
	e2, err := l.Open(ctx, "v.a")
	if err != nil || !e2.Takeover() || e2.Record.Slot != "slot.0001" {
		t.Fatalf("expired claim = %+v, %v", e2, err)
	}
	if err := l.Claim(ctx, &e2, e2.Record.HeldSlot()); err != nil {
		t.Fatal(err)
	}
	// The first attempt, come back late, cannot settle over the takeover.
	ho := events.JobSubmitted{JobID: "j1", Kind: events.KindImport}
	if _, err := l.Settle(ctx, e, Record{State: Submitted, Handoff: &ho}); err == nil {
		t.Error("a superseded claim settled")
	}
	evs, err := l.Settle(ctx, e2, Record{State: Submitted, Handoff: &ho})
	if err != nil || len(evs) != 1 || evs[0].ID() != ho.ID() {
		t.Fatalf("settle = %v, %v", evs, err)
	}
	done, err := l.Open(ctx, "v.a")
	if err != nil || !done.Record.Final() || done.Record.Event().ID() != ho.ID() {
		t.Errorf("settled entry = %+v, %v", done, err)
	}
}

// TestDrop: a claim dropped makes the work fresh; a drop with an old
// revision leaves a newer claim alone.
func TestDrop(t *testing.T) {
	l, _ := newLedger(t)
	ctx := t.Context()
	e := Entry{Key: "r.x"}
	if err := l.Claim(ctx, &e, Slot{}); err != nil {
		t.Fatal(err)
	}
	old := e
	if err := l.Refresh(ctx, &e); err != nil {
		t.Fatal(err)
	}
	l.Drop(ctx, old)
	if got, _ := l.Read(ctx, "r.x"); got.Rev != e.Rev {
		t.Errorf("a stale drop removed the newer claim: %+v", got)
	}
	l.Drop(ctx, e)
	if got, err := l.Read(ctx, "r.x"); err != nil || got.Rev != 0 {
		t.Errorf("after the drop: %+v, %v", got, err)
	}
}

// TestAbandon: a fresh claim abandoned leaves nothing; an inherited one
// leaves a claim the next attempt takes over at once, so that it looks
// for what the attempt before it may have done.
func TestAbandon(t *testing.T) {
	l, now := newLedger(t)
	ctx := t.Context()
	fresh := Entry{Key: "r.fresh"}
	if err := l.Claim(ctx, &fresh, Slot{}); err != nil {
		t.Fatal(err)
	}
	l.Abandon(ctx, fresh)
	if got, err := l.Read(ctx, "r.fresh"); err != nil || got.Rev != 0 {
		t.Errorf("abandoned fresh claim: %+v, %v; want no record", got, err)
	}

	first := Entry{Key: "r.maybe"}
	if err := l.Claim(ctx, &first, Slot{}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(2 * time.Minute) // the first attempt's answer was lost; it expires
	e, err := l.Open(ctx, "r.maybe")
	if err != nil || !e.Takeover() {
		t.Fatalf("open = %+v, %v", e, err)
	}
	if err := l.Claim(ctx, &e, Slot{}); err != nil || !e.Inherited {
		t.Fatalf("takeover claim = %+v, %v", e, err)
	}
	l.Abandon(ctx, e) // this attempt was refused (throttled): it did nothing
	next, err := l.Open(ctx, "r.maybe")
	if err != nil || !next.Takeover() {
		t.Errorf("after abandoning an inherited claim: %+v, %v; want a claim to take over at once", next, err)
	}
}

func TestConflict(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{jetstream.ErrKeyExists, true},
		{jetstream.ErrKeyRevisionMismatch, true},
		// What a replicated bucket answers when Create meets a key deleted
		// and re-created meanwhile: nats.go passes it on unmapped.
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008}, false},
		{jetstream.ErrKeyNotFound, false},
		{nil, false},
	} {
		if got := Conflict(c.err); got != c.want {
			t.Errorf("Conflict(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
