package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/pkg/events"
)

// Topology is the streams and buckets Ensure creates; tests and
// deployments with other limits can change it.
type Topology struct {
	Streams []jetstream.StreamConfig
	Buckets []jetstream.KeyValueConfig
}

// DefaultTopology returns imsflow's streams and buckets with replicas
// copies each (1 for a single server, 3 in a cluster).
func DefaultTopology(replicas int) Topology {
	replicas = max(replicas, 1)
	return Topology{
		Streams: []jetstream.StreamConfig{
			{
				Name: StreamIn, Subjects: []string{SubjectIn}, Retention: jetstream.WorkQueuePolicy,
				Storage: jetstream.FileStorage, Replicas: replicas, Duplicates: 10 * time.Minute,
				AllowMsgSchedules: true, AllowMsgTTL: true,
				Description: "imsflow inputs: object-created notifications and export requests",
			},
			{
				Name: StreamJobs, Subjects: []string{SubjectJobsAll, SubjectSchedAll}, Retention: jetstream.WorkQueuePolicy,
				Storage: jetstream.FileStorage, Replicas: replicas, Duplicates: 10 * time.Minute,
				AllowMsgSchedules: true, AllowMsgTTL: true,
				Description: "imsflow internal: job hand-offs and poll timers",
			},
			{
				Name: StreamOut, Subjects: []string{events.SubjectOut}, Retention: jetstream.LimitsPolicy,
				Storage: jetstream.FileStorage, Replicas: replicas, Duplicates: time.Hour, MaxAge: 7 * 24 * time.Hour,
				Description: "imsflow outputs: completion, rejection, progress and batch events",
			},
			{
				Name: StreamDLQ, Subjects: []string{events.SubjectDLQPrefix + ">"}, Retention: jetstream.LimitsPolicy,
				Storage: jetstream.FileStorage, Replicas: replicas, MaxAge: 30 * 24 * time.Hour,
				Description: "imsflow dead letters",
			},
		},
		Buckets: []jetstream.KeyValueConfig{
			{Bucket: BucketImports, Description: "import state per object version", Storage: jetstream.FileStorage, Replicas: replicas},
			{Bucket: BucketExports, Description: "export state per request", Storage: jetstream.FileStorage, Replicas: replicas},
			{Bucket: BucketSlots, Description: "IMS image-creation jobs in flight", Storage: jetstream.FileStorage, Replicas: replicas,
				LimitMarkerTTL: time.Minute},
			{Bucket: BucketJobs, Description: "poller state per IMS job", Storage: jetstream.FileStorage, Replicas: replicas},
			{Bucket: BucketLifecycles, Description: "image lifecycles and each family's latest images", Storage: jetstream.FileStorage, Replicas: replicas},
			{Bucket: BucketBatches, Description: "batch totals", Storage: jetstream.FileStorage, Replicas: replicas, TTL: 30 * 24 * time.Hour},
			{Bucket: BucketAttempts, Description: "failed deliveries per message", Storage: jetstream.FileStorage, Replicas: replicas,
				TTL: 7 * 24 * time.Hour},
			{Bucket: BucketReplicas, Description: "processes sharing the IMS request rate", Storage: jetstream.MemoryStorage, Replicas: replicas,
				TTL: 3 * 5 * time.Second},
		},
	}
}

// Ensure creates or updates every stream and bucket of t, so that a fresh
// NATS needs no manual setup and a restarted process changes nothing.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	for _, sc := range t.Streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range t.Buckets {
		if _, err := js.CreateOrUpdateKeyValue(ctx, kc); err != nil {
			return fmt.Errorf("key-value bucket %s: %w", kc.Bucket, err)
		}
	}
	return nil
}

// StartupWait bounds how long a starting process waits for JetStream to
// answer: a cluster whose nodes start together elects its leaders for a
// few seconds first, and a process started with them must not exit.
var StartupWait = 2 * time.Minute

// EnsureWait is Ensure, tried again until it succeeds or StartupWait has
// passed, with a log line for each failed try.
func EnsureWait(ctx context.Context, js jetstream.JetStream, t Topology, log zerolog.Logger) error {
	return retryStart(ctx, log, "create imsflow's streams and buckets", func(ctx context.Context) error { return Ensure(ctx, js, t) })
}

// retryStart runs f until it succeeds, ctx ends or StartupWait has passed,
// each try bounded by tryTimeout, waiting 1 s, 2 s, 4 s ... at most 10 s
// between tries.
func retryStart(ctx context.Context, log zerolog.Logger, what string, f func(context.Context) error) error {
	const tryTimeout = 5 * time.Second
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = time.Second, 10*time.Second, StartupWait
	b.Reset()
	for try := 1; ; try++ {
		tctx, cancel := context.WithTimeout(ctx, tryTimeout)
		err := f(tctx)
		cancel()
		if err == nil {
			if try > 1 {
				log.Info().Int("tries", try).Msg(what + ": done; JetStream answers")
			}
			return nil
		}
		wait := b.NextBackOff()
		if wait == backoff.Stop || ctx.Err() != nil {
			return fmt.Errorf("%s: JetStream did not answer within %s (%d tries): %w", what, StartupWait, try, err)
		}
		log.Warn().Err(err).Int("try", try).Dur("retry_in", wait).Msg(what + ": JetStream is not ready (a cluster still electing its leaders?); trying again")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
