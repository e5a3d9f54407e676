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
	pol := policy{First: 10 * time.Second, Min: 5 * time.Second, Max: 5 * time.Minute, AimMax: time.Hour, Factor: 2, Target: 20 * time.Second}
	far := t0.Add(24 * time.Hour)
	secs := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	tests := []struct {
		name     string
		samples  []sample
		polls    int
		now      time.Time
		deadline time.Time
		want     time.Duration
	}{
		{"no progress: back off from First", nil, 1, t0, far, 10 * time.Second},
		{"no progress: doubling", []sample{at(0, 0), at(10, 0), at(30, 0)}, 3, t0.Add(30 * time.Second), far, 40 * time.Second},
		{"the backoff is capped", []sample{at(0, 0)}, 20, t0, far, 5 * time.Minute},
		// 0 at 0 s, 0.01 at 30 s: the pace has no upper bound yet; wait as
		// long again as progress took to show.
		{"progress just begun: as long again", []sample{at(0, 0), at(30, 0.01)}, 2, t0.Add(30 * time.Second), far, 30 * time.Second},
		{"progress just begun: at least Target", []sample{at(0, 0), at(5, 0.01)}, 2, t0.Add(5 * time.Second), far, 20 * time.Second},
		// 0.50 at 0 s, 0.90 at 100 s: the pace is within (0.39, 0.41)/100 s,
		// the end within (121.95 s, 125.64 s): one query at its latest.
		{"a narrow forecast: its latest end", []sample{at(0, 0.5), at(100, 0.9)}, 2, t0.Add(100 * time.Second), far, secs(100 / 0.39 * 0.1)},
		// 0.10, 0.20, 0.30 at 0, 100, 200 s: a steady pace (not rising); the
		// end is at the earliest (0.69 / (0.21/200)) s after 200 s; query
		// Target after that.
		{"a far forecast, steady pace: its earliest end plus Target", []sample{at(0, 0.1), at(100, 0.2), at(200, 0.3)}, 3, t0.Add(200 * time.Second),
			far, secs(0.69/(0.21/200)) + 20*time.Second},
		// 0.10, 0.20, 0.30 at 0, 150, 200 s: the pace rose, so the oldest
		// reading disagrees and is dropped; from the last two the end is at
		// the earliest 0.69 / (0.11/50) s after 200 s, far, and the pace
		// rising: 70 % of the way there.
		{"a rising pace: the old reading dropped, most of the way", []sample{at(0, 0.1), at(150, 0.2), at(200, 0.3)}, 3, t0.Add(200 * time.Second),
			far, time.Duration(0.7 * float64(secs(0.69/(0.11/50))))},
		// Running past the latest end the readings allow: back off from
		// Target over the unchanged readings.
		{"past the forecast: back off from Target", []sample{at(0, 0.5), at(100, 0.9), at(200, 0.9)}, 3, t0.Add(200 * time.Second), far, 40 * time.Second},
		{"a drop in percent starts the forecast over", []sample{at(0, 0.5), at(100, 0.9), at(110, 0.1)}, 3, t0.Add(110 * time.Second), far, 40 * time.Second},
		{"never past the deadline", nil, 1, t0, t0.Add(3 * time.Second), 3 * time.Second},
		{"at least a second at the deadline", nil, 1, t0, t0, time.Second},
	}
	for _, tt := range tests {
		got := pol.next(tt.samples, tt.polls, tt.now, tt.deadline)
		if diff := got - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
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
