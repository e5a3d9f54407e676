// Command import is imsflow's import function on its own: it connects to
// NATS_URL, creates imsflow's streams and buckets if missing, and imports
// every object-created notification on imsflow.in.objects.> into IMS.
// Configuration is the environment; see the README.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/caarlos0/env/v10"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/natsconn"
	"github.com/imsflow/imsflow/internal/runner"
)

type config struct {
	NATS     natsconn.Config
	Import   importer.Config
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

func main() {
	var cfg config
	err := env.Parse(&cfg)
	imsCfg, imsErr := imsconfig.Parse(nil)
	if err != nil || imsErr != nil {
		fmt.Fprintf(os.Stderr, "import: bad configuration:\n%v\n%v\n", err, imsErr)
		os.Exit(2)
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "import: LOG_LEVEL %q: %v\n", cfg.LogLevel, err)
		os.Exit(2)
	}
	log := zerolog.New(os.Stdout).Level(level).With().Timestamp().Str("function", importer.Function).Logger()
	if err := run(cfg, imsCfg, log); err != nil {
		log.Error().Err(err).Msg("stopped")
		os.Exit(1)
	}
}

func run(cfg config, imsCfg imsconfig.Config, log zerolog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ims, err := imsCfg.Client()
	if err != nil {
		return err
	}
	nc, js, err := cfg.NATS.Connect("imsflow-" + importer.Function)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	if err := runner.Ensure(ctx, js, runner.DefaultTopology(cfg.NATS.Replicas)); err != nil {
		return err
	}
	r, err := importer.New(ctx, cfg.Import, ims, js, log)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}
