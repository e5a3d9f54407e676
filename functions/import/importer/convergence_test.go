package importer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// Tests that every input converges on one end: a notification of many
// records, a RAW file whose sender's clock is far off, a takeover that
// keeps its dead attempt's slot, and planned waits that outlast the
// failure budget.

// convRecord is the one record of a minioEvent body, with its eventTime
// set to at.
func convRecord(t *testing.T, body []byte, at time.Time) json.RawMessage {
	t.Helper()
	var env struct {
		Records []map[string]any `json:"Records"`
	}
	if err := json.Unmarshal(body, &env); err != nil || len(env.Records) != 1 {
		t.Fatalf("not a one-record notification (%v): %s", err, body)
	}
	env.Records[0]["eventTime"] = at.UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(env.Records[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// convEnvelope is a MinIO notification carrying records.
func convEnvelope(t *testing.T, key string, records []json.RawMessage) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"EventName": "s3:ObjectCreated:Put", "Key": key, "Records": records})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// convAt is a minioEvent whose eventTime is at (the sender's clock).
func convAt(t *testing.T, bucket, key string, size int64, etag string, at time.Time) []byte {
	t.Helper()
	return convEnvelope(t, bucket+"/"+key, []json.RawMessage{convRecord(t, minioEvent(bucket, key, size, etag, nil), at)})
}

// convOnClock restarts the function on clock, as
// TestDroppedAnswersDoNotDuplicate does, so that the test decides when
// imsflow's own waits end.
func convOnClock(hs *harness, clock *imsemu.ManualClock) {
	hs.stop()
	hs.h.now = clock.Now
	hs.start()
}

// convDecode decodes stored messages' JSON bodies.
func convDecode[T any](t *testing.T, msgs []*jetstream.RawStreamMsg) []T {
	t.Helper()
	out := make([]T, 0, len(msgs))
	for _, m := range msgs {
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatalf("message %d on %s: %v", m.Sequence, m.Subject, err)
		}
		out = append(out, v)
	}
	return out
}

// convIdle waits until the import consumer has nothing left: IMSFLOW_IN
// is a work queue, so a message leaves it only once acknowledged or
// terminated, and one waiting out a delay stays in it.
func convIdle(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	s, err := js.Stream(t.Context(), runner.StreamIn)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "every input message settled for good (IMSFLOW_IN empty)", func() bool {
		info, err := s.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
}

// convNoDeadLetters fails the test for every dead-lettered or failed
// delivery, and for anything in IMSFLOW_DLQ.
func convNoDeadLetters(t *testing.T, hs *harness) {
	t.Helper()
	hs.settled.NoRetries(t)
	s, err := hs.js.Stream(t.Context(), runner.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(t.Context()); err != nil || info.State.Msgs != 0 {
		t.Errorf("dead letters: %v (%v)", info.State.Msgs, err)
	}
}

// TestThousandRecordNotification: one MinIO notification of 1,000 objects
// is split, and each object is imported once: 1,000 hand-offs, one IMS
// job per object, the notification itself acknowledged. The same
// notification sent again imports nothing more.
func TestThousandRecordNotification(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	const n = 1000
	records := make([]json.RawMessage, n)
	keys := map[string]bool{}
	now := time.Now()
	for i := range n {
		key := fmt.Sprintf("many/m%04d.qcow2", i)
		hs.emu.PutObject(imsemu.Object{Bucket: "images", Key: key, Size: gib})
		records[i] = convRecord(t, minioEvent("images", key, gib, fmt.Sprintf("etag-%04d", i), nil), now)
		keys[key] = true
	}
	body := convEnvelope(t, "images/many", records)
	hs.publish(body)

	// The notification settles for good, then every message it led to:
	// IMSFLOW_IN is a work queue, so it is empty once all are done.
	envelopeSettled := func(want int) {
		t.Helper()
		hs.settled.WaitFor(t, fmt.Sprintf("%d notification(s) of %d records settled for good", want, n), func(all []runner.Settlement) bool {
			seqs := map[uint64]bool{}
			for _, s := range all {
				if s.Subject == events.SubjectObjectsPrefix+"minio" && s.Outcome.Final() {
					seqs[s.StreamSeq] = true
				}
			}
			return len(seqs) == want
		})
		convIdle(t, hs.js)
		for _, s := range hs.settled.All() {
			if s.Outcome.Final() && s.Outcome != runner.OutcomeAck {
				t.Errorf("message %d on %s: %s (%s), want ack", s.StreamSeq, s.Subject, s.Outcome, s.Reason)
			}
		}
		convNoDeadLetters(t, hs)
	}
	envelopeSettled(1)

	handoffs := convDecode[events.JobSubmitted](t, testenv.Stored(t, hs.js, runner.StreamJobs, events.SubjectJobSubmitted))
	handedOff := map[string]int{}
	for _, h := range handoffs {
		handedOff[h.Source.Key]++
		if h.JobID == "" || h.Method != events.MethodNormal {
			t.Errorf("hand-off %+v: want a normal import's job", h)
		}
	}
	if len(handoffs) != n || len(handedOff) != n {
		t.Errorf("%d hand-offs stored for %d objects, want %d of %d", len(handoffs), len(handedOff), n, n)
	}
	for k := range keys {
		if handedOff[k] != 1 {
			t.Errorf("%s handed off %d times", k, handedOff[k])
		}
	}
	all := hs.emu.Submissions()
	subs := map[string]int{}
	for _, s := range all {
		subs[s.URL]++
	}
	if len(all) != n || len(subs) != n {
		t.Errorf("%d IMS submissions for %d objects, want one per object (%d)", len(all), len(subs), n)
	}
	for k := range keys {
		if c := subs["images:"+k]; c != 1 {
			t.Errorf("%s submitted to IMS %d times", k, c)
		}
	}

	// The same notification again: settled, and nothing new reaches IMS.
	hs.publish(body)
	envelopeSettled(2)
	if got := len(hs.emu.Submissions()); got != n {
		t.Errorf("%d IMS submissions after the notification came again, want still %d", got, n)
	}
	if got := len(testenv.Stored(t, hs.js, runner.StreamJobs, events.SubjectJobSubmitted)); got != n {
		t.Errorf("%d hand-offs stored after the notification came again, want still %d", got, n)
	}
}

// TestBacklogRAWWaitsFromFirstSight: a RAW file's notification handled
// five hours after its eventTime (a backlog, a replay) still waits for
// its bitmap, from when imsflow first saw it, and announces the wait;
// the bitmap's notification a second later makes it a quick import.
func TestBacklogRAWWaitsFromFirstSight(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	clock := imsemu.NewManualClock(time.Now())
	convOnClock(hs, clock)
	firstSeen := clock.Now()
	sent := firstSeen.Add(-5 * time.Hour)

	hs.publish(convAt(t, "images", "db/db-01.raw", 20*gib, "r-old", sent))
	if s := hs.settled.Next(t, 1)[0]; s.Outcome != runner.OutcomeDelay {
		t.Fatalf("RAW file sent 5 h ago without its bitmap: %s (%s), want delay (waiting for the bitmap)", s.Outcome, s.Reason)
	}
	if n := len(hs.emu.Submissions()); n != 0 {
		t.Fatalf("%d IMS submissions while the RAW file waits for its bitmap", n)
	}
	waiting := convDecode[events.Waiting](t, testenv.Stored(t, hs.js, runner.StreamOut, events.OutSubject(events.KindImport, events.StatusWaiting)))
	if len(waiting) != 1 {
		t.Fatalf("%d waiting events on %s, want 1", len(waiting), events.OutSubject(events.KindImport, events.StatusWaiting))
	}
	w := waiting[0]
	if w.Source == nil || w.Source.Key != "db/db-01.raw" || w.Missing != "db/db-01.mf" {
		t.Errorf("waiting event = %+v, want db/db-01.raw missing db/db-01.mf", w)
	}
	if !w.Since.Equal(firstSeen) || !w.Until.Equal(firstSeen.Add(hs.h.cfg.BitmapWait)) {
		t.Errorf("waiting since %s until %s, want since first seen (%s) until %s later", w.Since, w.Until, firstSeen.UTC(), hs.h.cfg.BitmapWait)
	}

	clock.Advance(time.Second)
	hs.publish(convAt(t, "images", "db/db-01.mf", 1<<20, "m-old", sent.Add(time.Second)))
	h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
	if h.Method != events.MethodQuick || h.Source == nil || h.Source.Key != "db/db-01.raw" {
		t.Errorf("hand-off = %+v, want a quick import of db/db-01.raw", h)
	}
	subs := hs.emu.Submissions()
	if len(subs) != 1 || subs[0].Operation != imsemu.OpQuickImport || subs[0].URL != "images:db/db-01.raw" {
		t.Errorf("IMS submissions = %v, want one quick import of db/db-01.raw", ops(subs))
	}
	// The bitmap's notification and the RAW file's replay are done; the
	// original RAW notification, still waiting out its delay, can only
	// repeat the recorded hand-off.
	hs.settled.Final(t, 2)
	if rej := testenv.Stored(t, hs.js, runner.StreamOut, events.OutSubject(events.KindImport, events.StatusRejected)); len(rej) != 0 {
		t.Errorf("rejected: %s", rej[0].Data)
	}
	convNoDeadLetters(t, hs)
}

// TestFutureEventTimeRAWIsNotStuck: a sender whose clock is five hours
// ahead does not hold a RAW file without its bitmap for five hours: the
// wait runs on imsflow's clock from when it first saw the file, and at its
// end the file is imported normally (up to 128 GB) or rejected
// missing_bitmap (above), the wait named in the reason. Waiting is not
// failing: it outlasts MaxFailures without a dead letter.
func TestFutureEventTimeRAWIsNotStuck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		key  string
		size int64
	}{
		{"at most 128 GB: normal import", "db/db-01.raw", 20 * gib},
		{"above 128 GB: missing_bitmap", "db/huge.raw", 200 * gib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const wait, maxFailures = 5 * time.Minute, 3
			hs := newHarness(t, imsemu.Config{}, func(c *Config) {
				c.BitmapWait, c.BitmapPoll, c.MaxFailures = wait, 20*time.Millisecond, maxFailures
			})
			clock := imsemu.NewManualClock(time.Now())
			convOnClock(hs, clock)
			firstSeen := clock.Now()

			hs.publish(convAt(t, "images", tc.key, tc.size, "r-future", firstSeen.Add(5*time.Hour)))
			hs.settled.WaitFor(t, fmt.Sprintf("more than %d waits for the bitmap", maxFailures), func(all []runner.Settlement) bool {
				n := 0
				for _, s := range all {
					if s.Outcome.Final() {
						return true // checked below
					}
					if s.Outcome == runner.OutcomeDelay {
						n++
					}
				}
				return n > maxFailures
			})
			for _, s := range hs.settled.All() {
				if s.Outcome != runner.OutcomeDelay {
					t.Fatalf("before its wait ended the RAW file was %s (%s)", s.Outcome, s.Reason)
				}
			}
			if n := len(hs.emu.Submissions()); n != 0 {
				t.Fatalf("%d IMS submissions before the wait ended", n)
			}
			waiting := convDecode[events.Waiting](t, testenv.Stored(t, hs.js, runner.StreamOut, events.OutSubject(events.KindImport, events.StatusWaiting)))
			if len(waiting) != 1 {
				t.Fatalf("%d waiting events, want 1", len(waiting))
			}
			if w := waiting[0]; !w.Since.Equal(firstSeen) || !w.Until.Equal(firstSeen.Add(wait)) {
				t.Fatalf("waiting since %s until %s, want since first seen (%s) until %s later, whatever the sender's clock", w.Since, w.Until, firstSeen.UTC(), wait)
			}

			// imsflow's own wait ends.
			clock.Advance(wait)
			var end runner.Settlement
			for _, s := range hs.settled.Final(t, 1) {
				end = s
			}
			if tc.size <= 128*gib {
				if end.Outcome != runner.OutcomeAck {
					t.Errorf("RAW file of %d GB after the wait: %s (%s), want ack", tc.size/gib, end.Outcome, end.Reason)
				}
				h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
				if h.Method != events.MethodNormal || h.Source == nil || h.Source.Key != tc.key {
					t.Errorf("hand-off = %+v, want a normal import of %s", h, tc.key)
				}
				if got := ops(hs.emu.Submissions()); len(got) != 1 || got["images:"+tc.key] != imsemu.OpDataImageImport {
					t.Errorf("IMS submissions = %v, want one data image import", got)
				}
			} else {
				if end.Outcome != runner.OutcomeTerm {
					t.Errorf("RAW file of %d GB after the wait: %s (%s), want term (rejected)", tc.size/gib, end.Outcome, end.Reason)
				}
				r := testenv.Receive[events.Rejected](t, hs.rejected, 1)[0]
				if r.ReasonCode != events.ReasonMissingBitmap {
					t.Errorf("rejected %s (%s), want %s", r.ReasonCode, r.Reason, events.ReasonMissingBitmap)
				}
				if !strings.Contains(r.Reason, wait.String()) || !strings.Contains(r.Reason, firstSeen.UTC().Format(time.RFC3339)) {
					t.Errorf("reason %q does not name the wait (%s since %s)", r.Reason, wait, firstSeen.UTC().Format(time.RFC3339))
				}
				if n := len(hs.emu.Submissions()); n != 0 {
					t.Errorf("%d IMS submissions for a rejected file", n)
				}
			}
			convNoDeadLetters(t, hs)
		})
	}
}

// slotWatch follows the keys of the slots bucket and remembers the most
// held at once.
type slotWatch struct {
	mu   sync.Mutex
	held map[string]bool
	most int
}

func convWatchSlots(t *testing.T, kv jetstream.KeyValue) *slotWatch {
	t.Helper()
	w, err := kv.WatchAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sw := &slotWatch{held: map[string]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			sw.mu.Lock()
			if e.Operation() == jetstream.KeyValuePut {
				sw.held[e.Key()] = true
			} else {
				delete(sw.held, e.Key())
			}
			sw.most = max(sw.most, len(sw.held))
			sw.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = w.Stop()
		<-done
	})
	return sw
}

// caughtUp waits until the watch holds exactly the keys now in kv, and
// returns the most it saw held at once.
func (sw *slotWatch) caughtUp(t *testing.T, kv jetstream.KeyValue) int {
	t.Helper()
	now := convSlotKeys(t, kv)
	testenv.Eventually(t, fmt.Sprintf("the slot watch to see %v", now), func() bool {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		if len(sw.held) != len(now) {
			return false
		}
		for _, k := range now {
			if !sw.held[k] {
				return false
			}
		}
		return true
	})
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.most
}

// convSlotKeys returns the keys held in the slots bucket, sorted.
func convSlotKeys(t *testing.T, kv jetstream.KeyValue) []string {
	t.Helper()
	keys, err := kv.Keys(t.Context())
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// TestTakeoverKeepsTheDeadAttemptsSlot: an attempt took slot.0003, claimed
// the object version holding it, got its job accepted by IMS and died.
// The redelivered notification takes the claim over, finds the image and
// hands it off holding slot.0003, keeping no second slot; and the slot
// keys never outnumber MaxInFlight while other imports compete.
func TestTakeoverKeepsTheDeadAttemptsSlot(t *testing.T) {
	t.Parallel()
	const maxInFlight, slot = 4, "slot.0003"
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.MaxInFlight = maxInFlight })
	ctx := t.Context()
	watch := convWatchSlots(t, hs.h.slots)

	body := minioEvent("images", "data/d.qcow2", 4*gib, "e-slot", nil)
	recs, _, err := events.DecodeObjectEvents(body)
	if err != nil {
		t.Fatal(err)
	}
	p := route(recs[0], hs.h.cfg.route)
	owner := "v." + p.hash[:tagHashLen]
	// The dead attempt: its slot, its claim holding it, its job in IMS.
	if _, err := hs.h.slots.Create(ctx, slot, []byte(owner)); err != nil {
		t.Fatal(err)
	}
	stale, _ := json.Marshal(ledger.Record{State: ledger.Claimed, ClaimedAt: time.Now().Add(-time.Hour), Slot: slot})
	if _, err := hs.h.imports.Create(ctx, owner, stale); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.h.ims.ImportDataImage(ctx, p.data); err != nil {
		t.Fatal(err)
	}

	hs.publish(body)
	for _, s := range hs.settled.Final(t, 1) {
		if s.Outcome != runner.OutcomeAck {
			t.Fatalf("takeover: %s (%s), want ack", s.Outcome, s.Reason)
		}
	}
	h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
	if h.Slot != slot || h.ImageID == "" || h.ImageName != p.name {
		t.Errorf("hand-off = %+v, want the found image holding %s", h, slot)
	}
	if keys := convSlotKeys(t, hs.h.slots); !slices.Equal(keys, []string{slot}) {
		t.Errorf("slots held after the takeover: %v, want only %s", keys, slot)
	}
	if e, err := hs.h.slots.Get(ctx, slot); err != nil || string(e.Value()) != owner {
		t.Errorf("%s holds %v (%v), want its owner %s", slot, e, err, owner)
	}
	if e, err := hs.h.ledger.Read(ctx, owner); err != nil || e.Record.State != ledger.Submitted || e.Record.Slot != slot {
		t.Errorf("record = %+v (%v), want submitted holding %s", e.Record, err, slot)
	}
	if n := len(hs.emu.Submissions()); n != 1 {
		t.Errorf("%d IMS submissions, want the 1 of the dead attempt", n)
	}
	// The notification arrives here as a first delivery, which claims
	// without reading first: it may take a second slot for the moment its
	// claim fails, and frees it at once (a redelivery reads first).
	if most := watch.caughtUp(t, hs.h.slots); most > 2 {
		t.Errorf("%d slots held at once during the takeover, want at most 2", most)
	}

	// Five more imports compete for the three free slots.
	for i := range 5 {
		hs.publish(minioEvent("images", fmt.Sprintf("bulk/d%02d.qcow2", i), gib, "e-compete", nil))
	}
	// Every one is handed off or waits for a slot; no slot is freed, so
	// what waits now waits for good.
	final, waited := map[uint64]bool{}, map[uint64]bool{}
	hs.settled.WaitFor(t, "each of the 5 imports handed off or waiting for a slot", func(all []runner.Settlement) bool {
		clear(final)
		clear(waited)
		for _, s := range all {
			switch {
			case s.Outcome.Final():
				final[s.StreamSeq] = true
			case s.Outcome == runner.OutcomeDelay && strings.Contains(s.Reason, "in flight"):
				waited[s.StreamSeq] = true
			}
		}
		for seq := range final {
			delete(waited, seq)
		}
		return len(final)+len(waited) == 1+5
	})
	if len(final) != 1+3 || len(waited) != 2 {
		t.Errorf("%d imports handed off and %d waiting for a slot, want 1+3 and 2 (%d slots, the dead attempt's kept)", len(final), len(waited), maxInFlight)
	}
	if most := watch.caughtUp(t, hs.h.slots); most > maxInFlight {
		t.Errorf("%d slots held at once, above MaxInFlight %d", most, maxInFlight)
	}
	if keys := convSlotKeys(t, hs.h.slots); len(keys) != maxInFlight {
		t.Errorf("slots held: %v, want %d", keys, maxInFlight)
	}
	if n := len(hs.emu.Submissions()); n != 1+3 {
		t.Errorf("%d IMS submissions, want 4 (the dead attempt's and 3 with a slot)", n)
	}
	hs.settled.NoRetries(t)
}

// TestPlannedWaitsSpendNoFailureBudget: with MaxFailures 3, an object
// that waits many more times than that for a free slot (or for IMS's cap
// on running jobs) is imported once it can be, not dead-lettered.
func TestPlannedWaitsSpendNoFailureBudget(t *testing.T) {
	t.Parallel()
	const maxFailures = 3
	// waits counts the planned waits of the message at seq.
	waits := func(all []runner.Settlement, seq uint64) int {
		n := 0
		for _, s := range all {
			if s.StreamSeq == seq && s.Outcome == runner.OutcomeDelay {
				n++
			}
		}
		return n
	}
	// second returns the stream sequence of a message other than first.
	second := func(all []runner.Settlement, first uint64) (uint64, bool) {
		for _, s := range all {
			if s.StreamSeq != first {
				return s.StreamSeq, true
			}
		}
		return 0, false
	}
	// run publishes two objects: the first is handed off, the second waits
	// more than 2*maxFailures times; then free() makes room, and the second
	// must be handed off too.
	run := func(t *testing.T, hs *harness, free func(first events.JobSubmitted)) {
		hs.publish(minioEvent("images", "bulk/d00.qcow2", gib, "e-first", nil))
		var firstSeq uint64
		for seq := range hs.settled.Final(t, 1) {
			firstSeq = seq
		}
		first := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
		hs.publish(minioEvent("images", "bulk/d01.qcow2", gib, "e-second", nil))
		all := hs.settled.WaitFor(t, fmt.Sprintf("more than %d waits of the second object", 2*maxFailures), func(all []runner.Settlement) bool {
			seq, ok := second(all, firstSeq)
			return ok && (waits(all, seq) > 2*maxFailures || slices.ContainsFunc(all, func(s runner.Settlement) bool {
				return s.StreamSeq == seq && s.Outcome.Final()
			}))
		})
		for _, s := range all {
			if s.StreamSeq != firstSeq && s.Outcome != runner.OutcomeDelay {
				t.Fatalf("the second object, with no room in IMS, was %s at delivery %d (%s); want only planned waits", s.Outcome, s.Delivery, s.Reason)
			}
		}
		if n := len(hs.emu.Submissions()); n != 1 {
			t.Fatalf("%d IMS submissions while the second object waits, want 1", n)
		}
		free(first)
		final := hs.settled.Final(t, 2)
		all = hs.settled.All()
		seq, _ := second(all, firstSeq)
		end := final[seq]
		if end.Outcome != runner.OutcomeAck {
			t.Fatalf("the second object after %d waits: %s (%s), want ack", waits(all, seq), end.Outcome, end.Reason)
		}
		if end.Delivery <= maxFailures {
			t.Errorf("the second object ended at delivery %d: its waits did not outlast MaxFailures %d", end.Delivery, maxFailures)
		}
		h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
		if h.Source == nil || h.Source.Key != "bulk/d01.qcow2" {
			t.Errorf("hand-off = %+v, want bulk/d01.qcow2", h)
		}
		if got := ops(hs.emu.Submissions()); len(got) != 2 || len(hs.emu.Submissions()) != 2 {
			t.Errorf("IMS submissions = %v, want one per object", got)
		}
		convNoDeadLetters(t, hs)
	}

	t.Run("in-flight slots", func(t *testing.T) {
		t.Parallel()
		hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.MaxInFlight, c.MaxFailures = 1, maxFailures })
		run(t, hs, func(first events.JobSubmitted) {
			// The poller releases the slot when the job ends.
			if err := hs.h.slots.Delete(t.Context(), first.Slot); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("IMS running-jobs cap", func(t *testing.T) {
		t.Parallel()
		// IMS runs one job at a time, and the first never ends until the
		// emulator's clock moves.
		clock := imsemu.NewManualClock(time.Now())
		hs := newHarness(t, imsemu.Config{Clock: clock, MaxRunningJobs: 1}, func(c *Config) { c.MaxFailures = maxFailures })
		run(t, hs, func(events.JobSubmitted) {
			if st := hs.emu.Stats(); st.Capped <= 2*maxFailures {
				t.Errorf("IMS refused %d submissions for its cap, want more than %d", st.Capped, 2*maxFailures)
			}
			clock.Advance(time.Minute)
		})
	})
}
