package ingest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// metricHelp documents every counter the ingest keeps.
var metricHelp = map[string]string{
	"imsflow_ingest_requests_total":            "Requests to /smn and /eventgrid, by endpoint and status code.",
	"imsflow_ingest_refused_total":             "Requests refused as not authentic (401/403), by endpoint and reason; nothing of them is published.",
	"imsflow_ingest_records_total":             "Object records by result: published, duplicate (stored before), skipped (not object-created), rejected (passed on undecodable).",
	"imsflow_ingest_publish_errors_total":      "Publishes JetStream did not acknowledge.",
	"imsflow_ingest_smn_confirmations_total":   "SMN subscription confirmations, by result.",
	"imsflow_ingest_smn_unsubscriptions_total": "SMN unsubscribe confirmations received.",
	"imsflow_ingest_smn_replays_total":         "Authentic SMN messages received again after being handled, answered without work.",
}

// metrics is a set of counters, each named with its labels.
type metrics struct {
	mu sync.Mutex
	m  map[string]int64
}

func newMetrics() *metrics { return &metrics{m: make(map[string]int64)} }

// key returns name{k1="v1",k2="v2"} of name and label pairs. Label
// values are the code's own constants, which need no escaping.
func key(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

func (m *metrics) add(name string, labels ...string) { m.addN(name, 1, labels...) }

func (m *metrics) addN(name string, n int, labels ...string) {
	if n == 0 {
		return
	}
	k := key(name, labels...)
	m.mu.Lock()
	m.m[k] += int64(n)
	m.mu.Unlock()
}

func (m *metrics) get(name string, labels ...string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[key(name, labels...)]
}

// serve writes the counters in the Prometheus text format.
func (m *metrics) serve(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	keys := make([]string, 0, len(m.m))
	for k := range m.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	last := ""
	for _, k := range keys {
		name, _, _ := strings.Cut(k, "{")
		if name != last {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", name, metricHelp[name], name)
			last = name
		}
		fmt.Fprintf(&b, "%s %d\n", k, m.m[k])
	}
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}
