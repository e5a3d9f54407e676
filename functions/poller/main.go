// Command poller is imsflow's poller on its own: it connects to NATS_URL,
// creates imsflow's streams and buckets if missing, tracks every job handed
// off on imsflow.jobs.submitted until it ends, and publishes its
// completion on imsflow.out.<kind>.<status>. Configuration is the
// environment; see the README.
package main

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/poller/poller"
	"github.com/imsflow/imsflow/internal/fnmain"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

func main() {
	fnmain.Main(poller.Function, func(ctx context.Context, cfg poller.Config, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (*runner.Runner, error) {
		return poller.New(ctx, cfg, ims, js, log)
	})
}
