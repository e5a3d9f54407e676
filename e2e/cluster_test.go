package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/export/exporter"
	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/functions/poller/poller"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/runner/runnertest"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// The cluster tests run imsflow on a 3-node JetStream cluster with its R3
// topology, two replicas of each function (each on its own connection, as
// separate processes would be), and kill the node that leads one part of
// the flow while work is under way. Whatever is killed, every input must
// end with exactly one final outcome event, IMS must have received each
// object or request exactly once, and no in-flight slot may be left.
//
// The emulator's clock is held until the fault has happened: jobs submitted
// before it stay in INIT, so the fault always finds them in flight however
// slow the machine, and the test then lets time run.
//
// When a test fails, the functions' log is written to a file in the
// temporary directory and named in the test's output (with
// IMSFLOW_KEEP_LOG set, also when it passes).

// heldClock is the emulator's clock: it stands still until Release, then
// runs with real time.
type heldClock struct {
	mu       sync.Mutex
	start    time.Time
	released time.Time // zero while held
}

func newHeldClock() *heldClock { return &heldClock{start: time.Now()} }

func (c *heldClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released.IsZero() {
		return c.start
	}
	return c.start.Add(time.Since(c.released))
}

// Release lets the clock run.
func (c *heldClock) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released.IsZero() {
		c.released = time.Now()
	}
}

// clusterConfig shapes one cluster test.
type clusterConfig struct {
	imports, exports int
	slots            int // the import function's MaxInFlight
}

// clusterStack is imsflow on a 3-node cluster.
type clusterStack struct {
	t        *testing.T
	cfg      clusterConfig
	c        *testenv.Cluster
	js       jetstream.JetStream // the test's own connection
	emu      *imsemu.Server
	clock    *heldClock
	outcomes *testenv.Recorder[clusterOutcome]
	images   []string // exported image IDs
	log      *lockedBuffer
}

// clusterOutcome is one output event, by the input it answers.
type clusterOutcome struct {
	input   string // "import:<bucket>/<key>" or "export:<request ID>"
	subject string
	status  events.Status
	jobID   string
	seq     uint64 // in IMSFLOW_OUT
}

// final reports whether the outcome ends its input.
func (o clusterOutcome) final() bool {
	switch o.status {
	case events.StatusSucceeded, events.StatusFailed, events.StatusTimedOut, events.StatusRejected:
		return true
	}
	return false
}

// lockedBuffer collects the functions' log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Timings of the functions in the cluster tests. A request in flight to a
// node that is killed gets no answer: the handler waits for its timeout
// (3/4 of AckWait), and the message is delivered again. AckWait is short
// so that this costs seconds, and the claim TTL short enough that a claim
// a fault orphaned is taken over within the test (ClaimTTL > AckWait > the
// handler's timeout, so a live attempt never is). The planned waits are
// short because nothing here is about them.
const (
	clusterClaimTTL = 15 * time.Second
	clusterAckWait  = 10 * time.Second
)

func newClusterStack(t *testing.T, cfg clusterConfig) *clusterStack {
	t.Helper()
	ctx := t.Context()
	cs := &clusterStack{t: t, cfg: cfg, clock: newHeldClock(), outcomes: testenv.NewRecorder[clusterOutcome](), log: &lockedBuffer{}}
	cs.c = testenv.StartCluster(t, 3)
	// The test's own requests (setup, and looking at the flow) may take
	// more than the default 5 s on a loaded machine during an election.
	_, cs.js = cs.c.Connect(t, jetstream.WithDefaultTimeout(30*time.Second))
	log := zerolog.New(cs.log).With().Timestamp().Logger()
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("IMSFLOW_KEEP_LOG") == "" {
			return
		}
		f, err := os.CreateTemp("", "imsflow-"+t.Name()+"-*.log")
		if err == nil {
			_, _ = f.WriteString(cs.log.String())
			_ = f.Close()
			t.Logf("the functions' log: %s", f.Name())
		}
	})
	// As the functions' mains do: a cluster just formed may refuse to
	// place replicas for a moment ("no suitable peers for placement, peer
	// offline") until its meta leader has every peer's statistics.
	if err := runner.EnsureWait(ctx, cs.js, runner.DefaultTopology(3), log); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{runner.StreamIn, runner.StreamJobs, runner.StreamOut} {
		cs.c.WaitStreamLeader(t, s)
	}
	for _, b := range []string{runner.BucketImports, runner.BucketSlots, runner.BucketJobs} {
		cs.c.WaitKVLeader(t, b)
	}

	// A 40 GB data disk (the smallest min_disk) takes 162 s in IMS: 1.6 s
	// here once the clock runs.
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, AssumeObjects: true, Clock: cs.clock,
		TimeScale: 100, MaxRunningJobs: -1, ImageQuota: -1, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	cs.emu = emu
	emu.AddBucket("exports")
	for i := range cfg.exports {
		cs.images = append(cs.images, emu.AddImage(imsapi.Image{Name: fmt.Sprint("cluster-", i), ImageSize: fmt.Sprint(int64(imsapi.GiB))}).ID)
	}
	client, err := emu.Client()
	if err != nil {
		t.Fatal(err)
	}

	type replica struct {
		stream string
		r      *runner.Runner
	}
	var replicas []replica
	for i := range 2 {
		log := log.With().Int("replica", i).Logger()
		_, js := cs.c.Connect(t)
		imp, err := importer.New(ctx, importer.Config{BitmapWait: time.Minute, BitmapPoll: time.Minute, ClaimTTL: clusterClaimTTL,
			MaxInFlight: cfg.slots, SlotTTL: time.Hour, SlotWait: 2 * time.Second, ThrottleWait: time.Second,
			Workers: 4, AckWait: clusterAckWait}, client, js, log)
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, replica{runner.StreamIn, imp})
		_, js = cs.c.Connect(t)
		p, err := poller.New(ctx, poller.Config{FirstPoll: time.Second, MinInterval: time.Second, TargetDelay: time.Second, MaxInterval: 2 * time.Second,
			MaxAimed: 2 * time.Second, Backoff: 1.5, Deadline: time.Hour, StallAfter: time.Hour, Workers: 8, AckWait: clusterAckWait},
			client, js, log)
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, replica{runner.StreamJobs, p})
		if cfg.exports > 0 {
			_, js = cs.c.Connect(t)
			exp, err := exporter.New(ctx, exporter.Config{DefaultBucket: "exports", KeyPrefix: "out/", ClaimTTL: clusterClaimTTL,
				BusyWait: time.Second, ThrottleWait: time.Second, Workers: 4, AckWait: clusterAckWait}, client, js, log)
			if err != nil {
				t.Fatal(err)
			}
			replicas = append(replicas, replica{runner.StreamIn, exp})
		}
	}
	// The durable consumers exist, each with a leader, before any replica
	// pulls from it. (A pull sent to a consumer just created, before its
	// group has elected a leader, finds no responder, and the client only
	// tries again when its heartbeat is missed, 30 s later: the start of a
	// replica is not what these tests are about.)
	for _, rp := range replicas[:len(replicas)/2] { // replica 0's: one per consumer
		cc := rp.r.ConsumerConfig()
		testenv.Until(t, "consumer "+cc.Durable+" created", func() (bool, string) {
			_, err := cs.js.CreateOrUpdateConsumer(ctx, rp.stream, cc)
			return err == nil, fmt.Sprint(err)
		})
		cs.c.WaitConsumerLeader(t, rp.stream, cc.Durable)
	}
	for _, rp := range replicas {
		runnertest.Run(t, rp.r)
	}
	cs.watchOutcomes()
	return cs
}

// watchOutcomes records every import and export outcome stored in
// IMSFLOW_OUT, through an ordered consumer (which follows the stream
// across leader changes).
func (cs *clusterStack) watchOutcomes() {
	t := cs.t
	cons, err := cs.js.OrderedConsumer(t.Context(), runner.StreamOut, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"imsflow.out.import.*", "imsflow.out.export.*"}})
	if err != nil {
		t.Fatal(err)
	}
	record := func(m jetstream.Msg) {
		o := clusterOutcome{subject: m.Subject()}
		if md, err := m.Metadata(); err == nil {
			o.seq = md.Sequence.Stream
		}
		var v struct {
			Status  events.Status         `json:"status"`
			JobID   string                `json:"job_id"`
			Source  *events.Source        `json:"source"`
			Request *events.ExportRequest `json:"request"`
			ReqID   string                `json:"request_id"`
		}
		_ = json.Unmarshal(m.Data(), &v)
		o.status, o.jobID = v.Status, v.JobID
		if o.status == "" { // a rejection: its status is its subject's
			o.status = events.Status(m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:])
		}
		switch {
		case v.Source != nil:
			o.input = "import:" + v.Source.Bucket + "/" + v.Source.Key
		case v.ReqID != "":
			o.input = "export:" + v.ReqID
		case v.Request != nil:
			o.input = "export:" + v.Request.RequestID
		default:
			o.input = "unknown:" + string(m.Data())
		}
		cs.outcomes.Add(o)
	}
	// A heartbeat a second: when the node serving the consumer is killed,
	// that is noticed in two seconds, not ten, and the consumer is made
	// again where it stopped.
	cc, err := cons.Consume(record, jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			fmt.Fprintf(cs.log, `{"level":"warn","function":"test","time":%q,"message":%q}`+"\n",
				time.Now().UTC().Format(time.RFC3339), "outcomes consumer: "+err.Error())
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
}

// importKey is the object key of import i.
func importKey(i int) string { return fmt.Sprintf("cluster/disk-%04d.qcow2", i) }

// send publishes every input: the imports' notifications and the export
// requests.
func (cs *clusterStack) send() {
	t := cs.t
	ctx := t.Context()
	for i := range cs.cfg.imports {
		if _, err := cs.js.Publish(ctx, events.SubjectObjectsPrefix+"cluster", s3Body("images", importKey(i), imsapi.GiB, fmt.Sprint("e", i)),
			jetstream.WithMsgID(fmt.Sprint("in-", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range cs.images {
		b, _ := json.Marshal(events.ExportRequest{ImageID: id, RequestID: fmt.Sprint("x", i), BucketURL: fmt.Sprintf("exports:out/x%d.qcow2", i)})
		if _, err := cs.js.Publish(ctx, events.SubjectExportRequests, b, jetstream.WithMsgID(fmt.Sprint("ex-", i))); err != nil {
			t.Fatal(err)
		}
	}
}

// inputs is every input's name, as clusterOutcome.input spells it.
func (cs *clusterStack) inputs() []string {
	var in []string
	for i := range cs.cfg.imports {
		in = append(in, "import:images/"+importKey(i))
	}
	for i := range cs.images {
		in = append(in, fmt.Sprint("export:x", i))
	}
	return in
}

// finals counts the final outcomes per input among those recorded.
func finals(all []clusterOutcome) map[string]int {
	n := map[string]int{}
	for _, o := range all {
		if o.final() {
			n[o.input]++
		}
	}
	return n
}

// waitFinals waits until at least n inputs have a final outcome.
func (cs *clusterStack) waitFinals(n int) {
	cs.t.Helper()
	cs.outcomes.WaitFor(cs.t, fmt.Sprintf("%d inputs with a final outcome", n), func(all []clusterOutcome) bool {
		return len(finals(all)) >= n
	})
}

// submissions counts the emulator's accepted submissions by operation
// kind (import or export).
func (cs *clusterStack) submissions() (imports, exports int) {
	for _, s := range cs.emu.Submissions() {
		if s.Operation == imsemu.OpExport {
			exports++
		} else {
			imports++
		}
	}
	return imports, exports
}

// ask bounds one of the test's own requests while it waits on the flow:
// a request lost in an election costs seconds, and the wait asks again.
func (cs *clusterStack) ask() (context.Context, context.CancelFunc) {
	return context.WithTimeout(cs.t.Context(), 5*time.Second)
}

// kvEntries lists bucket's keys and values, or fails if the listing did
// not complete (jetstream's ListKeys cannot tell a complete listing from
// one cut short).
func (cs *clusterStack) kvEntries(bucket string) (map[string]string, error) {
	ctx, cancel := cs.ask()
	defer cancel()
	kv, err := cs.js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	entries := map[string]string{}
	for {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil, fmt.Errorf("listing %s: the watcher stopped", bucket)
			case e == nil: // every key seen
				return entries, nil
			}
			entries[e.Key()] = string(e.Value())
		case <-ctx.Done():
			return nil, fmt.Errorf("listing %s: %w", bucket, ctx.Err())
		}
	}
}

// quiet waits until function's consumer on stream has nothing pending and
// nothing unacknowledged: every message it was given has been handled to
// its end.
func (cs *clusterStack) quiet(stream, function string) {
	cs.t.Helper()
	testenv.Until(cs.t, "the "+function+" consumer to have nothing pending or unacknowledged", func() (bool, string) {
		ctx, cancel := cs.ask()
		defer cancel()
		c, err := cs.js.Consumer(ctx, stream, function)
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.NumPending == 0 && info.NumAckPending == 0, fmt.Sprintf("%d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
	})
}

// submitted waits until IMS has accepted at least n imports.
func (cs *clusterStack) submitted(n int) {
	cs.t.Helper()
	testenv.Eventually(cs.t, fmt.Sprintf("%d imports submitted", n), func() bool {
		i, _ := cs.submissions()
		return i >= n
	})
}

// converge waits until every input has a final outcome and the flow is
// quiet, then checks exactly one final outcome per input, exactly one IMS
// submission per object and request, and no slot held.
func (cs *clusterStack) converge() {
	t := cs.t
	want := cs.inputs()
	testenv.Until(t, fmt.Sprintf("a final outcome for each of the %d inputs", len(want)), func() (bool, string) {
		got := finals(cs.outcomes.All())
		var missing []string
		for _, in := range want {
			if got[in] == 0 {
				missing = append(missing, in)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d without one: %v", len(missing), missing[:min(len(missing), 10)])
	})
	// Quiet: every input settled for good, and the poller done with every
	// job (it releases a job's slot after publishing its outcome, before
	// acknowledging the message).
	cs.quiet(runner.StreamIn, importer.Function)
	if cs.cfg.exports > 0 {
		cs.quiet(runner.StreamIn, exporter.Function)
	}
	cs.quiet(runner.StreamJobs, poller.Function)
	// What the stream holds now, after everything settled, against what
	// was recorded: a duplicate stored late shows here.
	testenv.Until(t, "every final outcome stored in "+runner.StreamOut+" to be recorded", func() (bool, string) {
		ctx, cancel := cs.ask()
		defer cancel()
		out, err := cs.js.Stream(ctx, runner.StreamOut)
		if err != nil {
			return false, err.Error()
		}
		info, err := out.Info(ctx, jetstream.WithSubjectFilter("imsflow.out.*.*"))
		if err != nil {
			return false, err.Error()
		}
		stored := 0
		for subj, n := range info.State.Subjects {
			st := events.Status(subj[strings.LastIndexByte(subj, '.')+1:])
			if (clusterOutcome{status: st}).final() && (strings.HasPrefix(subj, "imsflow.out.import.") || strings.HasPrefix(subj, "imsflow.out.export.")) {
				stored += int(n)
			}
		}
		recorded := 0
		for _, o := range cs.outcomes.All() {
			if o.final() {
				recorded++
			}
		}
		return recorded >= stored, fmt.Sprintf("%d stored, %d recorded", stored, recorded)
	})

	all := cs.outcomes.All()
	got := finals(all)
	for _, in := range want {
		if got[in] != 1 {
			var evs []string
			for _, o := range all {
				if o.input == in {
					evs = append(evs, fmt.Sprintf("#%d %s job %s", o.seq, o.subject, o.jobID))
				}
			}
			t.Errorf("%s: %d final outcomes, want 1: %v", in, got[in], evs)
		}
		delete(got, in)
	}
	for in, n := range got {
		t.Errorf("%d final outcomes for %s, which was never sent", n, in)
	}
	statuses := map[string]int{}
	for _, o := range all {
		if o.final() {
			statuses[o.subject]++
		}
	}
	t.Logf("final outcomes: %v", statuses)

	byURL := map[string]int{}
	imports, exports := 0, 0
	for _, s := range cs.emu.Submissions() {
		byURL[s.Operation+" "+s.URL]++
		if s.Operation == imsemu.OpExport {
			exports++
		} else {
			imports++
		}
	}
	if imports != cs.cfg.imports || exports != cs.cfg.exports {
		t.Errorf("IMS received %d imports and %d exports, want %d and %d", imports, exports, cs.cfg.imports, cs.cfg.exports)
	}
	for u, n := range byURL {
		if n != 1 {
			t.Errorf("IMS received %s %d times", u, n)
		}
	}

	// Every job has ended and the poller is quiet: no slot may be held.
	// (The poller's sweep frees, a minute or two later, a slot that no
	// claim or job holds: the repair after a crash, not the way a slot is
	// given back when nothing crashed. If one is held, the test says
	// whether and when the sweep repaired it.)
	var held map[string]string
	testenv.Until(t, "a listing of "+runner.BucketSlots, func() (ok bool, why string) {
		var err error
		held, err = cs.kvEntries(runner.BucketSlots)
		return err == nil, fmt.Sprint(err)
	})
	if len(held) == 0 {
		return
	}
	t.Errorf("%d slots still held (slot: owner) after every job ended and the poller went quiet: %v", len(held), held)
	since := time.Now()
	testenv.Until(t, "the sweep to free the slots left", func() (bool, string) {
		left, err := cs.kvEntries(runner.BucketSlots)
		return err == nil && len(left) == 0, fmt.Sprintf("held %v, error %v", left, err)
	})
	cs.logf("the sweep freed them after %s", time.Since(since).Round(time.Second))
}

// logf logs with the time, to read beside the functions' log.
func (cs *clusterStack) logf(format string, args ...any) {
	cs.t.Helper()
	cs.t.Logf("%s "+format, append([]any{time.Now().UTC().Format("15:04:05.000")}, args...)...)
}

// restartAfter restarts node once a quarter of the inputs have ended,
// and waits until it has rejoined.
func (cs *clusterStack) restartAfter(node int) {
	cs.t.Helper()
	cs.waitFinals(len(cs.inputs()) / 4)
	cs.logf("restarting %s", cs.c.Name(node))
	cs.c.Restart(cs.t, node)
	cs.c.WaitHealthy(cs.t, node)
	cs.logf("%s has rejoined", cs.c.Name(node))
}

// TestClusterJobsLeaderKilled: the leader of IMSFLOW_JOBS, which holds
// the hand-offs and every job's poll timer, is killed while every job is
// in flight with its timer armed; it comes back later. Every import and
// export still ends exactly once.
func TestClusterJobsLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node JetStream cluster and the whole flow")
	}
	t.Parallel()
	cs := newClusterStack(t, clusterConfig{imports: 60, exports: 20, slots: 100})
	cs.send()
	total := len(cs.inputs())
	// Every job tracked by the poller with its next query scheduled.
	testenv.Eventually(t, fmt.Sprintf("%d jobs submitted", total), func() bool {
		i, e := cs.submissions()
		return i+e == total
	})
	testenv.Eventually(t, fmt.Sprintf("%d jobs tracked", total), func() bool {
		jobs, err := cs.kvEntries(runner.BucketJobs)
		return err == nil && len(jobs) >= total
	})
	testenv.Eventually(t, fmt.Sprintf("%d poll timers armed", total), func() bool {
		ctx, cancel := cs.ask()
		defer cancel()
		s, err := cs.js.Stream(ctx, runner.StreamJobs)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter("imsflow.sched.poll.>"))
		return err == nil && len(info.State.Subjects) >= total
	})

	leader := cs.c.WaitStreamLeader(t, runner.StreamJobs)
	cs.logf("killing %s, leader of %s", cs.c.Name(leader), runner.StreamJobs)
	cs.c.Kill(leader)
	cs.logf("new leader %s", cs.c.Name(cs.c.WaitStreamLeader(t, runner.StreamJobs)))
	cs.clock.Release()
	cs.restartAfter(leader)
	cs.converge()
}

// TestClusterImportsBucketLeaderKilled: the leader of the imsflow_imports
// bucket, where each import claims its object version and then records
// its job by compare-and-set, is killed while imports are claiming: IMS
// answers slowly, so at any moment several imports hold a claim and wait
// for IMS before their compare-and-set, and most have not claimed yet.
// Every import still ends exactly once, with one IMS job.
func TestClusterImportsBucketLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node JetStream cluster and the whole flow")
	}
	t.Parallel()
	const imports = 120
	cs := newClusterStack(t, clusterConfig{imports: imports, slots: imports})
	if err := cs.emu.SetFaults(imsemu.Faults{Latency: imsemu.Duration(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	cs.send()
	cs.submitted(imports / 4)

	leader := cs.c.WaitKVLeader(t, runner.BucketImports)
	i, _ := cs.submissions()
	cs.logf("killing %s, leader of %s, with %d of %d imports submitted", cs.c.Name(leader), testenv.KVStream(runner.BucketImports), i, imports)
	cs.c.Kill(leader)
	cs.logf("new leader %s", cs.c.Name(cs.c.WaitKVLeader(t, runner.BucketImports)))
	if err := cs.emu.SetFaults(imsemu.Faults{}); err != nil {
		t.Fatal(err)
	}
	cs.clock.Release()
	cs.restartAfter(leader)
	cs.converge()
}

// TestClusterImportConsumerLeaderKilled: the leader of the import
// function's durable consumer is killed mid-batch: a third of the
// imports submitted and holding every slot, others delivered again and
// again while they wait for a slot (each wait a negative acknowledgement
// with a delay, which the consumer keeps), the rest not delivered yet.
// Every import still ends exactly once.
func TestClusterImportConsumerLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node JetStream cluster and the whole flow")
	}
	t.Parallel()
	const imports, slots = 120, 40
	cs := newClusterStack(t, clusterConfig{imports: imports, slots: slots})
	cs.send()
	cs.submitted(slots)
	// Redelivered waiting imports take the consumer's turns ahead of the
	// ones not delivered yet: wait for deliveries, not for every import.
	testenv.Eventually(t, "the waiting imports delivered again", func() bool {
		ctx, cancel := cs.ask()
		defer cancel()
		c, err := cs.js.Consumer(ctx, runner.StreamIn, importer.Function)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.Delivered.Consumer > imports
	})

	leader := cs.c.WaitConsumerLeader(t, runner.StreamIn, importer.Function)
	cs.logf("killing %s, leader of consumer %s", cs.c.Name(leader), importer.Function)
	cs.c.Kill(leader)
	cs.logf("new leader %s", cs.c.Name(cs.c.WaitConsumerLeader(t, runner.StreamIn, importer.Function)))
	cs.clock.Release()
	cs.restartAfter(leader)
	cs.converge()
}
