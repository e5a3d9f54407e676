// Package rateshare shares one IMS request rate among the replicas of
// imsflow: each process keeps a heartbeat key in a JetStream KV bucket and
// sets its own limiter to the total rate divided by the replicas alive, so
// the account's rate holds however many replicas run. The client-side
// limiter of pkg/imsapi does the waiting; this only sets its rate.
package rateshare

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
)

// Heartbeat is how often a replica renews its key and recounts; a replica
// that stops is forgotten after three heartbeats.
const Heartbeat = 5 * time.Second

// Share keeps the limiter at total/n requests per second (burst
// burst/n, at least 1), n the live replicas, until ctx ends. replica must
// be unique per process; the first share is set before Share returns.
func Share(ctx context.Context, js jetstream.JetStream, replica string, total float64, burst int, l *rate.Limiter) error {
	kv, err := js.KeyValue(ctx, runner.BucketReplicas)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", runner.BucketReplicas, err)
	}
	s := &sharer{kv: kv, key: keyFor(replica), total: total, burst: burst, l: l}
	if err := s.beat(ctx); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = kv.Delete(context.Background(), s.key)
				return
			case <-t.C:
				_ = s.beat(ctx)
			}
		}
	}()
	return nil
}

// keyFor is a replica's key: its name may hold any character.
func keyFor(replica string) string { return "r." + events.Hash(replica, 32) }

type sharer struct {
	kv    jetstream.KeyValue
	key   string
	total float64
	burst int
	l     *rate.Limiter
}

func (s *sharer) beat(ctx context.Context) error {
	if _, err := s.kv.Put(ctx, s.key, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("replica heartbeat: %w", err)
	}
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("count replicas: %w", err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	n = max(n, 1)
	s.l.SetLimit(rate.Limit(s.total / float64(n)))
	s.l.SetBurst(max(s.burst/n, 1))
	return nil
}
