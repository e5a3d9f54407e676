package rateshare

import (
	"context"
	"fmt"
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
	ctx := t.Context()
	sharing, stopSharing := context.WithCancel(ctx)
	defer stopSharing()
	limiters := make([]*rate.Limiter, 3)
	for i := range limiters {
		limiters[i] = rate.NewLimiter(rate.Inf, 0)
		if err := Share(sharing, js, fmt.Sprint("replica-", i), total, burst, limiters[i], nil); err != nil {
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

	// The heartbeats stop (each replica deletes its key when it has), so
	// that none stamps a limiter with the real time from here on.
	stopSharing()
	testenv.Eventually(t, "the replicas to stop their heartbeats", func() bool {
		lister, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range lister.Keys() {
			n++
		}
		return n == 0
	})

	// The replicas then call the emulator as fast as their limiters let
	// them, on the emulator's clock: the account's bucket sees exactly
	// what the shares allow, whatever this machine's speed.
	clock := imsemu.NewManualClock(time.Now())
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, RateLimit: total, RateBurst: burst, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	client, err := emu.Client() // unlimited: the shares gate the calls
	if err != nil {
		t.Fatal(err)
	}
	const span, step = 3 * time.Second, 10 * time.Millisecond
	calls := 0
	for elapsed := time.Duration(0); elapsed < span; elapsed += step {
		clock.Advance(step)
		for _, l := range limiters {
			for l.AllowN(clock.Now(), 1) {
				if _, err := client.Quota(ctx); err != nil {
					t.Fatalf("after %d calls in %s: %v", calls, elapsed, err)
				}
				calls++
			}
		}
	}
	if st := emu.Stats(); st.Throttled != 0 {
		t.Errorf("the emulator throttled %d of %d requests: the replicas together exceeded %v/s", st.Throttled, calls, total)
	}
	// Each replica used its whole share: a third of the rate, one request
	// at once after a quiet spell.
	if want := int(total*span.Seconds()) + 3; calls < want-3 || calls > want {
		t.Errorf("%d requests in %s, want about %d", calls, span, want)
	}
}
