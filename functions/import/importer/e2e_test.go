package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/runner/runnertest"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// minioEvent is a notification exactly as MinIO's NATS target publishes it
// (reference/events.md 2b): the envelope, a URL-encoded key, user metadata.
func minioEvent(bucket, key string, size int64, etag string, meta map[string]string) []byte {
	um := map[string]string{"content-type": "application/octet-stream"}
	for k, v := range meta {
		um["X-Amz-Meta-"+k] = v
	}
	rec := map[string]any{
		"eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventTime": time.Now().UTC().Format(time.RFC3339Nano),
		"eventName": "s3:ObjectCreated:Put", "userIdentity": map[string]string{"principalId": "minioadmin"},
		"s3": map[string]any{
			"s3SchemaVersion": "1.0", "configurationId": "Config",
			"bucket": map[string]any{"name": bucket, "ownerIdentity": map[string]string{"principalId": "minioadmin"}, "arn": "arn:aws:s3:::" + bucket},
			"object": map[string]any{"key": url.QueryEscape(key), "size": size, "eTag": etag, "contentType": "application/octet-stream",
				"userMetadata": um, "sequencer": fmt.Sprintf("%X", time.Now().UnixNano())},
		},
	}
	b, _ := json.Marshal(map[string]any{"EventName": "s3:ObjectCreated:Put", "Key": bucket + "/" + key, "Records": []any{rec}})
	return b
}

type harness struct {
	t        *testing.T
	emu      *imsemu.Server
	js       jetstream.JetStream
	nc       *nats.Conn
	h        *importer
	rc       runner.Config
	settled  *runnertest.Settled
	handoffs chan *nats.Msg
	rejected chan *nats.Msg
	tel      *telemetry.Telemetry // the function's metrics
	stop     func()
}

// newHarness runs the import function, as New builds it, on an embedded
// NATS against an emulator whose jobs end within milliseconds. Its
// timings are the production ones where waiting is not the point of a
// test (an attempt's claim lasts minutes, a message may stay unsettled
// 30 s), so that a slow, loaded machine changes no outcome; only the
// waits that tests exercise (slots, throttling, backoff) are short.
func newHarness(t *testing.T, emuCfg imsemu.Config, mutate func(*Config)) *harness {
	t.Helper()
	if emuCfg.Credentials == nil {
		emuCfg.Credentials = map[string]imsapi.Secret{"AK": "SK"}
	}
	if emuCfg.TimeScale == 0 {
		emuCfg.TimeScale = 1e6 // jobs end within milliseconds
	}
	emuCfg.ImageQuota = -1
	emu, err := imsemu.New(emuCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	for _, o := range []imsemu.Object{
		{Bucket: "images", Key: "web/web-01.zvhd2", Size: 5 * gib},
		{Bucket: "images", Key: "data/d.qcow2", Size: 4 * gib},
		{Bucket: "images", Key: "sys/centos.vmdk", Size: 30 * gib},
		{Bucket: "images", Key: "db/db-01.raw", Size: 20 * gib},
		{Bucket: "images", Key: "db/db-01.mf", Size: 1 << 20},
	} {
		emu.PutObject(o)
	}
	for i := range 30 {
		emu.PutObject(imsemu.Object{Bucket: "images", Key: fmt.Sprintf("bulk/d%02d.qcow2", i), Size: gib})
	}
	tel := telemetry.New()
	client, err := emu.Client(imsapi.WithObserver(tel.IMS))
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.StartNATS(t)
	nc, js := n.Connect(t)
	ctx := t.Context()
	if err := runner.Ensure(ctx, js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rules, []byte(`{"rules":[{"bucket":"images","prefix":"sys/","image_type":"system","os_version":"CentOS 7.9 64bit"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		RulesFile: rules, BitmapWait: time.Minute, BitmapPoll: time.Minute, ClaimTTL: 2 * time.Minute,
		SlotTTL: time.Hour, SlotWait: 50 * time.Millisecond, ThrottleWait: 20 * time.Millisecond,
		Workers: 4, AckWait: 30 * time.Second, MaxFailures: 200,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, rc, err := build(telemetry.NewContext(ctx, tel), cfg, client, js)
	if err != nil {
		t.Fatal(err)
	}
	hs := &harness{t: t, emu: emu, js: js, nc: nc, h: h, rc: rc, settled: runnertest.NewSettled(), tel: tel,
		handoffs: make(chan *nats.Msg, 1000), rejected: make(chan *nats.Msg, 1000)}
	hs.rc.BackoffInitial, hs.rc.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	hs.rc.Settled = hs.settled.Add
	if _, err := nc.ChanSubscribe(events.SubjectJobSubmitted, hs.handoffs); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.ChanSubscribe(events.OutSubject(events.KindImport, events.StatusRejected), hs.rejected); err != nil {
		t.Fatal(err)
	}
	hs.start()
	return hs
}

// start runs a runner (a replica); stop stops the last one started.
func (hs *harness) start() {
	hs.stop = runnertest.Start(hs.t, hs.js, hs.rc, hs.h.handle, zerolog.Nop())
}

// expireAbandonedClaims puts the function on a manual clock that jumps
// past ClaimTTL whenever an attempt finds an earlier attempt's claim
// (runnertest.ExpireAbandonedClaims).
func (hs *harness) expireAbandonedClaims() {
	clock := imsemu.NewManualClock(time.Now())
	hs.stop()
	hs.h.now = clock.Now
	hs.rc.Settled = runnertest.ExpireAbandonedClaims(clock, hs.h.cfg.ClaimTTL, hs.settled.Add)
	hs.start()
}

func (hs *harness) publish(body []byte) {
	hs.t.Helper()
	if _, err := hs.js.Publish(hs.t.Context(), events.SubjectObjectsPrefix+"minio", body); err != nil {
		hs.t.Fatal(err)
	}
}

func ops(subs []imsemu.Submission) map[string]string {
	m := map[string]string{}
	for _, s := range subs {
		m[s.URL] = s.Operation
	}
	return m
}

// TestImportEndToEnd: real-shaped MinIO notifications through JetStream
// become the right IMS jobs and hand-offs, or rejected events.
func TestImportEndToEnd(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	hs.publish(minioEvent("images", "web/web-01.zvhd2", 5*gib, "e1", nil))
	hs.publish(minioEvent("images", "data/d.qcow2", 4*gib, "e2", map[string]string{"Imsflow-Batch": "b-1"}))
	hs.publish(minioEvent("images", "sys/centos.vmdk", 30*gib, "e3", nil))
	hs.publish(minioEvent("images", "empty.qcow2", 0, "e4", nil))
	hs.publish(minioEvent("images", "huge.vmdk", 200*gib, "e5", nil))
	hs.publish(minioEvent("images", "notes.txt", 10, "e6", nil))
	hs.publish([]byte(`{"hello":"world"}`))
	if outcomes := hs.settled.FinalOutcomes(t, 7); strings.Join(outcomes, ",") != "ack,ack,ack,ack,term,term,term" {
		t.Errorf("outcomes = %v", outcomes)
	}
	hs.settled.NoRetries(t)
	handoffs := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 3)
	byKey := map[string]events.JobSubmitted{}
	for _, h := range handoffs {
		byKey[h.Source.Key] = h
	}
	if h := byKey["web/web-01.zvhd2"]; h.Method != events.MethodQuick || h.ImageType != events.ImageData || h.JobID == "" || h.Source.Size != 5*gib || h.Source.Format != "zvhd2" {
		t.Errorf("zvhd2 hand-off = %+v", h)
	}
	if h := byKey["data/d.qcow2"]; h.Method != events.MethodNormal || h.BatchID != "b-1" || h.JobType != imsapi.JobTypeImportDataImage {
		t.Errorf("qcow2 hand-off = %+v", h)
	}
	if h := byKey["sys/centos.vmdk"]; h.ImageType != events.ImageSystem || h.JobType != imsapi.JobTypeImportImage {
		t.Errorf("vmdk hand-off = %+v", h)
	}
	rejected := testenv.Receive[events.Rejected](t, hs.rejected, 3)
	codes := []string{}
	for _, r := range rejected {
		codes = append(codes, r.ReasonCode)
		if r.Reason == "" {
			t.Errorf("rejection without a reason: %+v", r)
		}
	}
	sort.Strings(codes)
	if strings.Join(codes, ",") != "empty_file,needs_conversion,undecodable" {
		t.Errorf("rejections = %v", codes)
	}
	got := ops(hs.emu.Submissions())
	want := map[string]string{
		"images:web/web-01.zvhd2": imsemu.OpQuickImport,
		"images:data/d.qcow2":     imsemu.OpDataImageImport,
		"images:sys/centos.vmdk":  imsemu.OpImageImport,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("IMS submissions = %v, want %v", got, want)
	}
}

// TestRedeliveryAndRestartImportOnce: the same notification sent three
// times, across a restart of the function, gives one IMS job and one
// hand-off.
func TestRedeliveryAndRestartImportOnce(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	ev := minioEvent("images", "data/d.qcow2", 4*gib, "same-etag", nil)
	hs.publish(ev)
	hs.settled.Final(t, 1)
	hs.stop()
	hs.start()
	hs.publish(ev)
	hs.publish(ev)
	if o := hs.settled.FinalOutcomes(t, 3); strings.Join(o, ",") != "ack,ack,ack" {
		t.Errorf("outcomes = %v", o)
	}
	hs.settled.NoRetries(t)
	if n := len(hs.emu.Submissions()); n != 1 {
		t.Errorf("%d IMS submissions, want 1", n)
	}
	jobs, _ := hs.js.Stream(t.Context(), runner.StreamJobs)
	info, _ := jobs.Info(t.Context())
	if info.State.Msgs != 1 {
		t.Errorf("%d hand-offs stored, want 1 (duplicates dropped by Nats-Msg-Id)", info.State.Msgs)
	}
	// A new version of the same object is a new import.
	hs.publish(minioEvent("images", "data/d.qcow2", 4*gib, "new-etag", nil))
	hs.settled.Final(t, 4)
	if n := len(hs.emu.Submissions()); n != 2 {
		t.Errorf("%d IMS submissions after a new version, want 2", n)
	}
}

// TestCrashBetweenSubmitAndRecord: IMS accepted the job but the function
// died before recording it. The next attempt finds the image by its
// provenance tag and hands it off without submitting again.
func TestCrashBetweenSubmitAndRecord(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	body := minioEvent("images", "data/d.qcow2", 4*gib, "e-crash", nil)
	p := hs.deadAttempt(body)
	hs.publish(body)
	if o := hs.settled.Outcomes(t, 1); o[0] != "ack" {
		t.Errorf("outcome = %v", o)
	}
	h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
	if h.ImageID == "" || h.ImageName != p.name {
		t.Errorf("hand-off = %+v, want the found image", h)
	}
	if n := len(hs.emu.Submissions()); n != 1 {
		t.Errorf("%d IMS submissions, want the 1 of the dead attempt", n)
	}
}

// TestRAWAndBitmapInEitherOrder: a RAW file waits for its bitmap and is
// imported quickly as soon as the bitmap arrives, whichever comes first.
func TestRAWAndBitmapInEitherOrder(t *testing.T) {
	t.Parallel()
	t.Run("raw first", func(t *testing.T) {
		t.Parallel()
		hs := newHarness(t, imsemu.Config{}, nil)
		hs.publish(minioEvent("images", "db/db-01.raw", 20*gib, "r1", nil))
		if o := hs.settled.Outcomes(t, 1); o[0] != "delay" {
			t.Fatalf("RAW without bitmap: %v, want delay", o)
		}
		if n := len(hs.emu.Submissions()); n != 0 {
			t.Fatalf("%d submissions before the bitmap", n)
		}
		hs.publish(minioEvent("images", "db/db-01.mf", 1<<20, "m1", nil))
		h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
		if h.Method != events.MethodQuick || h.Source.Format != "raw" {
			t.Errorf("hand-off = %+v", h)
		}
		if got := ops(hs.emu.Submissions()); got["images:db/db-01.raw"] != imsemu.OpQuickImport || len(got) != 1 {
			t.Errorf("submissions = %v", got)
		}
	})
	t.Run("bitmap first", func(t *testing.T) {
		t.Parallel()
		hs := newHarness(t, imsemu.Config{}, nil)
		hs.publish(minioEvent("images", "db/db-01.mf", 1<<20, "m1", nil))
		var bitmap uint64
		for seq := range hs.settled.Final(t, 1) {
			bitmap = seq
		}
		hs.publish(minioEvent("images", "db/db-01.raw", 20*gib, "r1", nil))
		all := hs.settled.WaitFor(t, "the RAW file's first attempt", func(all []runner.Settlement) bool {
			return slices.ContainsFunc(all, func(s runner.Settlement) bool { return s.StreamSeq != bitmap })
		})
		if first := all[slices.IndexFunc(all, func(s runner.Settlement) bool { return s.StreamSeq != bitmap })]; first.Outcome != runner.OutcomeAck {
			t.Fatalf("RAW after its bitmap: %s (%s)", first.Outcome, first.Reason)
		}
		if got := ops(hs.emu.Submissions()); got["images:db/db-01.raw"] != imsemu.OpQuickImport {
			t.Errorf("submissions = %v", got)
		}
	})
	t.Run("no bitmap in time: normal import", func(t *testing.T) {
		t.Parallel()
		hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.BitmapWait, c.BitmapPoll = 100*time.Millisecond, 50*time.Millisecond })
		hs.publish(minioEvent("images", "db/db-01.raw", 20*gib, "r1", nil))
		h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
		if h.Method != events.MethodNormal {
			t.Errorf("hand-off = %+v, want a normal import", h)
		}
		if got := ops(hs.emu.Submissions()); got["images:db/db-01.raw"] != imsemu.OpDataImageImport {
			t.Errorf("submissions = %v", got)
		}
	})
	t.Run("no bitmap in time above 128 GB: rejected", func(t *testing.T) {
		t.Parallel()
		hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.BitmapWait, c.BitmapPoll = 100*time.Millisecond, 50*time.Millisecond })
		hs.publish(minioEvent("images", "db/huge.raw", 200*gib, "r1", nil))
		r := testenv.Receive[events.Rejected](t, hs.rejected, 1)[0]
		if r.ReasonCode != events.ReasonMissingBitmap {
			t.Errorf("rejected = %+v", r)
		}
	})
}

// TestFaultsAndThrottlingLoseNothing: IMS answers 500/503 a third of the
// time, throttles per AK, caps running jobs at 5 and drops connections
// after accepting; every object is imported exactly once all the same.
func TestFaultsAndThrottlingLoseNothing(t *testing.T) {
	t.Parallel()
	// A 5xx may have started the job: its attempt keeps the claim, and
	// the next one looks the image up once the claim expires.
	hs := newHarness(t, imsemu.Config{
		RateLimit: 50, RateBurst: 5, MaxRunningJobs: 5, Seed: 42,
		Faults: imsemu.Faults{ErrorRate: 0.3},
	}, nil)
	hs.expireAbandonedClaims()
	const n = 30
	for i := range n {
		hs.publish(minioEvent("images", fmt.Sprintf("bulk/d%02d.qcow2", i), gib, fmt.Sprintf("e%d", i), nil))
	}
	handoffs := testenv.Receive[events.JobSubmitted](t, hs.handoffs, n)
	seen := map[string]bool{}
	for _, h := range handoffs {
		seen[h.Source.Key] = true
	}
	subs := hs.emu.Submissions()
	urls := map[string]int{}
	for _, s := range subs {
		urls[s.URL]++
	}
	if len(seen) != n || len(urls) != n || len(subs) != n {
		t.Errorf("%d objects handed off, %d distinct submissions, %d submissions; want %d each", len(seen), len(urls), len(subs), n)
	}
	if st := hs.emu.Stats(); st.Injected == 0 || st.MaxRunning > 5 {
		t.Errorf("stats = %+v: want injected faults and at most 5 running", st)
	}
}

// TestDroppedAnswersDoNotDuplicate: IMS accepts the job but the answer is
// lost; the function finds the image and does not submit again.
func TestDroppedAnswersDoNotDuplicate(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	// The function's clock, so that the claim of the lost attempt expires
	// when the test says, not after a real ClaimTTL.
	clock := imsemu.NewManualClock(time.Now())
	hs.stop()
	hs.h.now = clock.Now
	hs.start()
	if err := hs.emu.SetFaults(imsemu.Faults{DropRate: 1, AcceptBeforeDrop: true}); err != nil {
		t.Fatal(err)
	}
	hs.publish(minioEvent("images", "data/d.qcow2", 4*gib, "e1", nil))
	if o := hs.settled.Outcomes(t, 1); o[0] != "nak" {
		t.Fatalf("outcome = %v, want nak", o)
	}
	if err := hs.emu.SetFaults(imsemu.Faults{}); err != nil {
		t.Fatal(err)
	}
	// Until the claim expires, the attempts wait for it without
	// submitting; then one looks the image up.
	clock.Advance(hs.h.cfg.ClaimTTL)
	h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
	if h.ImageID == "" {
		t.Errorf("hand-off = %+v, want the image found", h)
	}
	if n := len(hs.emu.Submissions()); n != 1 {
		t.Errorf("%d IMS submissions, want 1", n)
	}
}

// TestInFlightSlots: with 2 slots, the third import waits until a job
// releases its slot.
func TestInFlightSlots(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.MaxInFlight = 2 })
	for i := range 3 {
		hs.publish(minioEvent("images", fmt.Sprintf("bulk/d%02d.qcow2", i), gib, "e", nil))
	}
	handoffs := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 2)
	hs.settled.WaitFor(t, "an import waiting for a slot", func(all []runner.Settlement) bool {
		return slices.ContainsFunc(all, func(s runner.Settlement) bool { return s.Outcome == runner.OutcomeDelay })
	})
	if n := len(hs.emu.Submissions()); n != 2 {
		t.Fatalf("%d submissions with 2 slots", n)
	}
	// The poller would release the slot when the job ends.
	if err := hs.h.slots.Delete(t.Context(), handoffs[0].Slot); err != nil {
		t.Fatal(err)
	}
	testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)
	if n := len(hs.emu.Submissions()); n != 3 {
		t.Errorf("%d submissions after a slot was released, want 3", n)
	}
}

// TestInFlightCapAcrossReplicas: two replicas share 3 slots; of 6 imports
// exactly 3 are submitted while no job releases its slot.
func TestInFlightCapAcrossReplicas(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.MaxInFlight = 3; c.SlotWait = 20 * time.Millisecond })
	hs.start() // a second replica on the same consumer
	for i := range 6 {
		hs.publish(minioEvent("images", fmt.Sprintf("bulk/d%02d.qcow2", i), gib, "e", nil))
	}
	testenv.Receive[events.JobSubmitted](t, hs.handoffs, 3)
	// Every one of the other three has waited for a slot at least once.
	hs.settled.WaitFor(t, "3 imports waiting for a slot", func(all []runner.Settlement) bool {
		waiting := map[uint64]bool{}
		for _, s := range all {
			if s.Outcome == runner.OutcomeDelay {
				waiting[s.StreamSeq] = true
			}
		}
		return len(waiting) == 3
	})
	if n := len(hs.emu.Submissions()); n != 3 {
		t.Errorf("%d submissions with 3 slots across two replicas", n)
	}
}

// TestTakeoverFindsAFailedEarlierJob: the dead attempt's job failed (its
// image killed). The takeover hands that image off, so the poller
// reports the failure; it never submits a second job for the version.
func TestTakeoverFindsAFailedEarlierJob(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	if err := hs.emu.AddFailureRule(imsemu.FailureRule{KeyPattern: "data/d.qcow2", ErrorCode: "IMG.0057", FailReason: "damaged", AtPercent: 0.1}); err != nil {
		t.Fatal(err)
	}
	body := minioEvent("images", "data/d.qcow2", 4*gib, "e-failed", nil)
	p := hs.deadAttempt(body)
	testenv.Eventually(t, "the earlier attempt's image killed", func() bool {
		for _, im := range hs.emu.Images() {
			if im.Name == p.name && im.Status == imsapi.ImageKilled {
				return true
			}
		}
		return false
	})
	hs.publish(body)
	if o := hs.settled.Outcomes(t, 1); o[0] != "ack" {
		t.Errorf("outcome = %v", o)
	}
	h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
	if h.ImageID == "" || h.JobID != "" {
		t.Errorf("hand-off = %+v, want the killed image, known by its ID", h)
	}
	if n := len(hs.emu.Submissions()); n != 1 {
		t.Errorf("%d IMS submissions, want only the dead attempt's", n)
	}
}

// TestSlotReleasedAfterTheAttemptsTime: a claim that timed out (a leader
// election) still gives its slot back, instead of leaving it to the sweep.
func TestSlotReleasedAfterTheAttemptsTime(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.MaxInFlight = 4 })
	slot, err := hs.h.acquireSlot(t.Context(), "v.owner")
	if err != nil || slot.Name == "" || slot.Rev == 0 {
		t.Fatalf("acquireSlot = %+v, %v", slot, err)
	}
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	hs.h.releaseSlot(ended, slot)
	if _, err := hs.h.slots.Get(t.Context(), slot.Name); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("slot %s after its release with an ended context: %v, want gone", slot.Name, err)
	}
}

// TestSlotRetakenUnderItsNameIsReleased: an attempt read the object
// version as fresh, and before it claimed, another attempt claimed and
// submitted with slot S, its job ended and S was freed; this attempt then
// took S again (the owner's hash picks the same first slot) and lost the
// claim. The winner's record names S, but not this holding of it: the
// loser frees its own, and would free nothing of a later holder's.
func TestSlotRetakenUnderItsNameIsReleased(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.MaxInFlight = 4 })
	ctx := t.Context()
	const owner = "v.retaken"
	won, err := hs.h.acquireSlot(ctx, owner)
	if err != nil || won.Name == "" {
		t.Fatalf("acquireSlot = %+v, %v", won, err)
	}
	winner := ledger.Entry{Key: owner}
	if err := hs.h.ledger.Claim(ctx, &winner, won); err != nil {
		t.Fatal(err)
	}
	hs.h.releaseSlot(ctx, won) // the winner's job ended
	again, err := hs.h.acquireSlot(ctx, owner)
	if err != nil || again.Name != won.Name || again.Rev == won.Rev {
		t.Fatalf("acquireSlot after the release = %+v, %v; want %s under a new revision", again, err, won.Name)
	}
	loser := ledger.Entry{Key: owner} // it read the version as fresh
	if err := hs.h.ledger.Claim(ctx, &loser, again); err == nil {
		t.Fatal("a second claim of a fresh entry succeeded")
	}
	hs.h.releaseUnclaimed(ctx, owner, again)
	if e, err := hs.h.slots.Get(ctx, again.Name); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("slot %s after the losing attempt: %v (revision %d), want freed", again.Name, err, e.Revision())
	}

	// The winner adopting the loser's own holding (its Create's answer
	// lost) keeps it: the same name and revision.
	const owner2 = "v.adopted"
	s, err := hs.h.acquireSlot(ctx, owner2)
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := hs.h.acquireSlot(ctx, owner2)
	if err != nil || adopted != s {
		t.Fatalf("second acquireSlot = %+v, %v; want %+v", adopted, err, s)
	}
	w2 := ledger.Entry{Key: owner2}
	if err := hs.h.ledger.Claim(ctx, &w2, adopted); err != nil {
		t.Fatal(err)
	}
	hs.h.releaseUnclaimed(ctx, owner2, s)
	if _, err := hs.h.slots.Get(ctx, s.Name); err != nil {
		t.Errorf("slot %s held by the winning claim: %v, want kept", s.Name, err)
	}

	// A release by an old revision leaves a later holding alone.
	later, err := hs.h.acquireSlot(ctx, owner)
	if err != nil || later.Name != won.Name {
		t.Fatalf("acquireSlot = %+v, %v; want %s", later, err, won.Name)
	}
	hs.h.releaseSlot(ctx, won)
	if _, err := hs.h.slots.Get(ctx, later.Name); err != nil {
		t.Errorf("slot %s after a stale release: %v, want kept", later.Name, err)
	}
}

// TestSlotOfALostAnswerIsReused: an attempt whose slot Create took effect
// but whose answer was lost (a leader election) left the slot with its
// owner's key; the next attempt uses that slot instead of leaking it.
func TestSlotOfALostAnswerIsReused(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.MaxInFlight = 8 })
	ctx := t.Context()
	first, err := hs.h.acquireSlot(ctx, "v.lost")
	if err != nil || first.Name == "" {
		t.Fatalf("acquireSlot = %+v, %v", first, err)
	}
	again, err := hs.h.acquireSlot(ctx, "v.lost")
	if err != nil || again != first {
		t.Errorf("second acquireSlot for the same owner = %+v, %v; want its own %+v", again, err, first)
	}
	other, err := hs.h.acquireSlot(ctx, "v.other")
	if err != nil || other.Name == "" || other.Name == first.Name {
		t.Errorf("another owner got %+v, %v", other, err)
	}
	lister, err := hs.h.slots.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	if n != 2 {
		t.Errorf("%d slots held, want 2", n)
	}
}

// deadAttempt leaves what an attempt that died after IMS accepted its job
// leaves behind: an expired claim on the object version, and the IMS job.
// It returns the version's plan.
func (hs *harness) deadAttempt(body []byte) plan {
	hs.t.Helper()
	recs, _, err := events.DecodeObjectEvents(body)
	if err != nil {
		hs.t.Fatal(err)
	}
	p := route(recs[0], hs.h.cfg.route)
	stale, _ := json.Marshal(ledger.Record{State: ledger.Claimed, ClaimedAt: time.Now().Add(-time.Hour)})
	if _, err := hs.h.imports.Create(hs.t.Context(), "v."+p.hash[:tagHashLen], stale); err != nil {
		hs.t.Fatal(err)
	}
	if _, err := hs.h.ims.ImportDataImage(hs.t.Context(), p.data); err != nil {
		hs.t.Fatal(err)
	}
	return p
}
