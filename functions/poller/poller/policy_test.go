package poller

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func at(sec float64, p float64) sample {
	return sample{At: t0.Add(time.Duration(sec * float64(time.Second))), Percent: p}
}

func TestPolicyNext(t *testing.T) {
	t.Parallel()
	pol := policy{First: 10 * time.Second, Min: 5 * time.Second, Max: 5 * time.Minute, AimMax: 30 * time.Minute, Factor: 2, Overshoot: 0.05}
	far := t0.Add(24 * time.Hour)
	tests := []struct {
		name     string
		samples  []sample
		polls    int
		now      time.Time
		deadline time.Time
		want     time.Duration
	}{
		{"no samples: backoff from min", nil, 1, t0, far, 5 * time.Second},
		{"no change: backoff over the unchanged samples", []sample{at(0, 0), at(10, 0), at(20, 0)}, 3, t0.Add(20 * time.Second), far, 20 * time.Second},
		{"a change restarts the backoff", []sample{at(0, 0.5), at(10, 0.5), at(20, 0.4)}, 3, t0.Add(20 * time.Second), far, 5 * time.Second},
		{"backoff is capped", nil, 20, t0, far, 5 * time.Minute},
		// 0 -> 0.5 in 32 s: 32 s left, far from the end: a third of it.
		{"closes in by thirds", []sample{at(0, 0), at(32, 0.5)}, 2, t0.Add(32 * time.Second), far, 32 * time.Second / 3},
		// 0 -> 0.5 in 8 s: 8 s left: just past the end.
		{"aims just past a near end", []sample{at(0, 0), at(8, 0.5)}, 2, t0.Add(8 * time.Second), far, 8400 * time.Millisecond},
		{"trend starts at the last zero", []sample{at(0, 0), at(100, 0), at(132, 0.5)}, 3, t0.Add(132 * time.Second), far, 32 * time.Second / 3},
		{"from 95 % every min", []sample{at(0, 0.5), at(10, 0.96)}, 2, t0.Add(10 * time.Second), far, 5 * time.Second},
		{"aimed waits are capped", []sample{at(0, 0), at(100, 0.0078125)}, 2, t0.Add(100 * time.Second), far, 30 * time.Minute},
		{"never past the deadline", nil, 1, t0, t0.Add(3 * time.Second), 3 * time.Second},
		{"at least a second at the deadline", nil, 1, t0, t0, time.Second},
	}
	for _, tt := range tests {
		if got := pol.next(tt.samples, tt.polls, tt.now, tt.deadline); got != tt.want {
			t.Errorf("%s: next = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestStalledAndSamples(t *testing.T) {
	t.Parallel()
	var samples []sample
	var last time.Time
	for i, p := range []float64{0, 0.2, 0.2, 0.2} {
		samples, last = addSample(samples, at(float64(i*10), p), last)
	}
	if !last.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("last change = %s, want the move to 0.2 at +10s", last)
	}
	if stalled(last, t0.Add(30*time.Second), 30*time.Second) || !stalled(last, t0.Add(40*time.Second), 30*time.Second) {
		t.Error("stall detection off")
	}
	if stalled(last, t0.Add(time.Hour), 0) {
		t.Error("stall detection with StallAfter 0 should be off")
	}
	for i := range 20 {
		samples, last = addSample(samples, at(float64(100+i), float64(i)/100), last)
	}
	if len(samples) != maxSamples || samples[len(samples)-1].Percent != 0.19 {
		t.Errorf("samples kept = %d (last %v), want %d", len(samples), samples[len(samples)-1], maxSamples)
	}
}
