package rateshare

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// TestAllocate: the parts add up to the total; the hungry split what the
// satisfied leave; with no one hungry the spare is spread; a crowd of
// hungry replicas gets equal parts.
func TestAllocate(t *testing.T) {
	const total = 10.0
	tests := []struct {
		name  string
		needs []need
		want  []float64
	}{
		{"one import hungry, export and poller idle", []need{{Hungry: true}, {}, {}}, []float64{10 - 2*1.0/3, 1.0 / 3, 1.0 / 3}},
		{"the poller uses 1/s: it keeps 1.5/s", []need{{Hungry: true}, {}, {Used: 1}}, []float64{10 - 1.0/3 - 1.5, 1.0 / 3, 1.5}},
		{"two hungry split the rest", []need{{Hungry: true}, {Hungry: true}, {}, {}}, []float64{(10 - 0.5) / 2, (10 - 0.5) / 2, 0.25, 0.25}},
		{"no one hungry: the spare spread", []need{{Used: 1}, {}}, []float64{1.5 + (10-1.5-0.5)/2, 0.5 + (10-1.5-0.5)/2}},
		{"all hungry: equal parts", []need{{Hungry: true}, {Hungry: true}, {Hungry: true}, {Hungry: true}}, []float64{2.5, 2.5, 2.5, 2.5}},
		{"the satisfied above the total are scaled", []need{{Used: 8}, {Used: 8}}, []float64{5, 5}},
	}
	for _, tt := range tests {
		got := allocate(total, tt.needs)
		sum := 0.0
		for i := range got {
			sum += got[i]
			if math.Abs(got[i]-tt.want[i]) > 1e-9 {
				t.Errorf("%s: parts %v, want %v", tt.name, got, tt.want)
				break
			}
		}
		if sum > total+1e-9 {
			t.Errorf("%s: parts add up to %v, above %v", tt.name, sum, total)
		}
	}
}

// shareRun runs an import replica that calls as fast as its limiter lets
// it beside idle replicas of export and poller, for span after warm, all
// sharing total; it returns the import's requests a second.
func shareRun(b *testing.B, total float64, warm, span time.Duration) float64 {
	n := testenv.StartNATS(b)
	_, js := n.Connect(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := runner.Ensure(ctx, js, runner.DefaultTopology(1)); err != nil {
		b.Fatal(err)
	}
	meters := make([]*Meter, 3)
	limiters := make([]*rate.Limiter, 3)
	for i, name := range []string{"import", "export", "poller"} {
		meters[i], limiters[i] = new(Meter), rate.NewLimiter(rate.Limit(total), 10)
		if err := share(ctx, js, name, total, 10, limiters[i], meters[i], 100*time.Millisecond); err != nil {
			b.Fatal(err)
		}
	}
	count := func(d time.Duration) int {
		calls := 0
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			start := time.Now()
			wctx, wcancel := context.WithDeadline(ctx, end)
			err := limiters[0].Wait(wctx)
			wcancel()
			if err != nil {
				break
			}
			meters[0].Observe(imsapi.Observation{Sent: true, Wait: time.Since(start)})
			calls++
		}
		return calls
	}
	count(warm)
	return float64(count(span)) / span.Seconds()
}

// TestImportTakesWhatIdleNeighboursLeave: after a heartbeat in which the
// import's requests waited and export and poller made none, every one of
// the three sets the import's part to at least nine tenths of the rate
// and the parts add up to the rate; once the export wants more too, the
// import gives it its share back. The heartbeats are driven by hand,
// each replica beating in turn, so the test measures no clock.
func TestImportTakesWhatIdleNeighboursLeave(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	ctx := t.Context()
	if err := runner.Ensure(ctx, js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, runner.BucketReplicas)
	if err != nil {
		t.Fatal(err)
	}
	const total = 100.0
	sharers := make([]*sharer, 3)
	for i, name := range []string{"import", "export", "poller"} {
		sharers[i] = &sharer{kv: kv, key: keyFor(name), total: total, burst: 10, l: rate.NewLimiter(rate.Limit(total/3), 3),
			m: new(Meter), last: time.Now().Add(-time.Second)}
	}
	hungry := func(s *sharer) {
		for range 30 {
			s.m.Observe(imsapi.Observation{Sent: true, Wait: time.Second})
		}
	}
	// beat makes two heartbeats of every replica in turn (the second round
	// sees every replica's first), the ones in want hungry before each.
	beat := func(want ...int) {
		t.Helper()
		for range 2 {
			for i, s := range sharers {
				if slices.Contains(want, i) {
					hungry(s)
				}
				if err := s.beat(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	parts := func() (imp, sum float64) {
		for _, s := range sharers {
			sum += float64(s.l.Limit())
		}
		return float64(sharers[0].l.Limit()), sum
	}
	beat(0)
	if imp, sum := parts(); imp < 0.9*total || sum > total+1e-9 {
		t.Errorf("import %v of %v (parts add up to %v); want at least %v, and no more than the total", imp, total, sum, 0.9*total)
	}
	beat(0, 1)
	if imp, sum := parts(); imp > 0.5*total || float64(sharers[1].l.Limit()) < 0.4*total || sum > total+1e-9 {
		t.Errorf("import %v, export %v of %v once both want more; want them to split it", imp, sharers[1].l.Limit(), total)
	}
}

// BenchmarkImportShare reports the import's achieved share of the rate R
// while export and poller are idle (share-of-R; the goal is 0.9 or more).
func BenchmarkImportShare(b *testing.B) {
	const total = 200.0
	var got float64
	for b.Loop() {
		got = shareRun(b, total, time.Second, 3*time.Second)
	}
	b.ReportMetric(got/total, "share-of-R")
}

// TestMeanWait: the recent waits, weighted to the latest; none after a
// quiet spell; 0 for no Meter.
func TestMeanWait(t *testing.T) {
	var m Meter
	for range 50 {
		m.Observe(imsapi.Observation{Wait: 4 * time.Second})
	}
	if w := m.MeanWait(); w < 3*time.Second || w > 4*time.Second {
		t.Errorf("after waits of 4s: %s", w)
	}
	for range 50 {
		m.Observe(imsapi.Observation{})
	}
	if w := m.MeanWait(); w > 100*time.Millisecond {
		t.Errorf("after requests that did not wait: %s", w)
	}
	m.Observe(imsapi.Observation{Wait: 4 * time.Second})
	m.mu.Lock()
	m.lastSeen = time.Now().Add(-meanAge - time.Second)
	m.mu.Unlock()
	if w := m.MeanWait(); w != 0 {
		t.Errorf("after a quiet spell: %s, want 0", w)
	}
	if w := (*Meter)(nil).MeanWait(); w != 0 {
		t.Errorf("no meter: %s", w)
	}
}
