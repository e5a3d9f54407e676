// Package fnmain is the main of every imsflow function run as its own
// process: configuration from the environment (a clear message and exit 2
// when it is wrong, a warning when it is probably not what was meant),
// JSON logs, a NATS connection, the topology, the function itself, and a
// graceful drain on SIGTERM or Ctrl-C.
package fnmain

import (
	"context"
	"fmt"
	"os"
	"os/signal"
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
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Service is a function's work: it runs until ctx ends, then finishes
// what it holds and returns.
type Service interface {
	Run(ctx context.Context) error
}

// Build makes a function that calls IMS from its configuration.
type Build[C any] func(ctx context.Context, cfg C, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (*runner.Runner, error)

// BuildService makes a function that needs NATS only.
type BuildService[C any] func(ctx context.Context, cfg C, js jetstream.JetStream, log zerolog.Logger) (Service, error)

type config[C any] struct {
	NATS     natsconn.Config
	Function C
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

// Warner is a function's configuration that can be valid and still
// probably not what was meant: Main and MainService log each of its
// warnings when the function starts.
type Warner interface {
	Warnings() []string
}

// Main runs a function that calls IMS, and exits.
func Main[C any](function string, build Build[C]) {
	cfg, log := parse[C](function)
	warn(log, function, cfg.Function)
	imsCfg, err := imsconfig.Parse(nil)
	if err != nil {
		badConfig(function, err)
	}
	err = run(function, cfg, log, func(ctx context.Context, js jetstream.JetStream) (Service, error) {
		// One limiter for the process, its rate a share of IMS_RATE_LIMIT
		// among every imsflow process alive (rateshare).
		limiter := rate.NewLimiter(rate.Limit(imsCfg.RateLimit), imsCfg.RateBurst)
		ims, err := imsCfg.Client(imsapi.WithRateLimiter(limiter))
		if err != nil {
			return nil, err
		}
		host, _ := os.Hostname()
		if err := rateshare.Share(ctx, js, fmt.Sprintf("%s/%s/%d", function, host, os.Getpid()), imsCfg.RateLimit, imsCfg.RateBurst, limiter); err != nil {
			return nil, err
		}
		return build(ctx, cfg.Function, ims, js, log)
	})
	exit(log, err)
}

// MainService runs a function that needs no IMS client, and exits.
func MainService[C any](function string, build BuildService[C]) {
	cfg, log := parse[C](function)
	warn(log, function, cfg.Function)
	err := run(function, cfg, log, func(ctx context.Context, js jetstream.JetStream) (Service, error) {
		return build(ctx, cfg.Function, js, log)
	})
	exit(log, err)
}

func parse[C any](function string) (config[C], zerolog.Logger) {
	cfg, err := readConfig[C](nil)
	if err != nil {
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

func run[C any](function string, cfg config[C], log zerolog.Logger, build func(context.Context, jetstream.JetStream) (Service, error)) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	nc, js, err := cfg.NATS.ConnectContext(ctx, "imsflow-"+function)
	if err != nil {
		return err
	}
	defer func() {
		// Drain flushes what is pending and returns at once; wait for it.
		closed := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if nc.Drain() == nil {
			select {
			case <-closed:
			case <-time.After(30 * time.Second):
			}
		}
	}()
	if err := runner.EnsureWait(ctx, js, runner.DefaultTopology(cfg.NATS.Replicas), log.With().Str("function", function).Logger()); err != nil {
		return err
	}
	s, err := build(ctx, js)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
