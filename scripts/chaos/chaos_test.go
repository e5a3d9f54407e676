package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
)

// The harness reads imsflow's topology by name without importing the
// runner at run time; the names must stay those of the runner.
func TestNamesAreTheRunners(t *testing.T) {
	for got, want := range map[string]string{
		streamIn: runner.StreamIn, streamJobs: runner.StreamJobs, streamOut: runner.StreamOut, streamDLQ: runner.StreamDLQ,
		bucketSlots: runner.BucketSlots, bucketJobs: runner.BucketJobs, kvImports: runner.BucketImports, kvExports: runner.BucketExports,
	} {
		if got != want {
			t.Errorf("harness name %q, runner's %q", got, want)
		}
	}
}

func TestWorkloadIsDeterministicAndWellFormed(t *testing.T) {
	feed := time.Minute
	a, b := newWorkload(2000, feed, 7), newWorkload(2000, feed, 7)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two workloads")
	}
	if c := newWorkload(2000, feed, 8); reflect.DeepEqual(a.Items, c.Items) {
		t.Fatal("two seeds gave the same workload")
	}
	ids, identities := map[string]bool{}, map[string]bool{}
	for _, it := range a.Items {
		if ids[it.ID] || identities[it.identity()] {
			t.Fatalf("input %s is not unique", it.ID)
		}
		ids[it.ID], identities[it.identity()] = true, true
	}
	counts := a.counts()
	for _, m := range mix {
		if counts[m.k] == 0 {
			t.Errorf("no input of kind %s in 2000", m.k)
		}
	}
	pos := map[string]int{}
	for n, p := range a.Pubs {
		if p.At < 0 || p.At > feed {
			t.Fatalf("publication %s at %s, outside the feed", p.MsgID, p.At)
		}
		if n > 0 && p.At < a.Pubs[n-1].At {
			t.Fatal("publications not in time order")
		}
		pos[p.MsgID] = n
	}
	for _, it := range a.Items {
		input, ok := pos["chaos:"+it.ID+":1"]
		if !ok {
			t.Fatalf("%s is never published", it.ID)
		}
		if _, dup := pos["chaos:"+it.ID+":2"]; dup != it.Dup {
			t.Errorf("%s: duplicate published %v, marked %v", it.ID, dup, it.Dup)
		}
		mf, hasMF := pos["chaos:"+it.ID+":mf"]
		if hasMF != (it.Kind == kindRAW) {
			t.Errorf("%s (%s): bitmap published %v", it.ID, it.Kind, hasMF)
		}
		if hasMF && (mf < input) != it.BitmapFirst {
			t.Errorf("%s: bitmap first %v, published at %d, the file at %d", it.ID, it.BitmapFirst, mf, input)
		}
	}
}

// Every notification the feed sends decodes to its input, and the import
// function routes each kind as the harness expects.
func TestBodiesDecodeAndRouteAsExpected(t *testing.T) {
	w := newWorkload(600, time.Minute, 3)
	now := time.Now()
	want := map[kind]string{kindNormal: "normal", kindLifecycle: "normal", kindZVHD2: "quick", kindRAW: "quick", kindFail: "normal",
		kindEmpty: "reject", kindTooLarge: "reject", kindNeedsConv: "reject", kindSkipped: "skip"}
	for _, p := range w.Pubs {
		it := w.Items[p.Item]
		body := w.body(p, now)
		if it.isExport() {
			r, err := events.DecodeExportRequest(body)
			if err != nil || r.ImageID != it.ImageID || r.RequestID != it.RequestID || r.BucketURL != it.BucketURL {
				t.Fatalf("%s: %+v, %v", it.ID, r, err)
			}
			continue
		}
		created, _, err := events.DecodeObjectEvents(body)
		if err != nil || len(created) != 1 {
			t.Fatalf("%s: %v", it.ID, err)
		}
		o := created[0]
		if p.Role == "bitmap" {
			if o.Key != bitmapKey(it.Key) || importer.Describe(o, importer.Rules{}, false).Action != "bitmap" {
				t.Fatalf("%s: bitmap %q", it.ID, o.Key)
			}
			continue
		}
		if objIdentity(o.Bucket, o.Key, o.ETag) != it.identity() || o.Size != it.Size {
			t.Fatalf("%s: decoded %+v", it.ID, o)
		}
		r := importer.Describe(o, importer.Rules{}, false)
		if r.Action != want[it.Kind] {
			t.Errorf("%s (%s, %d GB): routed %s (%s), want %s", it.ID, it.Kind, it.Size>>30, r.Action, r.Reason, want[it.Kind])
		}
		if r.Action == "reject" && "rejected:"+r.ReasonCode != it.Expect[0] {
			t.Errorf("%s: rejected %s, expected %v", it.ID, r.ReasonCode, it.Expect)
		}
		// The slot's value is the object version's hash, whose start ends
		// the image name.
		if r.ImageName != "" && !strings.HasSuffix(r.ImageName, "-"+it.slotHash()[:8]) {
			t.Errorf("%s: image name %s does not end with the version hash %s", it.ID, r.ImageName, it.slotHash()[:8])
		}
	}
}

func TestSchedule(t *testing.T) {
	for name, p := range profiles {
		f1, f2 := schedule(p, 11), schedule(p, 11)
		if !reflect.DeepEqual(f1, f2) {
			t.Fatalf("%s: the same seed gave two schedules", name)
		}
		hit, nats := map[string]int{}, 0
		for _, f := range f1 {
			if f.At < p.FaultStart || f.At > p.FaultEnd+p.KillEvery {
				t.Errorf("%s: %s outside the fault window", name, f)
			}
			if f.NATS {
				nats++
				continue
			}
			if f.Replica < 1 || f.Replica > replicas {
				t.Errorf("%s: %s", name, f)
			}
			hit[f.Function]++
		}
		if nats != p.NATSKills {
			t.Errorf("%s: %d NATS kills, want %d", name, nats, p.NATSKills)
		}
		for _, fn := range functions {
			if hit[fn] == 0 {
				t.Errorf("%s: %s is never killed", name, fn)
			}
		}
		if p.KillEvery == 0 && len(f1) != len(functions)+p.NATSKills {
			t.Errorf("%s: %d faults, want one kill of each kind", name, len(f1))
		}
	}
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeOutcome(t *testing.T) {
	src := &events.Source{Bucket: "b", Key: "k.qcow2", ETag: "e"}
	for _, c := range []struct {
		subject string
		body    any
		final   bool
		want    outcome
	}{
		{"imsflow.out.import.succeeded", events.JobFinished{JobID: "j1", Source: src}, true, outcome{identity: "obj:b/k.qcow2@e", status: "succeeded", jobID: "j1"}},
		{"imsflow.out.export.failed", events.JobFinished{JobID: "j2", RequestID: "r"}, true, outcome{identity: "req:r", status: "failed", jobID: "j2"}},
		{"imsflow.out.export.timed_out", events.JobFinished{JobID: "j3", BucketURL: "x:y"}, true, outcome{url: "x:y", status: "timed_out", jobID: "j3"}},
		{"imsflow.out.import.rejected", events.Rejected{ReasonCode: "empty_file", Source: src}, true, outcome{identity: "obj:b/k.qcow2@e", status: "rejected:empty_file"}},
		{"imsflow.out.export.rejected", events.Rejected{ReasonCode: "image_not_found", Request: &events.ExportRequest{RequestID: "r"}}, true, outcome{identity: "req:r", status: "rejected:image_not_found"}},
		{"imsflow.out.import.stalled", events.Stalled{JobID: "j"}, false, outcome{}},
		{"imsflow.out.progress", events.Progress{JobID: "j"}, false, outcome{}},
		{"imsflow.out.batch.completed", events.BatchCompleted{BatchID: "b"}, false, outcome{}},
	} {
		got, final, err := decodeOutcome(c.subject, marshal(t, c.body))
		if err != nil || final != c.final || got != c.want {
			t.Errorf("%s: %+v final %v err %v; want %+v final %v", c.subject, got, final, err, c.want, c.final)
		}
	}
}

func TestTallyCountsDistinctEvents(t *testing.T) {
	items := []*item{
		{ID: "n00000", Kind: kindNormal, Key: "chaos/n00000.qcow2", ETag: "e0", Expect: []string{"succeeded"}},
		{ID: "x00001", Kind: kindExport, RequestID: "chaos-x00001", BucketURL: "chaos-exports:out/x00001.qcow2", Expect: []string{"succeeded"}},
		{ID: "n00002", Kind: kindNormal, Key: "chaos/n00002.qcow2", ETag: "e2", Expect: []string{"succeeded"}},
	}
	tl := newTally(newItemIndex(items))
	ok := marshal(t, events.JobFinished{JobID: "j1", Source: &events.Source{Bucket: bucketImages, Key: "chaos/n00000.qcow2", ETag: "e0"}})
	t0 := time.Unix(1000, 0)
	tl.add("imsflow.out.import.succeeded", ok, "job:j1:succeeded", t0.Add(2*time.Second), 1)
	tl.add("imsflow.out.import.succeeded", ok, "job:j1:succeeded", t0.Add(3*time.Second), 2) // stored twice: one event
	tl.add("imsflow.out.export.succeeded", marshal(t, events.JobFinished{JobID: "j2", BucketURL: "chaos-exports:out/x00001.qcow2"}), "job:j2:succeeded", t0, 3)
	tl.add("imsflow.out.export.succeeded", marshal(t, events.JobFinished{JobID: "j3", RequestID: "chaos-x00001"}), "job:j3:succeeded", t0.Add(time.Second), 4)
	tl.add("imsflow.out.import.succeeded", marshal(t, events.JobFinished{JobID: "j9", Source: &events.Source{Bucket: "other", Key: "k"}}), "job:j9:succeeded", t0, 5)
	tl.add("imsflow.out.progress", marshal(t, events.Progress{JobID: "j1"}), "p", t0, 6)

	if got := tl.pending([]int{0, 1, 2}); !reflect.DeepEqual(got, []int{2}) {
		t.Errorf("pending %v, want [2]", got)
	}
	if o := tl.byItem[0]; len(o.ids) != 1 || o.stored != 2 || !o.first.Equal(t0.Add(2*time.Second)) {
		t.Errorf("item 0: %+v", o)
	}
	if o := tl.byItem[1]; len(o.ids) != 2 || !o.first.Equal(t0) {
		t.Errorf("item 1 (found by bucket_url, then by request_id): %+v", o)
	}
	if len(tl.unattributed) != 1 || tl.lastSeq != 6 {
		t.Errorf("unattributed %v, last seq %d", tl.unattributed, tl.lastSeq)
	}
}

func TestAttributeDead(t *testing.T) {
	w := newWorkload(200, time.Minute, 5)
	x := newItemIndex(w.Items)
	var raw, exp int = -1, -1
	for i, it := range w.Items {
		if it.Kind == kindRAW && raw < 0 {
			raw = i
		}
		if it.Kind == kindExport && exp < 0 {
			exp = i
		}
	}
	now := time.Now()
	for _, p := range w.Pubs {
		if p.Item != raw && p.Item != exp {
			continue
		}
		d := events.DeadLetter{Subject: p.Subject, Data: w.body(p, now)}
		if got := attributeDead(d, x, nil, nil); got != p.Item {
			t.Errorf("%s (%s): attributed to %d, want %d", p.MsgID, p.Role, got, p.Item)
		}
	}
	jobURL := map[string]string{"abc": w.Items[exp].imsURL()}
	if got := attributeDead(events.DeadLetter{Subject: "imsflow.jobs.poll.j.abc"}, x, jobURL, nil); got != exp {
		t.Errorf("poll timer attributed to %d, want %d", got, exp)
	}
	if got := attributeDead(events.DeadLetter{Subject: "imsflow.jobs.poll.j.zzz"}, x, jobURL, nil); got != -1 {
		t.Errorf("unknown job attributed to %d", got)
	}
}

func TestNormalize(t *testing.T) {
	a := normalize(`submit n00042-9234d32b (it may have been accepted): POST /v2/x: 503 (request d57498f31fc09ecc7e793c1264319a06) image 8485a8a3-5d8d-4805-8c1e-8e4dcdd6b5dd`)
	b := normalize(`submit n01999-1111d32b (it may have been accepted): POST /v2/x: 503 (request aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa) image 00000000-5d8d-4805-8c1e-8e4dcdd6b5dd`)
	if a != b {
		t.Errorf("%q\n%q", a, b)
	}
}

func TestSummary(t *testing.T) {
	r := &report{inputs: 300, drained: true, drain: 74 * time.Second, bound: 90 * time.Second, dupJobs: map[int][]submission{}, dupDone: map[int]*itemOutcomes{}}
	if got, want := r.summary(), "chaos: PASS inputs=300 lost=0 dup_jobs=0 dup_completions=0 dlq=0 slots=0 drain=74s"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	r.lost, r.slots, r.drained = []int{1, 2}, []slotHeld{{key: "slot.0001"}}, false
	if got, want := r.summary(), "chaos: FAIL inputs=300 lost=2 dup_jobs=0 dup_completions=0 dlq=0 slots=1 drain=>90s missed=lost,slots,drain"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

func TestFlagsAndProfiles(t *testing.T) {
	o, err := parseFlags([]string{"-short"}, &strings.Builder{})
	if err != nil || o.prof.Name != "short" || o.prof.Items != 300 {
		t.Fatalf("%+v %v", o.prof, err)
	}
	o, err = parseFlags([]string{"-items", "50", "-feed", "90s", "-nats-kills", "0", "-env", "IMPORT_MAX_DELIVER=500"}, &strings.Builder{})
	if err != nil || o.prof.Name != "default" || o.prof.Items != 50 || o.prof.Feed != 90*time.Second || o.prof.NATSKills != 0 ||
		o.prof.FaultEnd != 85*time.Second || len(o.env) != 1 {
		t.Fatalf("%+v %v %v", o.prof, o.env, err)
	}
	if _, err := parseFlags([]string{"-profile", "huge"}, &strings.Builder{}); err == nil {
		t.Error("an unknown profile was taken")
	}
	if _, err := parseFlags([]string{"-env", "NOEQUALS"}, &strings.Builder{}); err == nil {
		t.Error("-env without = was taken")
	}
}

func TestLostState(t *testing.T) {
	subs := []submission{{JobID: "j1", ImageID: "im1"}}
	for _, c := range []struct {
		subs        []submission
		state       string
		unpublished map[string]jobState
		want        string
	}{
		{nil, "", nil, "no IMS job; not claimed (waiting for a slot, a bitmap or a retry)"},
		{nil, "claimed", nil, "no IMS job; claimed by an attempt (under way, or dead and not yet taken over)"},
		{subs, "submitted", map[string]jobState{"j.j1": {Status: "RUNNING"}}, "IMS job; the poller tracks it (last status RUNNING)"},
		{subs, "submitted", map[string]jobState{"i.im1": {}}, "IMS job; the poller tracks it (last status none yet)"},
		{subs, "submitted", map[string]jobState{"j.j1": {Final: json.RawMessage(`{"status":"succeeded"}`)}}, "IMS job; the poller recorded its end but did not publish it"},
		{subs, "submitted", map[string]jobState{"j.other": {}}, "IMS job, handed off, but the poller does not track it (hand-off or state lost)"},
		{subs, "claimed", nil, "IMS job, but the function has not recorded it (record claimed): its answer was lost and no attempt has found it yet"},
	} {
		if got := lostState(c.subs, c.state, c.unpublished); got != c.want {
			t.Errorf("%q, want %q", got, c.want)
		}
	}
}

// The record keys are the functions' own.
func TestRecordKeys(t *testing.T) {
	w := newWorkload(100, time.Minute, 2)
	for _, it := range w.Items {
		bucket, key := it.recordKey()
		if it.isExport() {
			if bucket != runner.BucketExports || key != "r."+events.Hash("id\x00"+it.RequestID, 40) {
				t.Errorf("%s: %s %s", it.ID, bucket, key)
			}
			continue
		}
		if bucket != runner.BucketImports || !strings.HasPrefix(key, "v.") || len(key) != 42 {
			t.Errorf("%s: %s %s", it.ID, bucket, key)
		}
	}
}

// A slot names its owner by the version's hash, or by its ledger key.
func TestSlotOwners(t *testing.T) {
	it := &item{ID: "n00001", Kind: kindNormal, Key: "chaos/n00001.qcow2", ETag: "e"}
	x := newItemIndex([]*item{it})
	h := it.slotHash()
	for _, v := range []string{h, "v." + h[:40]} {
		if i, ok := x.bySlot[v]; !ok || i != 0 {
			t.Errorf("slot value %q: not found", v)
		}
	}
}

func TestComposeFlags(t *testing.T) {
	o, err := parseFlags([]string{"-compose", "deploy/compose", "-started", "1700000000"}, &strings.Builder{})
	if err != nil || o.prof.Name != "cluster" || !reflect.DeepEqual(o.scenarios, scenarioNames) || o.started.Unix() != 1700000000 {
		t.Fatalf("%+v %v %v", o.prof, o.scenarios, err)
	}
	o, err = parseFlags([]string{"-compose", "d", "-short", "-scenarios", "partition, nats-kill"}, &strings.Builder{})
	if err != nil || o.prof.Name != "short" || !reflect.DeepEqual(o.scenarios, []string{"partition", "nats-kill"}) {
		t.Fatalf("%+v %v %v", o.prof, o.scenarios, err)
	}
	for _, bad := range [][]string{
		{"-compose", "d", "-scenarios", "nats-kill,meteor"},
		{"-compose", "d", "-rev", "HEAD"},
		{"-compose", "d", "-bin", "bin"},
		{"-preflight"},
		{"-scenarios", "nats-kill"},
		{"-cut", "30s"},
		{"-compose", "d", "-cut", "10ms"},
	} {
		if _, err := parseFlags(bad, &strings.Builder{}); err == nil {
			t.Errorf("%q was taken", bad)
		}
	}
}

func TestScenarios(t *testing.T) {
	a, err := newScenarios(scenarioNames, 5, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newScenarios(scenarioNames, 5, 20*time.Second)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two plans")
	}
	for _, s := range a {
		if s.describe() == s.Name {
			t.Errorf("%s has no description", s.Name)
		}
		if s.Name == "partition" && s.Down != 20*time.Second {
			t.Errorf("partition of %s, want -cut's 20s", s.Down)
		}
		if s.Name != "fn-kill" {
			continue
		}
		if len(s.Victims) != len(functions) {
			t.Fatalf("fn-kill victims %v: want one replica of each function", s.Victims)
		}
		for i, v := range s.Victims {
			if !slices.Contains(functionServices, v) || !strings.HasPrefix(v, functions[i]+"-") {
				t.Errorf("fn-kill victim %q is not a replica of %s", v, functions[i])
			}
		}
	}
	if p := profiles["cluster"]; p.Drain <= 0 || p.FaultEnd > p.Feed || p.FaultStart >= p.FaultEnd {
		t.Errorf("cluster profile %+v", p)
	}
}

// Canaries are inputs like the others (indexed, in the emulator's
// catalogue, their images seeded) that the feed does not send.
func TestCanaries(t *testing.T) {
	w := newWorkload(100, time.Minute, 4)
	pubs := len(w.Pubs)
	idx := w.addCanaries(4)
	if len(idx) != 4 || len(w.Items) != 104 || len(w.Pubs) != pubs {
		t.Fatalf("canaries %v, items %d, publications %d (were %d)", idx, len(w.Items), len(w.Pubs), pubs)
	}
	x := newItemIndex(w.Items)
	cat, imgs := map[string]bool{}, map[string]bool{}
	for _, o := range w.catalogue() {
		cat[o.Key] = true
	}
	for _, im := range w.images() {
		imgs[im.ID] = true
	}
	for n, i := range idx {
		it := w.Items[i]
		if !it.Canary || it.Expect[0] != "succeeded" || x.byIdentity[it.identity()] != i {
			t.Errorf("canary %d: %+v", n, it)
		}
		if want := n%2 == 1; it.isExport() != want {
			t.Errorf("canary %d: export %v, want %v", n, it.isExport(), want)
		}
		if it.isExport() && !imgs[it.ImageID] || !it.isExport() && !cat[it.Key] {
			t.Errorf("canary %s is not seeded in the emulator", it.ID)
		}
	}
}

func composeHarness(t *testing.T) *harness {
	t.Helper()
	o, err := parseFlags([]string{"-compose", "deploy/compose", "-env", "IMPORT_ACK_WAIT=20s"}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{o: o, cr: &composeRun{project: "imsflow-ct-1", monPorts: []int{18222, 18223, 18224}}}
}

// The functions' env file points at the emulator in the project, with its
// keys, and has no S3_*: the import function takes sizes from the
// notifications, as in the process backend.
func TestComposeEnvFile(t *testing.T) {
	env := composeHarness(t).composeEnvFile()
	for _, want := range []string{"\nIMS_ENDPOINT=http://emulator:8089\n", "\nHUAWEICLOUD_SDK_AK=IMSFLOWLOCALAK\n",
		"\nHUAWEICLOUD_SDK_SK=imsflow-local-secret-key\n", "\nHUAWEICLOUD_SDK_PROJECT_ID=0000000000000000000000000000f10c\n",
		"\nIMPORT_CLAIM_TTL=15s\n", "\nPOLL_MAX=5s\n", "\nIMS_REGION=cn-north-4\n", "\nIMS_REGIONS=" + imsRegions() + "\n",
		"\nIMS_REGION_ENDPOINT=http://emulator:8089/region/{region}\n", "\nDISTRIBUTE_CLAIM_TTL=15s\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("env file lacks %q:\n%s", strings.TrimSpace(want), env)
		}
	}
	if strings.Contains(env, "S3_") || strings.Contains(env, "NATS_URL") {
		t.Errorf("env file sets S3_* or NATS_URL:\n%s", env)
	}
	if i, j := strings.Index(env, "IMPORT_ACK_WAIT=10s"), strings.Index(env, "IMPORT_ACK_WAIT=20s"); i < 0 || j < i {
		t.Errorf("-env does not come after the harness's setting:\n%s", env)
	}
}

func TestComposeOverride(t *testing.T) {
	ov := composeHarness(t).composeOverride()
	for _, want := range []string{"  emulator:\n    environment:\n", `IMSEMU_S3_ENDPOINT: ""`, `IMSEMU_ERROR_RATE: "0.2"`,
		`IMSEMU_DROP_RATE: "0.05"`, `IMSEMU_ACCEPT_BEFORE_DROP: "true"`, `IMSEMU_RATE_LIMIT: "30"`, `IMSEMU_MAX_JOBS: "40"`,
		`IMSEMU_QUOTA: "-1"`, `IMSEMU_TIME_SCALE: "30"`, `IMSEMU_SEED: "1"`, `IMSEMU_REGIONS: "` + emulatorRegions() + `"`,
		`IMSEMU_ACCOUNTS: "/etc/imsemu/accounts.json"`,
		"  nats-1:\n    ports: [\"127.0.0.1:18222:8222\"]\n", "  nats-3:\n    ports: [\"127.0.0.1:18224:8222\"]\n"} {
		if !strings.Contains(ov, want) {
			t.Errorf("override lacks %q:\n%s", want, ov)
		}
	}
}

// The harness leans on compose.yaml: its services, the variables it sets,
// and NATS server names equal to the service names (a stream's leader
// names the container to kill).
func TestComposeFileHasWhatTheHarnessUses(t *testing.T) {
	b, err := os.ReadFile("../../deploy/compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	for _, s := range append(append(append([]string(nil), natsServices...), functionServices...), emulatorService) {
		if !strings.Contains(y, "\n  "+s+":") {
			t.Errorf("compose.yaml has no service %s", s)
		}
	}
	for i, s := range natsServices {
		for _, want := range []string{`"--name", "` + s + `"`, fmt.Sprintf("${IMSFLOW_NATS_PORT_%d", i+1)} {
			if !strings.Contains(y, want) {
				t.Errorf("compose.yaml: %s lacks %s", s, want)
			}
		}
	}
	for _, want := range []string{"${IMSFLOW_ENV_FILE", "${IMSFLOW_EMULATOR_PORT:-8089}:8089", `IMSEMU_ADDR: ":8089"`,
		`"${IMSFLOW_RULES_FILE:-./rules.json}:/etc/imsflow/rules.json:ro"`, "IMPORT_RULES_FILE: /etc/imsflow/rules.json",
		`"${IMSFLOW_EMULATOR_ACCOUNTS:-./emulator-accounts.json}:/etc/imsemu/accounts.json:ro"`, "IMSEMU_ACCOUNTS: /etc/imsemu/accounts.json",
		`command: ["run", "distribute"]`, "environment: *rules-env\n    volumes: *rules\n"} {
		if !strings.Contains(y, want) {
			t.Errorf("compose.yaml lacks %s", want)
		}
	}
}

func TestSkipMessage(t *testing.T) {
	skip, fail := skipMessage("the docker command is not installed", false), skipMessage("the docker command is not installed", true)
	for _, m := range []string{skip, fail} {
		if !strings.Contains(m, "Missing: the docker command is not installed.") || strings.Count(m, "\n") < 6 {
			t.Errorf("banner:\n%s", m)
		}
	}
	if !strings.Contains(skip, "SKIPPED") || !strings.Contains(fail, "FAILED") {
		t.Errorf("banners:\n%s\n%s", skip, fail)
	}
}

func TestClusterSummary(t *testing.T) {
	sc := []*scenario{{Name: "nats-kill", Ran: true}, {Name: "partition", Ran: true}}
	r := &report{name: "test-cluster", inputs: 248, drained: true, drain: 39 * time.Second, bound: 150 * time.Second, scenarios: sc,
		elapsed: 216 * time.Second, dupJobs: map[int][]submission{}, dupDone: map[int]*itemOutcomes{}}
	if got, want := r.summary(), "test-cluster: PASS inputs=248 lost=0 dup_jobs=0 dup_completions=0 dlq=0 slots=0 drain=39s scenarios=2/2 elapsed=3m36s"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	sc[1].Err = "canaries had no final outcome"
	if got := r.summary(); !strings.HasPrefix(got, "test-cluster: FAIL ") || !strings.HasSuffix(got, "scenarios=1/2 elapsed=3m36s missed=scenarios") {
		t.Errorf("%q", got)
	}
}

func TestLongestSilence(t *testing.T) {
	path := t.TempDir() + "/f.log"
	t0 := time.Date(2026, 12, 1, 10, 21, 0, 0, time.UTC)
	var lines []string
	for _, sec := range []int{-5, 1, 2, 16, 17, 30} {
		lines = append(lines, fmt.Sprintf(`{"level":"info","outcome":"ack","time":%q,"message":"message"}`, t0.Add(time.Duration(sec)*time.Second).Format(time.RFC3339)))
	}
	// Not a settlement: the consumer's own warning.
	lines = append(lines, "--- not json ---", fmt.Sprintf(`{"level":"warn","error":"nats: no heartbeat received","time":%q,"message":"consume"}`, t0.Add(9*time.Second).Format(time.RFC3339)))
	if err := writeLines(path, lines); err != nil {
		t.Fatal(err)
	}
	if got := longestSilence(path, t0, t0.Add(20*time.Second)); got != 14*time.Second {
		t.Errorf("silence %s, want 14s", got)
	}
	if got := longestSilence(path, t0.Add(17*time.Second), t0.Add(29*time.Second)); got != 12*time.Second {
		t.Errorf("silence to the window's end %s, want 12s", got)
	}
}

func TestSummarizeLogsCountsSweptSlots(t *testing.T) {
	dir := t.TempDir()
	line := fmt.Sprintf(`{"level":"info","function":"poller","slot":"slot.0010","owner":"v.f6","message":%q}`, sweptSlot)
	if err := writeLines(dir+"/poller-2.log", []string{line, line, `{"level":"info","message":"sweep"}`}); err != nil {
		t.Fatal(err)
	}
	if err := writeLines(dir+"/nats-1.log", []string{line}); err != nil {
		t.Fatal(err)
	}
	if got := summarizeLogs(dir).swept; !reflect.DeepEqual(got, map[string]int{"poller-2": 2}) {
		t.Errorf("swept %v, want poller-2: 2", got)
	}
}
