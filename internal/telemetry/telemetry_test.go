package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// get answers path from t's handler: status and body.
func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w.Code, w.Body.String()
}

// TestReadiness: /readyz lists every check that fails, in the order the
// checks were added, until all pass.
func TestReadiness(t *testing.T) {
	t.Parallel()
	tel := New()
	tel.Ready("nats", NotYet("not connected"))
	tel.Ready("ims", NotYet("not configured"))
	obs := tel.Runner("import")
	if code, body := get(t, tel, http.MethodGet, "/readyz"); code != 503 || body != "nats: not connected\nims: not configured\nconsumer import: not bound\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	tel.Ready("nats", IsReady)
	tel.Ready("ims", IsReady)
	if tel.Runner("import") != obs {
		t.Error("a second Runner(import) is another observer")
	}
	obs.Consuming(true)
	if code, body := get(t, tel, http.MethodGet, "/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q, want 200", code, body)
	}
	obs.Consuming(false) // draining
	if code, _ := get(t, tel, http.MethodGet, "/readyz"); code != 503 {
		t.Errorf("/readyz while draining = %d, want 503", code)
	}
	if code, _ := get(t, tel, http.MethodPost, "/readyz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d", code)
	}
	if code, _ := get(t, tel, http.MethodGet, "/other"); code != http.StatusNotFound {
		t.Errorf("GET /other = %d", code)
	}
}

// TestLiveness: /healthz is 200 until a runner's heartbeat is overdue,
// then 503 naming it.
func TestLiveness(t *testing.T) {
	t.Parallel()
	tel := New()
	now := time.Unix(1000, 0)
	tel.now = func() time.Time { return now }
	if code, body := get(t, tel, http.MethodGet, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz before any runner = %d %q", code, body)
	}
	tel.Runner("poller").Alive(15 * time.Second)
	now = now.Add(10 * time.Second)
	if code, _ := get(t, tel, http.MethodGet, "/healthz"); code != 200 {
		t.Errorf("/healthz with a heartbeat due = %d", code)
	}
	now = now.Add(25 * time.Second)
	if code, body := get(t, tel, http.MethodGet, "/healthz"); code != 503 || body != "runner poller: no heartbeat for 20s\n" {
		t.Errorf("/healthz overdue = %d %q", code, body)
	}
}

// TestNATSReadiness: the NATS check follows the connection, with no round
// trip: not ready while the server is gone, ready once it is back.
func TestNATSReadiness(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc, _ := n.Connect(t)
	tel := New()
	tel.Ready("nats", NATSConnected(nc))
	if code, _ := get(t, tel, http.MethodGet, "/readyz"); code != 200 {
		t.Fatalf("/readyz connected = %d", code)
	}
	n.Shutdown()
	testenv.Eventually(t, "/readyz 503 without NATS", func() bool {
		code, body := get(t, tel, http.MethodGet, "/readyz")
		return code == 503 && strings.HasPrefix(body, "nats: ")
	})
	if code, _ := get(t, tel, http.MethodGet, "/healthz"); code != 200 {
		t.Errorf("/healthz without NATS = %d, want 200", code)
	}
	n.Restart(t)
	testenv.Eventually(t, "/readyz 200 with NATS back", func() bool { code, _ := get(t, tel, http.MethodGet, "/readyz"); return code == 200 })
}

// TestEvents: what each event stored as new counts; a replayed answer
// (an event about something long past) counts nothing.
func TestEvents(t *testing.T) {
	t.Parallel()
	tel := New()
	now := time.Now()
	o := tel.Runner("import")
	o.Published(events.JobSubmitted{Kind: events.KindImport, Method: events.MethodQuick, SubmittedAt: now.Add(-time.Second)})
	o.Published(events.JobSubmitted{Kind: events.KindImport, Method: events.MethodQuick, SubmittedAt: now.Add(-24 * time.Hour)}) // a replay
	o.Published(events.Rejected{Kind: events.KindImport, ReasonCode: events.ReasonTooLarge, At: now})
	o.Published(events.Rejected{Kind: events.KindImport, ReasonCode: events.ReasonTooLarge, At: now.Add(-time.Hour)}) // a replay
	o.Published(events.JobFinished{Kind: events.KindExport, Status: events.StatusSucceeded, Polls: 4, DetectedAfterSeconds: 3, DurationSeconds: 60})
	o.Published(events.JobFinished{Kind: events.KindExport, Status: events.StatusTimedOut, Polls: 40, DurationSeconds: 86400})
	o.Published(events.JobFinished{Kind: events.KindExport, Status: events.StatusFailed, Polls: 2, DetectedAfterSeconds: -0.2}) // clocks apart
	o.Published(events.Stalled{Kind: events.KindExport})
	o.Published(events.BatchCompleted{BatchID: "b"})

	m := tel.m
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"submissions", testutil.ToFloat64(m.submissions.WithLabelValues("import", "quick")), 1},
		{"rejections", testutil.ToFloat64(m.rejections.WithLabelValues("import", "too_large")), 1},
		{"succeeded", testutil.ToFloat64(m.completions.WithLabelValues("export", "succeeded")), 1},
		{"timed out", testutil.ToFloat64(m.completions.WithLabelValues("export", "timed_out")), 1},
		{"stalls", testutil.ToFloat64(m.stalls.WithLabelValues("export")), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %g, want %g", c.name, c.got, c.want)
		}
	}
	if got := tel.Value("imsflow_completions_total", "kind", "export"); got != 3 {
		t.Errorf("Value(completions of exports) = %g, want 3", got)
	}
	if got := tel.Value("imsflow_job_status_queries", "kind", "export"); got != 3 {
		t.Errorf("Value(status queries histogram) = %g observations, want 3", got)
	}
	queries := histogram(t, tel, "imsflow_job_status_queries")
	if queries.count != 3 || queries.sum != 46 {
		t.Errorf("status queries: %d jobs, %g queries; want 3, 46", queries.count, queries.sum)
	}
	detection := histogram(t, tel, "imsflow_job_detection_delay_seconds")
	if detection.count != 2 || detection.sum != 3 {
		t.Errorf("detection delay: %d jobs, %g s; want 2 (the timed-out one has no end), 3 s (a negative delay is 0)", detection.count, detection.sum)
	}
}

type hist struct {
	count uint64
	sum   float64
}

// histogram sums a histogram's count and sum over its labels.
func histogram(t *testing.T, tel *Telemetry, name string) hist {
	t.Helper()
	mfs, err := tel.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var h hist
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				h.count += m.GetHistogram().GetSampleCount()
				h.sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return h
}

// TestIMS: each request sent counts by operation and status ("error"
// without an answer), throttling by IMS's code, and the rate limiter's
// wait even for a request that never left.
func TestIMS(t *testing.T) {
	t.Parallel()
	tel := New()
	throttled := &imsapi.APIError{StatusCode: 429, Code: "APIGW.0308"}
	tooMany := &imsapi.APIError{StatusCode: 400, Code: "IMG.0194"}
	for _, o := range []imsapi.Observation{
		{Operation: imsapi.OpQuickImport, Sent: true, StatusCode: 200, Duration: time.Second, Wait: time.Second},
		{Operation: imsapi.OpQuickImport, Sent: true, StatusCode: 429, Err: throttled},
		{Operation: imsapi.OpDataImageImport, Sent: true, StatusCode: 400, Err: tooMany},
		{Operation: imsapi.OpDataImageImport, Sent: true, StatusCode: 400, Err: &imsapi.APIError{StatusCode: 400, Code: "IMG.0059"}},
		{Operation: imsapi.OpJobProgress, Sent: true, Err: &imsapi.TransportError{Err: errors.New("connection reset")}},
		{Operation: imsapi.OpJobProgress, Wait: 2 * time.Second, Err: context.Canceled},
	} {
		tel.IMS(o)
	}
	m := tel.m
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"quick 200", testutil.ToFloat64(m.imsRequests.WithLabelValues("quick_import", "200")), 1},
		{"quick 429", testutil.ToFloat64(m.imsRequests.WithLabelValues("quick_import", "429")), 1},
		{"data 400", testutil.ToFloat64(m.imsRequests.WithLabelValues("data_image_import", "400")), 2},
		{"progress error", testutil.ToFloat64(m.imsRequests.WithLabelValues("job_progress", "error")), 1},
		{"throttled gateway", testutil.ToFloat64(m.imsThrottled.WithLabelValues("quick_import", "APIGW.0308")), 1},
		{"throttled imports", testutil.ToFloat64(m.imsThrottled.WithLabelValues("data_image_import", "IMG.0194")), 1},
		{"wait", testutil.ToFloat64(m.imsWait), 3},
	} {
		if c.got != c.want {
			t.Errorf("%s = %g, want %g", c.name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.imsThrottled); n != 2 {
		t.Errorf("%d throttled series, want 2 (IMG.0059 is no throttling)", n)
	}
	if n := testutil.CollectAndCount(m.imsRequests); n != 4 {
		t.Errorf("%d request series, want 4 (a request never sent is none)", n)
	}
}

// TestRunnerObserver: settled deliveries count by outcome, dead letters
// on their own.
func TestRunnerObserver(t *testing.T) {
	t.Parallel()
	tel := New()
	o := tel.Runner("export")
	for _, out := range []runner.Outcome{runner.OutcomeAck, runner.OutcomeAck, runner.OutcomeDLQ, runner.OutcomeDelay} {
		o.Settled(runner.Settlement{Outcome: out, Duration: time.Millisecond})
	}
	m := tel.m
	if got := testutil.ToFloat64(m.messages.WithLabelValues("export", "ack")); got != 2 {
		t.Errorf("acks = %g", got)
	}
	if got := testutil.ToFloat64(m.deadLetters.WithLabelValues("export")); got != 1 {
		t.Errorf("dead letters = %g", got)
	}
	if got := testutil.ToFloat64(m.messages.WithLabelValues("export", "nak")); got != 0 {
		t.Errorf("naks = %g", got)
	}
}

// TestMetricConventions: every metric follows Prometheus's conventions
// (promlint: _total counters, base units, no reserved suffixes), is named
// imsflow_ (or the Go and process collectors' own), and is listed in
// docs/operations.md.
func TestMetricConventions(t *testing.T) {
	t.Parallel()
	tel := New()
	exercise(tel)
	problems, err := testutil.GatherAndLint(tel.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	mfs, err := tel.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	ours := 0
	for _, mf := range mfs {
		name := mf.GetName()
		switch {
		case strings.HasPrefix(name, "imsflow_"):
			ours++
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("%s is not in docs/operations.md", name)
			}
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
		default:
			t.Errorf("metric %s: want the imsflow_ prefix", name)
		}
	}
	if want := len(tel.m.collectors()) + 2; ours != want {
		t.Errorf("%d imsflow_ metrics gathered, want every one (%d)", ours, want)
	}
}

// exercise makes every metric of tel show.
func exercise(tel *Telemetry) {
	o := tel.Runner("import")
	o.Settled(runner.Settlement{Outcome: runner.OutcomeAck})
	now := time.Now()
	for _, e := range []events.Event{
		events.JobSubmitted{Kind: events.KindImport, Method: events.MethodQuick, SubmittedAt: now},
		events.Rejected{Kind: events.KindImport, ReasonCode: events.ReasonTooLarge, At: now},
		events.JobFinished{Kind: events.KindImport, Status: events.StatusSucceeded, Polls: 3, DetectedAfterSeconds: 2, DurationSeconds: 30},
		events.Stalled{Kind: events.KindImport},
	} {
		o.Published(e)
	}
	tel.IMS(imsapi.Observation{Operation: imsapi.OpJob, Sent: true, StatusCode: 429, Err: &imsapi.APIError{StatusCode: 429}})
	tel.JobsInFlight(map[events.Kind]int{events.KindImport: 3}, now)
	_ = tel.Slots(40, func(context.Context) (int, error) { return 7, nil })
}

// TestServer: Listen serves the endpoints on a port of its own until
// Shutdown; the slots gauge is counted at scrape time.
func TestServer(t *testing.T) {
	t.Parallel()
	tel := New()
	exercise(tel)
	srv, err := tel.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{"imsflow_slots_in_flight 7\n", "imsflow_slots_max 40\n", `imsflow_jobs_in_flight{kind="import"} 3`, "go_goroutines "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + srv.Addr().String() + "/healthz"); err == nil {
		t.Error("still serving after Shutdown")
	}
}

// TestNil: a nil Telemetry records nothing and fails nothing.
func TestNil(t *testing.T) {
	t.Parallel()
	var tel *Telemetry
	if tel.Runner("import") != nil {
		t.Error("a nil Telemetry gave an observer")
	}
	tel.IMS(imsapi.Observation{Sent: true})
	tel.Ready("x", IsReady)
	tel.JobsInFlight(nil, time.Now())
	if err := tel.Slots(1, nil); err != nil {
		t.Error(err)
	}
	if FromContext(context.Background()) != nil || FromContext(NewContext(context.Background(), New())) == nil {
		t.Error("FromContext does not return what NewContext put")
	}
}
