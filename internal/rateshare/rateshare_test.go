package rateshare

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestReplicasShareTheRate: three replicas each get a third of the rate;
// hammering the emulator together they stay under its per-account limit.
func TestReplicasShareTheRate(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	if err := runner.Ensure(t.Context(), js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	const total, burst = 30.0, 3
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	limiters := make([]*rate.Limiter, 3)
	for i := range limiters {
		limiters[i] = rate.NewLimiter(rate.Inf, 0)
		if err := Share(ctx, js, fmt.Sprint("replica-", i), total, burst, limiters[i]); err != nil {
			t.Fatal(err)
		}
	}
	// The first replicas counted fewer peers; one more heartbeat each.
	kv, _ := js.KeyValue(ctx, runner.BucketReplicas)
	for i, l := range limiters {
		s := &sharer{kv: kv, key: keyFor(fmt.Sprint("replica-", i)), total: total, burst: burst, l: l}
		if err := s.beat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i, l := range limiters {
		if l.Limit() != total/3 || l.Burst() != 1 {
			t.Errorf("replica %d: %v/s burst %d, want %v/s burst 1", i, l.Limit(), l.Burst(), total/3)
		}
	}

	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, RateLimit: total, RateBurst: burst})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	var calls atomic.Int64
	hammer, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	var wg sync.WaitGroup
	for _, l := range limiters {
		c, err := emu.Client(imsapi.WithRateLimiter(l))
		if err != nil {
			t.Fatal(err)
		}
		for range 4 { // several goroutines per replica
			wg.Go(func() {
				for hammer.Err() == nil {
					if _, err := c.Quota(hammer); err == nil {
						calls.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	st := emu.Stats()
	if st.Throttled != 0 {
		t.Errorf("the emulator throttled %d of %d requests: the replicas together exceeded %v/s", st.Throttled, calls.Load(), total)
	}
	if calls.Load() < 20 {
		t.Errorf("only %d requests in 2s", calls.Load())
	}
}
