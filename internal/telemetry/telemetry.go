// Package telemetry is one imsflow process's health, readiness and
// Prometheus metrics, served by one small HTTP handler:
//
//	GET /healthz   liveness: 200 while every runner of the process beats
//	               (runner.Observer.Alive); 503 with a line per runner that
//	               stopped beating (a handler stuck past its deadline).
//	               Cheap, and never asks NATS: a liveness probe must not
//	               restart a process because NATS is down.
//	GET /readyz    readiness: 200 when every check passes (NATS connected,
//	               the IMS client configured, each runner's consumer bound
//	               and consuming, the ingest's stream there), else 503 with
//	               one line per check that fails.
//	GET /metrics   the process's registry in the Prometheus format.
//
// Each process has its own registry (New), with the Go and process
// collectors; tests make their own. Metrics reach it four ways:
//
//   - the runners: a function's build takes the process's Telemetry from
//     the context it is given (FromContext; fnmain and "imsflow dev" put
//     it there with NewContext) and makes Runner(function) its runner's
//     Observer: messages by outcome, dead letters, heartbeats, the
//     consumer's binding, and the events JetStream stored as new, which
//     give submissions, rejections, completions, stalls, status queries
//     per job and detection delays (see Runner.Published);
//   - the IMS client: imsapi.WithObserver(t.IMS);
//   - gauges a function computes: Slots, JobsInFlight;
//   - collectors of their own (the ingest's): Register.
//
// Label values are the code's own bounded names (function, kind, method,
// status, reason code, operation, HTTP status); never an ID, a key or a
// secret. A nil *Telemetry records nothing, so code built without one
// (most tests) needs no branch.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Telemetry is one process's registry and checks. Its methods are safe
// for concurrent use.
type Telemetry struct {
	reg     *prometheus.Registry
	m       *metrics
	metrics http.Handler
	now     func() time.Time

	mu      sync.Mutex
	ready   []check              // in the order added
	due     map[string]time.Time // heartbeat deadlines by name
	runners map[string]*Runner
}

// check is a named readiness check: nil when ready.
type check struct {
	name string
	f    func() error
}

// New returns a Telemetry with a registry of its own holding imsflow's
// metrics and the Go and process collectors.
func New() *Telemetry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newMetrics().initialized()
	reg.MustRegister(m.collectors()...)
	return &Telemetry{
		reg: reg, m: m, now: time.Now,
		metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
		due:     map[string]time.Time{}, runners: map[string]*Runner{},
	}
}

// Registry returns the process's registry.
func (t *Telemetry) Registry() *prometheus.Registry { return t.reg }

// Register adds collectors of a component's own (the ingest's counters)
// to the registry. A collector registered already is no error.
func (t *Telemetry) Register(cs ...prometheus.Collector) error {
	if t == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		if err := t.reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type contextKey struct{}

// NewContext returns ctx carrying t, for a function's build to find with
// FromContext.
func NewContext(ctx context.Context, t *Telemetry) context.Context {
	return context.WithValue(ctx, contextKey{}, t)
}

// FromContext returns the Telemetry ctx carries, or nil: a nil
// *Telemetry records nothing.
func FromContext(ctx context.Context) *Telemetry {
	t, _ := ctx.Value(contextKey{}).(*Telemetry)
	return t
}

// Ready adds the readiness check name, or replaces the check of that
// name: f returns nil when ready, else what is missing ("not connected").
// A nil f removes the check (a placeholder another check takes over).
func (t *Telemetry) Ready(name string, f func() error) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.ready {
		if t.ready[i].name == name {
			if f == nil {
				t.ready = append(t.ready[:i], t.ready[i+1:]...)
			} else {
				t.ready[i].f = f
			}
			return
		}
	}
	if f != nil {
		t.ready = append(t.ready, check{name, f})
	}
}

// NotYet is a readiness check that fails with reason, for what a process
// has not reached yet ("not connected", "not configured").
func NotYet(reason string) func() error {
	err := errors.New(reason)
	return func() error { return err }
}

// IsReady is the readiness check of something that is now ready.
func IsReady() error { return nil }

// NATSConnected is the readiness check of a NATS connection: the
// connection's own state, no round trip.
func NATSConnected(nc *nats.Conn) func() error {
	return func() error {
		if st := nc.Status(); st != nats.CONNECTED {
			return errors.New(strings.ToLower(st.String()))
		}
		return nil
	}
}

// beat records that name is alive and the next beat is due within next.
func (t *Telemetry) beat(name string, next time.Duration) {
	t.mu.Lock()
	t.due[name] = t.now().Add(next)
	t.mu.Unlock()
}

// notReady returns a line for each readiness check that fails, in the
// order they were added.
func (t *Telemetry) notReady() []string {
	t.mu.Lock()
	checks := slices.Clone(t.ready)
	t.mu.Unlock()
	var out []string
	for _, c := range checks {
		if err := c.f(); err != nil {
			out = append(out, c.name+": "+err.Error())
		}
	}
	return out
}

// notAlive returns a line for each heartbeat overdue at now, by name.
func notAlive(due map[string]time.Time, now time.Time) []string {
	var out []string
	for name, at := range due {
		if now.After(at) {
			out = append(out, fmt.Sprintf("%s: no heartbeat for %s", name, now.Sub(at).Round(time.Second)))
		}
	}
	slices.Sort(out)
	return out
}

// ServeHTTP serves /healthz, /readyz and /metrics.
func (t *Telemetry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeText(w, http.StatusMethodNotAllowed, "method not allowed\n")
		return
	}
	switch r.URL.Path {
	case "/healthz":
		t.mu.Lock()
		lines := notAlive(t.due, t.now())
		t.mu.Unlock()
		answer(w, lines, "ok\n")
	case "/readyz":
		answer(w, t.notReady(), "ready\n")
	case "/metrics":
		t.metrics.ServeHTTP(w, r)
	default:
		writeText(w, http.StatusNotFound, "not found: /healthz, /readyz and /metrics are served here\n")
	}
}

// answer is 200 with ok when nothing fails, else 503 with the failures,
// a line each.
func answer(w http.ResponseWriter, failing []string, ok string) {
	if len(failing) == 0 {
		writeText(w, http.StatusOK, ok)
		return
	}
	writeText(w, http.StatusServiceUnavailable, strings.Join(failing, "\n")+"\n")
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(text))
}

// Server serves a Telemetry on a listener of its own (ADMIN_ADDR).
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan error
}

// Listen starts serving t on addr ("host:port", ":8081") at once, in the
// background, until Shutdown.
func (t *Telemetry) Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		srv: &http.Server{
			Handler: t, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		},
		addr: ln.Addr(), done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Shutdown stops taking requests and waits for those under way, at most
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Value is the sum of the samples of metric name whose labels include
// every given name-value pair: a counter's or gauge's value, or a
// histogram's number of observations. For tests and tools; 0 when there
// is no such sample.
func (t *Telemetry) Value(name string, labels ...string) float64 {
	mfs, err := t.reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}
