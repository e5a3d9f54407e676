// Package fnmain is the main of every imsflow function run as its own
// process: configuration from the environment (a clear message and exit 2
// when it is wrong), JSON logs, a NATS connection, the topology, the
// function's runner, and a graceful drain on SIGTERM or Ctrl-C.
package fnmain

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/caarlos0/env/v10"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/natsconn"
	"github.com/imsflow/imsflow/internal/rateshare"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Build makes a function's runner from its configuration.
type Build[C any] func(ctx context.Context, cfg C, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (*runner.Runner, error)

type config[C any] struct {
	NATS     natsconn.Config
	Function C
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

// Main runs the function and exits.
func Main[C any](function string, build Build[C]) {
	var cfg config[C]
	err := env.Parse(&cfg)
	if err == nil {
		err = cfg.NATS.Validate()
	}
	imsCfg, imsErr := imsconfig.Parse(nil)
	if err != nil || imsErr != nil {
		fmt.Fprintf(os.Stderr, "%s: bad configuration (see the README for every variable):\n", function)
		for _, e := range []error{err, imsErr} {
			if e != nil {
				fmt.Fprintf(os.Stderr, "  %v\n", e)
			}
		}
		os.Exit(2)
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: LOG_LEVEL %q: want debug, info, warn or error\n", function, cfg.LogLevel)
		os.Exit(2)
	}
	log := zerolog.New(os.Stdout).Level(level).With().Timestamp().Logger() // the runner adds "function"
	if err := run(function, cfg, imsCfg, build, log); err != nil {
		log.Error().Err(err).Msg("stopped")
		os.Exit(1)
	}
}

func run[C any](function string, cfg config[C], imsCfg imsconfig.Config, build Build[C], log zerolog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// One limiter for the process, its rate a share of IMS_RATE_LIMIT
	// among every imsflow process alive (rateshare).
	limiter := rate.NewLimiter(rate.Limit(imsCfg.RateLimit), imsCfg.RateBurst)
	ims, err := imsCfg.Client(imsapi.WithRateLimiter(limiter))
	if err != nil {
		return err
	}
	nc, js, err := cfg.NATS.Connect("imsflow-" + function)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	if err := runner.Ensure(ctx, js, runner.DefaultTopology(cfg.NATS.Replicas)); err != nil {
		return err
	}
	host, _ := os.Hostname()
	if err := rateshare.Share(ctx, js, fmt.Sprintf("%s/%s/%d", function, host, os.Getpid()), imsCfg.RateLimit, imsCfg.RateBurst, limiter); err != nil {
		return err
	}
	r, err := build(ctx, cfg.Function, ims, js, log)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}
