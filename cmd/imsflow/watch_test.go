package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
)

// TestWatchShowsJobDuration runs the dev stack (the emulator taking any
// object named to exist, as in "imsflow dev") 600 times faster than IMS,
// and watches a 100 GiB normal import and a 5 GiB quick one. The first
// reads 100 GiB at 256 MiB/s after 2 s of INIT, 402 s of IMS time, 0.67 s
// here; the event says so and watch shows it. (The emulator used to take
// every such object for 1 GiB, and every job took 0.01 s.)
func TestWatchShowsJobDuration(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	env := map[string]string{"POLL_FIRST": "1s", "POLL_MIN": "1s", "POLL_MAX": "1s", "POLL_MAX_AIMED": "1s"}
	st, err := startStack(ctx, devConfig{DataDir: t.TempDir(), EmulatorAddr: "127.0.0.1:0", IngestAddr: "127.0.0.1:0", TimeScale: 600, ExportBucket: "exports"},
		env, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.close)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = st.run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); testenv.Await(t, done, "the stack to stop") })

	for _, o := range []struct {
		key  string
		size int64
	}{{"big-100.qcow2", 100 * gib}, {"web-05.zvhd2", 5 * gib}} {
		if _, err := st.js.Publish(ctx, events.SubjectObjectsPrefix+"test", s3Event("images", o.key, o.size, nil)); err != nil {
			t.Fatal(err)
		}
	}
	watchEnv := map[string]string{"NATS_URL": st.nats.ClientURL()}
	code, out, errOut := runCLIContext(ctx, t, watchEnv, "watch", "-all", "-n", "2", "-json")
	if code != exitOK {
		t.Fatalf("watch -json: exit %d, %s", code, errOut)
	}
	durations := map[string]float64{}
	for line := range strings.Lines(out) {
		var ev struct {
			Time time.Time          `json:"time"`
			Data events.JobFinished `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Data.Source == nil {
			t.Fatalf("watch -json printed %q: %v", line, err)
		}
		if ev.Time.IsZero() {
			t.Errorf("watch -json gave %s no time", ev.Data.Source.Key)
		}
		durations[ev.Data.Source.Key] = ev.Data.DurationSeconds
	}
	// 100 GiB: (400 s + 2 s) / 600; 5 GiB quick, min_disk 10 GB: (40 s + 2 s) / 600.
	for key, want := range map[string]float64{"big-100.qcow2": 0.67, "web-05.zvhd2": 0.07} {
		if got := durations[key]; got < want-0.002 || got > want+0.002 {
			t.Errorf("%s: duration_seconds %v, want %v", key, got, want)
		}
	}
	code, out, errOut = runCLIContext(ctx, t, watchEnv, "watch", "-all", "-n", "2")
	if code != exitOK {
		t.Fatalf("watch: exit %d, %s", code, errOut)
	}
	for _, want := range []string{"images:big-100.qcow2", "normal  0.7s  ", "images:web-05.zvhd2", "quick  0.1s  "} {
		if !strings.Contains(out, want) {
			t.Errorf("watch printed no %q:\n%s", want, out)
		}
	}
}

func runCLIContext(ctx context.Context, t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := run(ctx, args, env, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestWatchReplayShowsEventTimes: events replayed with -all carry the
// time they were published (ce-time), or else the time in their body, not
// the time watch read them.
func TestWatchReplayShowsEventTimes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Ensure(ctx, js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	published := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	finished := events.JobFinished{JobID: "j1", Kind: events.KindImport, Status: events.StatusSucceeded, Method: events.MethodNormal,
		Source: &events.Source{Bucket: "images", Key: "a.qcow2"}, FinishedAt: published.Add(-time.Minute), DurationSeconds: 402}
	rejected := events.Rejected{Kind: events.KindImport, ReasonCode: events.ReasonEmptyFile, Reason: "empty",
		Source: &events.Source{Bucket: "images", Key: "b.qcow2"}, At: published.Add(time.Hour)}
	done := events.BatchCompleted{BatchID: "b1", Total: 37, EndedAt: published.Add(2 * time.Hour),
		ByStatus: map[events.Status]int{events.StatusSucceeded: 28, events.StatusFailed: 1, events.StatusRejected: 8}}
	pub := func(e events.Event, header nats.Header) {
		t.Helper()
		data, _ := json.Marshal(e)
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: e.Subject(), Data: data, Header: header}); err != nil {
			t.Fatal(err)
		}
	}
	pub(finished, nats.Header(events.CEHeaders(finished, "poller", published)))
	pub(rejected, nil) // no ce-time: the body's time
	pub(done, nil)
	code, out, errOut := runCLIContext(ctx, t, map[string]string{"NATS_URL": n.URL}, "watch", "-all", "-n", "3")
	if code != exitOK {
		t.Fatalf("watch: exit %d, %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("watch printed %d lines, want 3:\n%s", len(lines), out)
	}
	for i, want := range []string{
		published.Local().Format(time.DateTime) + " import succeeded  images:a.qcow2 ",
		published.Add(time.Hour).Local().Format(time.DateTime) + " import rejected   images:b.qcow2  empty_file: empty",
		published.Add(2*time.Hour).Local().Format(time.DateTime) + " batch  completed  b1  37 items: 28 succeeded, 1 failed, 8 rejected",
	} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d: %q\nwant it to start with %q", i+1, lines[i], want)
		}
	}
	if !strings.Contains(lines[0], "  normal  6m42s  ") {
		t.Errorf("line 1 shows no duration of 6m42s: %q", lines[0])
	}
}

func TestSeconds(t *testing.T) {
	t.Parallel()
	for s, want := range map[float64]string{
		0: "0s", 0.01: "<0.1s", 0.099: "0.1s", 0.67: "0.7s", 6.7: "6.7s", 9.96: "10s", 42.4: "42s", 59.6: "1m00s",
		402: "6m42s", 3599.4: "59m59s", 3599.6: "1h00m", 7530: "2h06m", -1: "0s",
	} {
		if got := seconds(s); got != want {
			t.Errorf("seconds(%v) = %q, want %q", s, got, want)
		}
	}
}

func TestStatusTotals(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		by   map[events.Status]int
		want string
	}{
		{map[events.Status]int{events.StatusRejected: 8, events.StatusSucceeded: 28, events.StatusFailed: 1}, "28 succeeded, 1 failed, 8 rejected"},
		{map[events.Status]int{events.StatusTimedOut: 2, "": 3, "odd": 1}, "2 timed_out, 3 without an outcome, 1 odd"},
		{nil, "none"},
	} {
		if got := statusTotals(tt.by); got != tt.want {
			t.Errorf("statusTotals(%v) = %q, want %q", tt.by, got, tt.want)
		}
	}
}

// TestWatchHelp: -h and --help print the usage on stdout and exit 0; a
// bad flag is still a usage error, on stderr.
func TestWatchHelp(t *testing.T) {
	t.Parallel()
	checkHelp(t, "watch")
}

func checkHelp(t *testing.T, cmd string) {
	t.Helper()
	for _, h := range []string{"-h", "--help", "-help"} {
		code, out, errOut := runCLI(t, map[string]string{}, cmd, h)
		if code != exitOK || !strings.Contains(out, "usage: imsflow "+cmd) || !strings.Contains(out, "Flags:") || errOut != "" {
			t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", cmd, h, code, out, errOut)
		}
	}
	code, out, errOut := runCLI(t, map[string]string{}, cmd, "-no-such-flag")
	if code != exitUsage || out != "" || !strings.Contains(errOut, "flag provided but not defined") || !strings.Contains(errOut, "usage: imsflow "+cmd) {
		t.Errorf("%s -no-such-flag: exit %d, stdout %q, stderr %q; want %d and the error on stderr", cmd, code, out, errOut, exitUsage)
	}
}

// TestWatchShowsWaiting: a RAW file waiting for its bitmap is visible.
func TestWatchShowsWaiting(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.Local)
	w := events.Waiting{Kind: events.KindImport, Source: &events.Source{Bucket: "images", Key: "db/db-01.raw"}, Missing: "db/db-01.mf",
		Since: now, Until: now.Add(30 * time.Minute)}
	data, _ := json.Marshal(w)
	got := describeAt(w.Subject(), data, now, now)
	want := "12:00:00 import waiting    images:db/db-01.raw  for db/db-01.mf until 12:30:00"
	if got != want {
		t.Errorf("line\n%q, want\n%q", got, want)
	}
}

// TestWatchShowsLifecycles: a lifecycle's end names its regions and the
// legs that did not succeed; a leg's job names its leg, not the upload.
func TestWatchShowsLifecycles(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.Local)
	l := events.LifecycleCompleted{Lifecycle: "l1", Status: events.StatusFailed, Rule: "web", Family: "web-base",
		Images: map[string]string{"cn-north-4": "i1", "ap-southeast-3": "i2"},
		Legs:   []events.LifecycleLeg{{Name: "tag:cn-north-4", State: "succeeded"}, {Name: "replicate:eu-west-101", State: "failed"}}}
	data, _ := json.Marshal(l)
	got := describeAt(l.Subject(), data, now, now)
	want := "12:00:00 lifecycle failed    l1  rule web  family web-base  generation 0  images in ap-southeast-3, cn-north-4  replicate:eu-west-101 failed"
	if got != want {
		t.Errorf("line\n%q, want\n%q", got, want)
	}
	f := events.JobFinished{JobID: "j1", Kind: events.KindDistribute, Status: events.StatusSucceeded, ImageName: "web-1", ImageID: "i1",
		Source: &events.Source{Bucket: "images", Key: "web/1.qcow2"}, Leg: &events.LegRef{Lifecycle: "l1", Leg: "share:cn-north-4", Attempt: 1}}
	data, _ = json.Marshal(f)
	if got := describeAt(f.Subject(), data, now, now); !strings.Contains(got, "distribute succeeded  share:cn-north-4 of lifecycle l1") {
		t.Errorf("leg line %q", got)
	}
}
