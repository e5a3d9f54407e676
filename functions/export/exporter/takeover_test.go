package exporter

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// Tests of the takeover of an export whose attempt died after IMS
// accepted it: the earlier export has finished (IMG.0070, its target
// exists) or still runs (IMG.0148).

// tkoStoredHandoffs returns the hand-offs stored in IMSFLOW_JOBS (no
// poller consumes them here).
func tkoStoredHandoffs(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	return testenv.Stored(t, js, runner.StreamJobs, events.SubjectJobSubmitted)
}

// tkoAbandon records the claim of an attempt that died an hour before
// now: the record a takeover finds.
func tkoAbandon(t *testing.T, hs *harness, req events.ExportRequest, now time.Time) {
	t.Helper()
	stale, _ := json.Marshal(ledger.Record{State: ledger.Claimed, ClaimedAt: now.Add(-time.Hour)})
	if _, err := hs.h.ledger.KV.Create(t.Context(), requestKey(req), stale); err != nil {
		t.Fatal(err)
	}
}

// tkoExports counts the emulator's accepted export jobs by target.
func tkoExports(emu *imsemu.Server) map[string]int {
	m := map[string]int{}
	for _, s := range emu.Submissions() {
		if s.Operation == imsemu.OpExport {
			m[s.URL]++
		}
	}
	return m
}

// TestTakeoverFindsTheFinishedExport: two requests whose attempts died
// after IMS accepted their exports, which have since written their
// targets. Each takeover meets IMG.0070 and hands the export off known by
// its target (no job ID: JobSubmitted.Ref is export:<hash>); the two
// hand-offs, minutes apart at most, are both stored, neither dropped as
// the other's duplicate; IMS gets no new export.
func TestTakeoverFindsTheFinishedExport(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Faults{}, nil)
	ctx := t.Context()
	client, err := hs.emu.Client()
	if err != nil {
		t.Fatal(err)
	}
	second := hs.emu.AddImage(imsapi.Image{Name: "second", ImageSize: fmt.Sprint(2 * gib)}).ID
	reqs := []events.ExportRequest{
		{ImageID: hs.images["small"], RequestID: "done-1", BucketURL: "exports:done/one.qcow2"},
		{ImageID: second, RequestID: "done-2", BucketURL: "exports:done/two.qcow2"},
	}
	for _, req := range reqs {
		// The dead attempt's export, accepted and finished: its target exists.
		if _, err := client.ExportImage(ctx, req.ImageID, &imsapi.ExportRequest{BucketURL: req.BucketURL, FileFormat: imsapi.FormatQCOW2}); err != nil {
			t.Fatal(err)
		}
		bucket, key, _ := strings.Cut(req.BucketURL, ":")
		testenv.Eventually(t, "the earlier export to write "+req.BucketURL, func() bool {
			_, ok := hs.emu.Object(bucket, key)
			return ok
		})
		tkoAbandon(t, hs, req, time.Now())
	}
	for _, req := range reqs {
		hs.send(req)
	}
	if got := strings.Join(hs.settled.FinalOutcomes(t, 2), ","); got != "ack,ack" {
		t.Errorf("outcomes = %s, want ack,ack", got)
	}
	hs.settled.NoRetries(t)

	stored := tkoStoredHandoffs(t, hs.js)
	if len(stored) != 2 {
		t.Fatalf("%d hand-offs stored in %s, want 2 (one per request)", len(stored), runner.StreamJobs)
	}
	ids := map[string]bool{}
	byReq := map[string]events.JobSubmitted{}
	for _, m := range stored {
		var ho events.JobSubmitted
		if err := json.Unmarshal(m.Data, &ho); err != nil {
			t.Fatal(err)
		}
		byReq[ho.RequestID] = ho
		id := m.Header.Get(nats.MsgIdHdr)
		ids[id] = true
		if ho.JobID != "" {
			t.Errorf("hand-off of %s has job ID %q; no job ID is known of the earlier attempt's export", ho.RequestID, ho.JobID)
		}
		if !strings.HasPrefix(ho.Ref(), "export:") {
			t.Errorf("hand-off of %s: Ref() = %q, want export:<hash>", ho.RequestID, ho.Ref())
		}
		if !strings.HasPrefix(id, "job:export:") || !strings.HasSuffix(id, ":submitted") || id != "job:"+ho.Ref()+":submitted" {
			t.Errorf("hand-off of %s: Nats-Msg-Id %q, want job:%s:submitted", ho.RequestID, id, ho.Ref())
		}
	}
	if len(ids) != 2 {
		t.Errorf("message IDs %v, want two distinct", ids)
	}
	for _, req := range reqs {
		ho, ok := byReq[req.RequestID]
		if !ok || ho.ImageID != req.ImageID || ho.BucketURL != req.BucketURL || ho.Kind != events.KindExport {
			t.Errorf("hand-off of %s = %+v, want the export of %s to %s", req.RequestID, ho, req.ImageID, req.BucketURL)
		}
		e, err := hs.h.ledger.Read(ctx, requestKey(req))
		if err != nil || e.Record.State != ledger.Submitted || e.Record.Handoff == nil || e.Record.Handoff.Ref() != ho.Ref() {
			t.Errorf("record of %s = %+v (%v), want submitted with its hand-off", req.RequestID, e.Record, err)
		}
	}
	if got := tkoExports(hs.emu); len(got) != 2 || got[reqs[0].BucketURL] != 1 || got[reqs[1].BucketURL] != 1 {
		t.Errorf("IMS exports by target = %v, want the dead attempts' one each", got)
	}
}

// newClockedHarness is newHarness with the emulator and the function on
// one manual clock, so that an export runs until the test moves the clock,
// and an attempt's claim expires when the test says. An IMG.0148 takeover
// looks again after ClaimTTL of real time (a NakWithDelay), and ClaimTTL
// must exceed AckWait: both are seconds here, not minutes, with AckWait
// still far above any handler's run.
func newClockedHarness(t *testing.T, clock *imsemu.ManualClock) *harness {
	t.Helper()
	cfg := Config{DefaultBucket: "exports", KeyPrefix: "out/", ClaimTTL: 11 * time.Second, BusyWait: 20 * time.Millisecond,
		ThrottleWait: 20 * time.Millisecond, Workers: 2, AckWait: 10 * time.Second, MaxFailures: 100}
	return startHarness(t, imsemu.Config{Clock: clock}, cfg, clock, false)
}

// TestTakeoverWaitsForTheRunningExport: the request's attempt died after
// IMS accepted its export, which still runs. The takeover meets IMG.0148:
// it hands nothing off, keeps the claim and waits; once the export has
// ended, the request ends with exactly one hand-off, and IMS never got a
// second export for it.
func TestTakeoverWaitsForTheRunningExport(t *testing.T) {
	t.Parallel()
	clock := imsemu.NewManualClock(time.Now())
	hs := newClockedHarness(t, clock)
	ctx := t.Context()
	req := events.ExportRequest{ImageID: hs.images["small"], RequestID: "busy-1", BucketURL: "exports:busy/one.qcow2"}
	client, err := hs.emu.Client()
	if err != nil {
		t.Fatal(err)
	}
	// The dead attempt's export, running until the clock moves.
	if _, err := client.ExportImage(ctx, req.ImageID, &imsapi.ExportRequest{BucketURL: req.BucketURL, FileFormat: imsapi.FormatQCOW2}); err != nil {
		t.Fatal(err)
	}
	tkoAbandon(t, hs, req, clock.Now())

	hs.send(req)
	first := hs.settled.Next(t, 1)[0]
	if first.Outcome != runner.OutcomeDelay {
		t.Fatalf("takeover while the export runs: %s (%s), want delay", first.Outcome, first.Reason)
	}
	if n := len(tkoStoredHandoffs(t, hs.js)); n != 0 {
		t.Errorf("%d hand-offs while the earlier export still runs, want none", n)
	}
	e, err := hs.h.ledger.Read(ctx, requestKey(req))
	if err != nil || e.Rev == 0 || e.Record.State != ledger.Claimed || !e.Record.Live(clock.Now(), hs.h.cfg.ClaimTTL) {
		t.Errorf("record while the export runs = %+v (rev %d, %v), want a live claim kept", e.Record, e.Rev, err)
	}
	if got := tkoExports(hs.emu); got[req.BucketURL] != 1 || len(got) != 1 {
		t.Errorf("IMS exports by target = %v, want only the dead attempt's", got)
	}

	// The export ends, and the claim the takeover kept expires.
	clock.Advance(hs.h.cfg.ClaimTTL)
	if _, ok := hs.emu.Object("exports", "busy/one.qcow2"); !ok {
		t.Fatal("the earlier export has not written its target after the clock moved")
	}
	for _, s := range hs.settled.Final(t, 1) {
		if s.Outcome != runner.OutcomeAck {
			t.Errorf("request after the export ended: %s (%s), want ack", s.Outcome, s.Reason)
		}
	}
	stored := tkoStoredHandoffs(t, hs.js)
	if len(stored) != 1 {
		t.Fatalf("%d hand-offs stored, want exactly 1", len(stored))
	}
	var ho events.JobSubmitted
	if err := json.Unmarshal(stored[0].Data, &ho); err != nil {
		t.Fatal(err)
	}
	if ho.RequestID != req.RequestID || ho.ImageID != req.ImageID || ho.BucketURL != req.BucketURL {
		t.Errorf("hand-off = %+v, want the export of %s to %s", ho, req.ImageID, req.BucketURL)
	}
	if got := tkoExports(hs.emu); got[req.BucketURL] != 1 || len(got) != 1 {
		t.Errorf("IMS exports by target = %v, want only the dead attempt's (no second export job)", got)
	}
	for _, s := range hs.settled.All() {
		if s.Outcome == runner.OutcomeNak || s.Outcome == runner.OutcomeDLQ || s.Outcome == runner.OutcomeTerm {
			t.Errorf("delivery %d: %s (%s)", s.Delivery, s.Outcome, s.Reason)
		}
	}
	if e, err := hs.h.ledger.Read(ctx, requestKey(req)); err != nil || e.Record.State != ledger.Submitted {
		t.Errorf("record after the hand-off = %+v (%v), want submitted", e.Record, err)
	}
}
