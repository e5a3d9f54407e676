// Package fnmain is the main of every imsflow function run as its own
// process: configuration from the environment (a clear message and exit 2
// when it is wrong, a warning when it is probably not what was meant),
// JSON logs, /healthz, /readyz and /metrics on ADMIN_ADDR, a NATS
// connection, the topology, the function itself, and a graceful drain on
// SIGTERM or Ctrl-C.
//
// The process's telemetry (internal/telemetry) is made first and its
// listener started before NATS is dialled, so that /healthz answers
// during start-up and /readyz says what is missing ("nats: not
// connected", "ims: not configured", "consumer: not bound"). The function
// gets it in the context given to its Build (telemetry.FromContext); the
// IMS client reports to it; a Service that has an Instrument method (the
// ingest) is given it. The listener stops after the drain.
package fnmain

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/natsconn"
	"github.com/imsflow/imsflow/internal/rateshare"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Service is a function's work: it runs until ctx ends, then finishes
// what it holds and returns.
type Service interface {
	Run(ctx context.Context) error
}

// Build makes a function that calls IMS from its configuration.
type Build[C any] func(ctx context.Context, cfg C, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (Service, error)

// BuildService makes a function that needs NATS only.
type BuildService[C any] func(ctx context.Context, cfg C, js jetstream.JetStream, log zerolog.Logger) (Service, error)

type config[C any] struct {
	NATS     natsconn.Config
	Function C
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// AdminAddr is ADMIN_ADDR (adminAddr): where /healthz, /readyz and
	// /metrics are served; "" for nowhere.
	AdminAddr string
}

// NATSDrainWait bounds the drain of the NATS connection at a function's
// stop, after the function has settled what it held (so there is little
// left to flush).
const NATSDrainWait = 10 * time.Second

// DefaultAdminAddr is where a function serves /healthz, /readyz and
// /metrics when ADMIN_ADDR is not set.
const DefaultAdminAddr = ":8081"

// adminAddr reads ADMIN_ADDR from environ (nil: the process environment):
// DefaultAdminAddr when it is not set, "" (no listener) when it is set
// empty, else host:port.
func adminAddr(environ map[string]string) (string, error) {
	v, ok := environ["ADMIN_ADDR"]
	if environ == nil {
		v, ok = os.LookupEnv("ADMIN_ADDR")
	}
	v = strings.TrimSpace(v)
	switch {
	case !ok:
		return DefaultAdminAddr, nil
	case v == "":
		return "", nil
	}
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return "", fmt.Errorf("ADMIN_ADDR %q: want host:port or :port (empty: no listener)", v)
	}
	return v, nil
}

// Warner is a function's configuration that can be valid and still
// probably not what was meant: Main and MainService log each of its
// warnings when the function starts.
type Warner interface {
	Warnings() []string
}

// start builds a function once NATS is there and the topology exists;
// ctx carries the process's telemetry.
type start func(ctx context.Context, js jetstream.JetStream) (Service, error)

// Main runs a function that calls IMS, and exits.
func Main[C any](function string, build Build[C]) {
	cfg, log := parse[C](function)
	warn(log, function, cfg.Function)
	imsCfg, err := imsconfig.Parse(nil)
	if err != nil {
		badConfig(function, err)
	}
	var regions imsconfig.RegionsConfig
	if err := imsconfig.ParseEnv(&regions, nil); err != nil {
		badConfig(function, err)
	}
	if _, err := regions.Projects(); err != nil {
		badConfig(function, err)
	}
	tel := telemetry.New()
	exit(log, run(function, cfg, log, tel, withIMS(function, imsCfg, regions, cfg.Function, build, tel, log)))
}

// withIMS starts a function that calls IMS: "ims: not configured" and
// "consumer: not bound" until its IMS client is made and its runner
// built (whose own check then says when its consumer is bound).
func withIMS[C any](function string, imsCfg imsconfig.Config, regionsCfg imsconfig.RegionsConfig, cfg C, build Build[C], tel *telemetry.Telemetry, log zerolog.Logger) start {
	tel.Ready("ims", telemetry.NotYet("not configured"))
	tel.Ready("consumer", telemetry.NotYet("not bound"))
	return func(ctx context.Context, js jetstream.JetStream) (Service, error) {
		// One limiter for the process, its rate a share of IMS_RATE_LIMIT
		// among every imsflow process alive (rateshare).
		limiter := rate.NewLimiter(rate.Limit(imsCfg.RateLimit), imsCfg.RateBurst)
		meter := new(rateshare.Meter)
		observe := func(o imsapi.Observation) { tel.IMS(o); meter.Observe(o) }
		opts := []imsapi.Option{imsapi.WithRateLimiter(limiter), imsapi.WithObserver(observe)}
		ims, err := imsCfg.Client(opts...)
		if err != nil {
			return nil, err
		}
		// The other regions' clients (image lifecycles) share the limiter.
		regions, err := imsconfig.NewRegions(imsCfg, regionsCfg, ims, opts...)
		if err != nil {
			return nil, err
		}
		ctx = imsconfig.NewContext(ctx, regions)
		host, _ := os.Hostname()
		if err := rateshare.Share(ctx, js, fmt.Sprintf("%s/%s/%d", function, host, os.Getpid()), imsCfg.RateLimit, imsCfg.RateBurst, limiter, meter); err != nil {
			return nil, err
		}
		tel.Ready("ims", telemetry.IsReady)
		r, err := build(rateshare.NewContext(ctx, meter), cfg, ims, js, log)
		if err != nil {
			return nil, err
		}
		tel.Ready("consumer", nil) // the runner's own check ("consumer <function>") takes over
		return r, nil
	}
}

// MainService runs a function that needs no IMS client, and exits.
func MainService[C any](function string, build BuildService[C]) {
	cfg, log := parse[C](function)
	warn(log, function, cfg.Function)
	tel := telemetry.New()
	exit(log, run(function, cfg, log, tel, service(function, cfg.Function, build, tel, log)))
}

// Instrumented is a Service that joins the process's telemetry: its
// metrics and readiness checks, and the endpoints it serves itself (the
// ingest's INGEST_ADDR).
type Instrumented interface {
	Instrument(*telemetry.Telemetry) error
}

// service starts a function that needs NATS only: "<function>: not
// started" until it is built.
func service[C any](function string, cfg C, build BuildService[C], tel *telemetry.Telemetry, log zerolog.Logger) start {
	tel.Ready(function, telemetry.NotYet("not started"))
	return func(ctx context.Context, js jetstream.JetStream) (Service, error) {
		s, err := build(ctx, cfg, js, log)
		if err != nil {
			return nil, err
		}
		if in, ok := s.(Instrumented); ok {
			if err := in.Instrument(tel); err != nil {
				return nil, err
			}
		}
		tel.Ready(function, nil)
		return s, nil
	}
}

func parse[C any](function string) (config[C], zerolog.Logger) {
	cfg, err := readConfig[C](nil)
	if err != nil {
		badConfig(function, err)
	}
	if cfg.AdminAddr, err = adminAddr(nil); err != nil {
		badConfig(function, err)
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: LOG_LEVEL %q: want debug, info, warn or error\n", function, cfg.LogLevel)
		os.Exit(2)
	}
	log := zerolog.New(os.Stdout).Level(level).With().Timestamp().Logger() // the function adds "function"
	return cfg, log
}

// ReadEnv reads a function's configuration from environ as Main and
// MainService do at start: NATS, ADMIN_ADDR, LOG_LEVEL, the function's own
// variables and, with ims, IMS's. It makes no connection and leaves the
// function's own combination checks to the caller. For checking a
// deployment's settings offline (manifests/).
func ReadEnv[C any](environ map[string]string, ims bool) (C, error) {
	if environ == nil {
		environ = map[string]string{}
	}
	cfg, err := readConfig[C](environ)
	if err != nil {
		return cfg.Function, err
	}
	if _, err := adminAddr(environ); err != nil {
		return cfg.Function, err
	}
	if _, err := zerolog.ParseLevel(cfg.LogLevel); err != nil {
		return cfg.Function, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", cfg.LogLevel)
	}
	if ims {
		if _, err := imsconfig.Parse(environ); err != nil {
			return cfg.Function, err
		}
	}
	return cfg.Function, nil
}

// readConfig reads a function's configuration from environ (nil: the
// process environment); its error names every variable that is wrong.
func readConfig[C any](environ map[string]string) (config[C], error) {
	var cfg config[C]
	if err := imsconfig.ParseEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	return cfg, cfg.NATS.Validate()
}

// warn logs the warnings of a function's configuration, if it has any.
func warn(log zerolog.Logger, function string, cfg any) {
	w, ok := cfg.(Warner)
	if !ok {
		return
	}
	for _, msg := range w.Warnings() {
		log.Warn().Str("function", function).Msg(msg)
	}
}

func badConfig(function string, err error) {
	fmt.Fprintf(os.Stderr, "%s: bad configuration (see the README for every variable):\n  %v\n", function, err)
	os.Exit(2)
}

func exit(log zerolog.Logger, err error) {
	if err != nil {
		log.Error().Err(err).Msg("stopped")
		os.Exit(1)
	}
}

// run serves tel on ADMIN_ADDR, then runs the function until SIGTERM or
// Ctrl-C and its drain; the listener stops last.
func run[C any](function string, cfg config[C], log zerolog.Logger, tel *telemetry.Telemetry, build start) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log = log.With().Str("function", function).Logger()
	if cfg.AdminAddr != "" {
		srv, err := tel.Listen(cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("ADMIN_ADDR %s: %w", cfg.AdminAddr, err)
		}
		log.Info().Str("addr", srv.Addr().String()).Msg("serving /healthz, /readyz and /metrics")
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	return serve(ctx, function, cfg, log, tel, build)
}

// serve connects to NATS, makes sure of the topology, builds the function
// and runs it until ctx ends, then drains NATS. tel's NATS check follows
// the connection.
func serve[C any](ctx context.Context, function string, cfg config[C], log zerolog.Logger, tel *telemetry.Telemetry, build start) error {
	tel.Ready("nats", telemetry.NotYet("not connected"))
	nc, js, err := cfg.NATS.ConnectContext(ctx, "imsflow-"+function)
	if err != nil {
		return err
	}
	tel.Ready("nats", telemetry.NATSConnected(nc))
	defer func() {
		// Drain flushes what is pending and returns at once; wait for it.
		closed := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if nc.Drain() == nil {
			select {
			case <-closed:
			case <-time.After(NATSDrainWait):
			}
		}
	}()
	if err := runner.EnsureWait(ctx, js, runner.DefaultTopology(cfg.NATS.Replicas), log); err != nil {
		return err
	}
	s, err := build(telemetry.NewContext(ctx, tel), js)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
