// Command healthcheck is the health probe of the nats-server image built
// for imsflow's deployments (no shell, no curl there): it GETs each URL
// and exits 0 when every one answered 2xx (package probe).
//
//	healthcheck [-timeout 3s] URL...
package main

import (
	"os"

	"github.com/imsflow/imsflow/internal/probe"
)

func main() { os.Exit(probe.Main(os.Args[1:], os.Stderr)) }
