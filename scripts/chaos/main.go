// Command chaos runs imsflow as real processes under faults and says
// whether it converged (make chaos, make chaos-short).
//
//	go run ./scripts/chaos [-short | -profile short|default|long] [flags]
//
// It builds the functions, the imsflow command (for its IMS emulator) and
// nats-server, then starts a three-node JetStream cluster on loopback, an
// emulator that fails 20% of requests, drops 5% of connections (after a
// submission took effect) and throttles, and two replicas each of the
// import, export and poller functions. It publishes thousands of mixed
// inputs (object notifications of every format and size, RAW files with
// their bitmaps before or after, invalid ones, export requests, some sent
// twice) while it kill -9s function replicas and the NATS node leading
// IMSFLOW_JOBS on a schedule drawn from -seed. The faults stop at a fixed
// point; it waits for every input's final outcome (bounded), then counts,
// from IMSFLOW_OUT, IMSFLOW_DLQ, imsflow_slots and the emulator's
// submissions: lost inputs, duplicate IMS jobs, duplicate completions,
// dead letters, slots left held, and the time to drain. It prints one
// table and a last line "chaos: PASS|FAIL ...", and exits 0 only when
// every goal is met (1: a goal missed; 2: the harness itself could not
// run; 130: interrupted). Every process is killed when it ends; the run
// directory (logs, NATS stores, timeline) is printed, and kept unless the
// run passed. See docs/chaos.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// profile sizes a run.
type profile struct {
	Name  string
	Items int
	// Feed is how long the inputs are published for.
	Feed time.Duration
	// Faults happen between FaultStart and FaultEnd (after the feed
	// starts): a function replica killed every KillEvery (0: one kill of
	// each function), and NATSKills kills of the IMSFLOW_JOBS leader.
	FaultStart, FaultEnd time.Duration
	KillEvery            time.Duration
	NATSKills            int
	// Drain bounds the wait for every outcome after the last fault and
	// the last input.
	Drain time.Duration
}

var profiles = map[string]profile{
	"short":   {Name: "short", Items: 300, Feed: 40 * time.Second, FaultStart: 6 * time.Second, FaultEnd: 36 * time.Second, NATSKills: 1, Drain: 4 * time.Minute},
	"default": {Name: "default", Items: 2000, Feed: 180 * time.Second, FaultStart: 10 * time.Second, FaultEnd: 170 * time.Second, KillEvery: 12 * time.Second, NATSKills: 2, Drain: 6 * time.Minute},
	"long":    {Name: "long", Items: 10000, Feed: 20 * time.Minute, FaultStart: 15 * time.Second, FaultEnd: 19 * time.Minute, KillEvery: 20 * time.Second, NATSKills: 8, Drain: 15 * time.Minute},
	// cluster is -compose's (make test-cluster): the scenarios start
	// spread over FaultStart-FaultEnd, one after the other; the load stays
	// under what the emulator clears, so that a canary's time is the
	// pipeline's recovery, not a backlog.
	"cluster": {Name: "cluster", Items: 240, Feed: 120 * time.Second, FaultStart: 6 * time.Second, FaultEnd: 100 * time.Second, Drain: 150 * time.Second},
}

// options are the command line.
type options struct {
	prof       profile
	seed       uint64
	settle     time.Duration
	startBound time.Duration
	dir, src   string
	rev        string
	bin        string
	keep       bool
	verbose    bool
	// The emulator's faults and pace.
	errorRate, dropRate float64
	acceptBeforeDrop    bool
	imsFaultsInDrain    bool
	rateLimit           float64
	rateBurst, maxJobs  int
	timeScale           float64
	imsRate             float64
	imsBurst            int
	env                 []string
	// The compose backend: the compose directory ("" runs processes),
	// -preflight, the scenarios, and when make test-cluster began.
	compose   string
	preflight bool
	scenarios []string
	cut       time.Duration
	started   time.Time
}

type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, ",") }
func (e *envFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./scripts/chaos [-short | -profile short|default|long] [flags]\n\n"+
			"Runs imsflow as real processes (3 NATS nodes, 2 replicas of each function, a faulty IMS emulator)\n"+
			"under kill -9 faults, and prints one table; exit 0 when every goal is met. See docs/chaos.md.\n\n")
		fs.PrintDefaults()
	}
	var o options
	short := fs.Bool("short", false, "the short profile (a few hundred inputs, one kill of each kind; for CI)")
	name := fs.String("profile", "default", "short, default, long, or cluster (the default with -compose)")
	items := fs.Int("items", 0, "inputs (0: the profile's)")
	feed := fs.Duration("feed", 0, "how long inputs are published (0: the profile's)")
	drain := fs.Duration("drain", 0, "bound of the wait for every outcome after the last fault and input (0: the profile's)")
	killEvery := fs.Duration("kill-every", 0, "mean interval of replica kills (0: the profile's)")
	natsKills := fs.Int("nats-kills", -1, "kills of the IMSFLOW_JOBS leader (-1: the profile's)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the inputs and the fault schedule")
	fs.DurationVar(&o.settle, "settle", 10*time.Second, "wait after the drain for late duplicates and slot releases")
	fs.DurationVar(&o.startBound, "start-timeout", 2*time.Minute, "bound of the wait for the functions to create their streams and consumers")
	fs.StringVar(&o.dir, "dir", "", "run directory (default: a new one under $TMPDIR)")
	fs.StringVar(&o.src, "src", ".", "the imsflow module to build the functions and the emulator from")
	fs.StringVar(&o.rev, "rev", "", "build from this git revision of -src (git archive into the run directory) instead of its working tree")
	fs.StringVar(&o.bin, "bin", "", "use the binaries in this directory (nats-server, import, export, poller, imsflow) instead of building")
	fs.BoolVar(&o.keep, "keep", false, "keep the run directory even when the run passes")
	fs.BoolVar(&o.verbose, "v", false, "print the timeline (every start, kill and exit) as it happens")
	fs.Float64Var(&o.errorRate, "error-rate", 0.2, "emulator: fraction of IMS requests answered 500/503")
	fs.Float64Var(&o.dropRate, "drop-rate", 0.05, "emulator: fraction of connections dropped unanswered")
	fs.BoolVar(&o.acceptBeforeDrop, "accept-before-drop", true, "emulator: a dropped submission takes effect first")
	fs.BoolVar(&o.imsFaultsInDrain, "ims-faults-in-drain", false, "emulator: keep the 5xx and dropped connections on after the fault window (the drain bound then holds only with luck: a message's backoff grows with its failures)")
	fs.Float64Var(&o.rateLimit, "rate-limit", 30, "emulator: IMS requests per second before 429 (below what the pipeline asks for at its peaks)")
	fs.IntVar(&o.rateBurst, "rate-burst", 10, "emulator: burst of that limit")
	fs.IntVar(&o.maxJobs, "max-jobs", 40, "emulator: running import jobs before IMG.0194")
	fs.Float64Var(&o.timeScale, "time-scale", 30, "emulator: IMS jobs run this many times faster (30: 1 GB in about 0.13 s, 300 GB in 40 s)")
	fs.Float64Var(&o.imsRate, "ims-rate", 60, "IMS_RATE_LIMIT of the functions (shared by all six)")
	fs.IntVar(&o.imsBurst, "ims-burst", 20, "IMS_RATE_BURST of the functions")
	fs.Var((*envFlag)(&o.env), "env", "KEY=VALUE for every function process (repeatable; overrides the harness's settings)")
	fs.StringVar(&o.compose, "compose", "", "run the compose deployment in this directory (deploy/compose) in Docker instead of processes, under the -scenarios (make test-cluster)")
	fs.BoolVar(&o.preflight, "preflight", false, "with -compose: only check that Docker and Compose answer (exit 0; 3 with a banner when they do not and CI=true IMSFLOW_REQUIRE_DOCKER=1 is not set; else 1)")
	scen := fs.String("scenarios", strings.Join(scenarioNames, ","), "with -compose: the faults, in order")
	fs.DurationVar(&o.cut, "cut", 14*time.Second, "with -compose: how long the partition keeps its node off the network")
	started := fs.Int64("started", 0, "with -compose: when make test-cluster began (Unix seconds), to count the image build in the duration")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if o.compose != "" {
		if o.rev != "" || o.bin != "" {
			return o, errors.New("-rev and -bin build processes; -compose runs the images (go run ./scripts/image)")
		}
		if !explicit["profile"] && !*short {
			*name = "cluster"
		}
		for _, n := range strings.Split(*scen, ",") {
			if n = strings.TrimSpace(n); n != "" {
				o.scenarios = append(o.scenarios, n)
			}
		}
		if o.cut < time.Second {
			return o, errors.New("-cut: at least 1s")
		}
		if _, err := newScenarios(o.scenarios, o.seed, o.cut); err != nil {
			return o, err
		}
		if *started > 0 {
			o.started = time.Unix(*started, 0)
		}
	} else if o.preflight || explicit["scenarios"] || explicit["started"] || explicit["cut"] {
		return o, errors.New("-preflight, -scenarios, -cut and -started go with -compose")
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *short {
		*name = "short"
	}
	p, ok := profiles[*name]
	if !ok {
		return o, fmt.Errorf("-profile %q: want short, default, long or cluster", *name)
	}
	if *items > 0 {
		p.Items = *items
	}
	if *feed > 0 {
		scale := float64(*feed) / float64(p.Feed)
		p.Feed = *feed
		p.FaultStart = time.Duration(float64(p.FaultStart) * scale)
		p.FaultEnd = time.Duration(float64(p.FaultEnd) * scale)
	}
	if *drain > 0 {
		p.Drain = *drain
	}
	if *killEvery > 0 {
		p.KillEvery = *killEvery
	}
	if *natsKills >= 0 {
		p.NATSKills = *natsKills
	}
	o.prof = p
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	// The signals stay caught until the harness has cleaned up: a second
	// Ctrl-C does not cut a teardown short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if o.preflight {
		return preflight(ctx, os.Stdout, os.Stderr)
	}
	h := &harness{o: o, out: os.Stdout, errw: os.Stderr}
	if o.compose != "" {
		if _, _, problem := composeTool(ctx); problem != "" {
			if code := preflight(ctx, os.Stdout, os.Stderr); code != exitSkipped {
				return code
			}
			return 0
		}
		dir, err := filepath.Abs(o.compose)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 2
		}
		h.cr = &composeRun{dir: dir, project: fmt.Sprintf("imsflow-ct-%d", os.Getpid())}
		h.scen, _ = newScenarios(o.scenarios, o.seed, o.cut)
	}
	return h.run(ctx)
}

// harness is one run.
type harness struct {
	o         options
	out, errw io.Writer
	start     time.Time
	dir       string
	logDir    string
	binDir    string
	source    string
	sup       *supervisor
	nodes     []*natsNode
	emuURL    string
	emuProc   *proc
	fns       map[string]*proc // import-1 ...
	nc        *nats.Conn
	js        jetstream.JetStream
	w         *workload
	faults    []fault
	// The compose backend (nil: processes) and its scenarios.
	cr    *composeRun
	scen  []*scenario
	index *itemIndex
	live  *tally
	// lc follows the lifecycle completions; a failed one gets its legs
	// retried (lifecycle.go).
	lc      *lcTally
	retryWG sync.WaitGroup

	mu          sync.Mutex
	feedStart   time.Time
	published   map[int]bool     // inputs of which at least one copy is stored
	seqs        map[int][]uint64 // IMSFLOW_IN sequences of each input's copies (its bitmap's too)
	pubFailed   []string         // publications that never got stored
	lastPublish time.Time
	lastFault   time.Time // the end of the last fault: the victim started again (a NATS node: healthy)
	faultsDone  int
	faultLog    []string
	down        map[string]bool
	phase       map[string]time.Duration
	retried     map[string]bool // lifecycle:generation whose failed legs were retried
	retrying    int             // retries being published
	counting    bool            // the count began: no more retries
	lcStuck     string          // why the drain stopped before its bound: the open lifecycles cannot move
	retries     []retrySent
	lcFaults    []string // the faults that hit running lifecycles
}

func (h *harness) say(format string, args ...any) {
	fmt.Fprintf(h.errw, "[%s] %s\n", since(h.start), fmt.Sprintf(format, args...))
}

func (h *harness) run(ctx context.Context) (code int) {
	h.start = time.Now()
	h.phase = map[string]time.Duration{}
	h.published, h.seqs, h.down, h.retried = map[int]bool{}, map[int][]uint64{}, map[string]bool{}, map[string]bool{}
	if err := h.prepareDir(); err != nil {
		fmt.Fprintln(h.errw, "chaos:", err)
		return 2
	}
	timeline, err := os.Create(filepath.Join(h.dir, "timeline.log"))
	if err != nil {
		fmt.Fprintln(h.errw, "chaos:", err)
		return 2
	}
	defer timeline.Close()
	var notes io.Writer = timeline
	if h.o.verbose {
		notes = io.MultiWriter(timeline, h.errw)
	}
	h.sup = &supervisor{t0: h.start, notes: notes}
	if h.cr != nil {
		h.cr.runDir, h.cr.notes = h.dir, h.sup.note
	}
	defer func() {
		h.sup.stopAll()
		if h.nc != nil {
			h.nc.Close()
		}
		if h.cr != nil {
			code = h.composeDown(code)
		}
		h.finish(code)
	}()
	p := h.o.prof
	h.say("%s: profile %s, %d inputs over %s, seed %d; run directory %s", h.name(), p.Name, p.Items, p.Feed, h.o.seed, h.dir)

	step := time.Now()
	if err := h.build(ctx); err != nil {
		fmt.Fprintln(h.errw, "chaos:", err)
		return exitFor(ctx, 2)
	}
	h.phase["build"] = time.Since(step)

	h.w = newWorkload(p.Items, p.Feed, h.o.seed)
	if h.cr != nil {
		for _, s := range h.scen {
			s.canaries = h.w.addCanaries(canariesPerScenario)
		}
	} else {
		h.faults = schedule(p, h.o.seed)
	}
	h.index = newItemIndex(h.w.Items)
	h.live = newTally(h.index)
	h.lc = newLCTally(h.index)
	if err := h.writePlan(); err != nil {
		fmt.Fprintln(h.errw, "chaos:", err)
		return 2
	}

	step = time.Now()
	if h.cr != nil {
		err = h.startCompose(ctx)
	} else {
		err = h.startAll(ctx)
	}
	if err != nil {
		fmt.Fprintln(h.errw, "chaos:", err)
		return exitFor(ctx, 2)
	}
	if err := h.waitReady(ctx); err != nil {
		// The functions never got their topology up: that is imsflow's
		// failure to start against this cluster, not the harness's.
		fmt.Fprintln(h.errw, "chaos:", err)
		h.printCrashes(h.errw)
		fmt.Fprintf(h.out, "%s: FAIL startup: %v (logs in %s)\n", h.name(), err, h.logDir)
		return exitFor(ctx, 1)
	}
	h.phase["start"] = time.Since(step)

	stopLive, err := h.collect(ctx)
	if err != nil {
		fmt.Fprintln(h.errw, "chaos:", err)
		return exitFor(ctx, 2)
	}
	defer stopLive()

	h.mu.Lock()
	h.feedStart = time.Now()
	h.mu.Unlock()
	h.say("feeding %d messages (%d inputs) for %s; %d faults planned", len(h.w.Pubs), len(h.w.Items), p.Feed, h.planned())
	var wg sync.WaitGroup
	wg.Go(func() { h.feed(ctx) })
	if h.cr != nil {
		wg.Go(func() { h.runScenarios(ctx) })
	} else {
		wg.Go(func() { h.runFaults(ctx) })
	}
	progressDone := make(chan struct{})
	go h.progress(ctx, progressDone)
	wg.Wait()
	if ctx.Err() != nil {
		close(progressDone)
		return 130
	}
	h.phase["feed"] = time.Since(h.feedStart)
	if !h.o.imsFaultsInDrain {
		if err := h.calmIMS(ctx); err != nil {
			fmt.Fprintln(h.errw, "chaos:", err)
			return exitFor(ctx, 2)
		}
	}

	// The drain: every input published has its final outcome, or the bound.
	h.mu.Lock()
	drainStart := h.lastPublish
	if h.lastFault.After(drainStart) {
		drainStart = h.lastFault
	}
	h.mu.Unlock()
	want, wantLC := h.expected(), h.lifecycleWant()
	h.say("faults over; waiting up to %s for %d outcomes and %d lifecycles", p.Drain, len(want), len(wantLC))
	deadline := drainStart.Add(p.Drain)
	var watch stuckWatch
	for (len(h.live.pending(want)) > 0 || len(h.lc.pending(wantLC)) > 0) && time.Now().Before(deadline) && ctx.Err() == nil {
		// Lifecycles that can never move are not waited for to the bound.
		if open := len(h.lc.pending(wantLC)); open > 0 && h.lifecyclesStuck(ctx, &watch, wantLC, len(h.live.pending(want))) {
			h.lcStuck = fmt.Sprintf("%d lifecycles cannot move (%s)", open, watch.reason)
			h.say("not waiting to the bound: %s", h.lcStuck)
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	close(progressDone)
	if ctx.Err() != nil {
		return 130
	}
	h.phase["drain-wait"] = time.Since(drainStart)
	h.phase["after-feed"] = time.Since(h.feedStart) - h.phase["feed"]
	h.say("settling for %s, then counting", h.o.settle)
	select {
	case <-ctx.Done():
		return 130
	case <-time.After(h.o.settle):
	}
	if h.cr != nil {
		// The containers' output, for the report's log summaries and the
		// evidence, while they are still there.
		h.cr.saveLogs(ctx, h.logDir)
		h.noteSilences()
	}
	rep, err := h.account(ctx, drainStart, want)
	if err != nil {
		fmt.Fprintln(h.errw, "chaos: counting failed:", err)
		return exitFor(ctx, 2)
	}
	h.phase["total"] = time.Since(h.start)
	rep.print(h, h.out)
	if rep.pass() {
		return 0
	}
	return 1
}

// name is the harness's name in its output.
func (h *harness) name() string {
	if h.cr != nil {
		return "test-cluster"
	}
	return "chaos"
}

// planned is the number of faults to carry out.
func (h *harness) planned() int {
	if h.cr != nil {
		return len(h.scen)
	}
	return len(h.faults)
}

// composeDown saves the containers' logs (when the run got that far and
// they are not saved yet) and removes the project, unless -keep; a
// project it cannot remove turns a pass into exit 2.
func (h *harness) composeDown(code int) int {
	c := h.cr
	if !c.upCalled() {
		_ = c.teardown() // stops docker events, if it runs
		return code
	}
	c.saveLogs(context.Background(), h.logDir)
	if h.o.keep {
		fmt.Fprintf(h.errw, "test-cluster: -keep: the compose project %s is still up; %s ps | logs SERVICE | down -v --remove-orphans\n",
			c.project, filepath.Join(h.dir, "compose.sh"))
		return code
	}
	began := time.Now()
	if err := c.teardown(); err != nil {
		fmt.Fprintf(h.errw, "test-cluster: TEARDOWN INCOMPLETE: %v\n  remove it with: %s down -v --remove-orphans\n", err, filepath.Join(h.dir, "compose.sh"))
		if code == 0 {
			code = 2
		}
		h.o.keep = true // keep compose.sh
		return code
	}
	fmt.Fprintf(h.errw, "test-cluster: compose project %s removed (containers, network, volumes) in %s; %s since make test-cluster began\n",
		c.project, time.Since(began).Round(100*time.Millisecond), time.Since(h.began()).Round(time.Second))
	return code
}

// began is when the run began: make test-cluster's start (-started,
// before the image build) or the harness's.
func (h *harness) began() time.Time {
	if !h.o.started.IsZero() && h.o.started.Before(h.start) {
		return h.o.started
	}
	return h.start
}

func exitFor(ctx context.Context, code int) int {
	if ctx.Err() != nil {
		return 130
	}
	return code
}

func (h *harness) finish(code int) {
	switch {
	case code == 0 && !h.o.keep && h.o.dir == "":
		if err := os.RemoveAll(h.dir); err == nil {
			fmt.Fprintf(h.errw, "chaos: run directory %s removed (passed; -keep keeps it)\n", h.dir)
			return
		}
		fallthrough
	default:
		if code == 130 {
			fmt.Fprintf(h.errw, "chaos: interrupted; every process killed; run directory kept: %s\n", h.dir)
			return
		}
		fmt.Fprintf(h.errw, "chaos: run directory kept: %s (logs in %s)\n", h.dir, h.logDir)
	}
}

func (h *harness) prepareDir() error {
	var err error
	if h.o.dir != "" {
		h.dir, err = filepath.Abs(h.o.dir)
		if err == nil {
			err = os.MkdirAll(h.dir, 0o755)
		}
		if err == nil {
			var entries []os.DirEntry
			entries, err = os.ReadDir(h.dir)
			if err == nil && len(entries) > 0 {
				err = fmt.Errorf("-dir %s is not empty", h.dir)
			}
		}
	} else {
		h.dir, err = os.MkdirTemp("", "imsflow-chaos-")
	}
	if err != nil {
		return err
	}
	h.logDir = filepath.Join(h.dir, "logs")
	return os.MkdirAll(h.logDir, 0o755)
}

// build compiles nats-server (from its module, a dependency of imsflow),
// the functions and the imsflow command into the run directory.
func (h *harness) build(ctx context.Context) error {
	src, err := filepath.Abs(h.o.src)
	if err != nil {
		return err
	}
	h.source = describeSource(src)
	if h.cr != nil {
		if err := h.cr.prepare(ctx); err != nil {
			return err
		}
		h.source = "images " + strings.Join(h.cr.images, ", ") + "; working tree " + h.source
		return nil
	}
	if h.o.bin != "" {
		h.binDir, err = filepath.Abs(h.o.bin)
		if err != nil {
			return err
		}
		h.source = "prebuilt binaries in " + h.binDir
		for _, b := range append([]string{"nats-server", "imsflow"}, functions...) {
			if _, err := os.Stat(filepath.Join(h.binDir, b)); err != nil {
				return fmt.Errorf("-bin: %w", err)
			}
		}
		return nil
	}
	if h.o.rev != "" {
		if src, err = h.checkout(ctx, src); err != nil {
			return err
		}
	}
	h.binDir = filepath.Join(h.dir, "bin")
	h.say("building nats-server, %s and imsflow from %s", strings.Join(functions, ", "), h.source)
	args := []string{"build", "-o", h.binDir + string(filepath.Separator), "github.com/nats-io/nats-server/v2", "./cmd/imsflow"}
	for _, fn := range functions {
		args = append(args, "./functions/"+fn)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = src
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build in %s: %v\n%s", src, err, out)
	}
	return nil
}

// checkout extracts -rev of the repository at src into the run directory
// (git archive: the repository is only read) and returns where.
func (h *harness) checkout(ctx context.Context, src string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", src, "log", "-1", "--format=%H %h %s", h.o.rev+"^{commit}", "--").Output()
	if err != nil {
		return "", fmt.Errorf("-rev %s: not a commit of %s: %v", h.o.rev, src, err)
	}
	fields := strings.SplitN(strings.TrimSpace(string(out)), " ", 3)
	if len(fields) < 2 {
		return "", fmt.Errorf("-rev %s: git log said %q", h.o.rev, out)
	}
	dst := filepath.Join(h.dir, "src")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	archive := exec.CommandContext(ctx, "git", "-C", src, "archive", "--format=tar", fields[0])
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dst)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr, untar.Stderr = &stderr, &stderr
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return "", fmt.Errorf("git archive %s: %v: %s", fields[0], err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("tar: %v: %s", err, stderr.String())
	}
	h.source = fmt.Sprintf("%s @ %s (-rev %s", src, fields[1], h.o.rev)
	if len(fields) == 3 {
		h.source += ": " + clip(fields[2], 70)
	}
	h.source += ")"
	return dst, nil
}

// describeSource names the commit the binaries come from, and whether the
// working tree differs from it.
func describeSource(dir string) string {
	rev, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return dir
	}
	s := fmt.Sprintf("%s @ %s", dir, strings.TrimSpace(string(rev)))
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		s += " + uncommitted changes"
	}
	return s
}

// writePlan records the inputs and the fault schedule in the run
// directory.
func (h *harness) writePlan() error {
	b, _ := json.MarshalIndent(h.w.Items, "", " ")
	if err := os.WriteFile(filepath.Join(h.dir, "inputs.json"), b, 0o644); err != nil {
		return err
	}
	var lines []string
	for _, f := range h.faults {
		lines = append(lines, f.String())
	}
	for i, s := range h.scen {
		lines = append(lines, fmt.Sprintf("%d. %s: %s", i+1, s.Name, s.describe()))
	}
	return os.WriteFile(filepath.Join(h.dir, "faults-planned.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// baseEnv is what every child gets from the harness's environment: no
// NATS_*, IMS_* or other imsflow setting leaks in.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// functionEnv is the configuration of every function process: the
// cluster with R3, the emulator, and short waits so that jobs, claims and
// ack waits turn over within the run (each function's own checks hold:
// claim TTLs above ack waits, bitmap looks under half the deliveries).
func (h *harness) functionEnv() []string {
	var urls []string
	for _, n := range h.nodes {
		urls = append(urls, n.url())
	}
	env := append(baseEnv(), "NATS_URL="+strings.Join(urls, ","), "NATS_REPLICAS=3", "LOG_LEVEL=info", "IMS_ENDPOINT="+h.emuURL,
		"IMS_REGION_ENDPOINT="+h.emuURL+"/region/{region}", "IMPORT_RULES_FILE="+filepath.Join(h.dir, "rules.json"))
	return append(env, h.functionSettings()...)
}

// functionSettings is the part of the functions' configuration that both
// backends share: the emulator's keys, IMS pacing and the short waits,
// then -env (later entries win: os/exec and env files keep the last of
// duplicates).
func (h *harness) functionSettings() []string {
	env := []string{
		"HUAWEICLOUD_SDK_AK=IMSFLOWLOCALAK", "HUAWEICLOUD_SDK_SK=imsflow-local-secret-key",
		"HUAWEICLOUD_SDK_PROJECT_ID=0000000000000000000000000000f10c",
		fmt.Sprintf("IMS_RATE_LIMIT=%g", h.o.imsRate), fmt.Sprintf("IMS_RATE_BURST=%d", h.o.imsBurst), "IMS_THROTTLE_WAIT=2s",
		// import
		"IMPORT_ACK_WAIT=10s", "IMPORT_CLAIM_TTL=15s", "IMPORT_SLOT_WAIT=5s", "IMPORT_BITMAP_WAIT=5m", "IMPORT_BITMAP_POLL=15s",
		fmt.Sprintf("IMS_MAX_INFLIGHT=%d", max(h.o.maxJobs, 0)),
		// export
		"EXPORT_ACK_WAIT=10s", "EXPORT_CLAIM_TTL=15s", "EXPORT_BUSY_WAIT=5s",
		// poller
		"POLL_FIRST=1s", "POLL_MIN=1s", "POLL_MAX=5s", "POLL_MAX_AIMED=15s", "POLL_TARGET_DELAY=2s", "POLLER_ACK_WAIT=10s",
	}
	env = append(env, regionSettings()...)
	return append(env, h.o.env...)
}

// startAll starts the three NATS nodes, the emulator (seeded) and the six
// function replicas. The functions start as soon as the nodes accept
// connections, while the cluster may still be electing, as after a
// deployment.
func (h *harness) startAll(ctx context.Context) error {
	// 3 nodes × client, route, monitoring; the emulator; each function
	// process's ADMIN_ADDR (by default all would take :8081).
	ports, err := freePorts(10 + len(functions)*replicas)
	if err != nil {
		return err
	}
	for i := range 3 {
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), client: ports[3*i], route: ports[3*i+1], mon: ports[3*i+2],
			dir: filepath.Join(h.dir, fmt.Sprintf("nats-%d", i+1))}
		h.nodes = append(h.nodes, n)
	}
	if err := writeNodeConfigs(h.nodes); err != nil {
		return err
	}
	for i, n := range h.nodes {
		n.proc = h.sup.add(&proc{name: fmt.Sprintf("nats-%d", i+1), bin: filepath.Join(h.binDir, "nats-server"),
			args: []string{"-c", n.confPath()}, env: baseEnv(), logPath: filepath.Join(h.logDir, fmt.Sprintf("nats-%d.log", i+1)), restartOnCrash: true})
		if err := h.sup.start(n.proc); err != nil {
			return err
		}
	}
	for _, n := range h.nodes {
		if err := waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", n.client), 30*time.Second); err != nil {
			return fmt.Errorf("nats %s: %w (see %s)", n.name, err, n.proc.logPath)
		}
	}
	if err := h.startEmulator(ctx, ports[9]); err != nil {
		return err
	}
	h.fns = map[string]*proc{}
	env := h.functionEnv()
	admin := ports[10:]
	for _, fn := range functions {
		for r := 1; r <= replicas; r++ {
			name := fmt.Sprintf("%s-%d", fn, r)
			// Before -env's entries, which come last in env and win.
			penv := slices.Insert(slices.Clone(env), len(env)-len(h.o.env), fmt.Sprintf("ADMIN_ADDR=127.0.0.1:%d", admin[0]))
			admin = admin[1:]
			p := h.sup.add(&proc{name: name, bin: filepath.Join(h.binDir, fn), env: penv,
				logPath: filepath.Join(h.logDir, name+".log"), restartOnCrash: true})
			h.fns[name] = p
			if err := h.sup.start(p); err != nil {
				return err
			}
		}
	}
	return h.connect()
}

// connect is the harness's own connection, to every node: it fails over
// when one goes. Pings every second find a node cut off the network (no
// reset comes from it) within seconds.
func (h *harness) connect() error {
	var urls []string
	for _, n := range h.nodes {
		urls = append(urls, n.url())
	}
	var err error
	h.nc, err = nats.Connect(strings.Join(urls, ","), nats.Name("imsflow-chaos"), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true), nats.PingInterval(time.Second), nats.MaxPingsOutstanding(3))
	if err != nil {
		return fmt.Errorf("connect to the cluster: %w", err)
	}
	h.js, err = jetstream.New(h.nc)
	return err
}

// emulatorFiles writes the emulator's catalogue (every object the
// notifications name) and its failure rules (the imports of chaos/fail-*,
// the scripted copy failures) into the run directory, with the rules file
// of the functions and the emulator's other account (lifecycle.go).
func (h *harness) emulatorFiles() (objFile, failFile string, err error) {
	objects, _ := json.Marshal(h.w.catalogue())
	objFile = filepath.Join(h.dir, "objects.json")
	failFile = filepath.Join(h.dir, "failures.json")
	rules := append([]map[string]any{{"key_pattern": failPrefix + "*", "error_code": "IMG.1075",
		"fail_reason": "registering the image file failed (scripted by chaos)", "at_percent": 0.5}}, h.w.copyFailures()...)
	failures, _ := json.MarshalIndent(rules, "", " ")
	if _, _, err := h.lifecycleFiles(); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(objFile, objects, 0o644); err != nil {
		return "", "", err
	}
	return objFile, failFile, os.WriteFile(failFile, failures, 0o644)
}

func (h *harness) startEmulator(ctx context.Context, port int) error {
	objFile, failFile, err := h.emulatorFiles()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	h.emuURL = "http://" + addr
	args := []string{"emulator", "-addr", addr, "-objects", objFile, "-failures", failFile,
		"-error-rate", fmt.Sprint(h.o.errorRate), "-drop-rate", fmt.Sprint(h.o.dropRate),
		"-rate-limit", fmt.Sprint(h.o.rateLimit), "-rate-burst", fmt.Sprint(h.o.rateBurst),
		"-max-jobs", fmt.Sprint(h.o.maxJobs), "-quota", "-1", "-time-scale", fmt.Sprint(h.o.timeScale),
		"-seed", fmt.Sprint(h.o.seed), "-regions", emulatorRegions(), "-accounts", filepath.Join(h.dir, "accounts.json")}
	if h.o.acceptBeforeDrop {
		args = append(args, "-accept-before-drop")
	}
	// The emulator holds the record of every IMS job: it is not a fault
	// target, and not restarted (a new one would have forgotten them).
	h.emuProc = h.sup.add(&proc{name: "emulator", bin: filepath.Join(h.binDir, "imsflow"), args: args, env: baseEnv(),
		logPath: filepath.Join(h.logDir, "emulator.log")})
	if err := h.sup.start(h.emuProc); err != nil {
		return err
	}
	if err := waitTCP(ctx, addr, 30*time.Second); err != nil {
		return fmt.Errorf("emulator: %w (see %s)", err, h.emuProc.logPath)
	}
	return h.seedEmulator(ctx, false)
}

// seedEmulator gives the emulator the export bucket and the images the
// exports name and, with catalogue (an emulator started without -objects
// and -failures: the compose backend's), the objects the notifications
// name and the failure rule, through its admin API.
func (h *harness) seedEmulator(ctx context.Context, catalogue bool) error {
	if catalogue {
		objFile, failFile, err := h.emulatorFiles()
		if err != nil {
			return err
		}
		var objects json.RawMessage
		var rules []json.RawMessage
		for _, f := range []struct {
			path string
			into any
		}{{objFile, &objects}, {failFile, &rules}} {
			b, err := os.ReadFile(f.path)
			if err == nil {
				err = json.Unmarshal(b, f.into)
			}
			if err != nil {
				return err
			}
		}
		if err := postJSON(ctx, h.emuURL+"/_emulator/objects", objects); err != nil {
			return fmt.Errorf("emulator: seed the objects: %w", err)
		}
		for _, r := range rules {
			if err := postJSON(ctx, h.emuURL+"/_emulator/failures", r); err != nil {
				return fmt.Errorf("emulator: add the failure rule: %w", err)
			}
		}
	}
	if err := postJSON(ctx, h.emuURL+"/_emulator/buckets", map[string]string{"name": bucketExports}); err != nil {
		return fmt.Errorf("emulator: %w", err)
	}
	for _, im := range h.w.images() {
		if err := postJSON(ctx, h.emuURL+"/_emulator/images", im); err != nil {
			return fmt.Errorf("emulator: seed image %s: %w", im.ID, err)
		}
	}
	return nil
}

// waitReady waits until the functions have created imsflow's streams,
// buckets and consumers, and every node is healthy.
func (h *harness) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(h.o.startBound)
	missing := "?"
	for time.Now().Before(deadline) {
		missing = h.missingTopology(ctx)
		if missing == "" {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if missing != "" {
		return fmt.Errorf("after %s the functions had not created %s", h.o.startBound, missing)
	}
	for _, n := range h.nodes {
		if err := n.waitHealthy(ctx, time.Until(deadline)+10*time.Second); err != nil {
			return err
		}
	}
	if h.cr != nil {
		h.say("%s", h.cr.probeAdmin(ctx))
		if err := h.cr.waitUp(ctx, time.Until(deadline)+10*time.Second, functionServices...); err != nil {
			return fmt.Errorf("function containers: %w", err)
		}
	}
	h.say("cluster and functions ready; %s", leaders(ctx, h.js))
	return nil
}

func (h *harness) missingTopology(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, s := range []string{streamIn, streamJobs, streamOut, streamDLQ} {
		if _, err := h.js.Stream(ctx, s); err != nil {
			return "stream " + s
		}
	}
	for _, c := range []struct{ stream, name string }{{streamIn, "import"}, {streamIn, "export"}, {streamJobs, "poller"},
		{streamOut, "distribute"}, {streamIn, "distribute-retry"}} {
		if _, err := h.js.Consumer(ctx, c.stream, c.name); err != nil {
			return "consumer " + c.name
		}
	}
	for _, b := range []string{bucketSlots, bucketJobs, bucketLifecycles} {
		if _, err := h.js.KeyValue(ctx, b); err != nil {
			return "bucket " + b
		}
	}
	return ""
}

// collect follows IMSFLOW_OUT while the run goes on, to know when it has
// drained and to retry the failed legs of lifecycles; the table is
// counted from a fresh read at the end.
func (h *harness) collect(ctx context.Context) (func(), error) {
	cons, err := h.js.OrderedConsumer(ctx, streamOut, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", streamOut, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		h.live.addMsg(m)
		h.onLifecycleMsg(ctx, m)
	}, jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", streamOut, err)
	}
	return cc.Stop, nil
}

// feed publishes every message at its time, each with a Nats-Msg-Id of
// its own (a copy sent on purpose twice has two), retrying for up to two
// minutes while the cluster is losing a node.
func (h *harness) feed(ctx context.Context) {
	h.mu.Lock()
	t0 := h.feedStart
	h.mu.Unlock()
	for _, p := range h.w.Pubs {
		if d := time.Until(t0.Add(p.At)); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		h.publish(ctx, p)
		if ctx.Err() != nil {
			return
		}
	}
}

// publish sends one publication and records it: stored (with its
// IMSFLOW_IN sequence) or refused.
func (h *harness) publish(ctx context.Context, p publication) {
	msg := nats.NewMsg(p.Subject)
	msg.Data = h.w.body(p, time.Now())
	msg.Header.Set(jetstream.MsgIDHeader, p.MsgID)
	ack, err := publishRetry(ctx, h.js, msg, 2*time.Minute)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastPublish = time.Now()
	switch {
	case err != nil:
		h.pubFailed = append(h.pubFailed, fmt.Sprintf("%s (%s of %s): %v", p.MsgID, p.Role, h.w.Items[p.Item].ID, err))
	case p.Role != "bitmap":
		h.published[p.Item] = true
		fallthrough
	default:
		h.seqs[p.Item] = append(h.seqs[p.Item], ack.Sequence)
	}
}

func publishRetry(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, bound time.Duration) (*jetstream.PubAck, error) {
	deadline := time.Now().Add(bound)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := js.PublishMsg(pctx, msg)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return ack, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// runFaults carries the schedule out, then waits until every victim is
// back.
func (h *harness) runFaults(ctx context.Context) {
	h.mu.Lock()
	t0 := h.feedStart
	h.mu.Unlock()
	var restarts sync.WaitGroup
	for i, f := range h.faults {
		if d := time.Until(t0.Add(f.At)); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		if f.NATS {
			h.killLeader(ctx, i, f, &restarts)
		} else {
			h.killReplica(ctx, f, &restarts)
		}
		h.mu.Lock()
		h.faultsDone++
		h.mu.Unlock()
	}
	restarts.Wait()
}

func (h *harness) logFault(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.mu.Lock()
	h.faultLog = append(h.faultLog, fmt.Sprintf("+%.1fs %s", time.Since(h.feedStart).Seconds(), msg))
	h.mu.Unlock()
	h.sup.note("FAULT %s", msg)
	h.say("%s", msg)
}

// calmIMS ends the emulator's injected faults (5xx and dropped
// connections; its rate limit and job cap stay, being IMS's own rules)
// with the other faults, so that the drain measures recovery from them.
// Left on, they bound the drain only with luck: an item meeting ten
// faults in a row waits minutes in its backoff (1.5x per failure).
func (h *harness) calmIMS(ctx context.Context) error {
	if err := sendJSON(ctx, "PUT", h.emuURL+"/_emulator/faults", map[string]any{}); err != nil {
		return fmt.Errorf("turning the emulator's faults off: %w", err)
	}
	h.logFault("IMS faults off (5xx, dropped connections)")
	h.faultEnded()
	return nil
}

func (h *harness) faultEnded() {
	h.mu.Lock()
	h.lastFault = time.Now()
	h.mu.Unlock()
}

func (h *harness) setDown(name string, down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if down {
		h.down[name] = true
	} else {
		delete(h.down, name)
	}
}

func (h *harness) killReplica(ctx context.Context, f fault, restarts *sync.WaitGroup) {
	name := fmt.Sprintf("%s-%d", f.Function, f.Replica)
	p := h.fns[name]
	if !p.isRunning() {
		// Down already (a crash the supervisor is restarting): take the other one.
		other := fmt.Sprintf("%s-%d", f.Function, 3-f.Replica)
		if !h.fns[other].isRunning() {
			h.logFault("kill -9 %s skipped: both replicas are down", name)
			return
		}
		name, p = other, h.fns[other]
	}
	pid, err := h.sup.kill(p)
	if err != nil {
		h.logFault("kill -9 %s failed: %v", name, err)
		return
	}
	h.setDown(name, true)
	h.logFault("kill -9 %s (pid %d); restart in %s%s", name, pid, f.Down.Round(100*time.Millisecond), h.lcHit("kill -9 "+name))
	restarts.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.Down):
		}
		if err := h.sup.start(p); err != nil {
			h.logFault("restart of %s failed: %v", name, err)
		}
		h.setDown(name, false)
		h.faultEnded()
	})
}

// killLeader kills the node that leads IMSFLOW_JOBS (after waiting for
// the cluster to be whole again), and starts it again after f.Down.
func (h *harness) killLeader(ctx context.Context, i int, f fault, restarts *sync.WaitGroup) {
	for _, n := range h.nodes {
		if err := n.waitHealthy(ctx, 90*time.Second); err != nil {
			h.logFault("NATS kill skipped: %v", err)
			return
		}
	}
	var victim *natsNode
	var leader string
	for try := 0; try < 20 && victim == nil && ctx.Err() == nil; try++ {
		l, err := streamLeader(ctx, h.js, streamJobs)
		if err == nil {
			leader = l
			for _, n := range h.nodes {
				if n.name == l {
					victim = n
				}
			}
		}
		if victim == nil {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if victim == nil {
		victim = h.nodes[i%len(h.nodes)]
		h.logFault("the leader of %s could not be found (%q); killing %s instead", streamJobs, leader, victim.name)
	}
	before := leaders(ctx, h.js)
	pid, err := h.sup.kill(victim.proc)
	if err != nil {
		h.logFault("kill -9 nats %s failed: %v", victim.name, err)
		return
	}
	h.setDown("nats-"+victim.name, true)
	h.logFault("kill -9 NATS node %s (pid %d), leader of %s (leaders: %s); restart in %s%s", victim.name, pid, streamJobs, before, f.Down.Round(100*time.Millisecond),
		h.lcHit("kill -9 NATS "+victim.name))
	restarts.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.Down):
		}
		if err := h.sup.start(victim.proc); err != nil {
			h.logFault("restart of NATS %s failed: %v", victim.name, err)
			return
		}
		began := time.Now()
		err := victim.waitHealthy(ctx, 2*time.Minute)
		h.setDown("nats-"+victim.name, false)
		h.faultEnded()
		if err != nil {
			h.logFault("NATS %s restarted but %v", victim.name, err)
			return
		}
		h.logFault("NATS %s healthy again %.1fs after its restart; leaders now: %s", victim.name, time.Since(began).Seconds(), leaders(ctx, h.js))
	})
}

// progress prints a line every 10 s.
func (h *harness) progress(ctx context.Context, done chan struct{}) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	want := len(h.w.Items) - h.w.counts()[kindSkipped]
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		h.mu.Lock()
		pub := len(h.published)
		var down []string
		for d := range h.down {
			down = append(down, d)
		}
		fd := h.faultsDone
		h.mu.Unlock()
		sort.Strings(down)
		ds := "none"
		if len(down) > 0 {
			ds = strings.Join(down, ",")
		}
		wantLC := h.lifecycleWant()
		h.say("inputs published %d/%d · with an outcome %d/%d · lifecycles ended %d/%d · faults %d/%d · down: %s",
			pub, len(h.w.Items), h.live.finals(), want, len(wantLC)-len(h.lc.pending(wantLC)), len(wantLC), fd, h.planned(), ds)
	}
}

// expected is every published input that must end with an event.
func (h *harness) expected() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int
	for i, it := range h.w.Items {
		if h.published[i] && len(it.Expect) > 0 {
			out = append(out, i)
		}
	}
	return out
}

func (h *harness) printCrashes(w io.Writer) {
	type group struct {
		count       int
		procs       []string
		first, last time.Time
	}
	groups := map[string]*group{}
	for name, cs := range h.crashes() {
		for _, c := range cs {
			k := c.status + " after: " + normalize(crashLine(c.tail))
			g := groups[k]
			if g == nil {
				g = &group{first: c.at}
				groups[k] = g
			}
			g.count++
			if !slices.Contains(g.procs, name) {
				g.procs = append(g.procs, name)
			}
			if c.at.Before(g.first) {
				g.first = c.at
			}
			if c.at.After(g.last) {
				g.last = c.at
			}
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return groups[keys[i]].first.Before(groups[keys[j]].first) })
	for _, k := range keys {
		g := groups[k]
		sort.Strings(g.procs)
		fmt.Fprintf(w, "  %4d × %s\n         (%s; +%.0fs to +%.0fs of the run)\n", g.count, k, strings.Join(g.procs, " "),
			g.first.Sub(h.start).Seconds(), g.last.Sub(h.start).Seconds())
	}
}

// crashes are the exits the harness did not cause, by process or
// service.
func (h *harness) crashes() map[string][]crash {
	out := h.sup.crashes()
	if h.cr != nil {
		for k, v := range h.cr.crashes() {
			out[k] = append(out[k], v...)
		}
	}
	return out
}
