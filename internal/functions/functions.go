// Package functions names imsflow's functions and runs one of them as the
// whole process: the small mains under functions/ and "imsflow run" (the
// container image's one binary) both start a function through Run.
package functions

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/distribute/distributor"
	"github.com/imsflow/imsflow/functions/export/exporter"
	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/functions/ingest/ingest"
	"github.com/imsflow/imsflow/functions/poller/poller"
	"github.com/imsflow/imsflow/internal/fnmain"
	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Names are the functions Run knows, in the order a deployment lists them.
var Names = []string{importer.Function, exporter.Function, poller.Function, distributor.Function, ingest.Function}

// Known reports whether name is one of Names.
func Known(name string) bool {
	for _, n := range Names {
		if n == name {
			return true
		}
	}
	return false
}

// Run runs the function called name as the process until SIGTERM or
// Ctrl-C (fnmain: configuration from the environment; the process exits 2
// when it is wrong and 1 when the function failed) and returns true after
// a graceful stop; false, at once, when name is not a function.
func Run(name string) bool {
	switch name {
	case importer.Function:
		fnmain.Main(name, func(ctx context.Context, cfg importer.Config, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (fnmain.Service, error) {
			return importer.New(ctx, cfg, ims, js, log)
		})
	case exporter.Function:
		fnmain.Main(name, func(ctx context.Context, cfg exporter.Config, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (fnmain.Service, error) {
			return exporter.New(ctx, cfg, ims, js, log)
		})
	case poller.Function:
		fnmain.Main(name, func(ctx context.Context, cfg poller.Config, ims *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (fnmain.Service, error) {
			cfg.Reconcile = SleepingConsumers()
			return poller.New(ctx, cfg, ims, js, log)
		})
	case distributor.Function:
		fnmain.Main(name, func(ctx context.Context, cfg distributor.Config, _ *imsapi.Client, js jetstream.JetStream, log zerolog.Logger) (fnmain.Service, error) {
			return distributor.New(ctx, cfg, distributor.RegionsOf(imsconfig.FromContext(ctx)), nil, js, log)
		})
	case ingest.Function:
		fnmain.MainService(name, func(_ context.Context, cfg ingest.Config, js jetstream.JetStream, log zerolog.Logger) (fnmain.Service, error) {
			return ingest.New(cfg, js, log)
		})
	default:
		return false
	}
	return true
}

// AdminShutdown bounds the stop of a function's ADMIN_ADDR listener,
// which comes after its drain.
const AdminShutdown = 5 * time.Second

// afterDrain is what a stop takes after the function's own drain: the
// NATS connection's, then the admin listener's.
const afterDrain = fnmain.NATSDrainWait + AdminShutdown

// CheckEnv checks the configuration in environ of the function called
// name as its process reads and checks it at start, without connecting to
// anything, and returns how long its graceful stop on SIGTERM can take:
// the drain of the messages in hand (or of the ingest's requests), then
// the NATS connection's and the admin listener's. A deployment gives it at least that
// (terminationGracePeriodSeconds, stop_grace_period).
func CheckEnv(name string, environ map[string]string) (stop time.Duration, err error) {
	switch name {
	case importer.Function:
		return runnerStop(environ, func(c importer.Config) time.Duration { return c.AckWait })
	case exporter.Function:
		return runnerStop(environ, func(c exporter.Config) time.Duration { return c.AckWait })
	case poller.Function:
		return runnerStop(environ, func(c poller.Config) time.Duration { return c.AckWait })
	case distributor.Function:
		return runnerStop(environ, func(c distributor.Config) time.Duration { return c.AckWait })
	case ingest.Function:
		cfg, err := fnmain.ReadEnv[ingest.Config](environ, false)
		if err == nil {
			err = cfg.Validate()
		}
		return cfg.DrainBound() + afterDrain, err
	}
	return 0, fmt.Errorf("%q is not a function (want one of %v)", name, Names)
}

// runnerStop checks the configuration of a function that calls IMS
// through a runner and returns its stop bound, from its ack wait.
func runnerStop[C interface{ Check() error }](environ map[string]string, ackWait func(C) time.Duration) (time.Duration, error) {
	cfg, err := fnmain.ReadEnv[C](environ, true)
	if err == nil {
		err = cfg.Check()
	}
	return runner.DefaultHandleTimeout(ackWait(cfg)) + afterDrain, err
}

// MetricNames is the name of every metric a function's process can export
// (telemetry.MetricNames with the ingest's and the import's own).
func MetricNames() []string {
	return telemetry.MetricNames(append(ingest.Collectors(), importer.Collectors()...)...)
}

// Consumers are the durable consumers of a function, for autoscalers and
// monitoring that watch their lag: Consumer's first, and the distribute
// function's retry requests; none for the ingest.
func Consumers(name string) []runner.Consumer {
	stream, durable, ok := Consumer(name)
	if !ok {
		return nil
	}
	out := []runner.Consumer{{Stream: stream, Config: jetstream.ConsumerConfig{Durable: durable}}}
	if name == distributor.Function {
		out = append(out, runner.Consumer{Stream: runner.StreamIn, Config: jetstream.ConsumerConfig{Durable: distributor.RetryFunction}})
	}
	return out
}

// Consumer is the stream a function consumes and its (main) durable
// consumer's name; ok is false for the ingest, which consumes nothing.
func Consumer(name string) (stream, durable string, ok bool) {
	switch name {
	case importer.Function:
		return importer.Stream, importer.Function, true
	case exporter.Function:
		return exporter.Stream, exporter.Function, true
	case poller.Function:
		return poller.Stream, poller.Function, true
	case distributor.Function:
		return runner.StreamOut, distributor.Function, true
	}
	return "", "", false
}

// SleepingConsumers are the consumers of the functions that may sleep at
// zero replicas (import, export and distribute, scaled by KEDA), for the
// poller's sweep to make when missing.
func SleepingConsumers() []runner.Consumer {
	return []runner.Consumer{
		runner.DefaultConsumer(importer.Function, importer.Stream, importer.Subjects...),
		runner.DefaultConsumer(exporter.Function, exporter.Stream, exporter.Subjects...),
		runner.DefaultConsumer(distributor.Function, runner.StreamOut, distributor.Subjects...),
		runner.DefaultConsumer(distributor.RetryFunction, runner.StreamIn, distributor.RetrySubjects...),
	}
}
