// Command export is imsflow's export function on its own: it connects to
// NATS_URL, creates imsflow's streams and buckets if missing, and turns
// every export request on imsflow.in.export into an IMS export job.
// Configuration is the environment; see the README.
package main

import "github.com/imsflow/imsflow/internal/functions"

func main() { functions.Run("export") }
