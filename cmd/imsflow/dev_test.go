package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
)

// TestDevAndWatch runs "imsflow dev" on free ports, sends an upload
// notification to the NATS it prints, and reads the completion with
// "imsflow watch".
func TestDevAndWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline")
	}
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	env := map[string]string{"IMSFLOW_DATA": t.TempDir(), "IMSFLOW_NATS_PORT": "0", "IMSEMU_ADDR": "127.0.0.1:0",
		"IMSEMU_TIME_SCALE": "1000", "POLL_FIRST": "1s", "POLL_MIN": "1s"}
	go func() {
		done <- run(ctx, []string{"dev", "-json"}, env, pw, io.Discard)
		_ = pw.Close()
	}()
	var natsURL, ingestURL string
	lines := bufio.NewScanner(pr)
	for lines.Scan() && (natsURL == "" || ingestURL == "") {
		f := strings.Fields(lines.Text())
		switch {
		case len(f) >= 4 && f[0] == "NATS":
			natsURL = f[3]
		case len(f) >= 3 && f[0] == "HTTP" && f[1] == "ingest":
			ingestURL = f[2]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if !strings.HasPrefix(natsURL, "nats://127.0.0.1:") {
		t.Fatalf("dev printed no NATS URL (got %q)", natsURL)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	watched := make(chan string, 1)
	go func() {
		var out bytes.Buffer
		run(ctx, []string{"watch", "-all", "-n", "2"}, map[string]string{"NATS_URL": natsURL}, &out, io.Discard)
		watched <- out.String()
	}()
	body := `{"Records":[{"eventVersion":"2.0","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"images"},"object":{"key":"web-01.zvhd2","size":5368709120,"eTag":"e1"}}}]}`
	if _, err := nc.Request("imsflow.in.objects.test", []byte(body), 5e9); err != nil {
		t.Fatal(err)
	}
	// The same, as EventGrid would post it to the HTTP ingest.
	event := `{"specversion":"1.0","id":"1","source":"HC.OBS.DWR","type":"OBS:DWR:ObjectCreated:PUT",` +
		`"data":{"eventName":"ObjectCreated:Put","obs":{"bucket":{"name":"images"},"object":{"key":"web-02.zvhd2","size":5368709120,"eTag":"e2"}}}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ingestURL+"/eventgrid", strings.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+devEGToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s/eventgrid: %s", ingestURL, resp.Status)
	}
	lines2 := testenv.Await(t, watched, "imsflow watch to print")
	for _, key := range []string{"images:web-01.zvhd2", "images:web-02.zvhd2"} {
		if !strings.Contains(lines2, key) {
			t.Errorf("watch printed no import of %s:\n%s", key, lines2)
		}
	}
	if strings.Count(lines2, "import succeeded") != 2 {
		t.Errorf("watch printed %q; want two imports succeeded", lines2)
	}
	checkDevTelemetry(t, ingestURL)
	checkDevLifecycle(t, nc, natsURL)
	cancel()
	if code := testenv.Await(t, done, "imsflow dev to stop"); code != exitOK {
		t.Errorf("dev exited %d", code)
	}
}

// checkDevLifecycle sends the upload under golden/ that dev's banner
// offers: dev's own rules give it a lifecycle, which ends succeeded with
// the image in the emulator's three regions, shared with the other
// account's project in two, tagged, the family's latest; "imsflow
// lifecycle" lists it, shows its tree and the family's latest images.
func checkDevLifecycle(t *testing.T, nc *nats.Conn, natsURL string) {
	t.Helper()
	ends := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(events.SubjectLifecyclePrefix+"*", ends)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	body := `{"Records":[{"eventVersion":"2.0","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"images"},"object":{"key":"golden/web-base-1.zvhd2","size":5368709120,"eTag":"g1"}}}]}`
	if _, err := nc.Request("imsflow.in.objects.test", []byte(body), 5e9); err != nil {
		t.Fatal(err)
	}
	end := testenv.Receive[events.LifecycleCompleted](t, ends, 1)[0]
	if end.Status != events.StatusSucceeded || end.Rule != "golden" || end.Family != "golden" || !end.Latest || end.Source == nil || end.Source.Key != "golden/web-base-1.zvhd2" {
		t.Fatalf("lifecycle ended %s, rule %s, family %s, latest %v, source %+v; legs %+v", end.Status, end.Rule, end.Family, end.Latest, end.Source, end.Legs)
	}
	for _, r := range devRegions {
		if end.Images[r.Name] == "" {
			t.Errorf("no image in %s: %v", r.Name, end.Images)
		}
	}
	wantShared := map[string][]string{devHome: {devTeamProjects[devHome]}, "ap-southeast-3": {devTeamProjects["ap-southeast-3"]}}
	if fmt.Sprint(end.SharedWith) != fmt.Sprint(wantShared) || end.Tags["channel"] != "stable" {
		t.Errorf("shared with %v, tags %v; want %v and channel=stable", end.SharedWith, end.Tags, wantShared)
	}
	env := map[string]string{"NATS_URL": natsURL}
	code, out, errOut := runCLI(t, env, "lifecycle")
	if code != exitOK || !strings.Contains(out, end.Lifecycle) || !strings.Contains(out, "golden") || !strings.Contains(out, "[11 succeeded]") {
		t.Errorf("imsflow lifecycle: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, env, "lifecycle", "show", end.Lifecycle)
	if code != exitOK || strings.Count(out, " succeeded") != 12 { // the lifecycle and its 11 legs
		t.Errorf("imsflow lifecycle show: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	for _, leg := range []string{"├─ replicate:ap-southeast-3", "│  ├─ share:ap-southeast-3", "├─ replicate:eu-west-101", "└─ latest", "└─ retain:eu-west-101"} {
		if !strings.Contains(out, leg) {
			t.Errorf("imsflow lifecycle show lacks %q:\n%s", leg, out)
		}
	}
	code, out, errOut = runCLI(t, env, "lifecycle", "latest", "golden")
	for _, r := range devRegions {
		if code != exitOK || !strings.Contains(out, r.Name) || !strings.Contains(out, end.Images[r.Name]) {
			t.Errorf("imsflow lifecycle latest golden: exit %d, stderr %q; stdout lacks %s's image %s:\n%s", code, errOut, r.Name, end.Images[r.Name], out)
		}
	}
}

// TestDevRules: dev's own rules load, and their lifecycle copies to the
// emulator's other regions and shares with projects the other account
// has there.
func TestDevRules(t *testing.T) {
	t.Parallel()
	rules, err := importer.ParseRules([]byte(devRules))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.Rules) != 1 || rules.Rules[0].Prefix != "golden/" || !rules.Rules[0].Lifecycle.Active() {
		t.Fatalf("dev's rules: %+v; want one rule, golden/, with a lifecycle", rules.Rules)
	}
	d := rules.Rules[0].Lifecycle
	var regions []string
	for _, r := range d.Regions {
		regions = append(regions, r.Region)
		for _, p := range r.Share.Projects {
			if devTeamProjects[r.Region] != p {
				t.Errorf("%s: shared with %s, which is not the other account's project there", r.Region, p)
			}
		}
	}
	if want := []string{devRegions[1].Name, devRegions[2].Name}; !slices.Equal(regions, want) {
		t.Errorf("copied to %v, want the emulator's other regions %v", regions, want)
	}
	if !slices.Equal(d.Share.Projects, []string{devTeamProjects[devHome]}) {
		t.Errorf("shared in %s with %v", devHome, d.Share.Projects)
	}
}

// TestDevHelpNamesTheFunctions: "imsflow dev -h" lists the functions it
// runs, the distribute function among them, and its rules.
func TestDevHelpNamesTheFunctions(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, helpEnv(t), "dev", "-h")
	for _, want := range []string{"import, export, poller and distribute functions", "HTTP ingest", "IMPORT_RULES_FILE", "golden/", "eu-west-101"} {
		if code != exitOK || !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("imsflow dev -h: exit %d, lacks %q:\n%s", code, want, out)
		}
	}
}

// lockedBuffer is a buffer that goroutines write while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDevRefusesASecondOnItsData: a second "imsflow dev" on the data
// directory of a running one exits at once, naming the first's PID and
// NATS; the first opens without the ingest's refuse-everything warning (it
// has a dev EventGrid token).
func TestDevRefusesASecondOnItsData(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline")
	}
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	env := map[string]string{"IMSFLOW_DATA": t.TempDir(), "IMSFLOW_NATS_PORT": "0", "IMSEMU_ADDR": "127.0.0.1:0", "IMSFLOW_INGEST_ADDR": "127.0.0.1:0"}
	pr, pw := io.Pipe()
	var logs lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "-json"}, env, pw, &logs)
		_ = pw.Close()
	}()
	var natsURL string
	lines := bufio.NewScanner(pr)
	for natsURL == "" && lines.Scan() {
		if f := strings.Fields(lines.Text()); len(f) >= 4 && f[0] == "NATS" {
			natsURL = f[3]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if natsURL == "" {
		t.Fatalf("the first dev printed no NATS URL; its log:\n%s", logs.String())
	}

	code, out, errOut := runCLI(t, env, "dev")
	want := fmt.Sprintf("imsflow dev: another imsflow dev (PID %d, NATS at %s, ", os.Getpid(), natsURL)
	if code != exitInUse || out != "" || !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "IMSFLOW_DATA") {
		t.Errorf("second dev: exit %d, stdout %q, stderr %q; want %d and %q...", code, out, errOut, exitInUse, want)
	}
	if strings.Contains(logs.String(), "will be refused") {
		t.Errorf("dev warns that its ingest refuses every notification:\n%s", logs.String())
	}
	cancel()
	if code := testenv.Await(t, done, "imsflow dev to stop"); code != exitOK {
		t.Errorf("the first dev exited %d:\n%s", code, logs.String())
	}
}

// TestDemo runs the demo, the whole pipeline on a mixed batch, and
// requires every item to end as the demo expects.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline")
	}
	t.Parallel()
	var out bytes.Buffer
	code := run(t.Context(), []string{"demo", "-timeout", "60s"}, map[string]string{}, &out, io.Discard)
	if code != exitOK || !strings.Contains(out.String(), "every item ended as expected") {
		t.Errorf("demo exited %d:\n%s", code, out.String())
	}
	for _, want := range []string{"raw/after-01.raw", "needs_conversion", "IMG.0057", "export, quick by size", "status queries per job"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the summary lacks %q", want)
		}
	}
	checkDemoLifecycle(t, out.String())
}

// checkDemoLifecycle: the demo's lifecycle failed on the copy made to
// fail and on it alone, was retried alone as "imsflow lifecycle retry"
// does, ended succeeded in its second generation, and the demo shows its
// tree and each region's image, shared and tagged as declared.
func checkDemoLifecycle(t *testing.T, out string) {
	t.Helper()
	_, part, ok := strings.Cut(out, "\nlifecycle of images:"+demoLifecycleKey+" (rule web):\n")
	if !ok {
		t.Fatalf("the demo shows no lifecycle:\n%s", out)
	}
	flat := strings.Join(strings.Fields(part), " ") // the lines as wrapped
	id := regexp.MustCompile(`imsflow lifecycle retry ([0-9a-f]{32}) replicate:eu-west-101`).FindStringSubmatch(flat)
	if id == nil {
		t.Fatalf("the demo retried no leg:\n%s", part)
	}
	for _, want := range []string{
		"ended failed: replicate:eu-west-101 failed with IMS.0999: IMS's job failed: " + demoFailReason + "; legs: 5 succeeded, 5 blocked",
		"leg replicate:eu-west-101 of lifecycle " + id[1] + " (attempt 1 failed: ",
		"will run again as attempt 2",
		"ended succeeded (generation 1); legs: 11 succeeded",
		"lifecycle " + id[1] + " rule web family web-base succeeded (generation 1)",
		"the lifecycle ended as expected",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the demo's lifecycle lacks %q:\n%s", want, part)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^  ├─ replicate:eu-west-101 +succeeded  attempt 2; image [0-9a-f-]{36}$`),
		regexp.MustCompile(`(?m)^  ├─ replicate:ap-southeast-3 +succeeded  image [0-9a-f-]{36}$`),
		regexp.MustCompile(`(?m)^  └─ latest +succeeded$`),
		regexp.MustCompile(`(?m)^cn-north-4 +[0-9a-f-]{36}  ` + devTeamProjects[devHome] + `  channel=stable$`),
		regexp.MustCompile(`(?m)^ap-southeast-3 +[0-9a-f-]{36}  ` + devTeamProjects["ap-southeast-3"] + `  channel=stable$`),
		regexp.MustCompile(`(?m)^eu-west-101 +[0-9a-f-]{36}  - +channel=stable$`),
	} {
		if !want.MatchString(part) {
			t.Errorf("the demo's lifecycle has no line matching %s:\n%s", want, part)
		}
	}
	var again []string // the tree's legs run more than once
	for _, line := range strings.Split(part, "\n") {
		if strings.Contains(line, "─ ") && strings.Contains(line, "attempt") {
			again = append(again, strings.Fields(strings.Trim(line, " │├└─"))[0])
		}
	}
	if !slices.Equal(again, []string{demoFailLeg}) {
		t.Errorf("legs run more than once: %v, want %s alone:\n%s", again, demoFailLeg, part)
	}
}

// TestDevNamesABadSetting: the functions' wrong settings stop dev before
// it starts anything, each named once by its variable: exit 2.
func TestDevNamesABadSetting(t *testing.T) {
	t.Parallel()
	env := map[string]string{"IMSFLOW_DATA": t.TempDir(), "IMSFLOW_NATS_PORT": "0", "IMSEMU_ADDR": "127.0.0.1:0", "IMSFLOW_INGEST_ADDR": "127.0.0.1:0",
		"IMPORT_BITMAP_WAIT": "x", "INGEST_RATE_BURST": "many", "S3_SECURE": "maybe", "DISTRIBUTE_WORKERS": "four"}
	code, out, errOut := runCLI(t, env, "dev")
	want := `imsflow dev: IMPORT_BITMAP_WAIT: time: invalid duration "x"; S3_SECURE: "maybe" is not true or false; ` +
		`DISTRIBUTE_WORKERS: "four" is not a whole number; INGEST_RATE_BURST: "many" is not a whole number` + "\n"
	if code != exitUsage || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, exitUsage, want)
	}
}

// checkDevTelemetry: the HTTP ingest of "imsflow dev" answers /healthz,
// /readyz and /metrics for the whole pipeline, with one registry whose
// names all follow Prometheus's conventions, and counts what the pipeline
// did: two imports through the import function and the poller, one of
// them through the ingest.
func checkDevTelemetry(t *testing.T, ingestURL string) {
	t.Helper()
	get := func(path string) (int, string) {
		resp, err := http.Get(ingestURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusOK {
			t.Errorf("GET %s = %d %q", path, code, body)
		}
	}
	// The poller counts a completion once it is published, which watch
	// may print first.
	var metrics string
	testenv.Eventually(t, "two completions counted", func() bool {
		_, metrics = get("/metrics")
		return strings.Contains(metrics, `imsflow_completions_total{kind="import",status="succeeded"} 2`)
	})
	for _, want := range []string{
		`imsflow_submissions_total{kind="import",method="quick"} 2`,
		`imsflow_ingest_records_total{result="published"} 1`,
		`imsflow_messages_total{function="poller",outcome="ack"}`,
		`imsflow_ims_requests_total{code="200",operation="quick_import"} 2`,
		"go_goroutines ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(metrics)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
