package poller

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/rateshare"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// bare is a poller on an embedded NATS with no runner: tests call its
// steps themselves, on a clock they set.
type bare struct {
	p   *poller
	js  jetstream.JetStream
	now time.Time
}

func newBare(t *testing.T) *bare {
	t.Helper()
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, ProjectID: "p1", ImageQuota: -1, MaxRunningJobs: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	client, err := emu.Client()
	if err != nil {
		t.Fatal(err)
	}
	_, js := testenv.StartNATS(t).Connect(t)
	if err := runner.Ensure(t.Context(), js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	p, err := newPoller(t.Context(), Config{FirstPoll: time.Second, MinInterval: time.Second, MaxInterval: time.Minute,
		Backoff: 1.5, TargetDelay: time.Second, Deadline: time.Hour, StallAfter: time.Hour, AckWait: 30 * time.Second}, client, js)
	if err != nil {
		t.Fatal(err)
	}
	b := &bare{p: p, js: js, now: time.Now()}
	p.now = func() time.Time { return b.now }
	return b
}

// put stores a job's state as a crash might have left it.
func (b *bare) put(t *testing.T, key string, st jobState) {
	t.Helper()
	v, _ := json.Marshal(st)
	if _, err := b.p.jobs.Put(t.Context(), key, v); err != nil {
		t.Fatal(err)
	}
}

// timer returns the time the job's armed timer fires, or false.
func (b *bare) timer(t *testing.T, key string) (time.Time, bool) {
	t.Helper()
	s, err := b.js.Stream(t.Context(), runner.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(t.Context(), subjectSchedPrefix+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339, strings.TrimPrefix(m.Header.Get("Nats-Schedule"), "@at "))
	if err != nil {
		t.Fatalf("schedule header %q: %v", m.Header.Get("Nats-Schedule"), err)
	}
	return at, true
}

func handoff(jobID string) events.JobSubmitted {
	return events.JobSubmitted{JobID: jobID, Kind: events.KindImport, Method: events.MethodNormal, ImageName: "img",
		SubmittedAt: time.Now().UTC(), Source: &events.Source{Bucket: "b", Key: jobID + ".qcow2"}}
}

// TestEarlyTimerArmsTheNextOne: the poll that wrote a job's next query
// but whose timer publish failed (a leader change) comes back early, as
// a redelivery; it must leave a timer behind before it is acked.
func TestEarlyTimerArmsTheNextOne(t *testing.T) {
	t.Parallel()
	b := newBare(t)
	next := b.now.Add(10 * time.Minute).Truncate(time.Second)
	b.put(t, "j.early", jobState{Handoff: handoff("early"), NextPoll: next, Deadline: b.now.Add(time.Hour)})
	if _, ok := b.timer(t, "j.early"); ok {
		t.Fatal("a timer before the test armed one")
	}
	if evs, err := b.p.poll(t.Context(), "j.early"); err != nil || len(evs) != 0 {
		t.Fatalf("early poll = %v, %v", evs, err)
	}
	at, ok := b.timer(t, "j.early")
	if !ok || !at.Equal(next) {
		t.Errorf("timer after an early poll: %v (armed %v), want %v", at, ok, next)
	}
}

// TestSweepRepairsJobs: the sweep arms a timer for a job whose query is
// overdue, one past its deadline and one whose end is recorded but not
// published; it leaves a healthy job alone and forgets finished jobs
// after the retention.
func TestSweepRepairsJobs(t *testing.T) {
	t.Parallel()
	b := newBare(t)
	fin := &events.JobFinished{JobID: "done", Status: events.StatusSucceeded, FinishedAt: b.now.Add(-8 * 24 * time.Hour)}
	b.put(t, "j.overdue", jobState{Handoff: handoff("overdue"), NextPoll: b.now.Add(-10 * time.Minute), Deadline: b.now.Add(time.Hour)})
	b.put(t, "j.deadline", jobState{Handoff: handoff("deadline"), NextPoll: b.now.Add(time.Hour), Deadline: b.now.Add(-10 * time.Minute)})
	b.put(t, "j.unpublished", jobState{Handoff: handoff("unpublished"), NextPoll: b.now.Add(time.Hour), Deadline: b.now.Add(time.Hour),
		Final: &events.JobFinished{JobID: "unpublished", Status: events.StatusFailed}})
	b.put(t, "j.healthy", jobState{Handoff: handoff("healthy"), NextPoll: b.now.Add(time.Minute), Deadline: b.now.Add(time.Hour)})
	b.put(t, "j.old", jobState{Handoff: handoff("old"), Final: fin, Published: true})
	if err := b.p.sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"j.overdue", "j.deadline", "j.unpublished"} {
		if _, ok := b.timer(t, key); !ok {
			t.Errorf("%s: no timer after the sweep", key)
		}
	}
	if _, ok := b.timer(t, "j.healthy"); ok {
		t.Error("j.healthy: the sweep armed a timer for a job that is on time")
	}
	if _, err := b.p.jobs.Get(t.Context(), "j.old"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("a job finished 8 days ago is still kept: %v", err)
	}
	// The deadline's timer, fired, ends the job timed_out although IMS
	// was never asked (the job ID is unknown to the emulator).
	evs, err := b.p.poll(t.Context(), "j.deadline")
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := b.p.load(t.Context(), "j.deadline")
	if err != nil || st.Final == nil || st.Final.Status != events.StatusTimedOut || !st.Published {
		t.Errorf("after the deadline's poll: %+v (events %v), %v", st.Final, evs, err)
	}
}

// TestSweepFreesLeakedSlots: a slot is freed when no claim or tracked job
// holds it, and kept while one does.
func TestSweepFreesLeakedSlots(t *testing.T) {
	t.Parallel()
	b := newBare(t)
	ctx := t.Context()
	imports := ledger.Ledger{KV: b.p.imports, TTL: time.Minute, Now: func() time.Time { return b.now }}
	record := func(owner string, rec ledger.Record) {
		v, _ := json.Marshal(rec)
		if _, err := b.p.imports.Put(ctx, owner, v); err != nil {
			t.Fatal(err)
		}
	}
	slot := func(name, owner string) {
		if _, err := b.p.slots.Put(ctx, name, []byte(owner)); err != nil {
			t.Fatal(err)
		}
	}
	published := handoff("pub")
	tracked := handoff("trk")
	slot("slot.0001", "v.noclaim") // the replica died between the slot and the claim
	slot("slot.0002", "v.claimed")
	record("v.claimed", ledger.Record{State: ledger.Claimed, ClaimedAt: b.now.Add(-time.Hour), Slot: "slot.0002"})
	slot("slot.0003", "v.published")
	record("v.published", ledger.Record{State: ledger.Submitted, Slot: "slot.0003", Handoff: &published})
	b.put(t, stateKey(published), jobState{Handoff: published, Published: true, Final: &events.JobFinished{FinishedAt: b.now}})
	slot("slot.0004", "v.tracked")
	record("v.tracked", ledger.Record{State: ledger.Submitted, Slot: "slot.0004", Handoff: &tracked})
	b.put(t, stateKey(tracked), jobState{Handoff: tracked, NextPoll: b.now.Add(time.Minute), Deadline: b.now.Add(time.Hour)})
	slot("slot.0005", "v.other") // its claim moved on to another slot
	record("v.other", ledger.Record{State: ledger.Claimed, ClaimedAt: b.now, Slot: "slot.0009"})
	// A claim naming the slot by an earlier holding: this one is leaked;
	// one naming the very holding keeps it.
	slot("slot.0006", "v.retaken")
	record("v.retaken", ledger.Record{State: ledger.Claimed, ClaimedAt: b.now, Slot: "slot.0006", SlotRev: 1})
	rev7, err := b.p.slots.Put(ctx, "slot.0007", []byte("v.exact"))
	if err != nil {
		t.Fatal(err)
	}
	record("v.exact", ledger.Record{State: ledger.Claimed, ClaimedAt: b.now, Slot: "slot.0007", SlotRev: rev7})
	_ = imports

	// Within the grace, nothing is freed: the owner may be claiming.
	if err := b.p.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, b.p.slots); n != 7 {
		t.Fatalf("%d slots after a sweep within the grace, want all 7", n)
	}
	b.now = b.now.Add(2 * sweepGrace)
	if err := b.p.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for name, held := range map[string]bool{"slot.0001": false, "slot.0002": true, "slot.0003": false, "slot.0004": true, "slot.0005": false,
		"slot.0006": false, "slot.0007": true} {
		_, err := b.p.slots.Get(ctx, name)
		if got := err == nil; got != held {
			t.Errorf("%s held = %v after the sweep, want %v (%v)", name, got, held, err)
		}
	}
}

// TestSweepRepublishesALostHandoff: a submitted import that was never
// tracked (its hand-off lost) gets its hand-off again.
func TestSweepRepublishesALostHandoff(t *testing.T) {
	t.Parallel()
	b := newBare(t)
	ctx := t.Context()
	h := handoff("lost")
	h.SubmittedAt = b.now.Add(-time.Hour).UTC()
	h.Slot = "slot.0007"
	v, _ := json.Marshal(ledger.Record{State: ledger.Submitted, Slot: h.Slot, Handoff: &h})
	if _, err := b.p.imports.Put(ctx, "v.lost", v); err != nil {
		t.Fatal(err)
	}
	if _, err := b.p.slots.Put(ctx, h.Slot, []byte("v.lost")); err != nil {
		t.Fatal(err)
	}
	b.now = b.now.Add(2 * sweepGrace)
	if err := b.p.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := b.js.Stream(ctx, runner.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, events.SubjectJobSubmitted)
	if err != nil {
		t.Fatalf("no hand-off republished: %v", err)
	}
	var got events.JobSubmitted
	if err := json.Unmarshal(m.Data, &got); err != nil || got.JobID != "lost" {
		t.Errorf("republished %+v, %v", got, err)
	}
	if _, err := b.p.slots.Get(ctx, h.Slot); err != nil {
		t.Errorf("the lost job's slot was freed: %v", err)
	}
}

func countKeys(t *testing.T, kv jetstream.KeyValue) int {
	t.Helper()
	n := 0
	lister, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for range lister.Keys() {
		n++
	}
	return n
}

// TestLostTimerConverges: end to end on a running poller, a job whose
// timer is lost (purged, as a failed publish leaves it) still ends with
// its completion event: the sweep's schedule fires and re-arms it.
func TestLostTimerConverges(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, func(c *Config) {
		c.FirstPoll, c.Sweep, c.AckWait = time.Hour, time.Second, 5*time.Second
	})
	h := hs.importJob("d1.qcow2", "")
	key := stateKey(h)
	testenv.Eventually(t, "the job tracked", func() bool {
		_, err := hs.p.jobs.Get(t.Context(), key)
		return err == nil
	})
	// Lose the timer, and make the job's query overdue.
	s, err := hs.js.Stream(t.Context(), runner.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(t.Context(), jetstream.WithPurgeSubject(subjectSchedPrefix+key)); err != nil {
		t.Fatal(err)
	}
	st, rev, err := hs.p.load(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	st.NextPoll = time.Now().Add(-time.Hour)
	v, _ := json.Marshal(st)
	if _, err := hs.p.jobs.Update(t.Context(), key, v, rev); err != nil {
		t.Fatal(err)
	}
	got := hs.finished(1)
	if f, ok := got[h.JobID]; !ok || f.Status != events.StatusSucceeded {
		t.Errorf("completion = %+v", got)
	}
}

func TestAdvance(t *testing.T) {
	p := &poller{cfg: Config{Deadline: time.Hour, StallAfter: 10 * time.Minute}, pol: policy{First: time.Second, Min: time.Second, Max: time.Minute, AimMax: time.Minute, Factor: 2}}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	base := jobState{Handoff: handoff("j"), Deadline: now.Add(time.Hour), LastChange: now.Add(-time.Minute), Polls: 1}
	for _, c := range []struct {
		name     string
		st       jobState
		o        observation
		final    events.Status
		warnings int
	}{
		{"success ends it", base, observation{status: "SUCCESS", percent: 1, job: &imsapi.Job{}}, events.StatusSucceeded, 0},
		{"fail ends it with IMS's reason", base, observation{status: "FAIL", job: &imsapi.Job{ErrorCode: "IMG.0057"}}, events.StatusFailed, 0},
		{"a failed query never ends it", base, observation{err: errors.New("503")}, "", 0},
		{"an unknown status is not success", base, observation{status: "WEIRD"}, "", 0},
		{"a failed query past the deadline times out", func() jobState { s := base; s.Deadline = now; return s }(), observation{err: errors.New("503")}, events.StatusTimedOut, 0},
		{"no progress for StallAfter warns once", func() jobState {
			s := base
			s.LastChange = now.Add(-time.Hour)
			s.Samples = []sample{{At: now.Add(-time.Hour), Percent: 0.3}}
			return s
		}(),
			observation{status: "RUNNING", percent: 0.3}, "", 1},
		{"a stalled job does not warn twice", func() jobState {
			s := base
			s.Stalled, s.LastChange, s.Samples = true, now.Add(-time.Hour), []sample{{At: now.Add(-time.Hour), Percent: 0.3}}
			return s
		}(), observation{status: "RUNNING", percent: 0.3}, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, out := p.advance(c.st, c.o, now)
			switch {
			case c.final == "" && st.Final != nil:
				t.Errorf("ended %s, want still tracked", st.Final.Status)
			case c.final != "" && (st.Final == nil || st.Final.Status != c.final):
				t.Errorf("final = %+v, want %s", st.Final, c.final)
			case c.final == "" && !st.NextPoll.After(now):
				t.Errorf("next poll %v not after now", st.NextPoll)
			}
			if len(out) != c.warnings {
				t.Errorf("%d events, want %d: %v", len(out), c.warnings, out)
			}
		})
	}
}

// TestSweepMakesMissingConsumers: a consumer of a sleeping function that
// is gone (JetStream's data lost while the function was at zero replicas)
// is made again by the sweep, with its filter, so that KEDA sees its lag;
// one that exists is left as its function set it.
func TestSweepMakesMissingConsumers(t *testing.T) {
	t.Parallel()
	b := newBare(t)
	ctx := t.Context()
	gone := runner.DefaultConsumer("import", runner.StreamIn, events.SubjectObjects)
	kept := runner.DefaultConsumer("export", runner.StreamIn, events.SubjectExportRequests)
	own := kept.Config
	own.AckWait = 7 * time.Minute // as the export function set it
	if _, err := b.js.CreateConsumer(ctx, kept.Stream, own); err != nil {
		t.Fatal(err)
	}
	b.p.cfg.Reconcile = []runner.Consumer{gone, kept}
	if err := b.p.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := b.js.Consumer(ctx, gone.Stream, "import")
	if err != nil {
		t.Fatalf("the missing consumer after the sweep: %v", err)
	}
	if info := c.CachedInfo(); info.Config.FilterSubject != events.SubjectObjects && !slices.Equal(info.Config.FilterSubjects, []string{events.SubjectObjects}) {
		t.Errorf("made consumer filters %q %v, want %s", info.Config.FilterSubject, info.Config.FilterSubjects, events.SubjectObjects)
	}
	e, err := b.js.Consumer(ctx, kept.Stream, "export")
	if err != nil || e.CachedInfo().Config.AckWait != 7*time.Minute {
		t.Errorf("the existing consumer after the sweep: %v, want it untouched", err)
	}
	// A message for the sleeping function is now its consumer's lag.
	if _, err := b.js.Publish(ctx, events.SubjectObjectsPrefix+"test", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.NumPending != 1 {
		t.Errorf("pending on the made consumer: %+v, %v; want 1", info, err)
	}
}

// TestBacklogPutsOffWhatMattersLess: while the process's IMS requests
// queue for the rate, a due query far from its job's forecast end is put
// off (no query, a counted deferral), at most three times in a row; a
// job's first query and one near its end go on.
func TestBacklogPutsOffWhatMattersLess(t *testing.T) {
	t.Parallel()
	b := newBare(t)
	ctx := t.Context()
	b.p.meter = new(rateshare.Meter)
	for range 100 {
		b.p.meter.Observe(imsapi.Observation{Sent: true, Wait: 5 * time.Second})
	}
	if w := b.p.meter.MeanWait(); w < 4*time.Second {
		t.Fatalf("MeanWait %s after waits of 5s", w)
	}
	now := b.now
	at := func(ago time.Duration, p float64) sample { return sample{At: now.Add(-ago), Percent: p} }
	far := []sample{at(200*time.Second, 0.1), at(100*time.Second, 0.2)} // the end some 800 s off
	near := []sample{at(100*time.Second, 0.5), at(time.Second, 0.97)}   // the end within seconds
	jobs := map[string]jobState{
		"j.far":   {Handoff: handoff("far"), Polls: 2, Samples: far, NextPoll: now, Deadline: now.Add(time.Hour)},
		"j.first": {Handoff: handoff("first"), NextPoll: now, Deadline: now.Add(time.Hour)},
		"j.near":  {Handoff: handoff("near"), Polls: 2, Samples: near, NextPoll: now, Deadline: now.Add(time.Hour)},
		"j.often": {Handoff: handoff("often"), Polls: 2, Samples: far, Deferred: 3, NextPoll: now, Deadline: now.Add(time.Hour)},
	}
	for k, st := range jobs {
		b.put(t, k, st)
		if _, err := b.p.poll(ctx, k); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	for k, wantDeferred := range map[string]bool{"j.far": true, "j.first": false, "j.near": false, "j.often": false} {
		st, _, err := b.p.load(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		queried := st.Polls == jobs[k].Polls+1
		if queried == wantDeferred {
			t.Errorf("%s: polls %d -> %d, deferred %d; want put off %v", k, jobs[k].Polls, st.Polls, st.Deferred, wantDeferred)
		}
		if wantDeferred && (st.Deferred != 1 || st.NextPoll.Before(now.Add(4*time.Second))) {
			t.Errorf("%s: deferred %d, next query %s after now; want 1, the mean wait", k, st.Deferred, st.NextPoll.Sub(now))
		}
		if !wantDeferred && st.Deferred != 0 {
			t.Errorf("%s: deferred %d after a query, want 0", k, st.Deferred)
		}
	}
	// Without a backlog nothing is put off.
	b.p.meter = new(rateshare.Meter)
	b.put(t, "j.calm", jobState{Handoff: handoff("calm"), Polls: 2, Samples: far, NextPoll: now, Deadline: now.Add(time.Hour)})
	if _, err := b.p.poll(ctx, "j.calm"); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := b.p.load(ctx, "j.calm"); st.Polls != 3 {
		t.Errorf("no backlog: polls %d, want the query made", st.Polls)
	}
}

// TestSweepFreesLeakedReplicationSlots: a replication slot whose leg's
// run no longer holds it (the leg ran again, or ended, and the release
// was lost) is freed after the grace; one its running leg names, or
// claimed before its job is recorded, stays.
func TestSweepFreesLeakedReplicationSlots(t *testing.T) {
	t.Parallel()
	b := newBare(t)
	ctx := t.Context()
	d := lifecycle.Declaration{Regions: []lifecycle.Region{{Region: "ap-southeast-3", AgencyName: "a"}, {Region: "eu-west-101", AgencyName: "a"}, {Region: "af-south-1", AgencyName: "a"}}}
	rec := lifecycle.Plan(lifecycle.Start{ID: "lc1", Rule: "r", Declaration: d, SourceRegion: "cn-north-4", Image: lifecycle.Image{ID: "img"}, At: b.now})
	set := func(leg, state string, attempt int, slot string) {
		l := rec.Leg(leg)
		l.State, l.Attempt, l.Slot = state, attempt, slot
	}
	set("replicate:ap-southeast-3", lifecycle.LegRunning, 2, "repl.1") // runs again: attempt 1's slot leaked
	set("replicate:eu-west-101", lifecycle.LegRunning, 1, "")          // claimed, job not yet recorded
	set("replicate:af-south-1", lifecycle.LegSucceeded, 1, "repl.3")   // ended; its release was lost
	if _, _, err := b.p.lifecycles.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for name, owner := range map[string]string{"repl.0": "lc1/replicate:ap-southeast-3/1", "repl.1": "lc1/replicate:ap-southeast-3/2",
		"repl.2": "lc1/replicate:eu-west-101/1", "repl.3": "lc1/replicate:af-south-1/1", "repl.4": "gone/replicate:x-y/1"} {
		if _, err := b.p.slots.Put(ctx, name, []byte(owner)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.p.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, b.p.slots); n != 5 {
		t.Fatalf("%d replication slots after a sweep within the grace, want all 5", n)
	}
	b.now = b.now.Add(2 * sweepGrace)
	if err := b.p.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for name, held := range map[string]bool{"repl.0": false, "repl.1": true, "repl.2": true, "repl.3": false, "repl.4": false} {
		_, err := b.p.slots.Get(ctx, name)
		if got := err == nil; got != held {
			t.Errorf("%s held = %v after the sweep, want %v (%v)", name, got, held, err)
		}
	}
}
