package telemetry

import (
	"context"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// metrics are imsflow's own metrics; docs/operations.md lists them with
// what to alert on.
type metrics struct {
	messages        *prometheus.CounterVec   // function, outcome
	messageDuration *prometheus.HistogramVec // function
	deadLetters     *prometheus.CounterVec   // function

	submissions *prometheus.CounterVec   // kind, method
	rejections  *prometheus.CounterVec   // kind, reason
	completions *prometheus.CounterVec   // kind, status
	stalls      *prometheus.CounterVec   // kind
	lifecycles  *prometheus.CounterVec   // status
	queries     *prometheus.HistogramVec // kind
	detection   *prometheus.HistogramVec // kind
	jobDuration *prometheus.HistogramVec // kind

	imsRequests  *prometheus.CounterVec   // operation, code
	imsDuration  *prometheus.HistogramVec // operation
	imsThrottled *prometheus.CounterVec   // operation, error_code
	imsWait      prometheus.Counter

	jobsInFlight *prometheus.GaugeVec // kind
	lastSweep    prometheus.Gauge
	deferred     *prometheus.CounterVec // kind
}

func newMetrics() *metrics {
	return &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_messages_total",
			Help: "Deliveries a function's runner settled, by function and outcome: ack, term (refused input), delay (a planned wait), nak (failed; retried), dlq (dead letter).",
		}, []string{"function", "outcome"}),
		messageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imsflow_message_duration_seconds",
			Help:    "Time from a delivery's arrival to its settlement, by function.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"function"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_dead_letters_total",
			Help: "Messages published to imsflow.dlq.<function> and terminated: work that stopped.",
		}, []string{"function"}),

		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_submissions_total",
			Help: "IMS jobs submitted and handed to the poller, by kind (import, export) and method (quick, normal).",
		}, []string{"kind", "method"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_rejections_total",
			Help: "Inputs rejected, by kind and reason (the rejected event's reason_code).",
		}, []string{"kind", "reason"}),
		completions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_completions_total",
			Help: "Jobs ended, as the poller published them, by kind and status (succeeded, failed, timed_out).",
		}, []string{"kind", "status"}),
		stalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_jobs_stalled_total",
			Help: "Stalled warnings published: a job's progress has not moved for STALL_AFTER (the job stays tracked).",
		}, []string{"kind"}),
		lifecycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_lifecycles_total",
			Help: "Image lifecycles that ended (docs/lifecycle.md), by status: succeeded, or failed (a leg failed or was refused; imsflow lifecycle retry runs it again).",
		}, []string{"status"}),
		queries: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imsflow_job_status_queries",
			Help:    "Status queries the poller spent on a job, observed when the job ended, by kind.",
			Buckets: []float64{1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 50, 100},
		}, []string{"kind"}),
		detection: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imsflow_job_detection_delay_seconds",
			Help:    "Time from a job's end as IMS reports it (end_time) to the poller seeing it, by kind; jobs IMS gave no end time are not observed.",
			Buckets: []float64{.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800},
		}, []string{"kind"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imsflow_job_duration_seconds",
			Help:    "How long an ended job ran (the completion event's duration_seconds), by kind.",
			Buckets: []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400},
		}, []string{"kind"}),

		imsRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_ims_requests_total",
			Help: `IMS API requests sent, by operation and code: the answer's HTTP status, or "error" when no answer came.`,
		}, []string{"operation", "code"}),
		imsDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imsflow_ims_request_duration_seconds",
			Help:    "Latency of IMS API requests, from sending to the answer or failure, by operation.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
		imsThrottled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_ims_throttled_total",
			Help: `IMS answers asking to slow down, by operation and error_code (APIGW.0308 the gateway's rate, IMG.0060 flow control, IMG.0194 too many imports, IMG.0187 KMS, "none" a bare 429).`,
		}, []string{"operation", "error_code"}),
		imsWait: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imsflow_ims_rate_limit_wait_seconds_total",
			Help: "Time IMS requests spent waiting for the process's rate limiter (its share of IMS_RATE_LIMIT).",
		}),

		jobsInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "imsflow_jobs_in_flight",
			Help: "Jobs tracked and not yet ended in imsflow_jobs, all replicas together, as counted by the last sweep this poller ran.",
		}, []string{"kind"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsflow_poll_deferred_total",
			Help: "Due status queries the poller put off while its IMS requests queued for the rate (a backlog), to spend the rate on first queries and jobs near their end first.",
		}, []string{"kind"}),
		lastSweep: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imsflow_poller_last_sweep_timestamp_seconds",
			Help: "When this poller last finished a sweep (the time of imsflow_jobs_in_flight).",
		}),
	}
}

// initialized gives the job counters a zero for every kind and status,
// so that a process's first completion or stall is an increase that
// increase() and rate() can see (a series born at 1 shows none).
func (m *metrics) initialized() *metrics {
	for _, k := range []events.Kind{events.KindImport, events.KindExport, events.KindDistribute} {
		for _, st := range []events.Status{events.StatusSucceeded, events.StatusFailed, events.StatusTimedOut} {
			m.completions.WithLabelValues(string(k), string(st))
		}
		m.stalls.WithLabelValues(string(k))
		m.deferred.WithLabelValues(string(k))
	}
	for _, st := range []events.Status{events.StatusSucceeded, events.StatusFailed} {
		m.lifecycles.WithLabelValues(string(st))
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.messages, m.messageDuration, m.deadLetters,
		m.submissions, m.rejections, m.completions, m.stalls, m.lifecycles, m.queries, m.detection, m.jobDuration,
		m.imsRequests, m.imsDuration, m.imsThrottled, m.imsWait,
		m.jobsInFlight, m.lastSweep, m.deferred,
	}
}

// replayAge tells a replayed answer from news. A function answers an
// input it has handled before (an object version imported last week and
// notified again) with the event it recorded then, which JetStream stores
// as new once its duplicate window (10 minutes for the hand-offs) has
// passed; such an event's own time is older than this, while a fresh
// one's is at most a handler call old.
const replayAge = 10 * time.Minute

// event counts an event JetStream stored as new, at now.
func (m *metrics) event(e events.Event, now time.Time) {
	switch v := e.(type) {
	case events.JobSubmitted:
		if now.Sub(v.SubmittedAt) < replayAge {
			m.submissions.WithLabelValues(string(v.Kind), string(v.Method)).Inc()
		}
	case events.Rejected:
		if now.Sub(v.At) < replayAge {
			m.rejections.WithLabelValues(string(v.Kind), v.ReasonCode).Inc()
		}
	case events.JobFinished:
		kind := string(v.Kind)
		m.completions.WithLabelValues(kind, string(v.Status)).Inc()
		m.queries.WithLabelValues(kind).Observe(float64(v.Polls))
		if d, ok := detectionDelay(v); ok {
			m.detection.WithLabelValues(kind).Observe(d)
		}
		if v.DurationSeconds > 0 {
			m.jobDuration.WithLabelValues(kind).Observe(v.DurationSeconds)
		}
	case events.Stalled:
		m.stalls.WithLabelValues(string(v.Kind)).Inc()
	case events.LifecycleCompleted:
		m.lifecycles.WithLabelValues(string(v.Status)).Inc()
	}
}

// detectionDelay is how long after its end the poller saw a job: the
// event's detected_after_seconds, which the poller sets from IMS's
// end_time (0: IMS gave none, nothing to observe). A timed-out job has
// no end. Clocks of two hosts may disagree by a little: never negative.
func detectionDelay(f events.JobFinished) (float64, bool) {
	if f.DetectedAfterSeconds == 0 || (f.Status != events.StatusSucceeded && f.Status != events.StatusFailed) {
		return 0, false
	}
	return max(f.DetectedAfterSeconds, 0), true
}

// IMS records one IMS request; give it to the client with
// imsapi.WithObserver(t.IMS).
func (t *Telemetry) IMS(o imsapi.Observation) {
	if t == nil {
		return
	}
	t.m.imsWait.Add(o.Wait.Seconds())
	if !o.Sent {
		return
	}
	t.m.imsRequests.WithLabelValues(o.Operation, statusCode(o.StatusCode)).Inc()
	t.m.imsDuration.WithLabelValues(o.Operation).Observe(o.Duration.Seconds())
	if code, ok := throttleCode(o.Err); ok {
		t.m.imsThrottled.WithLabelValues(o.Operation, code).Inc()
	}
}

// statusCode is the code label of an HTTP status: the number, or "error"
// when no answer came.
func statusCode(status int) string {
	if status == 0 {
		return "error"
	}
	return strconv.Itoa(status)
}

// throttleCode is the error_code label of an answer that asks to slow
// down: one of the throttling codes IMS documents, or "none" for a 429
// without one; ok is false for any other outcome.
func throttleCode(err error) (string, bool) {
	var apiErr *imsapi.APIError
	if !errors.As(err, &apiErr) || !apiErr.Throttled() {
		return "", false
	}
	switch code := apiErr.Code; code {
	case imsapi.CodeGatewayThrottled, imsapi.CodeFlowControl, imsapi.CodeTooManyImports, imsapi.CodeKMSFlowControl:
		return code, true
	case "APIG.0308":
		return imsapi.CodeGatewayThrottled, true
	}
	return "none", true
}

// PollDeferred counts a due status query of a job of kind put off.
func (t *Telemetry) PollDeferred(kind events.Kind) {
	if t != nil {
		t.m.deferred.WithLabelValues(string(kind)).Inc()
	}
}

// JobsInFlight records the jobs a sweep found tracked and not yet ended,
// by kind, at the time of the sweep.
func (t *Telemetry) JobsInFlight(byKind map[events.Kind]int, at time.Time) {
	if t == nil {
		return
	}
	for _, k := range []events.Kind{events.KindImport, events.KindExport} {
		t.m.jobsInFlight.WithLabelValues(string(k)).Set(float64(byKind[k]))
	}
	t.m.lastSweep.Set(float64(at.UnixNano()) / 1e9)
}

// Slots registers the in-flight slot gauges: imsflow_slots_max (the cap,
// IMS_MAX_INFLIGHT) and imsflow_slots_in_flight, counted by count at
// scrape time (the keys of imsflow_slots: at most the cap, so cheap). A
// count that fails within two seconds leaves the gauge out of that scrape.
func (t *Telemetry) Slots(maxSlots int, count func(context.Context) (int, error)) error {
	if t == nil {
		return nil
	}
	return t.Register(&slotsCollector{max: maxSlots, count: count})
}

// KeyCount counts the keys of kv that match filter (a subject filter such
// as "slot.*"), for Slots (the in-flight slots: at most IMS_MAX_INFLIGHT
// of them, so a cheap count at scrape time).
func KeyCount(kv jetstream.KeyValue, filter string) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		keys, err := kv.ListKeysFiltered(ctx, filter)
		if err != nil {
			return 0, err
		}
		defer func() { _ = keys.Stop() }()
		n := 0
		for range keys.Keys() {
			n++
		}
		return n, ctx.Err()
	}
}

var (
	slotsInFlightDesc = prometheus.NewDesc("imsflow_slots_in_flight",
		"IMS image-creation jobs holding an in-flight slot (keys of imsflow_slots), all replicas together; every process reports the same figure.", nil, nil)
	slotsMaxDesc = prometheus.NewDesc("imsflow_slots_max",
		"The cap of in-flight slots (IMS_MAX_INFLIGHT; 0: no cap).", nil, nil)
)

type slotsCollector struct {
	max   int
	count func(context.Context) (int, error)
}

func (c *slotsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- slotsInFlightDesc
	ch <- slotsMaxDesc
}

func (c *slotsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(slotsMaxDesc, prometheus.GaugeValue, float64(c.max))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := c.count(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(slotsInFlightDesc, prometheus.GaugeValue, float64(n))
	}
}

// Runner is the runner.Observer of one function's runner: its messages,
// its events, its heartbeat and whether its consumer is bound.
type Runner struct {
	t        *Telemetry
	function string
	bound    atomic.Bool
}

var _ runner.Observer = (*Runner)(nil)

// Runner returns the observer of function's runner, made on the first
// call: its readiness check "consumer <function>" fails ("not bound")
// until the runner consumes. Nil when t is nil (no observer).
func (t *Telemetry) Runner(function string) runner.Observer {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	r, ok := t.runners[function]
	if !ok {
		r = &Runner{t: t, function: function}
		t.runners[function] = r
	}
	t.mu.Unlock()
	if !ok {
		t.Ready("consumer "+function, r.ready)
		for _, o := range []runner.Outcome{runner.OutcomeAck, runner.OutcomeTerm, runner.OutcomeDelay, runner.OutcomeNak, runner.OutcomeDLQ} {
			t.m.messages.WithLabelValues(function, string(o))
		}
		t.m.deadLetters.WithLabelValues(function)
	}
	return r
}

func (r *Runner) ready() error {
	if !r.bound.Load() {
		return errors.New("not bound")
	}
	return nil
}

// Consuming records whether the runner's consumer is bound.
func (r *Runner) Consuming(bound bool) { r.bound.Store(bound) }

// Alive records the runner's heartbeat for /healthz.
func (r *Runner) Alive(next time.Duration) { r.t.beat("runner "+r.function, next) }

// Settled counts a settled delivery.
func (r *Runner) Settled(st runner.Settlement) {
	r.t.m.messages.WithLabelValues(r.function, string(st.Outcome)).Inc()
	r.t.m.messageDuration.WithLabelValues(r.function).Observe(st.Duration.Seconds())
	if st.Outcome == runner.OutcomeDLQ {
		r.t.m.deadLetters.WithLabelValues(r.function).Inc()
	}
}

// Published counts an event JetStream stored as new: a hand-off is a
// submission, a rejected event a rejection (each unless it is the replay
// of an answer recorded long before, see replayAge), a completion
// counts with its status queries, detection delay and duration, a
// stalled warning as a stall.
func (r *Runner) Published(e events.Event) { r.t.m.event(e, r.t.now()) }

// fqName reads a descriptor's metric name out of its String form, the
// only place client_golang shows it: Desc{fqName: "name", ...}.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// MetricNames returns, sorted, the name of every metric a function's
// process can export: imsflow's own (the in-flight slots' gauges among
// them), extra collectors' (the ingest's), and the Go and process
// collectors'. Histograms are named without their _bucket, _sum and
// _count series. Dashboards and alerts may query only these (the
// manifests' test holds them to it).
func MetricNames(extra ...prometheus.Collector) []string {
	cs := append(newMetrics().collectors(), &slotsCollector{},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cs = append(cs, extra...)
	ch := make(chan *prometheus.Desc)
	go func() {
		defer close(ch)
		for _, c := range cs {
			c.Describe(ch)
		}
	}()
	seen := map[string]bool{}
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			seen[m[1]] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
