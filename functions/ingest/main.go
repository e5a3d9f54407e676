// Command ingest is imsflow's HTTP(S) ingest function on its own: it
// connects to NATS_URL, creates imsflow's streams and buckets if missing,
// and publishes every OBS notification that SMN or EventGrid posts to it,
// once verified, to imsflow.in.objects.obs. Configuration is the
// environment; see the README.
package main

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/ingest/ingest"
	"github.com/imsflow/imsflow/internal/fnmain"
)

func main() {
	fnmain.MainService(ingest.Function, func(_ context.Context, cfg ingest.Config, js jetstream.JetStream, log zerolog.Logger) (fnmain.Service, error) {
		return ingest.New(cfg, js, log)
	})
}
