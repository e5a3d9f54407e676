package functions

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMetricNames: the list holds imsflow's own metrics, the slots'
// gauges, the ingest's and the Go runtime's, each once, sorted.
func TestMetricNames(t *testing.T) {
	names := MetricNames()
	for _, want := range []string{"imsflow_messages_total", "imsflow_ims_request_duration_seconds", "imsflow_slots_in_flight",
		"imsflow_ingest_requests_total", "imsflow_import_bytes_hashed_total", "imsflow_dead_letters_total", "go_goroutines", "process_resident_memory_bytes"} {
		if _, found := slices.BinarySearch(names, want); !found {
			t.Errorf("MetricNames lacks %s", want)
		}
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Error("MetricNames is not sorted and unique")
	}
	for _, n := range names {
		if strings.HasSuffix(n, "_bucket") {
			t.Errorf("%s: a series name, not a metric's", n)
		}
	}
}

// TestCheckEnv: the defaults pass with the required IMS settings; a bad
// combination fails with the variable named; the stop bound follows the
// ack wait.
func TestCheckEnv(t *testing.T) {
	ims := map[string]string{"IMS_ENDPOINT": "https://ims.example.com", "HUAWEICLOUD_SDK_AK": "AK", "HUAWEICLOUD_SDK_SK": "SK", "HUAWEICLOUD_SDK_PROJECT_ID": "p"}
	for _, name := range Names {
		if _, err := CheckEnv(name, ims); err != nil {
			t.Errorf("%s with its defaults: %v", name, err)
		}
	}
	stop, err := CheckEnv("import", with(ims, "IMPORT_ACK_WAIT", "120s", "IMPORT_CLAIM_TTL", "5m"))
	if err != nil || stop != 90*time.Second+afterDrain {
		t.Errorf("import with a 120s ack wait: stop %s, %v; want %s", stop, err, 90*time.Second+afterDrain)
	}
	for name, env := range map[string]map[string]string{
		"import": with(ims, "IMPORT_CLAIM_TTL", "30s"),
		"export": with(ims, "EXPORT_BUCKET", "Not A Bucket"),
		"poller": with(ims, "POLL_MIN", "100ms"),
		"ingest": {"INGEST_SUBJECT": "elsewhere"},
	} {
		if _, err := CheckEnv(name, env); err == nil {
			t.Errorf("%s with %v: no error", name, env)
		}
	}
	if _, err := CheckEnv("import", map[string]string{}); err == nil || !strings.Contains(err.Error(), "IMS_ENDPOINT") {
		t.Errorf("import without IMS_ENDPOINT: %v", err)
	}
	if _, err := CheckEnv("nosuch", nil); err == nil {
		t.Error("an unknown function passed")
	}
}

func with(base map[string]string, kv ...string) map[string]string {
	m := maps.Clone(base)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestSleepingConsumers: the consumers the poller's sweep makes are those
// of import, export and distribute (its two), each on its stream,
// filtered to its subjects, with unlimited deliveries.
func TestSleepingConsumers(t *testing.T) {
	cs := SleepingConsumers()
	var names []string
	for _, c := range cs {
		names = append(names, c.Config.Durable)
		if stream, durable, ok := Consumer(c.Config.Durable); ok && (c.Stream != stream || c.Config.Durable != durable) {
			t.Errorf("%+v: want the %s function's durable on %s", c, c.Config.Durable, stream)
		}
		if c.Stream == "" || len(c.Config.FilterSubjects) == 0 || c.Config.MaxDeliver != -1 {
			t.Errorf("%+v: want a stream, filter subjects and unlimited deliveries", c)
		}
	}
	if strings.Join(names, ",") != "import,export,distribute,distribute-retry" {
		t.Errorf("consumers %v", names)
	}
}
