package ingest

import "github.com/prometheus/client_golang/prometheus"

// metrics are the ingest's counters, in the registry of the server's
// telemetry (the process's, once Instrument is called).
type metrics struct {
	requests           *prometheus.CounterVec // endpoint, code
	refused            *prometheus.CounterVec // endpoint, reason
	records            *prometheus.CounterVec // result
	publishErrors      prometheus.Counter
	smnConfirmations   *prometheus.CounterVec // result
	smnUnsubscriptions prometheus.Counter
	smnReplays         prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_ingest_requests_total",
			Help: "Requests to /smn and /eventgrid, by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_ingest_refused_total",
			Help: "Requests refused as not authentic (401/403), by endpoint and reason; nothing of them is published.",
		}, []string{"endpoint", "reason"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_ingest_records_total",
			Help: "Object records by result: published, duplicate (stored before), skipped (not object-created), rejected (passed on undecodable).",
		}, []string{"result"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imsflow_ingest_publish_errors_total",
			Help: "Publishes JetStream did not acknowledge.",
		}),
		smnConfirmations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_ingest_smn_confirmations_total",
			Help: "SMN subscription confirmations, by result (confirmed, failed, refused).",
		}, []string{"result"}),
		smnUnsubscriptions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imsflow_ingest_smn_unsubscriptions_total",
			Help: "SMN unsubscribe confirmations received.",
		}),
		smnReplays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imsflow_ingest_smn_replays_total",
			Help: "Authentic SMN messages received again after being handled, answered without work.",
		}),
	}
	for _, r := range []string{"published", "duplicate", "skipped", "rejected"} {
		m.records.WithLabelValues(r)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.refused, m.records, m.publishErrors, m.smnConfirmations, m.smnUnsubscriptions, m.smnReplays}
}

// Collectors are the ingest's metrics, new and unregistered: for listing
// their names (telemetry.MetricNames).
func Collectors() []prometheus.Collector { return newMetrics().collectors() }
