package ingest

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imsflow/imsflow/internal/telemetry"
)

// TestInstrument: once given the process's telemetry, the ingest counts
// into its registry and its /healthz, /readyz and /metrics answer the
// process's, with the ingest's stream check among the process's checks.
func TestInstrument(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	tel := telemetry.New()
	tel.Ready("nats", telemetry.NotYet("not connected")) // as the process says before it connects
	if err := f.srv.Instrument(tel); err != nil {
		t.Fatal(err)
	}
	if a := f.get("/readyz"); a.code != http.StatusServiceUnavailable || a.raw != "nats: not connected\n" {
		t.Errorf("/readyz = %d %q, want 503 naming the process's NATS check", a.code, a.raw)
	}
	tel.Ready("nats", telemetry.IsReady)
	if a := f.get("/readyz"); a.code != http.StatusOK {
		t.Errorf("/readyz = %d %q, want 200", a.code, a.raw)
	}
	event := `{"specversion":"1.0","id":"1","source":"HC.OBS.DWR","type":"OBS:DWR:ObjectCreated:PUT","data":` +
		obsRecord("ObjectCreated:Put", "a.vhd", 2<<30, "e-a", "1") + `}`
	eg := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/cloudevents+json"}
	if a := f.post("/eventgrid", eg, []byte(event)); a.code != http.StatusOK || a.body.Published != 1 {
		t.Fatalf("POST /eventgrid = %d %s", a.code, a.raw)
	}
	if n := tel.Value("imsflow_ingest_records_total", "result", "published"); n != 1 {
		t.Errorf("published records in the process's registry = %g, want 1", n)
	}
	if n := tel.Value("imsflow_ingest_requests_total", "endpoint", "eventgrid", "code", "200"); n != 1 {
		t.Errorf("requests in the process's registry = %g, want 1", n)
	}
	m := f.get("/metrics").raw
	for _, want := range []string{`imsflow_ingest_records_total{result="published"} 1`, "go_goroutines "} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if a := f.get("/healthz"); a.code != http.StatusOK {
		t.Errorf("/healthz = %d", a.code)
	}
}

// TestMetricNames: the ingest's counters follow Prometheus's conventions.
func TestMetricNames(t *testing.T) {
	t.Parallel()
	m := newMetrics()
	m.requests.WithLabelValues("smn", "200").Inc()
	m.refused.WithLabelValues("smn", "signature").Inc()
	m.smnConfirmations.WithLabelValues("confirmed").Inc()
	for _, c := range m.collectors() {
		if testutil.CollectAndCount(c) == 0 {
			t.Errorf("nothing to lint in %v", c)
		}
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}
