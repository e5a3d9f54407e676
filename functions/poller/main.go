// Command poller is imsflow's poller on its own: it connects to NATS_URL,
// creates imsflow's streams and buckets if missing, tracks every job handed
// off on imsflow.jobs.submitted until it ends, and publishes its
// completion on imsflow.out.<kind>.<status>. Configuration is the
// environment; see the README.
package main

import "github.com/imsflow/imsflow/internal/functions"

func main() { functions.Run("poller") }
