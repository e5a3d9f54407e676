// Command import is imsflow's import function on its own: it connects to
// NATS_URL, creates imsflow's streams and buckets if missing, and imports
// every object-created notification on imsflow.in.objects.> into IMS.
// Configuration is the environment; see the README.
package main

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/fnmain"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

func main() {
	fnmain.Main(importer.Function, func(ctx context.Context, cfg importer.Config, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (*runner.Runner, error) {
		return importer.New(ctx, cfg, ims, js, log)
	})
}
