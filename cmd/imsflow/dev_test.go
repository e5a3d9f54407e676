package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/imsflow/imsflow/internal/testenv"
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
	cancel()
	if code := testenv.Await(t, done, "imsflow dev to stop"); code != exitOK {
		t.Errorf("dev exited %d", code)
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
}

// TestDevNamesABadSetting: the functions' wrong settings stop dev before
// it starts anything, each named once by its variable: exit 2.
func TestDevNamesABadSetting(t *testing.T) {
	t.Parallel()
	env := map[string]string{"IMSFLOW_DATA": t.TempDir(), "IMSFLOW_NATS_PORT": "0", "IMSEMU_ADDR": "127.0.0.1:0", "IMSFLOW_INGEST_ADDR": "127.0.0.1:0",
		"IMPORT_BITMAP_WAIT": "x", "INGEST_RATE_BURST": "many", "S3_SECURE": "maybe"}
	code, out, errOut := runCLI(t, env, "dev")
	want := `imsflow dev: IMPORT_BITMAP_WAIT: time: invalid duration "x"; S3_SECURE: "maybe" is not true or false; ` +
		`INGEST_RATE_BURST: "many" is not a whole number` + "\n"
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
