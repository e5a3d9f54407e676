package fnmain

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/functions/ingest/ingest"
	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// admin is a function's admin listener as a probe or Prometheus sees it.
type admin struct {
	t   *testing.T
	url string
}

func (a admin) get(path string) (int, string) {
	a.t.Helper()
	resp, err := http.Get(a.url + path)
	if err != nil {
		a.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// listen serves tel on a free loopback port as run does on ADMIN_ADDR.
func listen(t *testing.T, tel *telemetry.Telemetry) admin {
	t.Helper()
	srv, err := tel.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return admin{t: t, url: "http://" + srv.Addr().String()}
}

// TestImportFunctionProbes: the import function as Main runs it. Its
// admin listener answers before NATS is reached: alive, not ready, saying
// why. Once the consumer consumes it is ready; while NATS is gone it is
// not, and alive all the same; the metrics show the work done.
func TestImportFunctionProbes(t *testing.T) {
	t.Parallel()
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, ProjectID: "p1", TimeScale: 1e6, ImageQuota: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	emu.PutObject(imsemu.Object{Bucket: "images", Key: "web-01.zvhd2", Size: 5 * imsapi.GiB})
	n := testenv.StartNATS(t)
	n.Shutdown() // not there yet when the function starts
	cfg, err := readConfig[importer.Config](map[string]string{"NATS_URL": n.URL})
	if err != nil {
		t.Fatal(err)
	}
	imsCfg := imsconfig.Config{Endpoint: emu.URL, AccessKey: "AK", SecretKey: "SK", ProjectID: "p1", RateLimit: 100, RateBurst: 100, Timeout: 10 * time.Second}
	tel := telemetry.New()
	probe := listen(t, tel)
	build := withIMS(importer.Function, imsCfg, imsconfig.RegionsConfig{}, cfg.Function, func(ctx context.Context, cfg importer.Config, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (Service, error) {
		return importer.New(ctx, cfg, ims, js, log)
	}, tel, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, importer.Function, cfg, zerolog.Nop(), tel, build) }()

	testenv.Eventually(t, "/readyz to say NATS is not connected", func() bool {
		code, body := probe.get("/readyz")
		return code == 503 && strings.Contains(body, "nats: not connected\n") && strings.Contains(body, "ims: not configured\n") && strings.Contains(body, "consumer: not bound\n")
	})
	if code, body := probe.get("/healthz"); code != 200 {
		t.Errorf("/healthz during start-up = %d %q", code, body)
	}
	n.Restart(t) // within the 5 s a function waits for NATS at start
	testenv.Eventually(t, "/readyz 200 once the consumer consumes", func() bool { code, _ := probe.get("/readyz"); return code == 200 })

	nc, js := n.Connect(t)
	body := `{"Records":[{"eventVersion":"2.0","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"images"},"object":{"key":"web-01.zvhd2","size":5368709120,"eTag":"e1"}}}]}`
	if _, err := js.Publish(t.Context(), events.SubjectObjectsPrefix+"test", []byte(body)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the submission and its message counted", func() bool { // the message after its hand-off
		return tel.Value("imsflow_submissions_total", "kind", "import", "method", "quick") == 1 &&
			tel.Value("imsflow_messages_total", "function", "import", "outcome", "ack") == 1
	})
	_, metrics := probe.get("/metrics")
	for _, want := range []string{`imsflow_ims_requests_total{code="200",operation="quick_import"} 1`, `imsflow_messages_total{function="import",outcome="ack"} 1`, "process_start_time_seconds "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	nc.Close()

	n.Shutdown()
	testenv.Eventually(t, "/readyz 503 without NATS", func() bool {
		code, body := probe.get("/readyz")
		return code == 503 && strings.HasPrefix(body, "nats: ")
	})
	if code, _ := probe.get("/healthz"); code != 200 {
		t.Errorf("/healthz without NATS = %d, want 200: NATS down is no reason to restart", code)
	}
	n.Restart(t)
	testenv.Eventually(t, "/readyz 200 with NATS back", func() bool { code, _ := probe.get("/readyz"); return code == 200 })

	cancel()
	if err := testenv.Await(t, done, "the function to drain"); err != nil {
		t.Errorf("serve: %v", err)
	}
	if code, body := probe.get("/readyz"); code != 503 || !strings.Contains(body, "consumer import: not bound") {
		t.Errorf("/readyz after the drain = %d %q", code, body)
	}
}

// TestIngestJoinsTheProcessTelemetry: the ingest as MainService runs it
// counts into the process's registry and adds its stream check.
func TestIngestJoinsTheProcessTelemetry(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	cfg, err := readConfig[ingest.Config](map[string]string{"NATS_URL": n.URL, "INGEST_ADDR": "127.0.0.1:0", "INGEST_EG_TOKEN": "t"})
	if err != nil {
		t.Fatal(err)
	}
	tel := telemetry.New()
	probe := listen(t, tel)
	build := service(ingest.Function, cfg.Function, func(_ context.Context, cfg ingest.Config, js jetstream.JetStream, log zerolog.Logger) (Service, error) {
		return ingest.New(cfg, js, log)
	}, tel, zerolog.Nop())
	if code, body := probe.get("/readyz"); code != 503 || body != "ingest: not started\n" {
		t.Errorf("/readyz before start = %d %q", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ingest.Function, cfg, zerolog.Nop(), tel, build) }()
	testenv.Eventually(t, "/readyz 200", func() bool { code, _ := probe.get("/readyz"); return code == 200 })
	_, metrics := probe.get("/metrics")
	if !strings.Contains(metrics, `imsflow_ingest_records_total{result="published"} 0`) {
		t.Errorf("/metrics lacks the ingest's counters:\n%.2000s", metrics)
	}
	cancel()
	if err := testenv.Await(t, done, "the ingest to stop"); err != nil {
		t.Errorf("serve: %v", err)
	}
}

func TestAdminAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
		bad  bool
	}{
		{map[string]string{}, ":8081", false},
		{map[string]string{"ADMIN_ADDR": ""}, "", false},
		{map[string]string{"ADMIN_ADDR": "127.0.0.1:9102"}, "127.0.0.1:9102", false},
		{map[string]string{"ADMIN_ADDR": "8081"}, "", true},
	} {
		got, err := adminAddr(tc.env)
		if got != tc.want || (err != nil) != tc.bad {
			t.Errorf("adminAddr(%v) = %q, %v; want %q (error %v)", tc.env, got, err, tc.want, tc.bad)
		}
	}
}
