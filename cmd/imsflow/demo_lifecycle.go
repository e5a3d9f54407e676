package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// The demo's image lifecycle: one upload under demoRules' rule "web"
// reaches the emulator's three regions and two of the other account's
// projects, tagged; the cross-region copy to demoFailRegion fails once
// (an emulator failure rule: a congested replication link), is retried
// alone as "imsflow lifecycle retry" does it, and the lifecycle then
// succeeds.
const (
	demoLifecycleRule = "web"
	demoLifecycleKey  = "web/base-7.zvhd2"
	demoLifecycleSize = 12 * gib
	demoFailRegion    = "eu-west-101"
	demoFailLeg       = lifecycle.KindReplicate + ":" + demoFailRegion
	demoFailCode      = "IMS.0999"
	demoFailReason    = "the replication link is congested (scripted by the demo)"
)

// demoLifecycleJSON is the rule's lifecycle: shared with the other
// account's project in the home region and in ap-southeast-3, copied to
// the two other regions, tagged, the family's newest 3 images kept.
var demoLifecycleJSON = fmt.Sprintf(`{"family": "web-base",
     "share": {"projects": [%q]},
     "regions": [
       {"region": "ap-southeast-3", "agency_name": "ims_admin_agency", "share": {"projects": [%q]}},
       {"region": %q, "agency_name": "ims_admin_agency"}],
     "tags": {"channel": "stable"},
     "keep_last": 3}`, devTeamProjects[devHome], devTeamProjects["ap-southeast-3"], demoFailRegion)

// demoLifecycle follows the demo's lifecycle.
type demoLifecycle struct {
	decl  lifecycle.Declaration
	home  string
	js    jetstream.JetStream
	emu   *imsemu.Server
	store *lifecycle.Store
	ends  chan *nats.Msg // imsflow.out.lifecycle.*
	sub   *nats.Subscription
	start time.Time
}

// newDemoLifecycle prepares the lifecycle on st: the uploaded object, the
// failure of the copy to demoFailRegion, and a subscription to the
// lifecycles' ends, before anything is sent.
func newDemoLifecycle(ctx context.Context, st *stack, rules string) (*demoLifecycle, error) {
	decl, err := demoDeclaration(rules)
	if err != nil {
		return nil, err
	}
	kv, err := st.js.KeyValue(ctx, runner.BucketLifecycles)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", runner.BucketLifecycles, err)
	}
	d := &demoLifecycle{decl: decl, home: devHome, js: st.js, emu: st.emu,
		store: &lifecycle.Store{KV: kv, Now: time.Now}, ends: make(chan *nats.Msg, 64)}
	if err := st.emu.AddFailureRule(imsemu.FailureRule{Region: demoFailRegion, Operation: imsemu.OpCopyCrossRegion, Times: 1,
		ErrorCode: demoFailCode, FailReason: demoFailReason}); err != nil {
		return nil, err
	}
	st.emu.PutObject(imsemu.Object{Bucket: "images", Key: demoLifecycleKey, Size: demoLifecycleSize})
	if d.sub, err = st.nc.ChanSubscribe(events.SubjectLifecyclePrefix+"*", d.ends); err != nil {
		return nil, err
	}
	return d, nil
}

// demoDeclaration is the lifecycle of the rule demoLifecycleRule in rules.
func demoDeclaration(rules string) (lifecycle.Declaration, error) {
	rs, err := importer.ParseRules([]byte(rules))
	if err != nil {
		return lifecycle.Declaration{}, fmt.Errorf("the demo's rules: %w", err)
	}
	i := slices.IndexFunc(rs.Rules, func(r importer.Rule) bool { return r.Name == demoLifecycleRule })
	if i < 0 || !rs.Rules[i].Lifecycle.Active() {
		return lifecycle.Declaration{}, fmt.Errorf("the demo's rules have no rule %s with a lifecycle", demoLifecycleRule)
	}
	return *rs.Rules[i].Lifecycle, nil
}

// close ends the subscription.
func (d *demoLifecycle) close() { _ = d.sub.Unsubscribe() }

// send publishes the upload, as MinIO would.
func (d *demoLifecycle) send(ctx context.Context) error {
	d.start = time.Now()
	_, err := d.js.Publish(ctx, events.SubjectObjectsPrefix+"minio", s3Event("images", demoLifecycleKey, demoLifecycleSize, nil))
	return err
}

// intro is what the demo says of the lifecycle when it sends the upload.
func (d *demoLifecycle) intro() string {
	projects := 0
	for _, p := range d.regionShares() {
		projects += len(p)
	}
	return fmt.Sprintf("imsflow demo: and images:%s, whose rule %s copies it to %d more regions, shares it with %d projects "+
		"and tags it %s; the copy to %s is made to fail once", demoLifecycleKey, demoLifecycleRule, len(d.decl.Regions),
		projects, tagList(d.decl.Tags), demoFailRegion)
}

// lifecycleRun is what the demo saw of its lifecycle: the first end, the
// retry of the failed leg, the second end, and then the record and what
// IMS holds in each region.
type lifecycleRun struct {
	first, second              *events.LifecycleCompleted
	firstAt, retryAt, secondAt time.Duration
	retried                    bool
	retryCode                  int
	retryOut                   string // what "imsflow lifecycle retry" printed
	record                     *lifecycle.Record
	regions                    []regionView
	err                        error // what cut the run short
}

// regionView is the lifecycle's image in one region as IMS has it.
type regionView struct {
	region  string
	imageID string // "" when the lifecycle names none there
	found   bool   // IMS has the image in the region
	status  string
	tags    []string // as IMS lists them: key.value
	members []string // the IDs it is shared with
}

// run waits for the lifecycle's first end, retries the leg made to fail
// as "imsflow lifecycle retry" does, waits for the second end, and reads
// the record and each region's image; it stops short when ctx ends.
func (d *demoLifecycle) run(ctx context.Context) *lifecycleRun {
	r := &lifecycleRun{}
	if r.first, r.err = d.next(ctx, "", 0); r.err != nil {
		return r
	}
	r.firstAt = time.Since(d.start)
	if r.first.Status != events.StatusFailed || !slices.ContainsFunc(r.first.Legs, func(l events.LifecycleLeg) bool {
		return l.Name == demoFailLeg && l.State == lifecycle.LegFailed
	}) {
		return r // nothing to retry: the checks say what went wrong
	}
	var out bytes.Buffer
	r.retried, r.retryAt = true, time.Since(d.start)
	r.retryCode = retryLeg(ctx, d.js, d.store, r.first.Lifecycle, demoFailLeg, &out, &out)
	r.retryOut = strings.TrimSpace(out.String())
	if r.retryCode != exitOK {
		return r
	}
	if r.second, r.err = d.next(ctx, r.first.Lifecycle, r.first.Generation+1); r.err != nil {
		return r
	}
	r.secondAt = time.Since(d.start)
	if r.record, _, r.err = d.store.Load(ctx, r.second.Lifecycle); r.err != nil {
		return r
	}
	for _, region := range r.record.Regions() {
		v := regionView{region: region, imageID: r.second.Images[region]}
		for _, im := range d.emu.RegionImages(region) {
			if im.ID == v.imageID && v.imageID != "" {
				v.found, v.status, v.tags = true, im.Status, im.Tags
			}
		}
		if v.found {
			for _, m := range d.emu.ImageMembers(v.imageID) {
				v.members = append(v.members, m.MemberID)
			}
			slices.Sort(v.members)
		}
		r.regions = append(r.regions, v)
	}
	return r
}

// next returns the next end of the demo's upload's lifecycle (of
// lifecycle id, if not "") of generation gen or later: an earlier
// generation's end seen again is skipped.
func (d *demoLifecycle) next(ctx context.Context, id string, gen int) (*events.LifecycleCompleted, error) {
	for {
		select {
		case m := <-d.ends:
			var e events.LifecycleCompleted
			if json.Unmarshal(m.Data, &e) != nil || e.Source == nil || e.Source.Key != demoLifecycleKey ||
				id != "" && e.Lifecycle != id || e.Generation < gen {
				continue
			}
			return &e, nil
		case <-ctx.Done():
			what := "end"
			if gen > 0 {
				what = fmt.Sprintf("end of generation %d", gen)
			}
			return nil, fmt.Errorf("no %s of the lifecycle of images:%s before the demo's time ran out", what, demoLifecycleKey)
		}
	}
}

// regionShares are the projects the declaration shares the image with, by
// region (the regions that share with someone).
func (d *demoLifecycle) regionShares() map[string][]string {
	out := map[string][]string{}
	if p := d.decl.Share.Projects; len(p) > 0 {
		out[d.home] = slices.Sorted(slices.Values(p))
	}
	for _, r := range d.decl.Regions {
		if p := r.Share.Projects; len(p) > 0 {
			out[r.Region] = slices.Sorted(slices.Values(p))
		}
	}
	return out
}

// problems are what did not go as the demo expects: the first end failed
// on the leg made to fail and on it alone, that leg ran again alone
// (attempt 2) and the second end succeeded, and every region has its
// image, active, with the members and tags declared.
func (d *demoLifecycle) problems(r *lifecycleRun) []string {
	var out []string
	bad := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	if r.first == nil {
		return []string{r.err.Error()}
	}
	var failed []string
	for _, l := range r.first.Legs {
		if l.State == lifecycle.LegFailed || l.State == lifecycle.LegRefused {
			failed = append(failed, strings.TrimSpace(l.Name+" "+l.State+" "+l.ErrorCode))
		}
	}
	if r.first.Status != events.StatusFailed || r.first.Generation != 0 {
		bad("first end: want failed (generation 0), got %s (generation %d)", r.first.Status, r.first.Generation)
	}
	if want := demoFailLeg + " " + lifecycle.LegFailed + " " + demoFailCode; !slices.Equal(failed, []string{want}) {
		bad("first end: want exactly %s, got %s", want, orNone(failed))
	}
	switch {
	case !r.retried:
		return append(out, "no leg retried")
	case r.retryCode != exitOK:
		return append(out, fmt.Sprintf("imsflow lifecycle retry exited %d: %s", r.retryCode, r.retryOut))
	case r.second == nil:
		return append(out, r.err.Error())
	}
	if r.second.Status != events.StatusSucceeded || r.second.Generation != 1 {
		bad("second end: want succeeded (generation 1), got %s (generation %d)", r.second.Status, r.second.Generation)
	}
	for _, l := range r.second.Legs {
		want := 1
		if l.Name == demoFailLeg {
			want = 2
		}
		if l.State != lifecycle.LegSucceeded || l.Attempt != want {
			bad("second end: %s %s at attempt %d, want succeeded at attempt %d", l.Name, l.State, l.Attempt, want)
		}
	}
	if !r.second.Latest {
		bad("second end: the family's latest pointer does not name its images")
	}
	if r.err != nil {
		return append(out, r.err.Error())
	}
	shares := d.regionShares()
	regions := []string{d.home}
	for _, reg := range d.decl.Regions {
		regions = append(regions, reg.Region)
	}
	for _, region := range regions {
		i := slices.IndexFunc(r.regions, func(v regionView) bool { return v.region == region })
		if i < 0 || r.regions[i].imageID == "" {
			bad("%s: no image", region)
			continue
		}
		v := r.regions[i]
		if !v.found || v.status != imsapi.ImageActive {
			bad("%s: image %s is %s in IMS, want active", region, v.imageID, cmpOrMissing(v.found, v.status))
		}
		if want := shares[region]; !slices.Equal(v.members, want) || !slices.Equal(sortedCopy(r.second.SharedWith[region]), want) {
			bad("%s: shared with %s (the event says %s), want %s", region, orNone(v.members), orNone(r.second.SharedWith[region]), orNone(want))
		}
		for _, k := range slices.Sorted(maps.Keys(d.decl.Tags)) {
			if !slices.Contains(v.tags, k+"."+d.decl.Tags[k]) {
				bad("%s: image %s lacks the tag %s=%s (it has %s)", region, v.imageID, k, d.decl.Tags[k], orNone(v.tags))
			}
		}
	}
	return out
}

// report prints what happened to the lifecycle, its tree and each
// region's image, and returns the exit code: 0 when problems finds none.
func (d *demoLifecycle) report(w io.Writer, r *lifecycleRun, verbose bool) int {
	width := terminalWidth
	if verbose {
		width = 0
	}
	note := func(at time.Duration, text string) {
		lines := wrap(text, max(width-8, 0))
		for i, line := range lines {
			stamp := fmt.Sprintf("%6s", seconds(at.Seconds()))
			if i > 0 {
				stamp = strings.Repeat(" ", 6)
			}
			fmt.Fprintf(w, "%s  %s\n", stamp, line)
		}
	}
	fmt.Fprintf(w, "\nlifecycle of images:%s (rule %s):\n", demoLifecycleKey, demoLifecycleRule)
	if r.first != nil {
		note(r.firstAt, "ended "+endText(r.first))
	}
	if r.retried {
		note(r.retryAt, fmt.Sprintf("imsflow lifecycle retry %s %s", r.first.Lifecycle, demoFailLeg))
		for _, line := range wrap(r.retryOut, max(width-8, 0)) {
			fmt.Fprintf(w, "%s  %s\n", strings.Repeat(" ", 6), line)
		}
	}
	if r.second != nil {
		note(r.secondAt, "ended "+endText(r.second))
	}
	if r.record != nil {
		fmt.Fprintln(w)
		var tree bytes.Buffer
		lifecycle.WriteTree(&tree, r.record)
		for _, line := range strings.Split(strings.TrimSuffix(tree.String(), "\n"), "\n") {
			if width > 0 {
				line = cut(line, width)
			}
			fmt.Fprintln(w, line)
		}
	}
	if len(r.regions) > 0 {
		fmt.Fprintln(w)
		var rows [][]string
		for _, v := range r.regions {
			var tags []string
			for _, k := range slices.Sorted(maps.Keys(d.decl.Tags)) {
				if slices.Contains(v.tags, k+"."+d.decl.Tags[k]) {
					tags = append(tags, k+"="+d.decl.Tags[k])
				}
			}
			rows = append(rows, []string{v.region, orDash(v.imageID), orDash(strings.Join(v.members, ",")), orDash(strings.Join(tags, ","))})
		}
		writeTable(w, []string{"REGION", "IMAGE", "SHARED WITH", "TAGS"}, rows, nil, width)
	}
	wrong := d.problems(r)
	if len(wrong) > 0 {
		fmt.Fprintln(w, "the lifecycle did not end as expected:")
		for _, problem := range wrong {
			for i, line := range wrap(problem, max(width-len(noteIndent), 0)) {
				indent := noteIndent
				if i == 0 {
					indent = "  "
				}
				fmt.Fprintln(w, indent+line)
			}
		}
		return exitError
	}
	done := fmt.Sprintf("the lifecycle ended as expected: %s alone failed and ran again alone (attempt 2); "+
		"%d regions have the image, shared and tagged as declared", demoFailLeg, len(r.regions))
	for _, line := range wrap(done, width) {
		fmt.Fprintln(w, line)
	}
	return exitOK
}

// endText says how a lifecycle ended: its status, the legs that failed
// with IMS's code and reason, and how many legs succeeded and were blocked.
func endText(e *events.LifecycleCompleted) string {
	text := string(e.Status)
	if e.Generation > 0 {
		text += fmt.Sprintf(" (generation %d)", e.Generation)
	}
	counts := map[string]int{}
	var failed []string
	for _, l := range e.Legs {
		counts[l.State]++
		if l.State == lifecycle.LegFailed || l.State == lifecycle.LegRefused {
			code := ""
			if l.ErrorCode != "" {
				code = " with " + l.ErrorCode
			}
			failed = append(failed, strings.TrimSuffix(fmt.Sprintf("%s %s%s: %s", l.Name, l.State, code, l.Reason), ": "))
		}
	}
	if len(failed) > 0 {
		text += ": " + strings.Join(failed, "; ")
	}
	var parts []string
	for _, st := range []string{lifecycle.LegSucceeded, lifecycle.LegBlocked, lifecycle.LegRunning, lifecycle.LegPending} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	return text + "; legs: " + strings.Join(parts, ", ")
}

// tagList is tags as key=value, sorted, comma-separated.
func tagList(tags map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, k+"="+tags[k])
	}
	return strings.Join(out, ",")
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

func sortedCopy(list []string) []string {
	return slices.Sorted(slices.Values(list))
}

func cmpOrMissing(found bool, status string) string {
	if !found {
		return "missing"
	}
	return orDash(status)
}
