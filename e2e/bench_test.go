package e2e

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// s3Body is an S3-shaped object-created notification.
func s3Body(bucket, key string, size int64, etag string) []byte {
	return fmt.Appendf(nil, `{"Records":[{"eventVersion":"2.0","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":%q,"size":%d,"eTag":%q}}}]}`,
		bucket, url.QueryEscape(key), size, etag)
}

// benchPipeline is what the submit path's benchmarks run against: the
// emulator at zero latency, taking any object, with no rate limit and no
// cap, and an embedded NATS with imsflow's topology; closed when b ends.
func benchPipeline(b *testing.B) (*imsapi.Client, *nats.Conn, jetstream.JetStream) {
	b.Helper()
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, AssumeObjects: true,
		MaxRunningJobs: -1, ImageQuota: -1, TimeScale: 1e6})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = emu.Close() })
	client, err := emu.Client(imsapi.WithRateLimiter(rate.NewLimiter(rate.Inf, 0)))
	if err != nil {
		b.Fatal(err)
	}
	nc, js := testenv.StartNATS(b).Connect(b)
	if err := runner.Ensure(context.Background(), js, runner.DefaultTopology(1)); err != nil {
		b.Fatal(err)
	}
	return client, nc, js
}

// rawConsume is the reference of BenchmarkFanOut: messages a second that
// a durable JetStream consumer takes and acknowledges (Ack, as imsflow's
// runner does) on the same server, with as many Consume loops as import
// replicas (nats.go's defaults), draining a backlog of n messages of the
// notifications' size on a stream of its own. It is the median of three
// drains, so that one descheduled moment does not set the reference.
func rawConsume(b *testing.B, js jetstream.JetStream, replicas, n int) float64 {
	b.Helper()
	rates := make([]float64, 3)
	for i := range rates {
		rates[i] = rawDrain(b, js, fmt.Sprintf("RAW%d_%d", replicas, i), replicas, n)
	}
	slices.Sort(rates)
	return rates[1]
}

func rawDrain(b *testing.B, js jetstream.JetStream, name string, replicas, n int) float64 {
	b.Helper()
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"raw." + name}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(ctx, name) }()
	publishBacklog(b, js, n, func(i int) (string, []byte) {
		return "raw." + name, s3Body("images", fmt.Sprintf("bench/d%07d.qcow2", i), 1<<30, fmt.Sprint(i))
	})
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{}, n)
	start := time.Now()
	var ccs []jetstream.ConsumeContext
	for range replicas {
		cc, err := c.Consume(func(m jetstream.Msg) {
			_ = m.Ack()
			done <- struct{}{}
		})
		if err != nil {
			b.Fatal(err)
		}
		ccs = append(ccs, cc)
	}
	for range n {
		<-done
	}
	rate := float64(n) / time.Since(start).Seconds()
	for _, cc := range ccs {
		cc.Stop()
	}
	return rate
}

// publishBacklog stores n messages, msg(0) to msg(n-1), and waits until
// JetStream has confirmed every one.
func publishBacklog(b *testing.B, js jetstream.JetStream, n int, msg func(i int) (subject string, data []byte)) {
	b.Helper()
	acks := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		subject, data := msg(i)
		a, err := js.PublishAsync(subject, data)
		if err != nil {
			b.Fatal(err)
		}
		acks = append(acks, a)
	}
	for _, a := range acks {
		select {
		case <-a.Ok():
		case err := <-a.Err():
			b.Fatal(err)
		}
	}
}

// BenchmarkFanOut measures notifications turned into submitted IMS jobs
// per second with 1, 2 and 4 import replicas sharing the durable consumer
// (each with IMPORT_WORKERS' default of 16),
// against the emulator at zero latency with no rate limit and no cap, and
// that rate as a share of a raw JetStream consume and ack measured in the
// same benchmark (%-of-raw). Both drain a backlog stored before the clock
// starts (a bulk upload's notifications, 500 per op), so that the two
// figures measure the same thing: taking messages off a stream, with and
// without the work of an import.
func BenchmarkFanOut(b *testing.B) {
	for _, replicas := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			const perOp = 500
			client, nc, js := benchPipeline(b)
			ctx := context.Background()
			n := perOp * b.N
			handoffs := make(chan *nats.Msg, n)
			if _, err := nc.ChanSubscribe(events.SubjectJobSubmitted, handoffs); err != nil {
				b.Fatal(err)
			}
			publishBacklog(b, js, n, func(i int) (string, []byte) {
				return events.SubjectObjectsPrefix + "bench", s3Body("images", fmt.Sprintf("bench/d%07d.qcow2", i), 1<<30, fmt.Sprint(i))
			})
			runCtx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			b.ResetTimer()
			for range replicas {
				r, err := importer.New(ctx, importer.Config{BitmapWait: time.Minute, BitmapPoll: time.Minute, ClaimTTL: 2 * time.Minute,
					ThrottleWait: time.Second, Workers: 16, AckWait: 30 * time.Second, MaxFailures: 50}, client, js, zerolog.Nop())
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() { _ = r.Run(runCtx) })
			}
			for range n {
				<-handoffs
			}
			b.StopTimer()
			jobs := float64(n) / b.Elapsed().Seconds()
			raw := rawConsume(b, js, replicas, max(n, 20000))
			b.ReportMetric(jobs, "jobs/s")
			b.ReportMetric(raw, "raw-msgs/s")
			b.ReportMetric(100*jobs/raw, "%-of-raw")
		})
	}
}

// BenchmarkSubmitSteps measures, one at a time and in sequence, each
// round trip the import of one new object version makes (BenchmarkFanOut
// runs them all, concurrently): read the version's state, create its
// claim, submit to the emulator, record it submitted, and publish the
// hand-off with its acknowledgement (the message's own Ack is not waited
// for). Their sum against BenchmarkFanOut's per-job time shows what
// concurrency buys and which step to fold next.
func BenchmarkSubmitSteps(b *testing.B) {
	ctx := context.Background()
	client, _, js := benchPipeline(b)
	kv, err := js.KeyValue(ctx, runner.BucketImports)
	if err != nil {
		b.Fatal(err)
	}
	value := []byte(`{"state":"claimed","claimed_at":"2026-12-02T00:00:00Z"}`)
	key := func(i int) string { return fmt.Sprintf("v.bench%08d", i) }
	b.Run("kv-get-missing", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			_, _ = kv.Get(ctx, key(i))
		}
	})
	b.Run("kv-create", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if _, err := kv.Create(ctx, key(i), value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kv-update", func(b *testing.B) {
		rev, err := kv.Put(ctx, "v.update", value)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if rev, err = kv.Update(ctx, "v.update", value, rev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ims-submit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if _, err := client.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: fmt.Sprintf("d%d", i), ImageURL: "images:bench/d.qcow2", MinDisk: 40}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("publish-acked", func(b *testing.B) {
		body := []byte(`{"job_id":"x","kind":"import"}`)
		i := 0
		for b.Loop() {
			i++
			if _, err := js.Publish(ctx, events.SubjectJobSubmitted, body, jetstream.WithMsgID(fmt.Sprint("bench:", i))); err != nil {
				b.Fatal(err)
			}
		}
	})
}
