package manifests

import corev1 "k8s.io/api/core/v1"

// natsValues is the part of the NATS Helm chart's values.yaml
// (github.com/nats-io/k8s, helm/charts/nats, chart 2.14.2; the same keys
// in 1.3.x) that nats/values-*.yaml set. Decoded strictly, a misspelt key
// fails the test instead of being ignored by Helm.
type natsValues struct {
	Config struct {
		Cluster *struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas,omitempty"`
		} `json:"cluster,omitempty"`
		ServerNamePrefix *string `json:"serverNamePrefix,omitempty"`
		JetStream        struct {
			Enabled   bool `json:"enabled"`
			FileStore *struct {
				Enabled bool   `json:"enabled"`
				MaxSize string `json:"maxSize,omitempty"`
				PVC     *struct {
					Enabled          bool   `json:"enabled"`
					Size             string `json:"size,omitempty"`
					StorageClassName string `json:"storageClassName,omitempty"`
				} `json:"pvc,omitempty"`
			} `json:"fileStore,omitempty"`
			MemoryStore *struct {
				Enabled bool   `json:"enabled"`
				MaxSize string `json:"maxSize,omitempty"`
			} `json:"memoryStore,omitempty"`
		} `json:"jetstream"`
		Monitor struct {
			Enabled bool `json:"enabled"`
			Port    int  `json:"port,omitempty"`
		} `json:"monitor"`
		Merge map[string]any `json:"merge,omitempty"`
	} `json:"config"`
	Container *struct {
		Env       map[string]string            `json:"env,omitempty"`
		Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	} `json:"container,omitempty"`
	PromExporter struct {
		Enabled    bool `json:"enabled"`
		Port       int  `json:"port,omitempty"`
		PodMonitor *struct {
			Enabled bool `json:"enabled"`
			Merge   struct {
				Metadata struct {
					Labels map[string]string `json:"labels,omitempty"`
				} `json:"metadata"`
			} `json:"merge,omitempty"`
		} `json:"podMonitor,omitempty"`
	} `json:"promExporter"`
	PodTemplate *struct {
		// Keyed by topologyKey; the chart adds the label selector.
		TopologySpreadConstraints map[string]struct {
			MaxSkew           int    `json:"maxSkew"`
			MinDomains        int    `json:"minDomains,omitempty"`
			WhenUnsatisfiable string `json:"whenUnsatisfiable"`
		} `json:"topologySpreadConstraints,omitempty"`
	} `json:"podTemplate,omitempty"`
	PodDisruptionBudget *struct {
		Enabled bool `json:"enabled"`
	} `json:"podDisruptionBudget,omitempty"`
	NatsBox *struct {
		Enabled bool `json:"enabled"`
	} `json:"natsBox,omitempty"`
}

// otherMetrics are the metrics of the monitoring stack itself that the
// alerts may use: Prometheus's up, and KEDA's operator's scaler errors
// (github.com/kedacore/keda, pkg/metricscollector, v2.21.0).
var otherMetrics = map[string]bool{"up": true, "keda_scaler_errors_total": true}

// natsExporterMetrics are the JetStream metrics of NATS's Prometheus
// exporter (github.com/nats-io/prometheus-nats-exporter, collector/jsz.go,
// v0.20.1) as the NATS chart runs it (-prefix=nats -jsz=all): the only
// names besides imsflow's own that dashboards and alerts may query. Each
// replica reports every stream and consumer, hence is_*_leader.
var natsExporterMetrics = map[string]bool{
	"nats_server_total_streams": true, "nats_server_total_consumers": true, "nats_server_total_messages": true,
	"nats_server_total_message_bytes": true, "nats_server_max_memory": true, "nats_server_max_storage": true,
	"nats_stream_total_messages": true, "nats_stream_total_bytes": true, "nats_stream_first_seq": true,
	"nats_stream_last_seq": true, "nats_stream_consumer_count": true, "nats_stream_subject_count": true,
	"nats_consumer_num_pending": true, "nats_consumer_num_ack_pending": true, "nats_consumer_num_redelivered": true,
	"nats_consumer_num_waiting": true, "nats_consumer_delivered_consumer_seq": true, "nats_consumer_delivered_stream_seq": true,
	"nats_consumer_ack_floor_stream_seq": true, "nats_consumer_ack_floor_consumer_seq": true,
	"nats_consumer_last_delivery_seconds": true, "nats_consumer_last_ack_seconds": true,
}
