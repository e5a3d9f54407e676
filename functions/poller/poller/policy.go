package poller

import (
	"math"
	"time"
)

// sample is one observation of a job's progress.
type sample struct {
	At      time.Time `json:"at"`
	Percent float64   `json:"p"`
}

// maxSamples is how many observations a job keeps for its trend.
const maxSamples = 8

// policy is how the poller spaces its status queries.
type policy struct {
	// First is the delay of the first query after submission.
	First time.Duration
	// Min bounds every interval from below; Max caps the backoff of a job
	// without a progress trend, AimMax an interval aimed by the trend.
	Min, Max, AimMax time.Duration
	// Factor is the backoff multiplier while a job shows no progress trend.
	Factor float64
	// Overshoot is how far past the predicted end the query is aimed, as a
	// fraction of the predicted remaining time (a query just after the end
	// finds it done; one just before costs another).
	Overshoot float64
}

// next returns when to query a job again, from its samples and the number
// of queries made so far. Without a rising process_percent it backs off
// exponentially from Min to Max. With one it predicts the end and closes
// in on it: a third of the time left while that is long (each query
// corrects the estimate, and a job that ends early is seen soon), then
// just past the predicted end; from 95 % on, every Min. The result is at least Min,
// at most Max (backoff) or AimMax (aimed), and never past the deadline.
func (p policy) next(samples []sample, polls int, now, deadline time.Time) time.Duration {
	// Back off over the queries that saw no change (all of them before
	// the first sample).
	still := polls
	if n := len(samples); n > 0 {
		still = 1
		for i := n - 1; i > 0 && samples[i-1].Percent == samples[i].Percent; i-- {
			still++
		}
	}
	d := min(max(p.backoff(still), p.Min), p.Max)
	if n := len(samples); n > 0 && samples[n-1].Percent >= nearEnd {
		// The last percent or two can stand still a while: the end is
		// close, so look often.
		d = p.Min
	} else if rate, last, ok := trend(samples); ok {
		remaining := time.Duration((1 - last.Percent) / rate * float64(time.Second))
		left := last.At.Add(remaining).Sub(now)
		if left > 2*p.Min {
			d = left / 3
		} else {
			d = left + time.Duration(p.Overshoot*float64(left))
		}
		d = min(max(d, p.Min), max(p.AimMax, p.Min))
	}
	if left := deadline.Sub(now); left < d {
		d = max(left, time.Second)
	}
	return d
}

// nearEnd is the progress from which a job is queried every Min.
const nearEnd = 0.95

// backoff is Min times Factor to the power of the queries made, capped.
func (p policy) backoff(polls int) time.Duration {
	f := math.Pow(p.Factor, float64(max(polls-1, 0)))
	d := time.Duration(float64(p.Min) * f)
	if d <= 0 || d > p.Max || math.IsInf(f, 0) {
		return p.Max
	}
	return d
}

// trend is the progress rate (fraction per second) over the samples, from
// the first sample that shows progress to the last, when it is positive.
func trend(samples []sample) (rate float64, last sample, ok bool) {
	if len(samples) < 2 {
		return 0, sample{}, false
	}
	last = samples[len(samples)-1]
	first := samples[0]
	for _, s := range samples {
		if s.Percent > 0 {
			break
		}
		first = s // the last zero before progress started
	}
	dt := last.At.Sub(first.At).Seconds()
	dp := last.Percent - first.Percent
	if dt <= 0 || dp <= 0 || last.Percent >= 1 {
		return 0, last, false
	}
	return dp / dt, last, true
}

// stalled reports whether a job's progress has not moved for stallAfter.
func stalled(lastChange, now time.Time, stallAfter time.Duration) bool {
	return stallAfter > 0 && !lastChange.IsZero() && now.Sub(lastChange) >= stallAfter
}

// addSample appends an observation, keeping the last maxSamples, and
// returns when progress last moved.
func addSample(samples []sample, s sample, lastChange time.Time) ([]sample, time.Time) {
	if len(samples) == 0 || samples[len(samples)-1].Percent != s.Percent {
		lastChange = s.At
	}
	samples = append(samples, s)
	if len(samples) > maxSamples {
		samples = samples[len(samples)-maxSamples:]
	}
	return samples, lastChange
}
