// Command imsflow is imsflow's command line: the "ims" commands, a direct
// line to the IMS API configured from the environment, and "emulator", the
// local IMS; the pipeline commands (dev, demo, export, bulk, watch, status)
// join them as they are built; "run" runs one function as the process (the
// container image's entry point).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	// In a container built FROM scratch there are no CA roots and no zone
	// files: the binary carries both (the roots are used only where the
	// system has none).
	_ "golang.org/x/crypto/x509roots/fallback"
	_ "time/tzdata"

	"github.com/imsflow/imsflow/internal/probe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], nil, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the operation failed
	exitUsage = 2 // bad command line or configuration
	exitInUse = 3 // "imsflow dev": another instance runs on the data directory
)

const usage = `imsflow moves VM and disk images in and out of Huawei Cloud IMS.

Usage:
  imsflow dev [flags]             the whole pipeline in one process: embedded NATS, IMS emulator, functions
  imsflow demo [-v]               a realistic mixed batch through the local pipeline, with a summary
  imsflow watch [-json] [-all]    print imsflow's events as they arrive (NATS_URL)
  imsflow bulk import|export ...  one event per object of a bucket prefix, or per image ID (see "imsflow bulk")
  imsflow status [BATCH|ID]       a batch's totals and items, a lifecycle's legs, or the jobs in flight
  imsflow lifecycle [show|retry|latest] ...   image lifecycles: list, tree, retry one leg, a family's latest
  imsflow bucket init BUCKET...   create buckets (S3_*) and send MinIO's events to JetStream
  imsflow ims <command> [flags]   call the IMS API directly (see "imsflow ims -h")
  imsflow emulator [flags]        run the local IMS emulator (see "imsflow emulator -h")
  imsflow run FUNCTION            run one function (import, export, poller, distribute, ingest) as this process
  imsflow version                 the version and commit this binary was built from
  imsflow healthcheck URL...      exit 0 when every URL answers 2xx (the image's HEALTHCHECK)
  imsflow help [COMMAND]          this text, or a command's (as "imsflow COMMAND -h")

IMS settings come from the environment: IMS_ENDPOINT and either
HUAWEICLOUD_SDK_AK + HUAWEICLOUD_SDK_SK (+ HUAWEICLOUD_SDK_SECURITY_TOKEN)
or IMS_AUTH_TOKEN; see "imsflow ims -h" for all of them.
`

// run is main without the process: environ nil means the process
// environment.
func run(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "ims":
		return runIMS(ctx, args[1:], environ, stdout, stderr)
	case "emulator":
		return runEmulator(ctx, args[1:], environ, stdout, stderr)
	case "bulk":
		return runBulk(ctx, args[1:], environ, stdout, stderr, os.Stdin)
	case "status":
		return runStatus(ctx, args[1:], environ, stdout, stderr)
	case "lifecycle":
		return runLifecycle(ctx, args[1:], environ, stdout, stderr)
	case "bucket":
		return runBucket(ctx, args[1:], environ, stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], environ, stdout, stderr)
	case "dev":
		return runDev(ctx, args[1:], environ, stdout, stderr)
	case "watch":
		return runWatch(ctx, args[1:], environ, stdout, stderr)
	case "run":
		return runFunction(args[1:], stdout, stderr)
	case "version":
		return runVersion(stdout)
	case "healthcheck":
		return probe.Main(args[1:], stderr)
	case "help", "-h", "-help", "--help":
		if args[0] == "help" && len(args) > 1 {
			// "imsflow help bulk import" is "imsflow bulk import -h".
			return run(ctx, append(args[1:len(args):len(args)], "-h"), environ, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "imsflow: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}
