// Command export is imsflow's export function on its own: it connects to
// NATS_URL, creates imsflow's streams and buckets if missing, and turns
// every export request on imsflow.in.export into an IMS export job.
// Configuration is the environment; see the README.
package main

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/export/exporter"
	"github.com/imsflow/imsflow/internal/fnmain"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

func main() {
	fnmain.Main(exporter.Function, func(ctx context.Context, cfg exporter.Config, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (*runner.Runner, error) {
		return exporter.New(ctx, cfg, ims, js, log)
	})
}
