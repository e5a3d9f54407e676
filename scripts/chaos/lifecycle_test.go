package main

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

func TestLifecycleNamesAreImsflows(t *testing.T) {
	if bucketLifecycles != runner.BucketLifecycles {
		t.Errorf("harness bucket %q, runner's %q", bucketLifecycles, runner.BucketLifecycles)
	}
	if lifecycle.Key("x") != "l.x" || lifecycle.PointerKey("f") != "latest.f" {
		t.Errorf("the harness reads lifecycles as l.<id> and pointers as latest.<family>: %s %s", lifecycle.Key("x"), lifecycle.PointerKey("f"))
	}
}

// The workload's lifecycle inputs: small, under their family's prefix,
// about copyFailShare percent with a scripted copy failure.
func TestWorkloadLifecycles(t *testing.T) {
	w := newWorkload(2000, time.Minute, 1)
	n, fails, fams := 0, 0, map[string]int{}
	for _, it := range w.Items {
		if it.Kind != kindLifecycle {
			if it.Family != "" || it.FailCopyTo != "" {
				t.Errorf("%s (%s) has a family or a copy failure", it.ID, it.Kind)
			}
			continue
		}
		n++
		fams[it.Family]++
		if !strings.HasPrefix(it.Key, lcPrefix+it.Family+"/") || it.Size <= 0 || it.Size > 4*gib || it.Expect[0] != "succeeded" {
			t.Errorf("%s: %+v", it.ID, it)
		}
		if it.FailCopyTo != "" {
			fails++
			if it.FailCopyTo != copyFailRegion {
				t.Errorf("%s fails its copy to %s", it.ID, it.FailCopyTo)
			}
		}
	}
	if n < 150 || n > 350 || len(fams) != len(lcFamilies) {
		t.Errorf("%d lifecycles in 2000 inputs, families %v", n, fams)
	}
	if fails < n/8 || fails > n/2 {
		t.Errorf("%d of %d lifecycles with a scripted copy failure", fails, n)
	}
}

// The rules file parses as the functions parse it, and routes each
// lifecycle input as a normal import named as the harness expects (the
// name its copies keep, which the failure rules match).
func TestLifecycleRules(t *testing.T) {
	rules, err := importer.ParseRules(lifecycleRules())
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.Rules) != len(lcFamilies) {
		t.Fatalf("%d rules", len(rules.Rules))
	}
	for i, r := range rules.Rules {
		d := r.Lifecycle
		if r.Label() != ruleName(lcFamilies[i]) || r.Prefix != lcPrefix+lcFamilies[i]+"/" || !d.Active() || d.Family != lcFamilies[i] ||
			len(d.Regions) != 2 || d.KeepLast != lcKeepLast || !reflect.DeepEqual(d.Tags, lcTags) {
			t.Errorf("rule %d: %+v %+v", i, r, d)
		}
		if !reflect.DeepEqual(d.Share.Projects, lcShares[regionHome]) || !reflect.DeepEqual(d.Regions[0].Share.Projects, lcShares[regionAPSE3]) || !d.Regions[1].Share.Empty() {
			t.Errorf("rule %d shares: %+v", i, d)
		}
	}
	w := newWorkload(400, time.Minute, 2)
	failures := w.copyFailures()
	names := map[string]bool{}
	for _, f := range failures {
		names[f["name_pattern"].(string)] = true
	}
	seen := 0
	for _, it := range w.Items {
		if it.Kind != kindLifecycle {
			continue
		}
		seen++
		route := importer.Describe(events.ObjectCreated{Bucket: bucketImages, Key: it.Key, Size: it.Size, ETag: it.ETag}, rules, false)
		if route.Action != "normal" || route.ImageName != it.imageName() {
			t.Errorf("%s: routed %s as %q, want normal as %q", it.ID, route.Action, route.ImageName, it.imageName())
		}
		if names[it.imageName()] != (it.FailCopyTo != "") {
			t.Errorf("%s: failure rule %v, scripted %q", it.ID, names[it.imageName()], it.FailCopyTo)
		}
	}
	if seen == 0 {
		t.Fatal("no lifecycle input")
	}
}

// The emulator takes the run's regions, account and failure rules, and
// the functions' IMS_REGIONS name its projects.
func TestEmulatorTakesTheRunsRegions(t *testing.T) {
	var regions []imsemu.Region
	for _, part := range strings.Split(emulatorRegions(), ",") {
		name, project, _ := strings.Cut(part, "=")
		regions = append(regions, imsemu.Region{Name: name, ProjectID: project})
	}
	var accounts []imsemu.Account
	if err := json.Unmarshal(emulatorAccounts(), &accounts); err != nil {
		t.Fatal(err)
	}
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, ProjectID: projectHome, Regions: regions, Accounts: accounts})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	for _, rg := range lcRegions {
		r, ok := emu.Region(rg)
		if !ok || r.ProjectID != regionProjects[rg] {
			t.Errorf("region %s: %+v", rg, r)
		}
	}
	for _, f := range newWorkload(300, time.Minute, 1).copyFailures() {
		b, _ := json.Marshal(f)
		var fr imsemu.FailureRule
		if err := json.Unmarshal(b, &fr); err != nil {
			t.Fatal(err)
		}
		if err := emu.AddFailureRule(fr); err != nil || fr.Times != 1 || fr.Operation != imsemu.OpCopyCrossRegion {
			t.Fatalf("%+v: %v", fr, err)
		}
	}
	projects, err := imsconfig.RegionsConfig{Region: regionHome, Regions: imsRegions(), Endpoint: "http://127.0.0.1:1/region/{region}"}.Projects()
	if err != nil || len(projects) != 2 || projects[regionEUW] != regionProjects[regionEUW] {
		t.Errorf("IMS_REGIONS %s: %v %v", imsRegions(), projects, err)
	}
}

// deploy/compose holds the same regions, projects and account as the
// harness, and its own rules file parses.
func TestComposeRegionsAndRules(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("../../deploy/compose/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	env, yaml := read("local.env"), read("compose.yaml")
	for _, want := range []string{"\nIMS_REGION=" + regionHome + "\n", "\nIMS_REGIONS=" + imsRegions() + "\n", "\nIMS_REGION_ENDPOINT=http://emulator:8089/region/{region}\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("local.env lacks %q", strings.TrimSpace(want))
		}
	}
	if !strings.Contains(yaml, "IMSEMU_REGIONS: "+emulatorRegions()+"\n") {
		t.Errorf("compose.yaml's emulator lacks IMSEMU_REGIONS: %s", emulatorRegions())
	}
	var got, want []imsemu.Account
	if err := json.Unmarshal([]byte(read("emulator-accounts.json")), &got); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(emulatorAccounts(), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("emulator-accounts.json %+v, the harness's %+v", got, want)
	}
	rules, err := importer.ParseRules([]byte(read("rules.json")))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules.Rules {
		if d := r.Lifecycle; d.Active() {
			for _, p := range d.Share.Projects {
				if p != teamProjects[regionHome] {
					t.Errorf("rule %s shares with %s, not a project of the emulator's account", r.Label(), p)
				}
			}
		}
	}
}

func lcMsg(t *testing.T, lc string, gen int, status events.Status, src *events.Source, legs ...events.LifecycleLeg) events.LifecycleCompleted {
	t.Helper()
	return events.LifecycleCompleted{Lifecycle: lc, Status: status, Generation: gen, Source: src, Legs: legs}
}

func TestLCTally(t *testing.T) {
	items := []*item{
		{ID: "n00000", Kind: kindLifecycle, Key: "chaos/lc/chaos-a/n00000.qcow2", ETag: "e0", Family: "chaos-a", FailCopyTo: regionEUW},
		{ID: "n00001", Kind: kindLifecycle, Key: "chaos/lc/chaos-b/n00001.qcow2", ETag: "e1", Family: "chaos-b"},
		{ID: "n00002", Kind: kindLifecycle, Key: "chaos/lc/chaos-b/n00002.qcow2", ETag: "e2", Family: "chaos-b"},
	}
	src := func(i int) *events.Source {
		return &events.Source{Bucket: bucketImages, Key: items[i].Key, ETag: items[i].ETag}
	}
	lt := newLCTally(newItemIndex(items))
	add := func(seq uint64, e events.LifecycleCompleted) (lcEvent, int, bool) {
		return lt.add(e.Subject(), marshal(t, e), e.ID(), time.Unix(int64(seq), 0), seq)
	}
	failed := lcMsg(t, "L0", 0, events.StatusFailed, src(0), events.LifecycleLeg{Name: "replicate:" + regionEUW, State: lifecycle.LegFailed, Reason: "IMS's job failed: " + copyFailReason})
	if _, i, ok := add(1, failed); !ok || i != 0 {
		t.Fatalf("failed completion: item %d, %v", i, ok)
	}
	add(2, lcMsg(t, "L1", 0, events.StatusSucceeded, src(1)))
	if _, _, ok := add(2, lcMsg(t, "L1", 0, events.StatusSucceeded, src(1))); ok {
		t.Error("the same stream sequence counted twice")
	}
	if _, _, ok := add(3, lcMsg(t, "L9", 0, events.StatusSucceeded, &events.Source{Bucket: "b", Key: "k"})); ok || len(lt.unattributed) != 1 {
		t.Error("a lifecycle of no input was attributed")
	}
	lt.add("imsflow.out.distribute.succeeded", []byte(`{}`), "", time.Unix(4, 0), 4)
	lt.add("imsflow.out.import.succeeded", []byte(`{}`), "", time.Unix(5, 0), 5)
	if got := lt.pending([]int{0, 1, 2}); !reflect.DeepEqual(got, []int{0, 2}) {
		t.Errorf("pending %v, want [0 2]: a failed generation waits for its retry, no completion waits", got)
	}
	add(6, lcMsg(t, "L0", 1, events.StatusSucceeded, src(0)))
	if got := lt.pending([]int{0, 1, 2}); !reflect.DeepEqual(got, []int{2}) {
		t.Errorf("pending %v, want [2]", got)
	}
	if e, _ := last(lt.byItem[0]); e.ev.Generation != 1 || e.ev.Status != events.StatusSucceeded {
		t.Errorf("last of item 0: %+v", e.ev)
	}
	if lt.legEvents["succeeded"] != 1 || len(lt.legEvents) != 1 {
		t.Errorf("leg events %v", lt.legEvents)
	}
	// A retry of the harness's answered rejected is noted; another's is not.
	for n, id := range []string{"chaos-retry-L0-replicate-1", "someone-else"} {
		rej := events.Rejected{Kind: events.KindDistribute, Stage: "retry", Reason: "leg is succeeded: only a failed or refused leg is retried",
			Input: string(marshal(t, events.LifecycleRetry{Lifecycle: "L0", Leg: "replicate:" + regionEUW, RequestID: id}))}
		lt.add("imsflow.out.distribute.rejected", marshal(t, rej), "", time.Unix(int64(40+n), 0), uint64(40+n))
	}
	if len(lt.retryRejected) != 1 || !strings.Contains(lt.retryRejected[0], "lifecycle L0 leg replicate:"+regionEUW) {
		t.Errorf("rejected retries %v", lt.retryRejected)
	}
	// A lifecycle that failed maxLifecycleRetries times has ended.
	add(7, lcMsg(t, "L2", maxLifecycleRetries, events.StatusFailed, src(2)))
	if got := lt.pending([]int{0, 1, 2}); len(got) != 0 {
		t.Errorf("pending %v after the last retry failed", got)
	}
}

func TestNotFinalKey(t *testing.T) {
	for subject, want := range map[string]string{
		"imsflow.out.import.waiting": "waiting", "imsflow.out.progress": "progress",
		"imsflow.out.lifecycle.failed": "lifecycle.failed", "imsflow.out.distribute.succeeded": "distribute.succeeded",
	} {
		if got := notFinalKey(subject); got != want {
			t.Errorf("%s: %q, want %q", subject, got, want)
		}
	}
}

func TestLifecycleSummary(t *testing.T) {
	r := &report{inputs: 300, drained: true, drain: 74 * time.Second, bound: 90 * time.Second, dupJobs: map[int][]submission{}, dupDone: map[int]*itemOutcomes{},
		lc: &lcReport{items: []int{1, 2, 3}}}
	if got, want := r.summary(), "chaos: PASS inputs=300 lost=0 dup_jobs=0 dup_completions=0 dlq=0 slots=0 drain=74s lifecycles=3 lc_failed=0 lc_dup_completions=0 lc_dup_jobs=0 repl_slots=0"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	r.lc.notOK, r.lc.repl = []int{2}, []slotHeld{{key: "repl.0"}}
	if got := r.summary(); !strings.HasPrefix(got, "chaos: FAIL ") || !strings.HasSuffix(got, "lc_failed=1 lc_dup_completions=0 lc_dup_jobs=0 repl_slots=1 missed=lifecycles,repl_slots") {
		t.Errorf("%q", got)
	}
}

func TestAttributeDeadLifecycles(t *testing.T) {
	it := &item{ID: "n00001", Kind: kindLifecycle, Key: "chaos/lc/chaos-a/n00001.qcow2", ETag: "e"}
	x := newItemIndex([]*item{it})
	lc := map[string]int{"L": 0}
	for _, d := range []events.DeadLetter{
		{Subject: "imsflow.out.import.succeeded", Data: marshal(t, events.JobFinished{Source: &events.Source{Bucket: bucketImages, Key: it.Key, ETag: "e"}})},
		{Subject: "imsflow.out.distribute.failed", Data: marshal(t, events.JobFinished{Leg: &events.LegRef{Lifecycle: "L"}})},
		{Subject: events.SubjectLifecycleRetry, Data: marshal(t, events.LifecycleRetry{Lifecycle: "L", Leg: "replicate:" + regionEUW})},
		{Subject: events.SubjectJobSubmitted, Data: marshal(t, events.JobSubmitted{Leg: &events.LegRef{Lifecycle: "L"}})},
	} {
		if got := attributeDead(d, x, nil, lc); got != 0 {
			t.Errorf("%s: attributed to %d", d.Subject, got)
		}
	}
}
