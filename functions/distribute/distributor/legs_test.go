package distributor

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestRefusalNamesTheRule: an encrypted import (the rule's cmk_id) is
// neither shared nor copied across regions: those legs are refused at
// once, naming the rule and saying what to declare, and the rest runs.
func TestRefusalNamesTheRule(t *testing.T) {
	t.Parallel()
	s := newStack(t, `{"rules":[{"name":"secret","bucket":"images","prefix":"sec/","cmk_id":"key-1","lifecycle":{
		"share":{"projects":["p-team-home"]},
		"regions":[{"region":"ap-southeast-3","agency_name":"ims_admin_agency"}],
		"tags":{"channel":"beta"}}}]}`)
	s.upload(t, "images", "sec/db.qcow2", "e1")
	done := s.completed(t)
	if done.Status != events.StatusFailed {
		t.Fatalf("status %s, want failed", done.Status)
	}
	for _, l := range done.Legs {
		switch l.Name {
		case "share:" + home, "replicate:" + apse3:
			if l.State != lifecycle.LegRefused || !strings.Contains(l.Reason, "rule secret") || !strings.Contains(l.Reason, `"plain": true`) {
				t.Errorf("%s: %s %q, want refused naming rule secret and the plain copy", l.Name, l.State, l.Reason)
			}
		case "tag:" + home:
			if l.State != lifecycle.LegSucceeded {
				t.Errorf("%s: %s, want succeeded: a refusal stops only what needs it", l.Name, l.State)
			}
		}
	}
	for _, sub := range s.emu.Submissions() {
		if sub.Operation == imsemu.OpCopyCrossRegion || sub.Operation == imsemu.OpAddMembers {
			t.Errorf("IMS was asked %s for a refused leg", sub.Operation)
		}
	}
}

// TestRetentionKeepsTheNewestAndTheShared: with keep_last 2, the third
// image of a family removes the first from every region; an image shared
// with anyone is never removed, and the removal is announced.
func TestRetentionKeepsTheNewestAndTheShared(t *testing.T) {
	t.Parallel()
	s := newStack(t, `{"rules":[{"name":"db","bucket":"images","prefix":"db/","lifecycle":{
		"family":"db","regions":[{"region":"ap-southeast-3","agency_name":"ims_admin_agency"}],"keep_last":2}}]}`)
	// An older image of the family, shared with the team: kept whatever.
	shared, err := s.emu.AddImageTo(home, imsapi.Image{Name: "db-shared", Tags: []string{lifecycle.FamilyTag + ".db"}, CreatedAt: "2026-01-01T00:00:00Z"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.clients[home].BatchAddMembers(t.Context(), &imsapi.BatchAddMembersRequest{Images: []string{shared.ID}, Projects: []string{"p-team-home"}}); err != nil {
		t.Fatal(err)
	}
	var ends []events.LifecycleCompleted
	for i := range 3 {
		s.upload(t, "images", fmt.Sprintf("db/v%d.qcow2", i), fmt.Sprint("e", i))
		ends = append(ends, s.completed(t)) // each ends before the next upload
	}
	for i, e := range ends {
		if e.Status != events.StatusSucceeded {
			t.Fatalf("lifecycle %d: %s %+v", i, e.Status, e.Legs)
		}
	}
	last := ends[2]
	for _, region := range []string{home, apse3} {
		removed := last.Removed[region]
		if !slices.Equal(removed, []string{ends[0].Images[region]}) {
			t.Errorf("%s: removed %v, want the first image %s", region, removed, ends[0].Images[region])
		}
		for _, im := range s.emu.RegionImages(region) {
			if im.ID == ends[0].Images[region] && im.Status != imsapi.ImageDeleted {
				t.Errorf("%s: the first image is %s, want deleted", region, im.Status)
			}
		}
	}
	if im, err := s.clients[home].Image(t.Context(), shared.ID); err != nil || im.Status != imsapi.ImageActive {
		t.Errorf("the shared image: %+v %v, want kept", im, err)
	}
}

// TestTakeoverFindsTheCopy: an attempt claimed a cross-region copy,
// submitted it and died before recording the job. Once its claim expired,
// the next look finds the copy by its name in the target region and
// follows it by its image: IMS gets no second copy.
func TestTakeoverFindsTheCopy(t *testing.T) {
	t.Parallel()
	s := newStack(t, `{"rules":[]}`)
	d, _, _, err := build(t.Context(), Config{ClaimTTL: time.Minute, SlotWait: time.Second, SlotTTL: time.Hour, AckWait: 30 * time.Second},
		Regions{Home: home, Client: func(r string) (IMS, error) { return s.clients[r], nil }}, nil, s.js)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := s.emu.AddImageTo(home, imsapi.Image{Name: "app-1", MinDisk: 40})
	rec := lifecycle.Plan(lifecycle.Start{ID: LifecycleID(src.ID), Rule: "app", SourceRegion: home, Image: lifecycle.Image{ID: src.ID, Name: src.Name, SizeGB: 40},
		Declaration: lifecycle.Declaration{Regions: []lifecycle.Region{{Region: apse3, AgencyName: "a"}}}, At: time.Now()})
	leg := rec.Leg("replicate:" + apse3)
	leg.State, leg.ClaimedAt = lifecycle.LegRunning, time.Now().Add(-time.Hour)
	if _, _, err := s.store.Create(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	// The dead attempt's copy.
	if _, err := s.clients[home].CopyImageCrossRegion(t.Context(), src.ID, &imsapi.CopyImageCrossRegionRequest{Name: src.Name, Region: apse3,
		ProjectName: apse3, AgencyName: "a"}); err != nil {
		t.Fatal(err)
	}
	out, err := d.advance(t.Context(), runner.Msg{Delivery: 1}, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var ho *events.JobSubmitted
	for _, e := range out {
		if h, ok := e.(events.JobSubmitted); ok && h.Leg != nil && h.Leg.Leg == "replicate:"+apse3 {
			ho = &h
		}
	}
	if ho == nil || ho.JobID != "" || ho.ImageID == "" || ho.Leg.Region != apse3 {
		t.Fatalf("hand-off = %+v, want the found copy, followed by its image in %s", ho, apse3)
	}
	n := 0
	for _, sub := range s.emu.Submissions() {
		if sub.Operation == imsemu.OpCopyCrossRegion {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d cross-region copies submitted, want the dead attempt's 1", n)
	}
	got, _, _ := s.store.Load(t.Context(), rec.ID)
	if l := got.Leg("replicate:" + apse3); l.JobID != "image:"+ho.ImageID || l.ImageID != ho.ImageID {
		t.Errorf("leg = %+v, want it following image %s", l, ho.ImageID)
	}
}

// TestSourceObjectDeleted: with source_object delete, the uploaded object
// is deleted from the bucket (MinIO) once every leg succeeded; an object
// whose key holds a newer upload by then is left alone, and the event
// says so.
func TestSourceObjectDeleted(t *testing.T) {
	t.Parallel()
	m := testenv.StartMinIO(t)
	store, err := objstore.New(objstore.Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: imsapi.Secret(m.SecretKey)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	mc := store.Client()
	if err := mc.MakeBucket(ctx, "images", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	put := func(key, body string) string {
		info, err := mc.PutObject(ctx, "images", key, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return info.ETag
	}
	s := newStackWith(t, `{"rules":[{"name":"rel","bucket":"images","prefix":"rel/","lifecycle":{"tags":{"channel":"stable"},"source_object":"delete"}}]}`, store)

	s.upload(t, "images", "rel/app.qcow2", put("rel/app.qcow2", "an image"))
	if e := s.completed(t); e.Status != events.StatusSucceeded || !e.SourceGone {
		t.Fatalf("lifecycle: %s, source deleted %v; legs %+v", e.Status, e.SourceGone, e.Legs)
	}
	if _, err := store.Head(ctx, "images", "rel/app.qcow2"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("the uploaded object is still there: %v", err)
	}

	old := put("rel/db.qcow2", "the first build")
	put("rel/db.qcow2", "a newer build under the same key")
	s.upload(t, "images", "rel/db.qcow2", old)
	e := s.completed(t)
	if e.Status != events.StatusSucceeded || e.SourceGone {
		t.Fatalf("replaced object: %s, source deleted %v", e.Status, e.SourceGone)
	}
	if _, err := store.Head(ctx, "images", "rel/db.qcow2"); err != nil {
		t.Errorf("the newer upload was deleted: %v", err)
	}
	for _, l := range e.Legs {
		if l.Name == "source" && !strings.Contains(l.Reason, "left alone") {
			t.Errorf("source leg: %+v, want it saying the object was left alone", l)
		}
	}
}

// TestClaimedLegKeepsItsMessage: a leg claimed by an attempt that has not
// recorded its job keeps the message that looks at it coming back (a
// wait), until the claim expires and the leg is taken over: a lifecycle
// is never left with nothing to wake it.
func TestClaimedLegKeepsItsMessage(t *testing.T) {
	t.Parallel()
	s := newStack(t, `{"rules":[]}`)
	d, _, _, err := build(t.Context(), Config{ClaimTTL: time.Minute, SlotWait: time.Second, SlotTTL: time.Hour, AckWait: 30 * time.Second},
		Regions{Home: home, Client: func(r string) (IMS, error) { return s.clients[r], nil }}, nil, s.js)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := s.emu.AddImageTo(home, imsapi.Image{Name: "app-2", MinDisk: 40})
	rec := lifecycle.Plan(lifecycle.Start{ID: LifecycleID(src.ID), Rule: "app", SourceRegion: home, Image: lifecycle.Image{ID: src.ID, Name: src.Name, SizeGB: 40},
		Declaration: lifecycle.Declaration{Regions: []lifecycle.Region{{Region: apse3, AgencyName: "a"}}}, At: time.Now()})
	leg := rec.Leg("replicate:" + apse3)
	leg.State, leg.ClaimedAt = lifecycle.LegRunning, time.Now()
	if _, _, err := s.store.Create(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	_, err = d.advance(t.Context(), runner.Msg{Delivery: 2}, rec.ID)
	if w, ok := runner.IsDelay(err); !ok || w > 2*time.Second {
		t.Fatalf("advance with a live claim: %v, want a wait of at most 2s", err)
	}
	// The claiming attempt took a replication slot (not the first) before
	// it died: the takeover must reuse it, not take a free one.
	slots, err := s.js.KeyValue(t.Context(), runner.BucketSlots)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slots.Create(t.Context(), "repl.3", []byte(rec.ID+"/replicate:"+apse3+"/1")); err != nil {
		t.Fatal(err)
	}
	// The claim expires: the next look takes the leg over and submits.
	d.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	out, err := d.advance(t.Context(), runner.Msg{Delivery: 3}, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var handoffs int
	for _, e := range out {
		if h, ok := e.(events.JobSubmitted); ok && h.Leg != nil && h.Leg.Leg == "replicate:"+apse3 && h.JobID != "" {
			handoffs++
		}
	}
	if handoffs != 1 {
		t.Errorf("after the claim expired: %d hand-offs of the copy, want 1 (events %v)", handoffs, out)
	}
	for _, e := range out {
		if h, ok := e.(events.JobSubmitted); ok && h.Slot != "repl.3" {
			t.Errorf("the takeover's hand-off holds slot %q, want the dead attempt's repl.3", h.Slot)
		}
	}
	if _, err := slots.Get(t.Context(), "repl.0"); err == nil {
		t.Error("the takeover took a second replication slot (repl.0)")
	}

	// A retry request delivered again after its first delivery took
	// effect (and waited) drives the leg on: it is not refused.
	if _, err := s.store.Change(t.Context(), rec.ID, func(r *lifecycle.Record) (bool, error) {
		x := r.Leg("replicate:" + apse3)
		x.State, x.Attempt, x.JobID, x.ClaimedAt = lifecycle.LegRunning, 2, "job-2", time.Now()
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"lifecycle":"` + rec.ID + `","leg":"replicate:` + apse3 + `"}`)
	evs, err := d.handleRetry(t.Context(), runner.Msg{Delivery: 2, Data: body})
	if err != nil {
		t.Errorf("a redelivered retry of a leg already running again: %v", err)
	}
	for _, e := range evs {
		if _, ok := e.(events.Rejected); ok {
			t.Errorf("a redelivered retry was refused: %+v", e)
		}
	}
	if _, err := d.handleRetry(t.Context(), runner.Msg{Delivery: 1, Data: body}); err == nil {
		t.Error("a first request to retry a running leg was taken")
	}
}
