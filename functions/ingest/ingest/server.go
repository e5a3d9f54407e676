// Package ingest is imsflow's HTTP(S) ingest function. In Huawei Cloud,
// OBS event notifications reach the outside world through SMN HTTP(S)
// subscriptions or EventGrid (EG) webhook targets, not NATS; this function
// receives them, makes sure they are authentic, and publishes every object
// record to imsflow.in.objects.obs, one message per record with a message
// ID derived from the object version, answering 2xx only once JetStream
// has stored them.
//
// Endpoints:
//
//	POST /smn         SMN notifications, subscription and unsubscribe confirmations
//	POST /eventgrid   EventGrid CloudEvents: structured, batched (a JSON array) or binary
//	GET  /healthz     liveness: the process serves
//	GET  /readyz      readiness: NATS is connected and the input stream is there
//	GET  /metrics     the metrics in the Prometheus text format
//
// The last three are the server's telemetry (internal/telemetry): its
// own, or the process's once Instrument is called, so that a process has
// one registry and one set of checks, served alike on ADMIN_ADDR.
package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/pkg/events"
)

// errRedirect refuses a redirect away from the host a URL was allowed for.
var errRedirect = errors.New("redirected elsewhere than the allowed host")

// HeaderVia, on every message the ingest publishes, says how the record
// arrived: "smn" or "eventgrid".
const HeaderVia = "Imsflow-Via"

// Server is the ingest function: an http.Handler and the server around it.
type Server struct {
	cfg     Config
	js      jetstream.JetStream
	log     zerolog.Logger
	limiter *rate.Limiter
	client  *http.Client
	certs   *certCache
	tokens  []string
	metrics *metrics
	tel     atomic.Pointer[telemetry.Telemetry] // serves /healthz, /readyz, /metrics
	mux     *http.ServeMux
	// inflight holds a token per request being handled.
	inflight chan struct{}
	// seen holds the SMN messages handled to the end: a replay (or a
	// retry after a lost answer) is answered without work.
	seen *seenSet

	readyMu  sync.Mutex
	readyAt  time.Time
	readyErr error
}

// Option changes a Server made by New.
type Option func(*Server)

// WithHTTPClient sets the client that fetches SMN signing certificates and
// confirms subscriptions. Whatever its redirect policy, a redirect is
// followed only over HTTPS to the host the URL was allowed for.
func WithHTTPClient(c *http.Client) Option { return func(s *Server) { s.client = c } }

// New returns the ingest function publishing through js.
func New(cfg Config, js jetstream.JetStream, log zerolog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, js: js, log: log.With().Str("function", Function).Logger(),
		limiter: rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst),
		tokens:  cfg.tokens(), metrics: newMetrics(),
		inflight: make(chan struct{}, cfg.MaxConcurrent), seen: newSeenSet(10000),
	}
	for _, o := range opts {
		o(s)
	}
	client := &http.Client{Timeout: smnFetchDeadline}
	if s.client != nil {
		c := *s.client
		client = &c
	} else {
		client.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		// Only within the host that was allowed, over HTTPS.
		if len(via) >= 5 || req.URL.Scheme != "https" || !strings.EqualFold(req.URL.Host, via[0].URL.Host) {
			return errRedirect
		}
		return nil
	}
	s.client = client
	s.certs = newCertCache(client)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /smn", s.endpoint("smn", nil, s.smn))
	s.mux.HandleFunc("POST /eventgrid", s.endpoint("eventgrid", s.authenticEG, s.eventGrid))
	own := telemetry.New()
	if err := s.instrument(own); err != nil {
		return nil, err
	}
	own.Ready("nats", telemetry.NATSConnected(js.Conn()))
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		s.mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) { s.tel.Load().ServeHTTP(w, r) })
	}
	return s, nil
}

// Instrument makes t, the process's telemetry, the server's: its counters
// join t's registry, its readiness check (the input stream) joins t's
// checks, and its /healthz, /readyz and /metrics answer t's, so that one
// process has one registry and one set of checks. The process adds its
// own NATS check to t. fnmain and "imsflow dev" call it before Serve; it
// is safe while serving.
func (s *Server) Instrument(t *telemetry.Telemetry) error { return s.instrument(t) }

func (s *Server) instrument(t *telemetry.Telemetry) error {
	if err := t.Register(s.metrics.collectors()...); err != nil {
		return err
	}
	t.Ready("stream "+runner.StreamIn, s.streamReady)
	s.tel.Store(t)
	return nil
}

// Telemetry returns the server's telemetry: its own, or the one given to
// Instrument.
func (s *Server) Telemetry() *telemetry.Telemetry { return s.tel.Load() }

// Handler returns the function's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Run listens on the configured address and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln, over TLS when configured, until ctx ends; then it
// stops taking requests and waits for those under way.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	const readTimeout = 15 * time.Second
	// The longest a request works once read: a certificate fetch, then a
	// publish or a confirmation.
	handling := s.cfg.DrainBound()
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       readTimeout,
		WriteTimeout:      readTimeout + handling,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          stdlog.New(s.log.With().Str("component", "http").Logger(), "", 0),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	stopped := make(chan error, 1)
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), handling)
		defer cancel()
		stopped <- srv.Shutdown(sctx)
	})
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	s.log.Info().Str("url", scheme+"://"+ln.Addr().String()).Str("subject", s.cfg.Subject).Msg("serving")
	var err error
	if s.cfg.TLSCert != "" {
		err = srv.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
	} else {
		err = srv.Serve(ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		if stop() {
			return err // failed before ctx ended
		}
		<-stopped
		return err
	}
	if err := <-stopped; err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	s.log.Info().Msg("drained")
	return nil
}

// reply is what an endpoint answers.
type reply struct {
	code int
	// refused names why a request was refused as unauthentic (401/403):
	// counted in imsflow_ingest_refused_total.
	refused string
	// retryAfter, when set, is sent as Retry-After.
	retryAfter time.Duration
	body       result
}

// result is the JSON body of every answer of /smn and /eventgrid.
type result struct {
	Published  int  `json:"published"`
	Duplicates int  `json:"duplicates"`
	Skipped    int  `json:"skipped"`
	Rejected   int  `json:"rejected"`
	Confirmed  bool `json:"confirmed,omitempty"`
	// Replayed: the message was handled before; nothing was done again.
	Replayed bool   `json:"replayed,omitempty"`
	Error    string `json:"error,omitempty"`
}

func failure(code int, format string, args ...any) reply {
	return reply{code: code, body: result{Error: fmt.Sprintf(format, args...)}}
}

func refuse(code int, reason, format string, args ...any) reply {
	r := failure(code, format, args...)
	r.refused = reason
	return r
}

// throttled answers a request beyond the rate limit. The limit is spent
// by authentic requests only, so that a flood of forged ones cannot keep
// SMN's and EG's deliveries out.
func throttled(limit float64) reply {
	r := failure(http.StatusTooManyRequests, "more than %g requests per second: retry later", limit)
	r.retryAfter = time.Second
	return r
}

func unavailable(format string, args ...any) reply {
	r := failure(http.StatusServiceUnavailable, format, args...)
	r.retryAfter = 5 * time.Second
	return r
}

// endpoint wraps a handler of a whole body with what every endpoint does:
// the cap on requests at once (each may hold a body in memory), a check
// of the headers before the body is read (pre, may be nil), the body size
// limit, counting, logging.
func (s *Server) endpoint(name string, pre func(*http.Request) (reply, bool), h func(r *http.Request, body []byte) reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rep := s.handle(w, r, pre, h)
		s.metrics.requests.WithLabelValues(name, strconv.Itoa(rep.code)).Inc()
		if rep.refused != "" {
			s.metrics.refused.WithLabelValues(name, rep.refused).Inc()
		}
		ev := s.log.Debug()
		switch {
		case rep.code >= 500, rep.refused != "":
			ev = s.log.Warn()
		case rep.code >= 400:
			ev = s.log.Info()
		}
		ev.Str("endpoint", name).Int("code", rep.code).Str("remote", r.RemoteAddr).
			Int("published", rep.body.Published).Int("duplicates", rep.body.Duplicates).
			Int("skipped", rep.body.Skipped).Int("rejected", rep.body.Rejected).
			Str("refused", rep.refused).Str("error", rep.body.Error).Msg("request")
		if rep.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(rep.retryAfter.Seconds())))
		}
		if rep.code == http.StatusUnauthorized && name == "eventgrid" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="imsflow-ingest"`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.code)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(rep.body)
	}
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, pre func(*http.Request) (reply, bool), h func(r *http.Request, body []byte) reply) reply {
	select {
	case s.inflight <- struct{}{}:
		defer func() { <-s.inflight }()
	default:
		r := failure(http.StatusServiceUnavailable, "%d requests are being handled (INGEST_MAX_CONCURRENT): retry", s.cfg.MaxConcurrent)
		r.retryAfter = time.Second
		return r
	}
	if pre != nil {
		if rep, ok := pre(r); !ok {
			return rep
		}
	}
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return failure(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes (INGEST_MAX_BODY_BYTES)", s.cfg.MaxBodyBytes)
	case err != nil:
		return failure(http.StatusBadRequest, "reading the body: %v", err)
	}
	return h(r, body)
}

// seenSet is a set of the last n keys added.
type seenSet struct {
	mu    sync.Mutex
	m     map[string]struct{}
	order []string
	next  int
}

func newSeenSet(n int) *seenSet {
	return &seenSet{m: make(map[string]struct{}, n), order: make([]string, n)}
}

func (s *seenSet) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[k]
	return ok
}

func (s *seenSet) add(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; ok {
		return
	}
	delete(s.m, s.order[s.next])
	s.order[s.next] = k
	s.m[k] = struct{}{}
	s.next = (s.next + 1) % len(s.order)
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	var b bytes.Buffer
	if r.ContentLength > 0 {
		b.Grow(int(r.ContentLength)) // no doubling past the limit
	}
	_, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return b.Bytes(), err
}

// recordID is the message ID of a record, so that a delivery the sender
// retries is stored once.
func recordID(r events.ObjectRecord) string { return "ingest:" + r.RecordID() }

// pending is a message to store and what to count once it is.
type pending struct {
	msg *nats.Msg
	rec *events.ObjectRecord // nil: an undecodable notification passed on
}

// publishAll stores every record, and every undecodable notification for
// the import function to reject (so that nothing from a genuine sender is
// lost), on the configured subject within the publish timeout. It answers
// 200 only once JetStream has acknowledged them all, else 503, for the
// sender to retry the whole delivery (what was stored is then a duplicate).
func (s *Server) publishAll(ctx context.Context, via string, recs []events.ObjectRecord, undecodable [][]byte, res result) reply {
	s.metrics.records.WithLabelValues("skipped").Add(float64(res.Skipped))
	var out []pending
	for i := range recs {
		out = append(out, pending{s.message(via, recs[i].Body, recordID(recs[i])), &recs[i]})
	}
	for _, b := range undecodable {
		out = append(out, pending{s.message(via, b, "ingest:raw:"+events.Hash(string(b), 40)), nil})
	}
	if len(out) == 0 {
		return reply{code: http.StatusOK, body: res}
	}
	if st := s.js.Conn().Status(); st != nats.CONNECTED {
		return unavailable("NATS is %s; retry", st)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	acks := make([]jetstream.PubAckFuture, len(out))
	var err error
	for i, p := range out {
		if acks[i], err = s.js.PublishMsgAsync(p.msg, jetstream.WithExpectStream(runner.StreamIn)); err != nil {
			break
		}
	}
	for i, p := range out {
		if err != nil || acks[i] == nil {
			break
		}
		select {
		case ack := <-acks[i].Ok():
			s.count(via, p, ack.Duplicate, &res)
		case err = <-acks[i].Err():
		case <-ctx.Done():
			err = fmt.Errorf("no acknowledgement in %s (INGEST_PUBLISH_TIMEOUT)", s.cfg.PublishTimeout)
		}
	}
	if err != nil {
		s.metrics.publishErrors.Inc()
		r := unavailable("publishing to JetStream: %v; retry", err)
		r.body.Published, r.body.Duplicates = res.Published, res.Duplicates
		return r
	}
	return reply{code: http.StatusOK, body: res}
}

func (s *Server) message(via string, body []byte, id string) *nats.Msg {
	m := nats.NewMsg(s.cfg.Subject)
	m.Data = body
	m.Header.Set(events.HeaderMsgID, id)
	m.Header.Set(HeaderVia, via)
	return m
}

// count counts one stored message.
func (s *Server) count(via string, p pending, duplicate bool, res *result) {
	result := "published"
	switch {
	case p.rec == nil:
		result = "rejected"
		res.Rejected++
	case duplicate:
		result = "duplicate"
		res.Duplicates++
	default:
		res.Published++
	}
	s.metrics.records.WithLabelValues(result).Inc()
	if r := p.rec; r != nil {
		s.log.Debug().Str("via", via).Str("bucket", r.Bucket).Str("key", r.Key).Str("version", r.VersionID).
			Str("etag", r.ETag).Bool("duplicate", duplicate).Msg("record stored")
	}
}

// streamReady is the readiness check of the input stream: there, looked
// up at most every two seconds, and not while NATS is not connected
// (the NATS check says so).
func (s *Server) streamReady() error {
	if st := s.js.Conn().Status(); st != nats.CONNECTED {
		return errors.New("not looked up while NATS is not connected")
	}
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	if time.Since(s.readyAt) < 2*time.Second {
		return s.readyErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := s.js.Stream(ctx, runner.StreamIn)
	s.readyAt, s.readyErr = time.Now(), err
	return err
}
