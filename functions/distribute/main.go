// Command distribute is imsflow's distribute function on its own: it
// connects to NATS_URL, creates imsflow's streams and buckets if missing,
// and runs the lifecycle each routing rule declares (copies to regions,
// shares, tags, the family's latest pointer, retention) for the images
// imported under it. Configuration is the environment; see the README.
package main

import "github.com/imsflow/imsflow/internal/functions"

func main() { functions.Run("distribute") }
