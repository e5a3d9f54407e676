package distributor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/functions/poller/poller"
	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

const (
	home  = "cn-north-4"
	apse3 = "ap-southeast-3"
	euw   = "eu-west-101"
	team  = "d-team" // another account, with a project in each region
)

// stack is the pipeline a lifecycle runs on: the emulator with three
// regions and another account, embedded NATS, and the import, poller and
// distribute functions.
type stack struct {
	emu     *imsemu.Server
	js      jetstream.JetStream
	nc      *nats.Conn
	clients map[string]*imsapi.Client
	done    chan *nats.Msg // imsflow.out.lifecycle.*
	store   *lifecycle.Store
}

func newStack(t *testing.T, rules string) *stack { return newStackWith(t, rules, nil) }

// newStackWith is newStack with the distribute function deleting source
// objects through objects.
func newStackWith(t *testing.T, rules string, objects Objects) *stack {
	t.Helper()
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, AssumeObjects: true, TimeScale: 1e4,
		ImageQuota: -1, MaxRunningJobs: -1, Seed: 3,
		Regions: []imsemu.Region{{Name: home, ProjectID: "p-home"}, {Name: apse3}, {Name: euw}},
		Accounts: []imsemu.Account{{DomainID: team, Credentials: map[string]imsapi.Secret{"AK-TEAM": "SK-TEAM"},
			Projects: map[string]string{home: "p-team-home", apse3: "p-team-apse3", euw: "p-team-euw"}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	s := &stack{emu: emu, clients: map[string]*imsapi.Client{}}
	for _, r := range []string{home, apse3, euw} {
		if s.clients[r], err = emu.RegionClient(r); err != nil {
			t.Fatal(err)
		}
	}
	s.nc, s.js = testenv.StartNATS(t).Connect(t)
	ctx := t.Context()
	if err := runner.Ensure(ctx, s.js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	kv, err := s.js.KeyValue(ctx, runner.BucketLifecycles)
	if err != nil {
		t.Fatal(err)
	}
	s.store = &lifecycle.Store{KV: kv, Now: time.Now}
	s.done = make(chan *nats.Msg, 16)
	if _, err := s.nc.ChanSubscribe(events.SubjectLifecyclePrefix+"*", s.done); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}

	regions := imsconfig.RegionsFor(home, s.clients)
	rctx := imsconfig.NewContext(ctx, regions)
	imp, err := importer.New(ctx, importer.Config{RulesFile: file, BitmapWait: time.Minute, BitmapPoll: time.Minute, ClaimTTL: 10 * time.Second,
		ThrottleWait: 200 * time.Millisecond, Workers: 4, AckWait: 5 * time.Second, MaxFailures: 50}, s.clients[home], s.js, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	pol, err := poller.New(rctx, poller.Config{FirstPoll: time.Second, MinInterval: time.Second, TargetDelay: time.Second, MaxInterval: 2 * time.Second,
		MaxAimed: 2 * time.Second, Backoff: 1.5, Deadline: time.Hour, StallAfter: time.Hour, Workers: 8, AckWait: 30 * time.Second, MaxFailures: 100},
		s.clients[home], s.js, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	dist, err := New(ctx, Config{RulesFile: file, ClaimTTL: 20 * time.Second, SlotWait: time.Second, SlotTTL: time.Hour, ThrottleWait: 200 * time.Millisecond,
		Workers: 4, AckWait: 10 * time.Second, MaxFailures: 50},
		Regions{Home: home, Client: func(r string) (IMS, error) {
			c, ok := s.clients[r]
			if !ok {
				return nil, fmt.Errorf("region %s is not configured", r)
			}
			return c, nil
		}}, objects, s.js, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { _ = imp.Run(runCtx) })
	wg.Go(func() { _ = pol.Run(runCtx) })
	wg.Go(func() { _ = dist.Run(runCtx) })
	return s
}

// upload publishes an object-created notification.
func (s *stack) upload(t *testing.T, bucket, key, etag string) {
	t.Helper()
	body := fmt.Sprintf(`{"Records":[{"eventVersion":"2.0","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":%q,"size":%d,"eTag":%q}}}]}`,
		bucket, key, 4<<30, etag)
	if _, err := s.js.Publish(t.Context(), events.SubjectObjectsPrefix+"test", []byte(body)); err != nil {
		t.Fatal(err)
	}
}

// completed waits for the next lifecycle completion.
func (s *stack) completed(t *testing.T) events.LifecycleCompleted {
	t.Helper()
	return testenv.Receive[events.LifecycleCompleted](t, s.done, 1)[0]
}

const webRules = `{"rules":[{"name":"web","bucket":"images","prefix":"web/","lifecycle":{
	"family":"web-base",
	"share":{"projects":["p-team-home"]},
	"regions":[
		{"region":"ap-southeast-3","agency_name":"ims_admin_agency","share":{"projects":["p-team-apse3"]}},
		{"region":"eu-west-101","agency_name":"ims_admin_agency"}],
	"tags":{"channel":"stable"},
	"keep_last":2}}]}`

// TestLifecycleEndToEnd: one upload under a rule with a lifecycle ends
// as images in three regions, shared in two, tagged in all, with the
// family's latest pointer set; the one leg that fails (a congested copy
// to eu-west-101) fails alone, is retried alone, and the lifecycle then
// succeeds, every IMS job submitted once per attempt.
func TestLifecycleEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t, webRules)
	if err := s.emu.AddFailureRule(imsemu.FailureRule{Region: euw, Operation: imsemu.OpCopyCrossRegion, Times: 1,
		ErrorCode: "IMS.0999", FailReason: "the replication link is congested"}); err != nil {
		t.Fatal(err)
	}
	s.upload(t, "images", "web/base-1.qcow2", "e1")

	first := s.completed(t)
	if first.Status != events.StatusFailed || first.Generation != 0 || first.Rule != "web" || first.Family != "web-base" {
		t.Fatalf("first end: %s gen %d rule %s family %s", first.Status, first.Generation, first.Rule, first.Family)
	}
	legs := map[string]events.LifecycleLeg{}
	for _, l := range first.Legs {
		legs[l.Name] = l
	}
	if l := legs["replicate:"+euw]; l.State != lifecycle.LegFailed || !strings.Contains(l.Reason, "congested") {
		t.Errorf("the eu copy: %+v, want failed with IMS's reason", l)
	}
	for _, name := range []string{"share:" + home, "tag:" + home, "replicate:" + apse3, "share:" + apse3, "tag:" + apse3} {
		if legs[name].State != lifecycle.LegSucceeded {
			t.Errorf("%s: %+v, want succeeded (a failed leg stops only what comes after it)", name, legs[name])
		}
	}
	if legs["tag:"+euw].State != lifecycle.LegBlocked || legs["latest"].State != lifecycle.LegBlocked || first.Latest {
		t.Errorf("after the failure: tag:%s %s, latest %s (event latest %v), want blocked", euw, legs["tag:"+euw].State, legs["latest"].State, first.Latest)
	}

	// Retry the one leg, as "imsflow lifecycle retry" does.
	req, _ := json.Marshal(events.LifecycleRetry{Lifecycle: first.Lifecycle, Leg: "replicate:" + euw})
	if _, err := s.js.Publish(t.Context(), events.SubjectLifecycleRetry, req); err != nil {
		t.Fatal(err)
	}
	second := s.completed(t)
	if second.Status != events.StatusSucceeded || second.Generation != 1 || !second.Latest {
		t.Fatalf("after the retry: %s gen %d latest %v; legs %+v", second.Status, second.Generation, second.Latest, second.Legs)
	}
	for _, l := range second.Legs {
		want := 1
		if l.Name == "replicate:"+euw {
			want = 2
		}
		if l.State != lifecycle.LegSucceeded || l.Attempt != want {
			t.Errorf("%s: %s attempt %d, want succeeded at attempt %d", l.Name, l.State, l.Attempt, want)
		}
	}

	// What IMS holds: the image in every region, tagged, shared.
	for _, region := range []string{home, apse3, euw} {
		id := second.Images[region]
		if id == "" {
			t.Fatalf("no image in %s: %v", region, second.Images)
		}
		im, err := s.clients[region].Image(t.Context(), id)
		if err != nil {
			t.Fatalf("%s image %s: %v", region, id, err)
		}
		tags := strings.Join(im.Tags, ",")
		if im.Status != imsapi.ImageActive || !strings.Contains(tags, "channel.stable") || !strings.Contains(tags, lifecycle.FamilyTag+".web-base") {
			t.Errorf("%s image %s: %s, tags %v", region, id, im.Status, im.Tags)
		}
	}
	for region, project := range map[string]string{home: "p-team-home", apse3: "p-team-apse3"} {
		m, err := s.clients[region].ListImageMembers(t.Context(), second.Images[region])
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.Member(project); !ok {
			t.Errorf("%s image not shared with %s: %+v", region, project, m.Members)
		}
		if got := second.SharedWith[region]; !slices.Equal(got, []string{project}) {
			t.Errorf("event: shared in %s with %v", region, got)
		}
	}
	p, _, err := s.store.Latest(t.Context(), "web-base")
	if err != nil || p == nil || p.Lifecycle != first.Lifecycle || len(p.Images) != 3 || p.Images[euw] != second.Images[euw] {
		t.Errorf("latest = %+v (%v), want the three images of %s", p, err, first.Lifecycle)
	}
	// One cross-region copy per region and attempt: one to
	// ap-southeast-3, two to eu-west-101 (the failed one and the retry).
	copies := map[string]int{}
	for _, sub := range s.emu.Submissions() {
		if sub.Operation == imsemu.OpCopyCrossRegion {
			var body imsapi.CopyImageCrossRegionRequest
			if err := json.Unmarshal(sub.Body, &body); err != nil {
				t.Fatal(err)
			}
			copies[body.Region]++
		}
	}
	if copies[apse3] != 1 || copies[euw] != 2 {
		t.Errorf("cross-region copies by target region: %v, want %s 1, %s 2", copies, apse3, euw)
	}
}
