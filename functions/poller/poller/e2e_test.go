package poller

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/runner/runnertest"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

const gib = imsapi.GiB

type harness struct {
	t       *testing.T
	emu     *imsemu.Server
	client  *imsapi.Client
	js      jetstream.JetStream
	p       *poller
	rc      runner.Config
	out     chan *nats.Msg
	settled *runnertest.Settled
	stop    func()
	tel     *telemetry.Telemetry // the poller's metrics
}

// newHarness runs the poller, as New builds it, on an embedded NATS
// against an emulator whose jobs last seconds, polling every 1 to 2 s.
func newHarness(t *testing.T, emuCfg imsemu.Config, mutate func(*Config)) *harness {
	t.Helper()
	emuCfg.Credentials = map[string]imsapi.Secret{"AK": "SK"}
	emuCfg.ProjectID = "p1"
	emuCfg.ImageQuota, emuCfg.MaxRunningJobs = -1, -1
	if emuCfg.InitDuration == 0 {
		emuCfg.InitDuration = 500 * time.Millisecond
	}
	if emuCfg.ImportSpeed == 0 {
		emuCfg.ImportSpeed = 512 << 20 // 1 GiB in 2 s
	}
	emu, err := imsemu.New(emuCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	emu.AddBucket("exports")
	for i := range 10 {
		emu.PutObject(imsemu.Object{Bucket: "images", Key: fmt.Sprintf("d%d.qcow2", i), Size: int64(i%3+1) * gib})
	}
	emu.PutObject(imsemu.Object{Bucket: "images", Key: "broken.qcow2", Size: gib})
	emu.PutObject(imsemu.Object{Bucket: "images", Key: "huge.qcow2", Size: 100 * gib})
	if err := emu.AddFailureRule(imsemu.FailureRule{KeyPattern: "broken*", ErrorCode: "IMG.0057", FailReason: "the image file is damaged", AtPercent: 0.4}); err != nil {
		t.Fatal(err)
	}
	tel := telemetry.New()
	client, err := emu.Client(imsapi.WithObserver(tel.IMS))
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.StartNATS(t)
	nc, js := n.Connect(t)
	if err := runner.Ensure(t.Context(), js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	cfg := Config{FirstPoll: time.Second, MinInterval: time.Second, MaxInterval: 2 * time.Second, MaxAimed: 2 * time.Second, Backoff: 1.5, TargetDelay: time.Second,
		Deadline: time.Hour, StallAfter: time.Hour, Workers: 8, AckWait: 30 * time.Second, MaxFailures: 1000}
	if mutate != nil {
		mutate(&cfg)
	}
	p, rc, err := build(telemetry.NewContext(t.Context(), tel), cfg, client, js)
	if err != nil {
		t.Fatal(err)
	}
	hs := &harness{t: t, emu: emu, client: client, js: js, p: p, rc: rc, out: make(chan *nats.Msg, 1000), settled: runnertest.NewSettled(), tel: tel}
	hs.rc.BackoffInitial, hs.rc.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	hs.rc.Settled = hs.settled.Add
	if _, err := nc.ChanSubscribe("imsflow.out.>", hs.out); err != nil {
		t.Fatal(err)
	}
	hs.start()
	return hs
}

// start runs a runner (a replica); stop stops the last one started.
func (hs *harness) start() {
	hs.stop = runnertest.Start(hs.t, hs.js, hs.rc, hs.p.handle, zerolog.Nop())
}

// importJob submits a data-image import to the emulator and hands it off.
func (hs *harness) importJob(key string, slot string) events.JobSubmitted {
	hs.t.Helper()
	return hs.importJobHolding(key, slot, 0)
}

// importJobHolding is importJob holding revision rev of the slot.
func (hs *harness) importJobHolding(key string, slot string, rev uint64) events.JobSubmitted {
	hs.t.Helper()
	ref, err := hs.client.ImportDataImage(hs.t.Context(), &imsapi.DataImageRequest{Name: "img-" + key[:len(key)-6], ImageURL: "images:" + key, MinDisk: 200})
	if err != nil {
		hs.t.Fatal(err)
	}
	h := events.JobSubmitted{JobID: ref.JobID, JobType: imsapi.JobTypeImportDataImage, Kind: events.KindImport, Method: events.MethodNormal,
		ImageName: "img", SubmittedAt: time.Now().UTC(), ImageType: events.ImageData, Source: &events.Source{Bucket: "images", Key: key}, Slot: slot, SlotRev: rev, BatchID: "b1"}
	hs.handoff(h)
	return h
}

func (hs *harness) handoff(h events.JobSubmitted) {
	hs.t.Helper()
	if err := runner.Publish(hs.t.Context(), hs.js, "test", h); err != nil {
		hs.t.Fatal(err)
	}
}

// finished collects n completion events, keyed by job ID.
func (hs *harness) finished(n int) map[string]events.JobFinished {
	hs.t.Helper()
	got := map[string]events.JobFinished{}
	deadline := time.After(testenv.Patience)
	for len(got) < n {
		select {
		case m := <-hs.out:
			if m.Subject == events.SubjectProgress || m.Subject == events.OutSubject(events.KindImport, events.StatusStalled) {
				continue
			}
			var f events.JobFinished
			if err := json.Unmarshal(m.Data, &f); err != nil {
				hs.t.Fatal(err)
			}
			if _, dup := got[f.JobID]; dup {
				hs.t.Errorf("second completion event for %s", f.JobID)
			}
			got[f.JobID] = f
		case <-deadline:
			hs.t.Fatalf("only %d of %d jobs finished in %s", len(got), n, testenv.Patience)
		}
	}
	return got
}

// stored counts the completion events kept in the output stream, once
// at least want are there: a subscriber may see an event before the
// stream has stored it.
func (hs *harness) stored(want int) uint64 {
	hs.t.Helper()
	var n uint64
	testenv.Eventually(hs.t, fmt.Sprintf("%d completion events stored", want), func() bool {
		s, err := hs.js.Stream(hs.t.Context(), runner.StreamOut)
		if err != nil {
			hs.t.Fatal(err)
		}
		info, err := s.Info(hs.t.Context(), jetstream.WithSubjectFilter("imsflow.out.*.*"))
		if err != nil {
			hs.t.Fatal(err)
		}
		n = 0
		for subj, c := range info.State.Subjects {
			if subj != events.SubjectProgress {
				n += c
			}
		}
		return n >= uint64(want)
	})
	return n
}

// TestJobsEndWithOneEventEach: jobs of several durations, one failing and
// one export, end with exactly one event each, carrying what the spec lists.
func TestJobsEndWithOneEventEach(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	slots, _ := hs.js.KeyValue(t.Context(), runner.BucketSlots)
	if _, err := slots.Create(t.Context(), "slot.0001", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var handoffs []events.JobSubmitted
	for i := range 6 {
		slot := ""
		if i == 0 {
			slot = "slot.0001"
		}
		handoffs = append(handoffs, hs.importJob(fmt.Sprintf("d%d.qcow2", i), slot))
	}
	broken := hs.importJob("broken.qcow2", "")
	im := hs.emu.AddImage(imsapi.Image{Name: "exp", ImageSize: fmt.Sprint(gib)})
	ref, err := hs.client.ExportImage(t.Context(), im.ID, &imsapi.ExportRequest{BucketURL: "exports:exp.qcow2", FileFormat: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	exp := events.JobSubmitted{JobID: ref.JobID, JobType: imsapi.JobTypeExportImage, Kind: events.KindExport, Method: events.MethodNormal,
		ImageID: im.ID, ImageName: "exp", SubmittedAt: time.Now().UTC(), BucketURL: "exports:exp.qcow2", FileFormat: "qcow2"}
	hs.handoff(exp)
	hs.handoff(handoffs[1]) // a repeated hand-off changes nothing

	got := hs.finished(8)
	for _, h := range handoffs {
		f := got[h.JobID]
		if f.Status != events.StatusSucceeded || f.Kind != events.KindImport || f.ImageID == "" || f.Polls < 1 ||
			f.Source == nil || f.Source.Key != h.Source.Key || f.BatchID != "b1" || f.DurationSeconds <= 0 || f.FinishedAt.IsZero() {
			t.Errorf("import %s: %+v", h.Source.Key, f)
		}
		// The end is seen after it happened (TestEndSeenAfterItHappened
		// pins the case of an end during the query). How soon follows
		// from the policy (policy_test.go), not from this machine's speed.
		if f.DetectedAfterSeconds < 0 {
			t.Errorf("import %s detected %.3fs after its end", h.Source.Key, f.DetectedAfterSeconds)
		}
	}
	if f := got[broken.JobID]; f.Status != events.StatusFailed || f.ErrorCode != "IMG.0057" || f.FailReason != "the image file is damaged" {
		t.Errorf("failed import: %+v", f)
	}
	if f := got[exp.JobID]; f.Status != events.StatusSucceeded || f.Kind != events.KindExport || f.BucketURL != "exports:exp.qcow2" || f.JobType != imsapi.JobTypeExportImage {
		t.Errorf("export: %+v", f)
	}
	// The slot is released just after the job's event is published.
	testenv.Eventually(t, "the finished job's in-flight slot to be released", func() bool {
		_, err := slots.Get(t.Context(), "slot.0001")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	if n := hs.stored(8); n != 8 {
		t.Errorf("%d completion events stored, want 8", n)
	}
}

// TestSlotReleasedByItsRevision: a job frees the holding of the slot it
// took; a slot freed meanwhile and taken again by another import under the
// same name is left to its new holder.
func TestSlotReleasedByItsRevision(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	ctx := t.Context()
	slots, _ := hs.js.KeyValue(ctx, runner.BucketSlots)
	jobs, _ := hs.js.KeyValue(ctx, runner.BucketJobs)
	own, err := slots.Create(ctx, "slot.0002", []byte("v.own"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := slots.Create(ctx, "slot.0003", []byte("v.gone"))
	if err != nil {
		t.Fatal(err)
	}
	if err := slots.Delete(ctx, "slot.0003"); err != nil {
		t.Fatal(err)
	}
	later, err := slots.Create(ctx, "slot.0003", []byte("v.later"))
	if err != nil {
		t.Fatal(err)
	}
	a := hs.importJobHolding("d8.qcow2", "slot.0002", own)
	b := hs.importJobHolding("d9.qcow2", "slot.0003", old)
	hs.finished(2)
	published := func(h events.JobSubmitted) func() bool {
		return func() bool {
			e, err := jobs.Get(ctx, stateKey(h))
			var st jobState
			return err == nil && json.Unmarshal(e.Value(), &st) == nil && st.Published
		}
	}
	testenv.Eventually(t, "both jobs marked published (their slots released first)", func() bool { return published(a)() && published(b)() })
	if _, err := slots.Get(ctx, "slot.0002"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the job's own slot after it ended: %v, want released", err)
	}
	if e, err := slots.Get(ctx, "slot.0003"); err != nil || e.Revision() != later {
		t.Errorf("a slot taken again after the job's holding was freed: %v, want kept at revision %d", err, later)
	}
}

// TestRestartLosesNothing: the poller stops while jobs run and starts
// again as two replicas; every job still ends with exactly one event.
func TestRestartLosesNothing(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	var ids []string
	for i := range 8 {
		ids = append(ids, hs.importJob(fmt.Sprintf("d%d.qcow2", i), "").JobID)
	}
	// Let some polls happen, then stop the poller mid-run.
	hs.settled.Next(t, 10)
	hs.stop()
	hs.start()
	hs.start() // a second replica
	got := hs.finished(len(ids))
	for _, id := range ids {
		if got[id].Status != events.StatusSucceeded {
			t.Errorf("job %s: %+v", id, got[id])
		}
	}
	if n := hs.stored(len(ids)); n != uint64(len(ids)) {
		t.Errorf("%d completion events stored, want %d", n, len(ids))
	}
}

// TestDeadline: a job that outlives the deadline ends timed_out, once.
func TestDeadline(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.Deadline = 2 * time.Second })
	h := hs.importJob("huge.qcow2", "")
	f := hs.finished(1)[h.JobID]
	if f.Status != events.StatusTimedOut || f.FailReason == "" {
		t.Errorf("event = %+v", f)
	}
}

// TestStatusAPIFallback: without the progress API the poller uses the job
// status API.
func TestStatusAPIFallback(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{DisableProgressAPI: true}, nil)
	h := hs.importJob("d0.qcow2", "")
	if f := hs.finished(1)[h.JobID]; f.Status != events.StatusSucceeded {
		t.Errorf("event = %+v", f)
	}
	if st := hs.emu.Stats(); st.Requests[imsemu.OpJob] == 0 {
		t.Errorf("the status API was never used: %+v", st.Requests)
	}
}

// TestImageOnlyJob: an import known only by its image (found after a
// crash) is followed through the image's status.
func TestImageOnlyJob(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	ref, err := hs.client.ImportDataImage(t.Context(), &imsapi.DataImageRequest{Name: "found", ImageURL: "images:d1.qcow2", MinDisk: 40})
	if err != nil {
		t.Fatal(err)
	}
	job, _ := hs.client.JobProgress(t.Context(), ref.JobID)
	hs.handoff(events.JobSubmitted{Kind: events.KindImport, Method: events.MethodNormal, ImageID: job.Entities.ImageID, ImageName: "found", SubmittedAt: time.Now().UTC()})
	f := hs.finished(1)["image:"+job.Entities.ImageID]
	if f.Status != events.StatusSucceeded || f.ImageID != job.Entities.ImageID {
		t.Errorf("event = %+v", f)
	}
}

// TestStalledWarning: progress that stops moving gives one stalled
// warning; the job stays tracked and ends normally.
func TestStalledWarning(t *testing.T) {
	t.Parallel()
	clock := imsemu.NewManualClock(time.Now())
	hs := newHarness(t, imsemu.Config{Clock: clock}, func(c *Config) { c.StallAfter = 2 * time.Second })
	h := hs.importJob("d0.qcow2", "")
	clock.Advance(1500 * time.Millisecond) // RUNNING at 50 %, then frozen
	var stalls int
	deadline := time.After(testenv.Patience)
	for stalls == 0 {
		select {
		case m := <-hs.out:
			if m.Subject == events.OutSubject(events.KindImport, events.StatusStalled) {
				stalls++
			}
		case <-deadline:
			t.Fatalf("no stalled warning in %s", testenv.Patience)
		}
	}
	clock.Advance(time.Minute)
	if f := hs.finished(1)[h.JobID]; f.Status != events.StatusSucceeded {
		t.Errorf("event = %+v", f)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestProgressEvents: with Progress on, changes of process_percent are
// published on imsflow.out.progress.
func TestProgressEvents(t *testing.T) {
	t.Parallel()
	clock := imsemu.NewManualClock(time.Now())
	hs := newHarness(t, imsemu.Config{Clock: clock}, func(c *Config) { c.Progress = true })
	h := hs.importJob("d2.qcow2", "") // 3 GiB: 6 s of emulated time
	clock.Advance(2 * time.Second)
	deadline := time.After(testenv.Patience)
	for {
		select {
		case m := <-hs.out:
			if m.Subject != events.SubjectProgress {
				continue
			}
			var p events.Progress
			if err := json.Unmarshal(m.Data, &p); err != nil || p.JobID != h.JobID || p.Percent <= 0 || p.Percent >= 1 {
				t.Fatalf("progress = %+v, %v", p, err)
			}
			clock.Advance(time.Hour)
			if f := hs.finished(1)[h.JobID]; f.Status != events.StatusSucceeded {
				t.Errorf("event = %+v", f)
			}
			return
		case <-deadline:
			t.Fatalf("no progress event in %s", testenv.Patience)
		}
	}
}
