package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/pkg/events"
)

// report is what a run measured.
type report struct {
	items      []*item
	inputs     int // unique inputs published
	skipped    int // of which skipped by design (no event expected)
	dupsSent   int // inputs sent twice
	bitmaps    int
	pubFailed  []string
	outEvents  int // messages read from IMSFLOW_OUT
	byStatus   map[string]int
	lost       []int
	dupJobs    map[int][]submission // inputs with more than one IMS job
	dupDone    map[int]*itemOutcomes
	sameTwice  int // final events stored twice under one Nats-Msg-Id
	unexpected []int
	unattrib   []string
	undecoded  int
	dlq        []deadLetter
	dlqMsgs    int
	slots      []slotHeld
	tracked    []string // poller states not marked published
	stray      []submission
	jobsOf     map[int]int // IMS jobs per input
	seqs       map[int][]uint64
	final      map[int]*itemOutcomes
	notFinal   map[string]int
	lostWhy    map[int]string // the state of each lost input
	drained    bool
	drain      time.Duration
	drainFrom  string
	bound      time.Duration
	stats      emuStats
	crashes    map[string][]crash
	faultLog   []string
	logs       logSummary
	emuCrashed bool
	// name prefixes the last line: chaos, or test-cluster (-compose),
	// whose runs also have scenarios and the time since make
	// test-cluster began.
	name      string
	scenarios []*scenario
	elapsed   time.Duration
	// lc is what became of the lifecycles (nil: the run had none);
	// stuck says why the drain stopped before its bound (lifecycles that
	// could not move).
	lc    *lcReport
	stuck string
}

func (r *report) pass() bool {
	return len(r.lost) == 0 && len(r.dupJobs) == 0 && len(r.dupDone) == 0 && r.dlqMsgs == 0 && len(r.slots) == 0 &&
		r.drained && len(r.pubFailed) == 0 && !r.emuCrashed && r.recovered() == len(r.scenarios) && r.lc.ok()
}

// recovered is the number of scenarios whose checks passed.
func (r *report) recovered() int {
	n := 0
	for _, s := range r.scenarios {
		if s.ok() {
			n++
		}
	}
	return n
}

// account counts everything from its source: IMSFLOW_OUT read again from
// its start, the emulator's submissions and stats, IMSFLOW_DLQ, the slots
// and jobs buckets, the processes' exits and logs.
func (h *harness) account(ctx context.Context, drainStart time.Time, want []int) (*report, error) {
	r := &report{items: h.w.Items, byStatus: map[string]int{}, dupJobs: map[int][]submission{}, dupDone: map[int]*itemOutcomes{},
		bound: h.o.prof.Drain, name: h.name(), scenarios: h.scen}
	h.mu.Lock()
	for i := range h.w.Items {
		if h.published[i] {
			r.inputs++
			if len(h.w.Items[i].Expect) == 0 {
				r.skipped++
			}
		}
	}
	r.pubFailed = append(r.pubFailed, h.pubFailed...)
	r.faultLog = append(r.faultLog, h.faultLog...)
	lastFault, lastPublish := h.lastFault, h.lastPublish
	r.seqs = map[int][]uint64{}
	for i, s := range h.seqs {
		r.seqs[i] = append([]uint64(nil), s...)
	}
	h.mu.Unlock()
	for _, p := range h.w.Pubs {
		switch p.Role {
		case "duplicate":
			r.dupsSent++
		case "bitmap":
			r.bitmaps++
		}
	}

	// Outcomes: a fresh read of the whole stream. The lifecycle retries
	// under way are published first (each within its bound).
	h.waitRetries()
	t, lt := newTally(h.index), newLCTally(h.index)
	n, err := readStream(ctx, h.js, streamOut, func(m jetstream.Msg) {
		t.addMsg(m)
		lt.addMsg(m)
	})
	if err != nil {
		return nil, err
	}
	r.outEvents, r.final, r.unattrib, r.undecoded, r.notFinal = n, t.byItem, t.unattributed, t.undecodable, t.notFinal
	var lastFirst time.Time
	for _, i := range want {
		o := t.byItem[i]
		if o == nil {
			r.lost = append(r.lost, i)
			continue
		}
		if o.first.After(lastFirst) {
			lastFirst = o.first
		}
	}
	for i, o := range t.byItem {
		for _, id := range o.ids {
			st := o.status[id]
			if j := strings.IndexByte(st, ':'); j > 0 {
				st = st[:j]
			}
			r.byStatus[st]++
		}
		if len(o.ids) > 1 {
			r.dupDone[i] = o
		}
		r.sameTwice += o.stored - len(o.ids)
		if !slices.Contains(h.w.Items[i].Expect, o.status[o.ids[0]]) {
			r.unexpected = append(r.unexpected, i)
		}
	}
	sort.Ints(r.unexpected)
	// A lifecycle's end (its terminal completion) counts in the drain too.
	lcUnended := 0
	for _, i := range h.lifecycleWant() {
		e, ok := last(lt.byItem[i])
		if !ok || !terminal(e) {
			lcUnended++
			continue
		}
		if e.stored.After(lastFirst) {
			lastFirst = e.stored
		}
	}
	r.drained = len(r.lost) == 0 && lcUnended == 0 && !lastFirst.After(drainStart.Add(r.bound))
	h.mu.Lock()
	r.stuck = h.lcStuck
	h.mu.Unlock()
	r.drain = max(lastFirst.Sub(drainStart), 0)
	if lastFault.After(lastPublish) {
		r.drainFrom = "the end of the last fault"
	} else {
		r.drainFrom = "the last input published"
	}

	// IMS jobs: every submission the emulator accepted, by object or
	// target; those of lifecycle legs are the lifecycles'.
	var subs []submission
	var lcSubs map[int]bool
	if err := getJSON(ctx, h.emuURL+"/_emulator/submissions", &subs); err != nil {
		return nil, fmt.Errorf("emulator submissions: %w", err)
	}
	// Slots still held (repl.*: the lifecycles').
	slots, err := kvEntries(ctx, h.js, bucketSlots)
	if err != nil {
		return nil, err
	}
	// Lifecycles: their completions, records, pointers, copies and shares.
	r.lc, lcSubs, err = h.accountLifecycles(ctx, lt, subs, slots)
	if err != nil {
		return nil, err
	}
	byItem := map[int][]submission{}
	jobURL := map[string]string{}
	for n, s := range subs {
		jobURL[s.JobID] = s.URL
		if lcSubs[n] {
			continue
		}
		i, ok := h.index.byURL[s.URL]
		if !ok {
			r.stray = append(r.stray, s)
			continue
		}
		byItem[i] = append(byItem[i], s)
	}
	r.jobsOf = map[int]int{}
	for i, ss := range byItem {
		r.jobsOf[i] = len(ss)
		if len(ss) > 1 {
			r.dupJobs[i] = ss
		}
	}
	if err := getJSON(ctx, h.emuURL+"/_emulator/stats", &r.stats); err != nil {
		return nil, fmt.Errorf("emulator stats: %w", err)
	}
	r.emuCrashed = len(h.crashes()["emulator"]) > 0

	// Dead letters.
	_, err = readStream(ctx, h.js, streamDLQ, func(m jetstream.Msg) {
		r.dlqMsgs++
		var d events.DeadLetter
		if json.Unmarshal(m.Data(), &d) != nil {
			r.dlq = append(r.dlq, deadLetter{subject: m.Subject(), reason: "undecodable dead letter", item: -1})
			return
		}
		r.dlq = append(r.dlq, deadLetter{function: d.Function, subject: d.Subject, reason: d.Reason, deliveries: d.Deliveries,
			item: attributeDead(d, h.index, jobURL, r.lc.lifecycles())})
	})
	if err != nil {
		return nil, err
	}

	// Slots still held (the replication slots are the lifecycles'), and
	// jobs the poller still tracks.
	for k, v := range slots {
		if strings.HasPrefix(k, "repl.") {
			continue
		}
		i, ok := h.index.bySlot[string(v)]
		if !ok {
			i = -1
		}
		r.slots = append(r.slots, slotHeld{key: k, item: i})
	}
	sort.Slice(r.slots, func(a, b int) bool { return r.slots[a].key < r.slots[b].key })
	jobs, err := kvEntries(ctx, h.js, bucketJobs)
	if err != nil {
		return nil, err
	}
	unpublished := map[string]jobState{}
	for k, v := range jobs {
		var st jobState
		if json.Unmarshal(v, &st) == nil && !st.Published {
			unpublished[k] = st
			r.tracked = append(r.tracked, fmt.Sprintf("%s (status %q, %d polls, final recorded: %v)", k, st.Status, st.Polls, len(st.Final) > 0 && string(st.Final) != "null"))
		}
	}
	sort.Strings(r.tracked)
	r.lostWhy = map[int]string{}
	for _, i := range r.lost {
		state, err := readRecord(ctx, h.js, h.w.Items[i])
		if err != nil {
			state = "unknown (" + err.Error() + ")"
		}
		r.lostWhy[i] = lostState(byItem[i], state, unpublished)
	}
	r.crashes = h.crashes()
	r.logs = summarizeLogs(h.logDir)
	if err := errors.Join(r.writeArtifacts(h, subs, byItem), r.lc.writeArtifacts(h)); err != nil {
		fmt.Fprintln(h.errw, "chaos: writing the run's records:", err)
	}
	return r, nil
}

// lostState says where an input without a final event stands, from the
// emulator's jobs, the function's record of it (state: "" none,
// claimed, submitted, rejected) and the poller's state of its jobs.
func lostState(subs []submission, state string, unpublished map[string]jobState) string {
	if len(subs) == 0 {
		switch state {
		case "":
			return "no IMS job; not claimed (waiting for a slot, a bitmap or a retry)"
		case "claimed":
			return "no IMS job; claimed by an attempt (under way, or dead and not yet taken over)"
		case "rejected":
			return "recorded as rejected, but no rejected event"
		}
		return "no IMS job; record " + state
	}
	for _, s := range subs {
		for _, k := range []string{"j." + s.JobID, "i." + s.ImageID} {
			if st, ok := unpublished[k]; ok {
				if len(st.Final) > 0 && string(st.Final) != "null" {
					return "IMS job; the poller recorded its end but did not publish it"
				}
				return fmt.Sprintf("IMS job; the poller tracks it (last status %s)", cmp.Or(st.Status, "none yet"))
			}
		}
	}
	if state != "submitted" {
		return fmt.Sprintf("IMS job, but the function has not recorded it (record %s): its answer was lost and no attempt has found it yet", cmp.Or(state, "none"))
	}
	return "IMS job, handed off, but the poller does not track it (hand-off or state lost)"
}

// writeArtifacts leaves the run's records in its directory: every IMS
// submission, and one line per input with everything known of it.
func (r *report) writeArtifacts(h *harness, subs []submission, jobs map[int][]submission) error {
	b, _ := json.MarshalIndent(subs, "", " ")
	if err := os.WriteFile(filepath.Join(h.dir, "submissions.json"), b, 0o644); err != nil {
		return err
	}
	lost := map[int]bool{}
	for _, i := range r.lost {
		lost[i] = true
	}
	h.mu.Lock()
	t0, published := h.feedStart, h.published
	h.mu.Unlock()
	lines := []string{"id\tkind\tinput\tsize_gb\tin_seqs\tims_jobs\tfinal_events\tfirst_final_at\texpected\tverdict"}
	for i, it := range r.items {
		in := bucketImages + ":" + it.Key
		if it.isExport() {
			in = it.RequestID + " " + it.ImageID + " → " + it.BucketURL
		}
		var seqs, js, fs []string
		for _, s := range r.seqs[i] {
			seqs = append(seqs, fmt.Sprint(s))
		}
		for _, s := range jobs[i] {
			js = append(js, s.JobID)
		}
		at := ""
		if o := r.final[i]; o != nil {
			for _, id := range o.ids {
				fs = append(fs, o.status[id]+"["+id+"]")
			}
			at = fmt.Sprintf("+%.1fs", o.first.Sub(t0).Seconds())
		}
		verdict := "ok"
		switch {
		case !published[i]:
			verdict = "not published"
		case lost[i]:
			verdict = "LOST: " + r.lostWhy[i]
		case len(it.Expect) == 0 && len(fs) == 0:
			verdict = "skipped by design"
		case len(jobs[i]) > 1 && len(fs) > 1:
			verdict = "DUPLICATE JOBS, DUPLICATE COMPLETIONS"
		case len(jobs[i]) > 1:
			verdict = "DUPLICATE JOBS"
		case len(fs) > 1:
			verdict = "DUPLICATE COMPLETIONS"
		case slices.Contains(r.unexpected, i):
			verdict = "unexpected outcome"
		}
		size := fmt.Sprint(it.Size >> 30)
		if it.isExport() {
			size = fmt.Sprint(it.ImageSize >> 30)
		}
		lines = append(lines, strings.Join([]string{it.ID, string(it.Kind), in, size, strings.Join(seqs, ","), strings.Join(js, ","),
			strings.Join(fs, " "), at, strings.Join(it.Expect, "|"), verdict}, "\t"))
	}
	return writeLines(filepath.Join(h.dir, "outcomes.tsv"), lines)
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func (r *report) print(h *harness, out io.Writer) {
	p := h.o.prof
	if h.cr != nil {
		r.elapsed = time.Since(h.began())
	}
	fmt.Fprintf(out, "\nimsflow %s · profile %s · seed %d · %s\n", r.name, p.Name, h.o.seed, h.source)
	if h.cr != nil {
		fmt.Fprintf(out, "%s as compose project %s (%s), in containers: ", filepath.Join(filepath.Base(filepath.Dir(h.cr.dir)), filepath.Base(h.cr.dir)), h.cr.project, h.cr.version)
	}
	fmt.Fprintf(out, "3 NATS nodes (R3), 2× %s and %s; IMS emulator: %.0f%% 5xx, %.0f%% dropped connections%s, %g req/s (burst %d), %d running imports, time ×%g, regions %s\n\n",
		strings.Join(functions[:len(functions)-1], ", "), functions[len(functions)-1],
		h.o.errorRate*100, h.o.dropRate*100, map[bool]string{true: " (submissions take effect first)"}[h.o.acceptBeforeDrop],
		h.o.rateLimit, h.o.rateBurst, h.o.maxJobs, h.o.timeScale, strings.Join(lcRegions, ", "))

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "goal\tmeasured\ttarget\tresult\t")
	row := func(name string, v int, ok bool) { fmt.Fprintf(tw, "%s\t%d\t0\t%s\t\n", name, v, verdict(ok)) }
	row("lost inputs (no final outcome)", len(r.lost), len(r.lost) == 0)
	row("duplicate IMS jobs (inputs)", len(r.dupJobs), len(r.dupJobs) == 0)
	row("duplicate completions (inputs)", len(r.dupDone), len(r.dupDone) == 0)
	row("dead letters (IMSFLOW_DLQ)", r.dlqMsgs, r.dlqMsgs == 0)
	row("slots held at the end", len(r.slots), len(r.slots) == 0)
	r.lc.rows(row)
	fmt.Fprintf(tw, "time to drain after the last fault\t%s\t≤%ds\t%s\t\n", r.drainText(), int(r.bound.Seconds()), verdict(r.drained))
	if len(r.pubFailed) > 0 {
		fmt.Fprintf(tw, "messages the harness could not publish\t%d\t0\t%s\t\n", len(r.pubFailed), verdict(false))
	}
	if r.emuCrashed {
		fmt.Fprintf(tw, "emulator crashed (IMS record incomplete)\t1\t0\t%s\t\n", verdict(false))
	}
	if len(r.scenarios) > 0 {
		n := len(r.scenarios)
		fmt.Fprintf(tw, "fault scenarios not recovered\t%d\t0\t%s\t\n", n-r.recovered(), verdict(r.recovered() == n))
	}
	tw.Flush()
	r.printScenarios(out)

	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	c := h.w.counts()
	imports := c[kindNormal] + c[kindLifecycle] + c[kindZVHD2] + c[kindRAW] + c[kindFail]
	invalid := c[kindEmpty] + c[kindTooLarge] + c[kindNeedsConv]
	fmt.Fprintf(tw, "inputs\t%d\t%d imports (%d normal, %d with a lifecycle, %d ZVHD2, %d RAW+bitmap, %d failed by IMS), %d exports (+%d of missing images), %d invalid, %d skipped by design; %d sent twice, %d bitmaps\t\n",
		r.inputs, imports, c[kindNormal], c[kindLifecycle], c[kindZVHD2], c[kindRAW], c[kindFail], c[kindExport], c[kindExportNF], invalid, r.skipped, r.dupsSent, r.bitmaps)
	var st []string
	for _, k := range []string{"succeeded", "failed", "timed_out", "rejected"} {
		st = append(st, fmt.Sprintf("%s %d", k, r.byStatus[k]))
	}
	var other []string
	for _, k := range sortedKeysByValue(r.notFinal) {
		other = append(other, fmt.Sprintf("%s %d", k, r.notFinal[k]))
	}
	if len(other) == 0 {
		other = []string{"none"}
	}
	fmt.Fprintf(tw, "final outcomes\t%d\t%s (distinct events; %d messages in IMSFLOW_OUT, the others: %s)\t\n", len(r.final), strings.Join(st, ", "), r.outEvents, strings.Join(other, ", "))
	fmt.Fprintf(tw, "outcome not the expected one\t%d\t(not a goal; examples below)\t\n", len(r.unexpected))
	if r.sameTwice > 0 || len(r.unattrib) > 0 || r.undecoded > 0 {
		fmt.Fprintf(tw, "other events\t%d\tstored twice under one Nats-Msg-Id %d, naming no input %d, undecodable %d\t\n", r.sameTwice+len(r.unattrib)+r.undecoded, r.sameTwice, len(r.unattrib), r.undecoded)
	}
	nats, fns := 0, map[string]int{}
	for _, l := range r.faultLog {
		switch {
		case strings.Contains(l, "kill -9 NATS node"):
			nats++
		case strings.Contains(l, "kill -9 ") && strings.Contains(l, "(pid"):
			for _, f := range functions {
				if strings.Contains(l, "kill -9 "+f+"-") {
					fns[f]++
				}
			}
		}
	}
	if h.cr != nil {
		var names []string
		for _, s := range r.scenarios {
			if s.Ran {
				names = append(names, s.Name)
			}
		}
		fmt.Fprintf(tw, "faults\t%d\tscenarios %s (above)\t\n", len(names), strings.Join(names, ", "))
	} else {
		total, by := nats, []string{}
		for _, f := range functions {
			total += fns[f]
			by = append(by, fmt.Sprintf("%s %d", f, fns[f]))
		}
		fmt.Fprintf(tw, "faults\t%d\tkill -9 of replicas: %s; of the %s leader: %d\t\n", total, strings.Join(by, ", "), streamJobs, nats)
	}
	ncrash := 0
	var names []string
	for name, cs := range r.crashes {
		ncrash += len(cs)
		names = append(names, fmt.Sprintf("%s %d", name, len(cs)))
	}
	sort.Strings(names)
	what := "process"
	if h.cr != nil {
		what = "container"
	}
	fmt.Fprintf(tw, "unexpected %s exits\t%d\t%s\t\n", what, ncrash, strings.Join(names, ", "))
	fmt.Fprintf(tw, "IMS requests\t%d\t%d 5xx injected, %d connections dropped, %d throttled (429), %d capped (IMG.0194)\t\n",
		r.stats.total(), r.stats.Injected, r.stats.Dropped, r.stats.Throttled, r.stats.Capped)
	fmt.Fprintf(tw, "IMS jobs\t%d\t%d succeeded, %d failed, at most %d imports running; %d for no input of the run\t\n",
		r.stats.JobsSubmitted, r.stats.JobsSucceeded, r.stats.JobsFailed, r.stats.MaxRunning, len(r.stray))
	r.lc.info(tw)
	fmt.Fprintf(tw, "jobs still tracked by the poller\t%d\t(not a goal)\t\n", len(r.tracked))
	swept, by := 0, []string{}
	for _, k := range sortedKeysByValue(r.logs.swept) {
		swept += r.logs.swept[k]
		by = append(by, fmt.Sprintf("%s %d", k, r.logs.swept[k]))
	}
	if swept > 0 {
		fmt.Fprintf(tw, "slots the poller's sweep freed\t%d\tleaked (held by no claim or job a minute on) and freed by the sweep: %s (not a goal; a slot still held at the end is)\t\n", swept, strings.Join(by, ", "))
	}
	fmt.Fprintf(tw, "warnings in the functions' logs\t%d\t%d of them from injected IMS faults; the others below\t\n", r.logs.total, r.logs.injected)
	if h.cr != nil {
		settle := h.phase["total"] - h.phase["build"] - h.phase["start"] - h.phase["feed"] - h.phase["after-feed"]
		fmt.Fprintf(tw, "duration\t%s\tsince make test-cluster began: image and harness builds %s, compose up and ready %s, feed and faults %s, the last outcomes %s later (drain counted from %s), settling and counting %s\t\n",
			r.elapsed.Round(time.Second), (h.start.Sub(h.began()) + h.phase["build"]).Round(time.Second), h.phase["start"].Round(time.Second),
			h.phase["feed"].Round(time.Second), h.phase["after-feed"].Round(time.Second), r.drainFrom, settle.Round(time.Second))
	} else {
		fmt.Fprintf(tw, "duration\t%s\tbuild %s, start %s, feed %s, drain counted from %s\t\n", h.phase["total"].Round(time.Second),
			h.phase["build"].Round(time.Second), h.phase["start"].Round(time.Second), h.phase["feed"].Round(time.Second), r.drainFrom)
	}
	tw.Flush()

	r.evidence(h, out)
	if h.cr != nil {
		fmt.Fprintf(out, "\nrun directory: %s (logs/: one file per service; timeline.log: every docker command; override.yaml, functions.env, compose.sh; faults-planned.txt; inputs.json)\n", h.dir)
	} else {
		fmt.Fprintf(out, "\nrun directory: %s (logs/: one file per process; timeline.log; faults-planned.txt; inputs.json)\n", h.dir)
	}
	fmt.Fprintln(out, r.summary())
}

// drainText is the time to drain: ">bound" when some outcome never came,
// "stuck" when the harness stopped waiting for lifecycles that could not
// move any more.
func (r *report) drainText() string {
	switch {
	case r.drained:
		return fmt.Sprintf("%ds", int(r.drain.Seconds()))
	case r.stuck != "":
		return "stuck"
	}
	return fmt.Sprintf(">%ds", int(r.bound.Seconds()))
}

// summary is the last line of a run.
func (r *report) summary() string {
	res := "PASS"
	if !r.pass() {
		res = "FAIL"
	}
	drain := r.drainText()
	s := fmt.Sprintf("%s: %s inputs=%d lost=%d dup_jobs=%d dup_completions=%d dlq=%d slots=%d drain=%s",
		cmp.Or(r.name, "chaos"), res, r.inputs, len(r.lost), len(r.dupJobs), len(r.dupDone), r.dlqMsgs, len(r.slots), drain)
	if len(r.scenarios) > 0 {
		s += fmt.Sprintf(" scenarios=%d/%d", r.recovered(), len(r.scenarios))
	}
	s += r.lc.summary()
	if r.elapsed > 0 {
		s += " elapsed=" + r.elapsed.Round(time.Second).String()
	}
	var missed []string
	for _, g := range []struct {
		name string
		bad  bool
	}{{"lost", len(r.lost) > 0}, {"dup_jobs", len(r.dupJobs) > 0}, {"dup_completions", len(r.dupDone) > 0}, {"dlq", r.dlqMsgs > 0},
		{"slots", len(r.slots) > 0}, {"drain", !r.drained}, {"unpublished", len(r.pubFailed) > 0}, {"emulator", r.emuCrashed},
		{"scenarios", r.recovered() < len(r.scenarios)}} {
		if g.bad {
			missed = append(missed, g.name)
		}
	}
	missed = append(missed, r.lc.missed()...)
	if len(missed) > 0 {
		s += " missed=" + strings.Join(missed, ",")
	}
	return s
}

// evidence prints, for each goal missed, a few examples with what the
// logs say of them.
func (r *report) evidence(h *harness, out io.Writer) {
	const examples = 5
	tokens := map[string]int{}
	addToken := func(i int) {
		if i < 0 {
			return
		}
		it := r.items[i]
		tokens[it.ID] = i
		subject := events.SubjectObjectsPrefix + sourceName
		if it.isExport() {
			subject = events.SubjectExportRequests
		}
		for _, seq := range r.seqs[i] {
			tokens[seqToken(subject, seq)] = i
		}
	}
	lost := r.lost[:min(len(r.lost), examples)]
	for _, i := range lost {
		addToken(i)
	}
	dupJobs := sortedKeys(r.dupJobs)
	dupDone := sortedKeys(r.dupDone)
	for _, i := range dupJobs[:min(len(dupJobs), examples)] {
		addToken(i)
	}
	for _, i := range dupDone[:min(len(dupDone), examples)] {
		addToken(i)
	}
	for _, s := range r.slots[:min(len(r.slots), examples)] {
		addToken(s.item)
	}
	grep := grepLogs(h.logDir, tokens, 2)
	show := func(i int) {
		if len(grep[i]) == 0 {
			fmt.Fprintf(out, "      (no log line of the functions names it: never delivered to one, or handled without a word)\n")
		}
		for _, l := range grep[i] {
			fmt.Fprintf(out, "      %s\n", l)
		}
	}
	describe := func(i int) string {
		it := r.items[i]
		if it.isExport() {
			return fmt.Sprintf("%s export of %s to %s (request %s)", it.ID, it.ImageID, it.BucketURL, it.RequestID)
		}
		return fmt.Sprintf("%s %s %s (%d GB, %s)", it.ID, it.Kind, it.Key, it.Size>>30, it.ETag[:8])
	}
	section := func(title string) { fmt.Fprintf(out, "\n%s\n", title) }

	if len(r.lost) > 0 {
		section(fmt.Sprintf("LOST: %d inputs have no final event in %s; the first %d, with the last log lines naming them:", len(r.lost), streamOut, len(lost)))
		byKind := map[kind]int{}
		for _, i := range r.lost {
			byKind[r.items[i].Kind]++
		}
		fmt.Fprintf(out, "  by kind: %s\n", kindCounts(byKind))
		states := map[string]int{}
		for _, i := range r.lost {
			states[r.lostWhy[i]]++
		}
		for _, k := range sortedKeysByValue(states) {
			fmt.Fprintf(out, "  %4d × %s\n", states[k], k)
		}
		for _, i := range lost {
			fmt.Fprintf(out, "  - %s: %s\n", describe(i), r.lostWhy[i])
			show(i)
		}
	}
	if len(r.dupJobs) > 0 {
		section(fmt.Sprintf("DUPLICATE IMS JOBS: %d inputs got more than one job (GET /_emulator/submissions):", len(r.dupJobs)))
		for _, i := range dupJobs[:min(len(dupJobs), examples)] {
			var js []string
			for _, s := range r.dupJobs[i] {
				js = append(js, fmt.Sprintf("%s at %s", s.JobID, s.Time.Format("15:04:05.000")))
			}
			fmt.Fprintf(out, "  - %s: %s\n", describe(i), strings.Join(js, ", "))
			show(i)
		}
	}
	if len(r.dupDone) > 0 {
		section(fmt.Sprintf("DUPLICATE COMPLETIONS: %d inputs have more than one distinct final event:", len(r.dupDone)))
		for _, i := range dupDone[:min(len(dupDone), examples)] {
			o := r.dupDone[i]
			var es []string
			for _, id := range o.ids {
				es = append(es, fmt.Sprintf("%s [%s]", o.status[id], id))
			}
			fmt.Fprintf(out, "  - %s: %s\n", describe(i), strings.Join(es, "; "))
			show(i)
		}
	}
	if r.dlqMsgs > 0 {
		section(fmt.Sprintf("DEAD LETTERS: %d in %s, by function and reason:", r.dlqMsgs, streamDLQ))
		counts := map[string][]int{}
		for _, d := range r.dlq {
			k := fmt.Sprintf("%s (%s): %s", d.function, subjectKind(d.subject), clip(normalize(d.reason), 200))
			counts[k] = append(counts[k], d.item)
		}
		for _, k := range sortedByLen(counts) {
			var ex []string
			for _, i := range counts[k][:min(len(counts[k]), 3)] {
				if i >= 0 {
					ex = append(ex, r.items[i].ID)
				}
			}
			fmt.Fprintf(out, "  %4d × %s  e.g. %s\n", len(counts[k]), k, strings.Join(ex, " "))
		}
		var withOutcome int
		for _, d := range r.dlq {
			if d.item >= 0 && r.final[d.item] != nil {
				withOutcome++
			}
		}
		fmt.Fprintf(out, "  (%d of these inputs have a final outcome anyway, from another delivery or copy)\n", withOutcome)
	}
	if len(r.slots) > 0 {
		section(fmt.Sprintf("SLOTS HELD: %d keys left in %s (IMPORT_SLOT_TTL frees them only after 6h):", len(r.slots), bucketSlots))
		var ended, unknown int
		for _, s := range r.slots {
			switch {
			case s.item < 0:
				unknown++
			case r.final[s.item] != nil:
				ended++
			}
		}
		fmt.Fprintf(out, "  %d held for inputs that already have their final outcome; %d for versions not of this run\n", ended, unknown)
		for _, s := range r.slots[:min(len(r.slots), examples)] {
			if s.item < 0 {
				fmt.Fprintf(out, "  - %s: unknown object version\n", s.key)
				continue
			}
			st := "no outcome"
			if o := r.final[s.item]; o != nil {
				st = o.status[o.ids[0]]
			}
			fmt.Fprintf(out, "  - %s: %s → %s; IMS jobs for it: %d\n", s.key, describe(s.item), st, r.jobsOf[s.item])
			show(s.item)
		}
	}
	if len(r.unexpected) > 0 {
		section(fmt.Sprintf("UNEXPECTED OUTCOMES (not a goal): %d inputs ended otherwise than their kind implies:", len(r.unexpected)))
		counts := map[string]int{}
		for _, i := range r.unexpected {
			o := r.final[i]
			counts[fmt.Sprintf("%s expected %s, got %s", r.items[i].Kind, strings.Join(r.items[i].Expect, "|"), o.status[o.ids[0]])]++
		}
		for _, k := range sortedKeysByValue(counts) {
			fmt.Fprintf(out, "  %4d × %s\n", counts[k], k)
		}
		for _, i := range r.unexpected[:min(len(r.unexpected), 3)] {
			fmt.Fprintf(out, "  e.g. %s\n", describe(i))
		}
	}
	r.lc.evidence(h, r, out)
	if len(r.pubFailed) > 0 {
		section("NOT PUBLISHED (the cluster refused them for two minutes):")
		for _, p := range r.pubFailed[:min(len(r.pubFailed), examples)] {
			fmt.Fprintf(out, "  - %s\n", p)
		}
	}
	if len(r.unattrib) > 0 {
		section("FINAL EVENTS NAMING NO INPUT OF THE RUN:")
		for _, u := range r.unattrib[:min(len(r.unattrib), examples)] {
			fmt.Fprintf(out, "  - %s\n", u)
		}
	}
	if len(r.crashes) > 0 {
		section("UNEXPECTED EXITS (the harness restarted each, as a supervisor would), by what the process said last:")
		h.printCrashes(out)
	}
	if len(r.tracked) > 0 {
		section(fmt.Sprintf("JOBS STILL TRACKED (not a goal): %d keys of %s without a published end, e.g.:", len(r.tracked), bucketJobs))
		for _, t := range r.tracked[:min(len(r.tracked), examples)] {
			fmt.Fprintf(out, "  - %s\n", t)
		}
	}
	if len(r.logs.warnings) > 0 {
		section("MOST FREQUENT WARNINGS in the functions' logs, besides injected IMS faults (IDs and numbers as <...> and #):")
		for _, w := range r.logs.warnings[:min(len(r.logs.warnings), 10)] {
			fmt.Fprintf(out, "  %6d × %s\n", w.count, w.text)
		}
	}
	if len(r.logs.waits) > 0 {
		section("PLANNED WAITS (deliveries answered \"delay\"), by reason:")
		for _, w := range r.logs.waits[:min(len(r.logs.waits), 6)] {
			fmt.Fprintf(out, "  %6d × %s\n", w.count, w.text)
		}
	}
	section("FAULTS, as they happened:")
	for _, l := range r.faultLog {
		fmt.Fprintf(out, "  %s\n", l)
	}
	_ = writeLines(filepath.Join(h.dir, "faults.log"), r.faultLog)
}

func writeLines(path string, lines []string) error {
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func subjectKind(s string) string {
	switch {
	case strings.HasPrefix(s, "imsflow.jobs.poll."):
		return "poll timer"
	case s == events.SubjectJobSubmitted:
		return "hand-off"
	case strings.HasSuffix(s, ".rejoin"):
		return "RAW rejoin"
	case strings.HasPrefix(s, events.SubjectObjectsPrefix):
		return "notification"
	case s == events.SubjectExportRequests:
		return "export request"
	}
	return s
}

func kindCounts(m map[kind]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func sortedByLen(m map[string][]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if len(m[out[i]]) != len(m[out[j]]) {
			return len(m[out[i]]) > len(m[out[j]])
		}
		return out[i] < out[j]
	})
	return out
}

func sortedKeysByValue(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if m[out[i]] != m[out[j]] {
			return m[out[i]] > m[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}

// printScenarios is the compose backend's table: each fault, when it
// came, how long its victims took to be back, how long new work took to
// end after it, and what the checks found.
func (r *report) printScenarios(out io.Writer) {
	if len(r.scenarios) == 0 {
		return
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfault\tat\tIMS jobs running\tvictims back in\tcanaries ended in\tresult\t")
	for i, s := range r.scenarios {
		res := "recovered"
		if !s.Ran {
			res = "NOT RUN"
		} else if s.Err != "" {
			res = "NOT RECOVERED"
		}
		what := cmp.Or(s.What, s.describe())
		fmt.Fprintf(tw, "%d %s\t%s\t+%.0fs\t%d\t%.1fs\t%.1fs\t%s\t\n", i+1, s.Name, what, s.At.Seconds(), s.InFlight, s.Back.Seconds(), s.Canary.Seconds(), res)
	}
	tw.Flush()
	for i, s := range r.scenarios {
		if s.Err != "" {
			fmt.Fprintf(out, "  %d %s: %s\n", i+1, s.Name, s.Err)
		}
		for _, n := range s.Notes {
			fmt.Fprintf(out, "  %d %s: %s\n", i+1, s.Name, n)
		}
	}
}
