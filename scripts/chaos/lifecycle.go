package main

// Image lifecycles under faults: a share of the uploads falls under rules
// that declare a lifecycle (copies to two regions, shares, a tag, the
// family's latest pointer, retention), which the distribute function runs
// after the import. The emulator fails the first cross-region copy of
// some of them (a failure rule with times 1); the harness retries that
// leg alone when it sees the failed LifecycleCompleted, and expects
// success afterwards. The count checks every lifecycle against its
// events, the lifecycle records and pointers in imsflow_lifecycles, the
// replication slots in imsflow_slots, and what the emulator holds in
// each region.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// The regions of a run: the emulator serves three, the first at its
// root (IMS_ENDPOINT, where imports land), each at URL/region/<name>.
const (
	regionHome  = "cn-north-4"
	regionAPSE3 = "ap-southeast-3"
	regionEUW   = "eu-west-101"
	// projectHome is the emulator's own project in the home region: its
	// default, HUAWEICLOUD_SDK_PROJECT_ID of the functions.
	projectHome = "0000000000000000000000000000f10c"
	// teamDomain is the other account the images are shared with
	// (-accounts): a project of it in every region.
	teamDomain = "000000000000000000000000007ea000"
)

var (
	lcRegions      = []string{regionHome, regionAPSE3, regionEUW}
	regionProjects = map[string]string{regionHome: projectHome, regionAPSE3: "0000000000000000000000000000a5e3", regionEUW: "000000000000000000000000000e0101"}
	teamProjects   = map[string]string{regionHome: "000000000000000000000000007ea0f1", regionAPSE3: "000000000000000000000000007ea0a5", regionEUW: "000000000000000000000000007ea0e0"}
	// lcShares is who each region's image is shared with, as the rules
	// declare: the team's project in the home region and in
	// ap-southeast-3; no one in eu-west-101.
	lcShares = map[string][]string{regionHome: {teamProjects[regionHome]}, regionAPSE3: {teamProjects[regionAPSE3]}}
	// lcFamilies are the families, one rule each, under lcPrefix+family+"/".
	lcFamilies = []string{"chaos-a", "chaos-b"}
	// lcTags are the tags the rules declare (the family's tag comes on top).
	lcTags = map[string]string{"channel": "chaos"}
)

const (
	// lcPrefix is where the uploads with a lifecycle are.
	lcPrefix = "chaos/lc/"
	lcAgency = "ims_admin_agency"
	// lcKeepLast keeps every image of a family (retention runs, lists,
	// and deletes nothing: the checks count every image).
	lcKeepLast = 100000
	// copyFailRegion and copyFailShare: the first cross-region copy to
	// that region fails for that share (percent) of the lifecycles.
	copyFailRegion = regionEUW
	copyFailShare  = 25
	copyFailCode   = "IMG.0999"
	copyFailReason = "the replication link is congested (scripted by chaos)"
	// maxLifecycleRetries bounds the generations the harness retries: a
	// lifecycle that failed that many times is left failed.
	maxLifecycleRetries = 3
	// distributeClaimTTL is DISTRIBUTE_CLAIM_TTL of the run: a leg
	// claimed longer ago without a job is one whose takeover never came.
	distributeClaimTTL = 15 * time.Second
	distributeAckWait  = 10 * time.Second
)

// emulatorRegions is the emulator's -regions (IMSEMU_REGIONS): the home
// region first, each with the emulator account's project.
func emulatorRegions() string {
	var parts []string
	for _, r := range lcRegions {
		parts = append(parts, r+"="+regionProjects[r])
	}
	return strings.Join(parts, ",")
}

// imsRegions is IMS_REGIONS of the functions: the regions besides the home.
func imsRegions() string {
	var parts []string
	for _, r := range lcRegions[1:] {
		parts = append(parts, r+"="+regionProjects[r])
	}
	return strings.Join(parts, ",")
}

// regionSettings are the functions' settings of the other regions and of
// the distribute function; IMS_REGION_ENDPOINT and IMPORT_RULES_FILE are
// the backend's.
func regionSettings() []string {
	return []string{"IMS_REGION=" + regionHome, "IMS_REGIONS=" + imsRegions(),
		// distribute: claims and ack waits as the import's, so that a
		// killed replica's legs turn over within the run; SLOT_TTL stays
		// 12h, so that a leaked replication slot stays visible.
		"DISTRIBUTE_ACK_WAIT=" + distributeAckWait.String(), "DISTRIBUTE_CLAIM_TTL=" + distributeClaimTTL.String(), "DISTRIBUTE_SLOT_WAIT=5s"}
}

// ruleName is the name of a family's rule.
func ruleName(family string) string { return "lc-" + family }

// lifecycleRules is the rules file of the functions (IMPORT_RULES_FILE):
// one rule per family; every other key takes the default rule.
func lifecycleRules() []byte {
	type rule struct {
		Name      string                 `json:"name"`
		Bucket    string                 `json:"bucket"`
		Prefix    string                 `json:"prefix"`
		Lifecycle *lifecycle.Declaration `json:"lifecycle"`
	}
	var rules []rule
	for _, f := range lcFamilies {
		d := &lifecycle.Declaration{Family: f, Share: lifecycle.Members{Projects: lcShares[regionHome]},
			Tags: maps.Clone(lcTags), KeepLast: lcKeepLast}
		for _, r := range lcRegions[1:] {
			d.Regions = append(d.Regions, lifecycle.Region{Region: r, AgencyName: lcAgency, Share: lifecycle.Members{Projects: lcShares[r]}})
		}
		rules = append(rules, rule{Name: ruleName(f), Bucket: bucketImages, Prefix: lcPrefix + f + "/", Lifecycle: d})
	}
	b, _ := json.MarshalIndent(map[string]any{"rules": rules}, "", " ")
	return b
}

// emulatorAccounts is the emulator's -accounts: the team to share with.
func emulatorAccounts() []byte {
	b, _ := json.MarshalIndent([]map[string]any{{"domain_id": teamDomain, "projects": teamProjects}}, "", " ")
	return b
}

// copyFailures are the emulator's failure rules of the scripted copy
// failures: one per lifecycle, by its image's name, once.
func (w *workload) copyFailures() []map[string]any {
	var out []map[string]any
	for _, it := range w.Items {
		if it.FailCopyTo == "" {
			continue
		}
		out = append(out, map[string]any{"name_pattern": it.imageName(), "region": it.FailCopyTo, "operation": imsapi.OpCopyCrossRegion,
			"times": 1, "error_code": copyFailCode, "fail_reason": copyFailReason})
	}
	return out
}

// imageName is the name the import function gives the input's image
// (importer's imageName: the key's base name, the version hash's first
// eight characters), which its copies keep in the other regions.
func (it *item) imageName() string {
	base := path.Base(it.Key)
	return strings.TrimSuffix(base, path.Ext(base)) + "-" + it.slotHash()[:8]
}

// ---- following the lifecycles ------------------------------------------------

// lcEvent is one LifecycleCompleted of IMSFLOW_OUT.
type lcEvent struct {
	msgID  string
	seq    uint64
	stored time.Time
	ev     events.LifecycleCompleted
}

// lcTally groups the lifecycle completions of IMSFLOW_OUT by input, and
// counts the legs' job events (imsflow.out.distribute.*).
type lcTally struct {
	mu           sync.Mutex
	index        *itemIndex
	byItem       map[int][]lcEvent
	seen         map[uint64]bool
	unattributed []string
	undecodable  int
	legEvents    map[string]int
	// retryRejected are the rejections of the harness's own retry
	// requests (imsflow.out.distribute.rejected, stage retry).
	retryRejected []string
}

func newLCTally(index *itemIndex) *lcTally {
	return &lcTally{index: index, byItem: map[int][]lcEvent{}, seen: map[uint64]bool{}, legEvents: map[string]int{}}
}

// add counts one message of IMSFLOW_OUT; it returns the completion and its
// input when the message is a lifecycle completion of the run.
func (t *lcTally) add(subject string, data []byte, msgID string, stored time.Time, seq uint64) (lcEvent, int, bool) {
	distribute := "imsflow.out." + string(events.KindDistribute) + "."
	if !strings.HasPrefix(subject, events.SubjectLifecyclePrefix) && !strings.HasPrefix(subject, distribute) {
		return lcEvent{}, 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[seq] {
		return lcEvent{}, 0, false
	}
	t.seen[seq] = true
	if s, ok := strings.CutPrefix(subject, distribute); ok {
		t.legEvents[s]++
		var rej events.Rejected
		var req events.LifecycleRetry
		if s == "rejected" && json.Unmarshal(data, &rej) == nil && rej.Stage == "retry" && json.Unmarshal([]byte(rej.Input), &req) == nil &&
			strings.HasPrefix(req.RequestID, "chaos-retry-") {
			t.retryRejected = append(t.retryRejected, fmt.Sprintf("lifecycle %s leg %s: %s", req.Lifecycle, req.Leg, rej.Reason))
		}
		return lcEvent{}, 0, false
	}
	var e events.LifecycleCompleted
	if err := json.Unmarshal(data, &e); err != nil {
		t.undecodable++
		return lcEvent{}, 0, false
	}
	i, ok := -1, false
	if e.Source != nil {
		i, ok = t.index.byIdentity[objIdentity(e.Source.Bucket, e.Source.Key, e.Source.ETag)]
	}
	if !ok {
		t.unattributed = append(t.unattributed, fmt.Sprintf("%s %s", subject, clip(string(data), 200)))
		return lcEvent{}, 0, false
	}
	if msgID == "" {
		msgID = fmt.Sprintf("seq:%d", seq)
	}
	le := lcEvent{msgID: msgID, seq: seq, stored: stored, ev: e}
	t.byItem[i] = append(t.byItem[i], le)
	return le, i, true
}

func (t *lcTally) addMsg(m jetstream.Msg) (lcEvent, int, bool) {
	md, err := m.Metadata()
	var seq uint64
	stored := time.Now()
	if err == nil {
		seq, stored = md.Sequence.Stream, md.Timestamp
	}
	return t.add(m.Subject(), m.Data(), m.Headers().Get(jetstream.MsgIDHeader), stored, seq)
}

// last is the input's latest completion: of the highest generation, a
// success before a failure of the same one; ok false when it has none.
func last(evs []lcEvent) (lcEvent, bool) {
	if len(evs) == 0 {
		return lcEvent{}, false
	}
	best := evs[0]
	for _, e := range evs[1:] {
		switch {
		case e.ev.Generation > best.ev.Generation,
			e.ev.Generation == best.ev.Generation && e.ev.Status == events.StatusSucceeded && best.ev.Status != events.StatusSucceeded:
			best = e
		}
	}
	return best, true
}

// terminal reports whether a lifecycle whose latest completion is e has
// ended for the harness: it succeeded, or failed beyond the retries.
func terminal(e lcEvent) bool {
	return e.ev.Status == events.StatusSucceeded || e.ev.Generation >= maxLifecycleRetries
}

// pending returns the inputs of want whose lifecycle has not ended.
func (t *lcTally) pending(want []int) []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for _, i := range want {
		if e, ok := last(t.byItem[i]); !ok || !terminal(e) {
			out = append(out, i)
		}
	}
	return out
}

// ---- the harness's side: retries ----------------------------------------------

// retrySent is one LifecycleRetry the harness published.
type retrySent struct {
	item       int
	lifecycle  string
	leg        string
	generation int // of the failed completion it answers
	at         time.Time
	err        error
}

// onLifecycleMsg follows IMSFLOW_OUT for the lifecycles: a failed
// completion of a generation below maxLifecycleRetries gets one
// LifecycleRetry per failed or refused leg, each with a Nats-Msg-Id of
// its own (lifecycle, leg, generation), so that a completion seen twice
// retries once.
func (h *harness) onLifecycleMsg(ctx context.Context, m jetstream.Msg) {
	le, i, ok := h.lc.addMsg(m)
	if !ok || le.ev.Status != events.StatusFailed || le.ev.Generation >= maxLifecycleRetries {
		return
	}
	key := fmt.Sprintf("%s:%d", le.ev.Lifecycle, le.ev.Generation)
	// Under h.mu, so that no retry starts once the count waits for them.
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retried[key] || h.counting {
		return
	}
	h.retried[key] = true
	for _, l := range le.ev.Legs {
		if l.State != lifecycle.LegFailed && l.State != lifecycle.LegRefused {
			continue
		}
		h.retrying++
		h.retryWG.Go(func() { h.retryLeg(ctx, i, le.ev, l.Name) })
	}
}

// waitRetries stops the retries and waits for those under way to be
// published (each within its bound), before the count.
func (h *harness) waitRetries() {
	h.mu.Lock()
	h.counting = true
	h.mu.Unlock()
	h.retryWG.Wait()
}

// retryLeg publishes one LifecycleRetry, retrying the publication for up
// to two minutes while the cluster is losing a node.
func (h *harness) retryLeg(ctx context.Context, i int, e events.LifecycleCompleted, leg string) {
	id := fmt.Sprintf("chaos:retry:%s:%s:%d", e.Lifecycle, leg, e.Generation)
	msg := nats.NewMsg(events.SubjectLifecycleRetry)
	msg.Data, _ = json.Marshal(events.LifecycleRetry{Lifecycle: e.Lifecycle, Leg: leg, RequestID: strings.ReplaceAll(id, ":", "-")})
	msg.Header.Set(jetstream.MsgIDHeader, id)
	_, err := publishRetry(ctx, h.js, msg, 2*time.Minute)
	h.mu.Lock()
	h.retries = append(h.retries, retrySent{item: i, lifecycle: e.Lifecycle, leg: leg, generation: e.Generation, at: time.Now(), err: err})
	h.retrying--
	h.mu.Unlock()
	if err != nil {
		h.sup.note("lifecycle retry of %s %s (%s) NOT published: %v", h.w.Items[i].ID, leg, e.Lifecycle, err)
		return
	}
	h.sup.note("lifecycle retry of %s %s (%s, after generation %d failed)", h.w.Items[i].ID, leg, e.Lifecycle, e.Generation)
}

// lifecycleWant is every published input with a lifecycle.
func (h *harness) lifecycleWant() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int
	for i, it := range h.w.Items {
		if h.published[i] && it.Kind == kindLifecycle {
			out = append(out, i)
		}
	}
	return out
}

// lifecyclesUnderWay counts the published inputs with a lifecycle whose
// import has succeeded (as far as the live read of IMSFLOW_OUT goes) and
// whose lifecycle has not ended: the lifecycles a fault hits.
func (h *harness) lifecyclesUnderWay() int {
	if h.lc == nil {
		return 0
	}
	want := h.lifecycleWant()
	open := map[int]bool{}
	for _, i := range h.lc.pending(want) {
		open[i] = true
	}
	h.live.mu.Lock()
	defer h.live.mu.Unlock()
	n := 0
	for _, i := range want {
		if o := h.live.byItem[i]; o != nil && open[i] && o.status[o.ids[0]] == "succeeded" {
			n++
		}
	}
	return n
}

// ---- the count ----------------------------------------------------------------

// lcReport is what the count found of the lifecycles.
type lcReport struct {
	items   []int // published inputs with a lifecycle
	byFam   map[string]int
	events  map[int][]lcEvent
	final   map[int]lcEvent // each input's latest completion
	notOK   []int           // no successful completion at the end
	why     map[int]string
	unended int // of notOK: no terminal completion (still running for the harness)
	// dupGens are the (lifecycle, generation) pairs with more than one
	// distinct completion; sameTwice the completions stored twice under
	// one Nats-Msg-Id.
	dupGens      []string
	dupGenItems  map[int]bool
	sameTwice    int
	unattributed []string
	undecodable  int
	// completions are the distinct completions; failedGens the failed
	// ones; byGen the lifecycles by the generation that succeeded.
	completions, failedGens int
	byGen                   map[int]int
	// The retries the harness published, those it could not, and those
	// the distribute function answered rejected.
	retries                    []retrySent
	retryFailed, retryRejected []string
	// The scripted copy failures: planned, reported by a failed
	// completion, and copies IMS failed by the rule (those no completion
	// reported were absorbed: the copy failed while its attempt was being
	// taken over, which copied again).
	scripted, scriptedSeen, scriptedKilled int
	unscripted                             []string // failed legs whose reason is not the scripted one
	// The emulator's side.
	copies, copiesFailed, shares int
	dupJobs                      []string
	dupJobItems                  map[int]bool
	declared                     map[int][]string // what IMS holds that differs from the declaration
	pointers                     []string         // the families' latest pointers that are missing or wrong
	pointerOf                    map[string]string
	repl                         []slotHeld
	removed                      int
	legEvents                    map[string]int
	lcItem                       map[string]int // lifecycle ID → input
	records                      map[int]*lifecycle.Record
	// stranded are the legs left running without a job long after
	// DISTRIBUTE_CLAIM_TTL: claimed, their submission's answer lost or
	// their replica killed, and never taken over; untracked the legs
	// running with a job that the poller does not track or has ended.
	stranded, untracked []string
	// unwoken are the lifecycles left running with legs ready to run and
	// none running; consumers is what the distribute function's consumers
	// still hold (pending, awaiting an ack): with none, nothing will ever
	// advance those lifecycles.
	unwoken   []string
	consumers string
	idle      bool
	faults    []string // the faults that hit running lifecycles
}

func (l *lcReport) ok() bool {
	return l == nil || len(l.notOK) == 0 && len(l.dupGens) == 0 && len(l.dupJobs) == 0 && len(l.declared) == 0 &&
		len(l.pointers) == 0 && len(l.repl) == 0 && len(l.unscripted) == 0
}

// lcSubmission is what a copy's or a member job's body says.
type lcSubmission struct {
	Region string   `json:"region"` // a cross-region copy's target
	Images []string `json:"images"` // a member job's images
}

// accountLifecycles counts the lifecycles: t is IMSFLOW_OUT read again
// from its start, subs the emulator's submissions, slots imsflow_slots.
// It returns the submissions it attributed to lifecycles (not strays).
func (h *harness) accountLifecycles(ctx context.Context, t *lcTally, subs []submission, slots map[string][]byte) (*lcReport, map[int]bool, error) {
	l := &lcReport{byFam: map[string]int{}, events: t.byItem, final: map[int]lcEvent{}, why: map[int]string{}, dupGenItems: map[int]bool{},
		dupJobItems: map[int]bool{}, declared: map[int][]string{}, pointerOf: map[string]string{}, byGen: map[int]int{},
		legEvents: t.legEvents, lcItem: map[string]int{}, records: map[int]*lifecycle.Record{}, retryRejected: t.retryRejected,
		unattributed: t.unattributed, undecodable: t.undecodable}
	l.items = h.lifecycleWant()
	if len(l.items) == 0 {
		return nil, nil, nil
	}
	items := h.w.Items
	nameItem := map[string]int{}
	for _, i := range l.items {
		it := items[i]
		l.byFam[it.Family]++
		nameItem[it.imageName()] = i
		if it.FailCopyTo != "" {
			l.scripted++
		}
	}
	h.mu.Lock()
	l.retries = append(l.retries, h.retries...)
	l.faults = append(l.faults, h.lcFaults...)
	h.mu.Unlock()
	for _, r := range l.retries {
		if r.err != nil {
			l.retryFailed = append(l.retryFailed, fmt.Sprintf("%s %s (generation %d): %v", items[r.item].ID, r.leg, r.generation, r.err))
		}
	}

	// The records and pointers.
	kv, err := kvEntries(ctx, h.js, bucketLifecycles)
	if err != nil {
		return nil, nil, err
	}
	pointers := map[string]*lifecycle.Pointer{}
	for k, v := range kv {
		switch {
		case strings.HasPrefix(k, "l."):
			var rec lifecycle.Record
			if json.Unmarshal(v, &rec) != nil || rec.Source == nil {
				continue
			}
			if i, ok := h.index.byIdentity[objIdentity(rec.Source.Bucket, rec.Source.Key, rec.Source.ETag)]; ok {
				l.records[i] = &rec
				l.lcItem[rec.ID] = i
			}
		case strings.HasPrefix(k, "latest."):
			var p lifecycle.Pointer
			if json.Unmarshal(v, &p) == nil {
				pointers[p.Family] = &p
			}
		}
	}

	// The completions: one per generation, the last a success.
	failedJobs := map[string]bool{} // job IDs of legs that failed (their IMS job failed)
	for i, evs := range l.events {
		gens := map[int][]string{}
		ids := map[string]bool{}
		for _, e := range evs {
			l.lcItem[e.ev.Lifecycle] = i
			if ids[e.msgID] {
				l.sameTwice++
				continue
			}
			ids[e.msgID] = true
			l.completions++
			gens[e.ev.Generation] = append(gens[e.ev.Generation], fmt.Sprintf("%s [%s]", e.ev.Status, e.msgID))
			if e.ev.Status != events.StatusFailed {
				continue
			}
			l.failedGens++
			for _, leg := range e.ev.Legs {
				if leg.State != lifecycle.LegFailed && leg.State != lifecycle.LegRefused {
					continue
				}
				if leg.JobID != "" {
					failedJobs[leg.JobID] = true
				}
				if strings.Contains(leg.Reason, copyFailReason) && leg.Name == "replicate:"+items[i].FailCopyTo {
					l.scriptedSeen++
					continue
				}
				l.unscripted = append(l.unscripted, fmt.Sprintf("%s %s (generation %d, attempt %d) %s: %s", items[i].ID, leg.Name, e.ev.Generation, leg.Attempt, leg.State, leg.Reason))
			}
		}
		for _, g := range sortedKeys(gens) {
			if len(gens[g]) > 1 {
				l.dupGens = append(l.dupGens, fmt.Sprintf("%s lifecycle %s generation %d: %s", items[i].ID, evs[0].ev.Lifecycle, g, strings.Join(gens[g], ", ")))
				l.dupGenItems[i] = true
			}
		}
	}
	sort.Strings(l.dupGens)
	sort.Strings(l.unscripted)
	for _, i := range l.items {
		e, ok := last(l.events[i])
		switch {
		case !ok:
			l.notOK = append(l.notOK, i)
			l.unended++
			l.why[i] = recordState(l.records[i], "no completion")
			continue
		case e.ev.Status != events.StatusSucceeded:
			l.notOK = append(l.notOK, i)
			if !terminal(e) {
				l.unended++
			}
			l.why[i] = recordState(l.records[i], fmt.Sprintf("latest completion: %s, generation %d", e.ev.Status, e.ev.Generation))
		}
		l.final[i] = e
		if e.ev.Status == events.StatusSucceeded {
			l.byGen[e.ev.Generation]++
		}
		for _, ids := range e.ev.Removed {
			l.removed += len(ids)
		}
	}

	// What the emulator holds in each region.
	images := map[string]map[string]imsapi.Image{} // region → ID → image
	imageAt := map[string][2]string{}              // image ID → its region, and the name of its input's image
	for _, rg := range lcRegions {
		var list []imsapi.Image
		if err := getJSON(ctx, h.emuURL+"/_emulator/regions/"+rg+"/images", &list); err != nil {
			return nil, nil, fmt.Errorf("emulator images of %s: %w", rg, err)
		}
		images[rg] = map[string]imsapi.Image{}
		for _, im := range list {
			images[rg][im.ID] = im
			imageAt[im.ID] = [2]string{rg, im.Name}
		}
	}
	attributed := map[int]bool{} // indexes into subs
	type target struct {
		item   int
		region string
	}
	copiesOK, sharesOK := map[target][]string{}, map[target][]string{}
	for n, s := range subs {
		var body lcSubmission
		_ = json.Unmarshal(s.Body, &body)
		switch s.Operation {
		case imsapi.OpCopyCrossRegion:
			i, ok := nameItem[s.Name]
			if !ok {
				continue
			}
			attributed[n] = true
			l.copies++
			if im, found := images[body.Region][s.ImageID]; failedJobs[s.JobID] || found && im.Status == imsapi.ImageKilled {
				l.copiesFailed++
				if items[i].FailCopyTo == body.Region {
					l.scriptedKilled++
				}
				continue
			}
			k := target{i, body.Region}
			copiesOK[k] = append(copiesOK[k], fmt.Sprintf("copy job %s → image %s at %s", s.JobID, s.ImageID, s.Time.Format("15:04:05.000")))
		case imsapi.OpAddMembers:
			if len(body.Images) == 0 {
				continue
			}
			at, known := imageAt[body.Images[0]]
			i, ok := nameItem[at[1]]
			if !known || !ok {
				continue
			}
			attributed[n] = true
			l.shares++
			if failedJobs[s.JobID] {
				continue
			}
			k := target{i, at[0]}
			sharesOK[k] = append(sharesOK[k], fmt.Sprintf("member job %s on %s at %s", s.JobID, body.Images[0], s.Time.Format("15:04:05.000")))
		}
	}
	for _, m := range []struct {
		what string
		jobs map[target][]string
	}{{"cross-region copies", copiesOK}, {"share jobs", sharesOK}} {
		for k, js := range m.jobs {
			if len(js) > 1 {
				l.dupJobs = append(l.dupJobs, fmt.Sprintf("%s %s to %s: %d successful %s: %s", items[k.item].ID, h.lcName(l, k.item), k.region, len(js), m.what, strings.Join(js, "; ")))
				l.dupJobItems[k.item] = true
			}
		}
	}
	sort.Strings(l.dupJobs)

	// Each succeeded lifecycle: its image in every region, active, tagged
	// and shared as declared, one copy per target region.
	for _, i := range l.items {
		e, ok := l.final[i]
		if !ok || e.ev.Status != events.StatusSucceeded {
			continue
		}
		it := items[i]
		bad := func(format string, a ...any) { l.declared[i] = append(l.declared[i], fmt.Sprintf(format, a...)) }
		if !maps.Equal(e.ev.Tags, lcTags) {
			bad("the event's tags are %v, want %v", e.ev.Tags, lcTags)
		}
		for _, rg := range lcRegions {
			id := e.ev.Images[rg]
			if id == "" {
				bad("%s: the event names no image", rg)
				continue
			}
			im, found := images[rg][id]
			switch {
			case !found:
				bad("%s: image %s is not in the region", rg, id)
				continue
			case im.Status != imsapi.ImageActive:
				bad("%s: image %s is %s", rg, id, im.Status)
			case im.Name != it.imageName():
				bad("%s: image %s is named %s, want %s", rg, id, im.Name, it.imageName())
			}
			for _, tag := range append(tagList(lcTags), lifecycle.FamilyTag+"."+it.Family) {
				if !slices.Contains(im.Tags, tag) {
					bad("%s: image %s lacks tag %s (tags %v)", rg, id, tag, im.Tags)
				}
			}
			if rg != regionHome {
				if n := len(copiesOK[target{i, rg}]); n != 1 {
					bad("%s: %d successful cross-region copies, want 1", rg, n)
				}
			}
			if want := lcShares[rg]; len(want) > 0 {
				var members []imsapi.ImageMember
				if err := getJSON(ctx, h.emuURL+"/_emulator/images/"+id+"/members", &members); err != nil {
					return nil, nil, fmt.Errorf("emulator members of %s: %w", id, err)
				}
				for _, p := range want {
					if !slices.ContainsFunc(members, func(m imsapi.ImageMember) bool { return m.MemberID == p }) {
						bad("%s: image %s is not shared with %s (members %d)", rg, id, p, len(members))
					}
				}
				if got := e.ev.SharedWith[rg]; !slices.Equal(got, want) {
					bad("%s: the event says shared with %v, want %v", rg, got, want)
				}
			}
		}
	}

	// The families' latest pointers: each names the newest lifecycle of
	// the family whose latest leg ran, with its images in every region.
	for _, f := range lcFamilies {
		var newest *lifecycle.Record
		for i, rec := range l.records {
			if lt := rec.Leg(lifecycle.KindLatest); items[i].Family == f && lt != nil && lt.State == lifecycle.LegSucceeded &&
				(newest == nil || rec.CreatedAt.After(newest.CreatedAt)) {
				newest = rec
			}
		}
		if newest == nil {
			continue
		}
		p := pointers[f]
		if p == nil {
			l.pointers = append(l.pointers, fmt.Sprintf("family %s: no pointer (%s %s)", f, bucketLifecycles, lifecycle.PointerKey(f)))
			continue
		}
		i, ok := l.lcItem[p.Lifecycle]
		l.pointerOf[f] = fmt.Sprintf("%s (%s)", p.Lifecycle, func() string {
			if ok {
				return items[i].ID
			}
			return "not of this run"
		}())
		switch {
		case !ok:
			l.pointers = append(l.pointers, fmt.Sprintf("family %s: the pointer names lifecycle %s, not one of this run's", f, p.Lifecycle))
		case p.Lifecycle != newest.ID:
			l.pointers = append(l.pointers, fmt.Sprintf("family %s: the pointer names %s (%s, imported %s), but %s (%s, imported %s) is the newest whose latest leg ran",
				f, p.Lifecycle, items[i].ID, p.ImportedAt.Format(time.RFC3339Nano), newest.ID, items[l.lcItem[newest.ID]].ID, newest.CreatedAt.Format(time.RFC3339Nano)))
		default:
			want := map[string]string{}
			for _, rg := range lcRegions {
				want[rg] = newest.ImageIn(rg)
			}
			if !maps.Equal(p.Images, want) || slices.Contains(slices.Collect(maps.Values(want)), "") {
				l.pointers = append(l.pointers, fmt.Sprintf("family %s: the pointer's images %v are not its lifecycle's %v", f, p.Images, want))
			}
		}
	}

	// Legs that cannot move: claimed without a job past the claim TTL, or
	// with a job the poller does not follow.
	jobs, err := kvEntries(ctx, h.js, bucketJobs)
	if err != nil {
		return nil, nil, err
	}
	accepted := map[string][]submission{} // "<image name>/<region>" → copy jobs IMS accepted
	for n, s := range subs {
		if attributed[n] && s.Operation == imsapi.OpCopyCrossRegion {
			var body lcSubmission
			_ = json.Unmarshal(s.Body, &body)
			accepted[s.Name+"/"+body.Region] = append(accepted[s.Name+"/"+body.Region], s)
		}
	}
	l.consumers, l.idle = h.distributeConsumers(ctx)
	for _, i := range sortedKeys(l.records) {
		rec := l.records[i]
		running := slices.ContainsFunc(rec.Legs, func(leg lifecycle.Leg) bool { return leg.State == lifecycle.LegRunning })
		if ready := rec.Ready(); rec.State == lifecycle.Running && len(ready) > 0 && !running {
			l.unwoken = append(l.unwoken, fmt.Sprintf("%s lifecycle %s generation %d, last written %s ago: ready %s", items[i].ID, rec.ID, rec.Generation,
				time.Since(rec.UpdatedAt).Round(time.Second), strings.Join(ready, ", ")))
		}
		for _, leg := range rec.Legs {
			if leg.State != lifecycle.LegRunning {
				continue
			}
			if leg.JobID == "" {
				if time.Since(leg.ClaimedAt) < distributeClaimTTL {
					continue
				}
				what := fmt.Sprintf("%s %s attempt %d: claimed %s ago, no job recorded", items[i].ID, leg.Name, leg.Attempt, time.Since(leg.ClaimedAt).Round(time.Second))
				if leg.Slot != "" {
					what += ", holds " + leg.Slot
				}
				if leg.Kind == lifecycle.KindReplicate {
					n := 0
					for _, s := range accepted[rec.ImageName+"/"+leg.Region] {
						if !s.Time.Before(leg.ClaimedAt.Add(-time.Second)) {
							n++
						}
					}
					what += fmt.Sprintf("; copy jobs IMS accepted for it since the claim: %d", n)
				}
				if slices.ContainsFunc(l.retryRejected, func(r string) bool { return strings.HasPrefix(r, "lifecycle "+rec.ID+" leg "+leg.Name+":") }) {
					what += "; the harness's retry of it was answered rejected (the leg was running), which dropped the message that drove it"
				}
				l.stranded = append(l.stranded, what)
				continue
			}
			st, tracked := jobs["j."+leg.JobID]
			var js jobState
			_ = json.Unmarshal(st, &js)
			switch {
			case !tracked:
				l.untracked = append(l.untracked, fmt.Sprintf("%s %s attempt %d: job %s, which the poller does not track (hand-off lost)", items[i].ID, leg.Name, leg.Attempt, leg.JobID))
			case js.Published:
				l.untracked = append(l.untracked, fmt.Sprintf("%s %s attempt %d: job %s, whose end the poller published (%s); the leg did not settle", items[i].ID, leg.Name, leg.Attempt, leg.JobID, js.Status))
			}
		}
	}

	// Replication slots left.
	for k, v := range slots {
		if !strings.HasPrefix(k, "repl.") {
			continue
		}
		owner, _, _ := strings.Cut(string(v), "/")
		i, ok := l.lcItem[owner]
		if !ok {
			i = -1
		}
		l.repl = append(l.repl, slotHeld{key: k + " = " + string(v), item: i})
	}
	sort.Slice(l.repl, func(a, b int) bool { return l.repl[a].key < l.repl[b].key })
	return l, attributed, nil
}

// lcName is the input's lifecycle ID, for evidence.
func (h *harness) lcName(l *lcReport, i int) string {
	for id, j := range l.lcItem {
		if j == i {
			return "lifecycle " + id
		}
	}
	return "(no lifecycle)"
}

// recordState says where a lifecycle's record stands: its state and the
// legs that did not succeed.
func recordState(rec *lifecycle.Record, what string) string {
	if rec == nil {
		return what + "; no record in " + bucketLifecycles + " (the distribute function never started it)"
	}
	var legs []string
	for _, l := range rec.Legs {
		if l.State == lifecycle.LegSucceeded {
			continue
		}
		s := fmt.Sprintf("%s %s (attempt %d", l.Name, l.State, l.Attempt)
		if l.State == lifecycle.LegRunning {
			if l.JobID == "" {
				s += ", no job recorded"
			} else {
				s += ", job " + l.JobID
			}
			if !l.ClaimedAt.IsZero() {
				s += fmt.Sprintf(", claimed %s ago", time.Since(l.ClaimedAt).Round(time.Second))
			}
			if l.Slot != "" {
				s += ", holds " + l.Slot
			}
		}
		if l.Reason != "" {
			s += ": " + clip(l.Reason, 120)
		}
		legs = append(legs, s+")")
	}
	return fmt.Sprintf("%s; record %s generation %d, last written %s ago; legs not succeeded: %s", what, rec.State, rec.Generation,
		time.Since(rec.UpdatedAt).Round(time.Second), strings.Join(legs, ", "))
}

func tagList(tags map[string]string) []string {
	var out []string
	for k, v := range tags {
		out = append(out, k+"."+v)
	}
	sort.Strings(out)
	return out
}

// bucketLifecycles is imsflow's bucket of lifecycle records and pointers.
const bucketLifecycles = "imsflow_lifecycles"

// ---- the table ----------------------------------------------------------------

// lcRows are the lifecycles' goals in the table.
func (l *lcReport) rows(row func(name string, v int, ok bool)) {
	if l == nil {
		return
	}
	row("lifecycles not succeeded (after retries)", len(l.notOK), len(l.notOK) == 0)
	row("duplicate lifecycle completions (per generation)", len(l.dupGens), len(l.dupGens) == 0)
	row("duplicate lifecycle IMS jobs (copies, shares)", len(l.dupJobs), len(l.dupJobs) == 0)
	row("lifecycles not copied/tagged/shared as declared", len(l.declared), len(l.declared) == 0)
	row("family latest pointers missing or wrong", len(l.pointers), len(l.pointers) == 0)
	row("replication slots held at the end (repl.*)", len(l.repl), len(l.repl) == 0)
	row("lifecycle legs failed, not scripted", len(l.unscripted), len(l.unscripted) == 0)
}

// info is the lifecycles' part of the second table.
func (l *lcReport) info(tw io.Writer) {
	if l == nil {
		return
	}
	var fams []string
	for _, f := range lcFamilies {
		fams = append(fams, fmt.Sprintf("%s %d", f, l.byFam[f]))
	}
	var gens []string
	for _, g := range sortedKeys(l.byGen) {
		gens = append(gens, fmt.Sprintf("generation %d: %d", g, l.byGen[g]))
	}
	if len(gens) == 0 {
		gens = []string{"none"}
	}
	fmt.Fprintf(tw, "lifecycles\t%d\tunder 2 rules (%s): copies to %s and %s, shared in 2 regions, tagged, keep_last %d; %d with their first copy to %s failed by IMS (failure rule, once); succeeded at %s\t\n",
		len(l.items), strings.Join(fams, ", "), regionAPSE3, regionEUW, lcKeepLast, l.scripted, copyFailRegion, strings.Join(gens, ", "))
	var legs []string
	for _, k := range sortedKeysByValue(l.legEvents) {
		legs = append(legs, fmt.Sprintf("%s %d", k, l.legEvents[k]))
	}
	fmt.Fprintf(tw, "lifecycle completions\t%d\t%d failed generations (%d reported the scripted copy failure) → %d retries published by the harness (%d could not be); the legs' job events (imsflow.out.distribute.*): %s\t\n",
		l.completions, l.failedGens, l.scriptedSeen, len(l.retries), len(l.retryFailed), strings.Join(legs, ", "))
	fmt.Fprintf(tw, "lifecycle IMS jobs\t%d\t%d cross-region copies (%d failed, of which %d scripted; %d scripted failures absorbed by a takeover), %d share jobs; retention removed %d images\t\n",
		l.copies+l.shares, l.copies, l.copiesFailed, l.scriptedKilled, max(0, l.scriptedKilled-l.scriptedSeen), l.shares, l.removed)
	var ptr []string
	for _, f := range lcFamilies {
		if p, ok := l.pointerOf[f]; ok {
			ptr = append(ptr, f+" → "+p)
		}
	}
	if len(ptr) > 0 {
		fmt.Fprintf(tw, "family latest pointers\t%d\t%s\t\n", len(ptr), strings.Join(ptr, "; "))
	}
	if len(l.faults) > 0 {
		fmt.Fprintf(tw, "faults while lifecycles ran\t%d\t%s\t\n", len(l.faults), strings.Join(l.faults, "; "))
	}
	if len(l.stranded) > 0 || len(l.untracked) > 0 || len(l.unwoken) > 0 {
		fmt.Fprintf(tw, "lifecycles that cannot move\t%d\t%d legs claimed with no job past DISTRIBUTE_CLAIM_TTL (%s) and never taken over; %d with a job the poller does not follow; %d lifecycles with ready legs and none running; the distribute consumers hold %s (below)\t\n",
			len(l.stranded)+len(l.untracked)+len(l.unwoken), len(l.stranded), distributeClaimTTL, len(l.untracked), len(l.unwoken), l.consumers)
	}
	if len(l.retryRejected) > 0 {
		fmt.Fprintf(tw, "retry requests answered rejected\t%d\tthe harness's LifecycleRetry redelivered after its first delivery took effect (the leg already running or succeeded), then terminated with a rejected event (not a goal; below)\t\n",
			len(l.retryRejected))
	}
	if l.sameTwice > 0 || len(l.unattributed) > 0 || l.undecodable > 0 {
		fmt.Fprintf(tw, "other lifecycle events\t%d\tstored twice under one Nats-Msg-Id %d, naming no input %d, undecodable %d\t\n",
			l.sameTwice+len(l.unattributed)+l.undecodable, l.sameTwice, len(l.unattributed), l.undecodable)
	}
}

// missed names the lifecycles' goals missed, for the last line.
func (l *lcReport) missed() []string {
	if l == nil {
		return nil
	}
	var out []string
	for _, g := range []struct {
		name string
		bad  bool
	}{{"lifecycles", len(l.notOK) > 0}, {"lc_dup_completions", len(l.dupGens) > 0}, {"lc_dup_jobs", len(l.dupJobs) > 0},
		{"lc_declared", len(l.declared) > 0}, {"lc_latest", len(l.pointers) > 0}, {"repl_slots", len(l.repl) > 0},
		{"lc_unscripted", len(l.unscripted) > 0}} {
		if g.bad {
			out = append(out, g.name)
		}
	}
	return out
}

// summary is the lifecycles' part of the last line.
func (l *lcReport) summary() string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf(" lifecycles=%d lc_failed=%d lc_dup_completions=%d lc_dup_jobs=%d repl_slots=%d", len(l.items), len(l.notOK), len(l.dupGens), len(l.dupJobs), len(l.repl))
}

// evidence prints, for each lifecycle goal missed, examples and the log
// lines that name them (by input ID and lifecycle ID).
func (l *lcReport) evidence(h *harness, r *report, out io.Writer) {
	if l == nil {
		return
	}
	const examples = 5
	items := r.items
	tokens := map[string]int{}
	addToken := func(i int) {
		if i < 0 {
			return
		}
		tokens[items[i].ID] = i
		for id, j := range l.lcItem {
			if j == i {
				tokens[id] = i
			}
		}
		// The imported image's ID: the distribute function's naks name
		// it in the request's path.
		if rec := l.records[i]; rec != nil && rec.ImageID != "" {
			tokens[rec.ImageID] = i
		}
	}
	var show []int
	pick := func(is []int) {
		for _, i := range is[:min(len(is), examples)] {
			addToken(i)
			show = append(show, i)
		}
	}
	pick(l.notOK)
	pick(sortedKeys(l.dupGenItems))
	pick(sortedKeys(l.dupJobItems))
	pick(sortedKeys(l.declared))
	for _, s := range l.repl[:min(len(l.repl), examples)] {
		addToken(s.item)
	}
	grep := grepLogs(h.logDir, tokens, 3)
	logs := func(i int) {
		if len(grep[i]) == 0 {
			fmt.Fprintf(out, "      (no log line of the functions names it)\n")
		}
		for _, g := range grep[i] {
			fmt.Fprintf(out, "      %s\n", g)
		}
	}
	describe := func(i int) string {
		it := items[i]
		return fmt.Sprintf("%s %s (%d GB, family %s, image %s)", it.ID, it.Key, it.Size>>30, it.Family, it.imageName())
	}
	section := func(title string) { fmt.Fprintf(out, "\n%s\n", title) }
	if len(l.notOK) > 0 {
		section(fmt.Sprintf("LIFECYCLES NOT SUCCEEDED: %d of %d (%d without an end the harness waits for: no completion, or failed with a retry under way); the first %d:",
			len(l.notOK), len(l.items), l.unended, min(len(l.notOK), examples)))
		states := map[string]int{}
		for _, i := range l.notOK {
			states[normalize(clip(l.why[i], 160))]++
		}
		for _, k := range sortedKeysByValue(states) {
			fmt.Fprintf(out, "  %4d × %s\n", states[k], k)
		}
		if r.stuck != "" {
			fmt.Fprintf(out, "  The harness stopped waiting before the drain bound: %s.\n", r.stuck)
		}
		for _, i := range l.notOK[:min(len(l.notOK), examples)] {
			fmt.Fprintf(out, "  - %s, %s: %s\n", describe(i), h.lcName(l, i), l.why[i])
			logs(i)
		}
	}
	if len(l.stranded) > 0 {
		section(fmt.Sprintf("LEGS CLAIMED AND NEVER TAKEN OVER: %d legs of %d lifecycles are running without a job, claimed long past DISTRIBUTE_CLAIM_TTL (%s).",
			len(l.stranded), l.strandedLifecycles(), distributeClaimTTL))
		fmt.Fprintf(out, "  A leg keeps its claim (and its replication slot) when its submission's answer is lost (a 5xx or a dropped connection: it may\n"+
			"  have been accepted) or its replica dies; only an advance of the lifecycle at least DISTRIBUTE_CLAIM_TTL after the claim takes it\n"+
			"  over. The message's own redelivery comes sooner (the runner's backoff from 2s; DISTRIBUTE_ACK_WAIT %s < the claim TTL) and\n"+
			"  finds nothing to do; unless another event of the lifecycle comes later, nothing ever looks at the leg again.\n", distributeAckWait)
		for _, u := range l.stranded[:min(len(l.stranded), 2*examples)] {
			fmt.Fprintf(out, "  - %s\n", u)
		}
	}
	if len(l.unwoken) > 0 {
		section(fmt.Sprintf("READY LEGS NOBODY RUNS: %d lifecycles are running with legs whose predecessors all succeeded, and no leg running:", len(l.unwoken)))
		if l.idle {
			fmt.Fprintf(out, "  The distribute function's consumers hold no message (%s): nothing will ever advance them. Their last\n"+
				"  message was acknowledged although a leg could run: the delivery that advanced them decided \"nothing to run\" from a\n"+
				"  read of the record older than its last write (lifecycle.Store.Load is a KV direct get, which any replica answers, a\n"+
				"  lagging one with an older revision), or did not look again after a concurrent change.\n", l.consumers)
		} else {
			fmt.Fprintf(out, "  The distribute function's consumers still hold messages (%s): some of these lifecycles may be waiting\n"+
				"  out a delay (a replication slot, IMS's throttling) and still move; those whose last write is minutes old do not.\n", l.consumers)
		}
		for _, u := range l.unwoken[:min(len(l.unwoken), 2*examples)] {
			fmt.Fprintf(out, "  - %s\n", u)
		}
	}
	if len(l.untracked) > 0 {
		section(fmt.Sprintf("LEGS WITH A JOB THE POLLER DOES NOT FOLLOW: %d:", len(l.untracked)))
		for _, u := range l.untracked[:min(len(l.untracked), 2*examples)] {
			fmt.Fprintf(out, "  - %s\n", u)
		}
	}
	if len(l.dupGens) > 0 {
		section(fmt.Sprintf("DUPLICATE LIFECYCLE COMPLETIONS: %d generations ended more than once:", len(l.dupGens)))
		for _, d := range l.dupGens[:min(len(l.dupGens), examples)] {
			fmt.Fprintf(out, "  - %s\n", d)
		}
	}
	if len(l.dupJobs) > 0 {
		section(fmt.Sprintf("DUPLICATE LIFECYCLE IMS JOBS: %d (input, region) with more than one successful job (GET /_emulator/submissions, the copies' images in the target region):", len(l.dupJobs)))
		for _, d := range l.dupJobs[:min(len(l.dupJobs), examples)] {
			fmt.Fprintf(out, "  - %s\n", d)
		}
		for _, i := range sortedKeys(l.dupJobItems)[:min(len(l.dupJobItems), examples)] {
			fmt.Fprintf(out, "    %s:\n", items[i].ID)
			logs(i)
		}
	}
	if len(l.declared) > 0 {
		section(fmt.Sprintf("NOT AS DECLARED: %d succeeded lifecycles whose images differ from the rule (GET /_emulator/regions/{r}/images, /_emulator/images/{id}/members):", len(l.declared)))
		for _, i := range sortedKeys(l.declared)[:min(len(l.declared), examples)] {
			fmt.Fprintf(out, "  - %s: %s\n", describe(i), strings.Join(l.declared[i], "; "))
		}
	}
	if len(l.pointers) > 0 {
		section("FAMILY LATEST POINTERS (" + bucketLifecycles + " latest.<family>):")
		for _, p := range l.pointers {
			fmt.Fprintf(out, "  - %s\n", p)
		}
	}
	if len(l.repl) > 0 {
		section(fmt.Sprintf("REPLICATION SLOTS HELD: %d keys repl.* left in %s (DISTRIBUTE_SLOT_TTL frees them only after 12h; at 5, no cross-region copy starts):", len(l.repl), bucketSlots))
		for _, s := range l.repl[:min(len(l.repl), examples)] {
			if s.item < 0 {
				fmt.Fprintf(out, "  - %s: a lifecycle not of this run\n", s.key)
				continue
			}
			fmt.Fprintf(out, "  - %s: %s; %s\n", s.key, describe(s.item), recordState(l.records[s.item], "its lifecycle"))
			if note := slotOwnerNote(s.key, l.records[s.item]); note != "" {
				fmt.Fprintf(out, "    %s\n", note)
			}
			logs(s.item)
		}
	}
	if len(l.unscripted) > 0 {
		section(fmt.Sprintf("LIFECYCLE LEGS FAILED WITHOUT A SCRIPTED CAUSE: %d (the harness retried them too):", len(l.unscripted)))
		for _, u := range l.unscripted[:min(len(l.unscripted), 2*examples)] {
			fmt.Fprintf(out, "  - %s\n", u)
		}
	}
	if len(l.retryRejected) > 0 {
		section(fmt.Sprintf("RETRY REQUESTS ANSWERED REJECTED: %d, although each had taken effect (not a goal):", len(l.retryRejected)))
		for _, u := range l.retryRejected[:min(len(l.retryRejected), examples)] {
			fmt.Fprintf(out, "  - %s\n", u)
		}
	}
	if len(l.retryFailed) > 0 {
		section("LIFECYCLE RETRIES NOT PUBLISHED:")
		for _, u := range l.retryFailed[:min(len(l.retryFailed), examples)] {
			fmt.Fprintf(out, "  - %s\n", u)
		}
	}
	if len(l.unattributed) > 0 {
		section("LIFECYCLE COMPLETIONS NAMING NO INPUT OF THE RUN:")
		for _, u := range l.unattributed[:min(len(l.unattributed), examples)] {
			fmt.Fprintf(out, "  - %s\n", u)
		}
	}
}

// writeArtifacts leaves lifecycles.tsv in the run directory: one line per
// lifecycle with its completions, copies and verdict.
func (l *lcReport) writeArtifacts(h *harness) error {
	if l == nil {
		return nil
	}
	lines := []string{"id\tfamily\tkey\tfail_copy_to\tlifecycle\tcompletions\tfinal_images\tverdict"}
	for _, i := range l.items {
		it := h.w.Items[i]
		var cs []string
		for _, e := range l.events[i] {
			cs = append(cs, fmt.Sprintf("%s/%d[%s]", e.ev.Status, e.ev.Generation, e.msgID))
		}
		imgs := ""
		if e, ok := l.final[i]; ok {
			var parts []string
			for _, rg := range lcRegions {
				parts = append(parts, rg+"="+e.ev.Images[rg])
			}
			imgs = strings.Join(parts, ",")
		}
		verdict := "ok"
		switch {
		case slices.Contains(l.notOK, i):
			verdict = "NOT SUCCEEDED: " + l.why[i]
		case l.dupGenItems[i]:
			verdict = "DUPLICATE COMPLETIONS"
		case l.dupJobItems[i]:
			verdict = "DUPLICATE JOBS"
		case len(l.declared[i]) > 0:
			verdict = "NOT AS DECLARED: " + strings.Join(l.declared[i], "; ")
		}
		lines = append(lines, strings.Join([]string{it.ID, it.Family, it.Key, it.FailCopyTo, strings.TrimPrefix(h.lcName(l, i), "lifecycle "),
			strings.Join(cs, " "), imgs, verdict}, "\t"))
	}
	return writeLines(filepath.Join(h.dir, "lifecycles.tsv"), lines)
}

// lifecycleFiles writes the rules file and the emulator's accounts into
// the run directory, and returns their paths.
func (h *harness) lifecycleFiles() (rules, accounts string, err error) {
	rules, accounts = filepath.Join(h.dir, "rules.json"), filepath.Join(h.dir, "accounts.json")
	err = errors.Join(os.WriteFile(rules, lifecycleRules(), 0o644), os.WriteFile(accounts, emulatorAccounts(), 0o644))
	return rules, accounts, err
}

// lcHit notes a fault that hit lifecycles under way, for the table, and
// returns what the fault's log line says of them.
func (h *harness) lcHit(fault string) string {
	n := h.lifecyclesUnderWay()
	if n == 0 {
		return ""
	}
	h.mu.Lock()
	h.lcFaults = append(h.lcFaults, fmt.Sprintf("%s (+%.0fs, %d under way)", fault, time.Since(h.feedStart).Seconds(), n))
	h.mu.Unlock()
	return fmt.Sprintf("; %d lifecycles under way", n)
}

// lifecycles maps the lifecycle IDs of the run to their inputs (nil
// without lifecycles).
func (l *lcReport) lifecycles() map[string]int {
	if l == nil {
		return nil
	}
	return l.lcItem
}

// strandedLifecycles counts the lifecycles with a stranded leg.
func (l *lcReport) strandedLifecycles() int {
	ids := map[string]bool{}
	for _, s := range l.stranded {
		ids[strings.Fields(s)[0]] = true
	}
	return len(ids)
}

// slotOwnerNote compares a replication slot left held ("repl.N = <id>/<leg>/<attempt>")
// with what its leg's record says: a leg that settled, or that records
// another slot, no longer frees this one.
func slotOwnerNote(held string, rec *lifecycle.Record) string {
	key, owner, ok := strings.Cut(held, " = ")
	parts := strings.Split(owner, "/")
	if !ok || rec == nil || len(parts) != 3 {
		return ""
	}
	leg := rec.Leg(parts[1])
	if leg == nil {
		return ""
	}
	switch {
	case leg.Slot != "" && leg.Slot != key:
		return fmt.Sprintf("its leg %s (%s, attempt %d) records slot %s: this one was taken by an earlier run of attempt %s and nothing frees it", leg.Name, leg.State, leg.Attempt, leg.Slot, parts[2])
	case leg.State != lifecycle.LegRunning:
		return fmt.Sprintf("its leg %s is %s (attempt %d): nothing frees this slot", leg.Name, leg.State, leg.Attempt)
	}
	return ""
}

// distributeConsumers says what the distribute function's two consumers
// still hold: messages not yet delivered, and delivered but not
// acknowledged (among them those waiting out a delay); idle when both
// hold none.
func (h *harness) distributeConsumers(ctx context.Context) (string, bool) {
	var parts []string
	idle := true
	for _, c := range []struct{ stream, name string }{{streamOut, "distribute"}, {streamIn, "distribute-retry"}} {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := h.js.Consumer(cctx, c.stream, c.name)
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = cons.Info(cctx)
		}
		cancel()
		if err != nil {
			idle = false
			parts = append(parts, fmt.Sprintf("%s: unknown (%v)", c.name, err))
			continue
		}
		if info.NumPending+uint64(info.NumAckPending) > 0 {
			idle = false
		}
		parts = append(parts, fmt.Sprintf("%s: %d pending, %d awaiting an ack", c.name, info.NumPending, info.NumAckPending))
	}
	return strings.Join(parts, "; "), idle
}

// stuckWatch decides, during the drain, that the lifecycles still open
// can never move: the distribute function acts only on the messages of
// its two consumers, and none can come any more when both hold none, no
// leg's job is tracked by the poller (whose end it would publish), no
// import or export is open (whose success would start a lifecycle), and
// no retry of the harness is being published; twice in a row, 10 s apart,
// with nothing ended in between.
type stuckWatch struct {
	last    time.Time
	seen    int    // consecutive checks that found nothing able to move
	ended   int    // lifecycles ended at the last check
	reason  string // what the last check found
	stopped bool
}

func (h *harness) lifecyclesStuck(ctx context.Context, w *stuckWatch, wantLC []int, inputsOpen int) bool {
	if time.Since(w.last) < 10*time.Second {
		return false
	}
	w.last = time.Now()
	ended := len(wantLC) - len(h.lc.pending(wantLC))
	h.mu.Lock()
	retrying := h.retrying
	h.mu.Unlock()
	busy := func(why string) bool {
		w.seen, w.ended, w.reason = 0, ended, why
		return false
	}
	switch {
	case inputsOpen > 0:
		return busy("inputs open")
	case retrying > 0:
		return busy("retries being published")
	case ended != w.ended && w.seen > 0:
		return busy("lifecycles ending")
	}
	cons, idle := h.distributeConsumers(ctx)
	if !idle {
		return busy(cons)
	}
	jobs, err := kvEntries(ctx, h.js, bucketJobs)
	if err != nil {
		return busy(err.Error())
	}
	for _, v := range jobs {
		var st struct {
			Handoff struct {
				Kind events.Kind `json:"kind"`
			} `json:"handoff"`
			Published bool `json:"published"`
		}
		if json.Unmarshal(v, &st) == nil && st.Handoff.Kind == events.KindDistribute && !st.Published {
			return busy("a leg's job tracked by the poller")
		}
	}
	w.seen++
	w.ended = ended
	w.reason = cons + "; no leg's job tracked by the poller; no input open; no retry in flight"
	w.stopped = w.seen >= 2
	return w.stopped
}
