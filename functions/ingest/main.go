// Command ingest is imsflow's HTTP(S) ingest function on its own: it
// connects to NATS_URL, creates imsflow's streams and buckets if missing,
// and publishes every OBS notification that SMN or EventGrid posts to it,
// once verified, to imsflow.in.objects.obs. Configuration is the
// environment; see the README.
package main

import "github.com/imsflow/imsflow/internal/functions"

func main() { functions.Run("ingest") }
