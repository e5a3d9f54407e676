// Command import is imsflow's import function on its own: it connects to
// NATS_URL, creates imsflow's streams and buckets if missing, and imports
// every object-created notification on imsflow.in.objects.> into IMS.
// Configuration is the environment; see the README.
package main

import "github.com/imsflow/imsflow/internal/functions"

func main() { functions.Run("import") }
