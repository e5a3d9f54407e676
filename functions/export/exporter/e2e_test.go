package exporter

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
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

type harness struct {
	t        *testing.T
	emu      *imsemu.Server
	js       jetstream.JetStream
	settled  *runnertest.Settled
	handoffs chan *nats.Msg
	rejected chan *nats.Msg
	images   map[string]string // name -> ID
	h        *handler
	tel      *telemetry.Telemetry // the function's metrics
}

// newHarness runs the export function, as New builds it, on an embedded
// NATS against an emulator whose jobs end within milliseconds, with the
// production timings where waiting is not the point (see the import
// function's harness).
// With clock, the function runs on it, and it jumps past the claim TTL
// whenever an attempt finds an earlier attempt's claim
// (runnertest.ExpireAbandonedClaims).
func newHarness(t *testing.T, faults imsemu.Faults, clock *imsemu.ManualClock) *harness {
	t.Helper()
	cfg := Config{DefaultBucket: "exports", KeyPrefix: "out/", ClaimTTL: 2 * time.Minute, BusyWait: 20 * time.Millisecond,
		ThrottleWait: 20 * time.Millisecond, Workers: 2, AckWait: 30 * time.Second, MaxFailures: 100}
	return startHarness(t, imsemu.Config{Faults: faults}, cfg, clock, true)
}

// startHarness is newHarness with the emulator's and the function's
// settings given; with clock, the function runs on it, and with
// expireClaims the clock jumps past the claim TTL whenever an attempt
// finds an earlier attempt's claim.
func startHarness(t *testing.T, emuCfg imsemu.Config, cfg Config, clock *imsemu.ManualClock, expireClaims bool) *harness {
	t.Helper()
	emuCfg.Credentials, emuCfg.TimeScale, emuCfg.Seed = map[string]imsapi.Secret{"AK": "SK"}, 1e6, 3
	emu, err := imsemu.New(emuCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	emu.AddBucket("exports")
	hs := &harness{t: t, emu: emu, settled: runnertest.NewSettled(), handoffs: make(chan *nats.Msg, 100), rejected: make(chan *nats.Msg, 100), images: map[string]string{}}
	for name, im := range map[string]imsapi.Image{
		"small":     {Name: "small", ImageSize: fmt.Sprint(10 * gib)},
		"big":       {Name: "big", ImageSize: fmt.Sprint(300 * gib)},
		"encrypted": {Name: "encrypted", ImageSize: fmt.Sprint(300 * gib), SystemCMKID: "kms-1"},
		"public":    {Name: "public", ImageType: "gold", ImageSize: fmt.Sprint(gib)},
	} {
		hs.images[name] = emu.AddImage(im).ID
	}
	hs.tel = telemetry.New()
	client, err := emu.Client(imsapi.WithObserver(hs.tel.IMS))
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.StartNATS(t)
	nc, js := n.Connect(t)
	hs.js = js
	if err := runner.Ensure(t.Context(), js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	h, rc, err := build(telemetry.NewContext(t.Context(), hs.tel), cfg, client, js)
	if err != nil {
		t.Fatal(err)
	}
	hs.h = h
	for subj, ch := range map[string]chan *nats.Msg{events.SubjectJobSubmitted: hs.handoffs, events.OutSubject(events.KindExport, events.StatusRejected): hs.rejected} {
		if _, err := nc.ChanSubscribe(subj, ch); err != nil {
			t.Fatal(err)
		}
	}
	rc.BackoffInitial, rc.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	rc.Settled = hs.settled.Add
	if clock != nil {
		h.now = clock.Now
		if expireClaims {
			rc.Settled = runnertest.ExpireAbandonedClaims(clock, cfg.ClaimTTL, hs.settled.Add)
		}
	}
	runnertest.Start(t, js, rc, h.handle, zerolog.Nop())
	return hs
}

func (hs *harness) send(req events.ExportRequest) {
	hs.t.Helper()
	b, _ := json.Marshal(req)
	if _, err := hs.js.Publish(hs.t.Context(), events.SubjectExportRequests, b); err != nil {
		hs.t.Fatal(err)
	}
}

// TestExportEndToEnd: export requests through JetStream become the right
// IMS exports, or rejections with their reason codes.
func TestExportEndToEnd(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Faults{}, nil)
	hs.send(events.ExportRequest{ImageID: hs.images["small"], RequestID: "r1", BatchID: "b1"})
	hs.send(events.ExportRequest{ImageID: hs.images["big"], RequestID: "r2"})
	hs.send(events.ExportRequest{ImageID: hs.images["big"], Quick: "false", RequestID: "r3"})
	hs.send(events.ExportRequest{ImageID: hs.images["encrypted"], RequestID: "r4"})
	hs.send(events.ExportRequest{ImageID: hs.images["public"], RequestID: "r5"})
	hs.send(events.ExportRequest{ImageID: "00000000-0000-4000-a000-000000000000", RequestID: "r6"})
	if _, err := hs.js.Publish(t.Context(), events.SubjectExportRequests, []byte(`{"image_id":""}`)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(hs.settled.FinalOutcomes(t, 7), ","); got != "ack,ack,term,term,term,term,term" {
		t.Errorf("outcomes = %s", got)
	}
	hs.settled.NoRetries(t)
	byReq := map[string]events.JobSubmitted{}
	for _, h := range testenv.Receive[events.JobSubmitted](t, hs.handoffs, 2) {
		byReq[h.RequestID] = h
	}
	if h := byReq["r1"]; h.Method != events.MethodNormal || h.FileFormat != "qcow2" || h.BatchID != "b1" || h.JobID == "" ||
		h.BucketURL != "exports:out/small-"+hs.images["small"]+".qcow2" || h.JobType != imsapi.JobTypeExportImage {
		t.Errorf("small export hand-off = %+v", h)
	}
	if h := byReq["r2"]; !h.Quick || h.Method != events.MethodQuick || h.FileFormat != "zvhd2" {
		t.Errorf("big export hand-off = %+v", h)
	}
	var codes []string
	for _, r := range testenv.Receive[events.Rejected](t, hs.rejected, 5) {
		codes = append(codes, r.ReasonCode)
	}
	sort.Strings(codes)
	want := []string{events.ReasonEncryptedQuick, events.ReasonImageNotFound, events.ReasonInvalidRequest, events.ReasonNeedsQuickExport, events.ReasonNotPrivate}
	sort.Strings(want)
	if strings.Join(codes, ",") != strings.Join(want, ",") {
		t.Errorf("rejections = %v, want %v", codes, want)
	}
	subs := hs.emu.Submissions()
	if len(subs) != 2 {
		t.Fatalf("%d IMS exports, want 2", len(subs))
	}
	for _, s := range subs {
		if s.ImageID == hs.images["big"] && strings.Contains(string(s.Body), "file_format") {
			t.Errorf("the quick export sent a file_format: %s", s.Body)
		}
	}
	// The metrics say the same.
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"imsflow_submissions_total", []string{"kind", "export", "method", "normal"}, 1},
		{"imsflow_submissions_total", []string{"kind", "export", "method", "quick"}, 1},
		{"imsflow_rejections_total", []string{"kind", "export"}, 5},
		{"imsflow_rejections_total", []string{"reason", events.ReasonNotPrivate}, 1},
		{"imsflow_ims_requests_total", []string{"operation", imsapi.OpExport}, 2},
		{"imsflow_messages_total", []string{"function", "export", "outcome", "term"}, 5},
	} {
		if got := hs.tel.Value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
}

// TestExportsOfOneImageQueue: IMS exports an image once at a time
// (IMG.0148); a second export of it waits for the first instead of failing.
func TestExportsOfOneImageQueue(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Faults{}, nil)
	hs.send(events.ExportRequest{ImageID: hs.images["big"], RequestID: "q1", BucketURL: "exports:q1.zvhd2"})
	hs.send(events.ExportRequest{ImageID: hs.images["big"], RequestID: "q2", BucketURL: "exports:q2.zvhd2"})
	testenv.Receive[events.JobSubmitted](t, hs.handoffs, 2)
	if n := len(hs.emu.Submissions()); n != 2 {
		t.Errorf("%d IMS exports, want 2", n)
	}
}

// TestExportDeduplication: a request repeated, with or without request_id,
// is exported once.
func TestExportDeduplication(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Faults{}, nil)
	for range 3 {
		hs.send(events.ExportRequest{ImageID: hs.images["small"], RequestID: "same", BucketURL: "exports:a.qcow2"})
	}
	for range 2 {
		hs.send(events.ExportRequest{ImageID: hs.images["small"], BucketURL: "exports:b.vhd", FileFormat: "vhd"})
	}
	// Duplicates arriving while the first attempt runs wait for it, then ack.
	if got := strings.Join(hs.settled.FinalOutcomes(t, 5), ","); got != "ack,ack,ack,ack,ack" {
		t.Errorf("outcomes = %s", got)
	}
	for _, s := range hs.settled.All() {
		if s.Outcome != runner.OutcomeAck && s.Outcome != runner.OutcomeDelay {
			t.Errorf("a request was %s (%s)", s.Outcome, s.Reason)
		}
	}
	if n := len(hs.emu.Submissions()); n != 2 {
		t.Errorf("%d IMS exports, want 2", n)
	}
}

// TestExportThroughFaults: injected 5xx and a lost answer still give one
// export per request.
func TestExportThroughFaults(t *testing.T) {
	t.Parallel()
	// A 5xx may have started the export: the next attempt looks for it
	// once the claim expires, on the function's clock.
	hs := newHarness(t, imsemu.Faults{ErrorRate: 0.3}, imsemu.NewManualClock(time.Now()))
	for i := range 5 {
		id := hs.emu.AddImage(imsapi.Image{Name: fmt.Sprint("img-", i), ImageSize: fmt.Sprint(gib)}).ID
		hs.send(events.ExportRequest{ImageID: id, RequestID: fmt.Sprint("f", i), BucketURL: fmt.Sprintf("exports:f%d.qcow2", i)})
	}
	testenv.Receive[events.JobSubmitted](t, hs.handoffs, 5)
	urls := map[string]int{}
	for _, s := range hs.emu.Submissions() {
		urls[s.URL]++
	}
	if len(urls) != 5 {
		t.Errorf("exports per target = %v, want 5 targets once each", urls)
	}
	for u, n := range urls {
		if n != 1 {
			t.Errorf("%s exported %d times", u, n)
		}
	}
}
