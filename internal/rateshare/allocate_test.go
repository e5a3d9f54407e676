package rateshare

import (
	"context"
	"math"
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
func shareRun(t testing.TB, total float64, warm, span time.Duration) float64 {
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := runner.Ensure(ctx, js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	meters := make([]*Meter, 3)
	limiters := make([]*rate.Limiter, 3)
	for i, name := range []string{"import", "export", "poller"} {
		meters[i], limiters[i] = new(Meter), rate.NewLimiter(rate.Limit(total), 10)
		if err := share(ctx, js, name, total, 10, limiters[i], meters[i], 100*time.Millisecond); err != nil {
			t.Fatal(err)
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

// TestImportTakesWhatIdleNeighboursLeave: an import with a backlog gets
// at least nine tenths of the rate while export and poller are idle.
func TestImportTakesWhatIdleNeighboursLeave(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("seconds of heartbeats")
	}
	// The import's part is 1 - 2 x 0.1/3 of the total (idleShare); above
	// the total it may go by its burst (10) once.
	const total, span = 100.0, 3 * time.Second
	if got := shareRun(t, total, time.Second, span); got < 0.9*total || got > total+10/span.Seconds() {
		t.Errorf("the import made %.1f requests a second of %v; want at least %v and not above", got, total, 0.9*total)
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
