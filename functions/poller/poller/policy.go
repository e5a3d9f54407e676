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

// maxSamples is how many observations a job keeps for its forecast: all
// of them for a job polled as the policy means to (about ten queries),
// the latest for one polled more (a stall).
const maxSamples = 16

// policy is how the poller spaces its status queries.
type policy struct {
	// First is the delay of the first query after submission.
	First time.Duration
	// Min bounds every interval from below; Max caps the backoff of a job
	// without progress, AimMax an interval aimed by a forecast (so that a
	// forecast is checked now and then).
	Min, Max, AimMax time.Duration
	// Factor is the backoff multiplier while a job shows no progress.
	Factor float64
	// Target is the detection delay aimed at: a query is never planned
	// more than Target after the earliest moment the job may have ended.
	Target time.Duration
}

// quantum is the resolution of process_percent: IMS cuts it to two
// decimals, so a reading p means a progress in [p, p+0.01).
const quantum = 0.01

// next returns when to query a job again, from its samples and the number
// of queries made so far.
//
// Without progress (INIT, or no percent yet) it backs off exponentially
// from Min to Max. With progress it forecasts the end as an interval: a
// reading p stands for [p, p+0.01), so each pair of readings bounds the
// pace from below and above, and with it the end; the bounds of every
// pair are intersected (the readings of a phase whose pace changed, such
// as a slower last stretch, are dropped from the oldest until the bounds
// agree). It then asks at the latest moment that still sees an end at the
// interval's start within Target: the interval's start plus Target, or its
// end if that is sooner. A query that finds the job running moves the
// start to now, so a wide interval is walked in steps of Target; a narrow
// one costs one query. Queries are at least Min apart, an aimed one at
// most AimMax, and never past the deadline.
func (p policy) next(samples []sample, polls int, now, deadline time.Time) time.Duration {
	var d time.Duration
	switch lo, hi, fast, ok := p.forecast(samples, now); {
	case ok && hi.Before(now):
		// Running past the latest end the readings allowed: the pace
		// changed or stopped (a stall). Back off from Target.
		d = min(max(p.backoffFrom(p.Target, unchanged(samples)), p.Min), p.Max)
	case ok:
		at := lo.Add(p.Target)
		if !fast {
			// Progress has just begun (only readings of 0 before it): no
			// bound on the pace from above yet. Wait as long again as it took
			// to show, for a reading with a pace to it.
			at = now.Add(max(p.Target, sinceStart(samples, now)))
		}
		if hi.Before(at) {
			at = hi
		}
		if far := lo.Sub(now); fast && far > approachFactor*p.Target && speeding(samples) {
			at = now.Add(time.Duration(approachShare * float64(far)))
		}
		d = min(max(at.Sub(now), p.Min), max(p.AimMax, p.Min))
	default:
		// No progress yet (INIT): back off from First over the queries.
		d = min(max(p.backoffFrom(p.First, max(polls, 1)), p.Min), p.Max)
	}
	if left := deadline.Sub(now); left < d {
		d = max(left, time.Second)
	}
	return d
}

// unchanged is how many of the latest readings show the same percent.
func unchanged(samples []sample) int {
	n := len(samples)
	still := 1
	for i := n - 1; i > 0 && samples[i-1].Percent == samples[i].Percent; i-- {
		still++
	}
	return still
}

// sinceStart is how long ago the last reading of 0 was: the job started
// showing progress since.
func sinceStart(samples []sample, now time.Time) time.Duration {
	for i := len(samples) - 1; i >= 0; i-- {
		if samples[i].Percent == 0 {
			return now.Sub(samples[i].At)
		}
	}
	return 0
}

// forecast bounds the job's end from its samples: not before lo, not after
// hi (the far future when the pace has no lower bound yet). fast is false
// while no pair of readings bounds the pace from above (every pair starts
// at 0). ok is false while there is no progress to forecast from.
func (p policy) forecast(samples []sample, now time.Time) (lo, hi time.Time, fast, ok bool) {
	// The readings since progress last went down (IMS restarting a task).
	from := 0
	for i := 1; i < len(samples); i++ {
		if samples[i].Percent < samples[i-1].Percent {
			from = i
		}
	}
	s := samples[from:]
	if len(s) < 2 || s[len(s)-1].Percent <= 0 || s[len(s)-1].Percent == s[0].Percent {
		return time.Time{}, time.Time{}, false, false
	}
	// The latest readings, as many as window, or back to the last change
	// of percent: the pace now, over enough of a baseline.
	k := max(len(s)-window, 0)
	for k > 0 && s[k].Percent == s[len(s)-1].Percent {
		k--
	}
	for s = s[k:]; len(s) >= 2; s = s[1:] {
		if lo, hi, fast, ok = bounds(s); ok {
			break
		}
	}
	if !ok {
		return time.Time{}, time.Time{}, false, false
	}
	// The job was running at every reading.
	if last := samples[len(samples)-1].At; lo.Before(last) {
		lo = last
	}
	if lo.Before(now) {
		lo = now
	}
	return lo, hi, fast, true
}

// The forecast's tuning, measured with BenchmarkPolling on the emulator's
// progress curve (imsemu.ProgressAt) and an uneven pace.
const (
	// window is how many of the latest readings give the pace: enough for
	// a baseline, few enough to follow a pace that changes.
	window = 4
	// While the pace rises and the end is further than approachFactor
	// times Target, a query goes approachShare of the way to it: a
	// forecast from a rising pace comes late.
	approachFactor = 4
	approachShare  = 0.7
)

// speeding reports whether the latest pace (between the last two
// readings that differ) is above the pace over the readings before: then
// a forecast from a constant pace comes late, and the query is brought
// forward.
func speeding(samples []sample) bool {
	n := len(samples)
	if n < 3 {
		return true
	}
	last := samples[n-1]
	i := n - 2
	for i > 0 && samples[i].Percent == last.Percent {
		i--
	}
	prev := samples[i]
	j := max(i-window+1, 0)
	first := samples[j]
	if prev.Percent <= first.Percent || !prev.At.After(first.At) || !last.At.After(prev.At) || first.Percent <= 0 {
		return true
	}
	recent := (last.Percent - prev.Percent) / last.At.Sub(prev.At).Seconds()
	before := (prev.Percent - first.Percent) / prev.At.Sub(first.At).Seconds()
	return recent > before
}

// farFuture stands for "no upper bound".
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// bounds intersects, over every pair of readings a before b with a lower
// percent, the end that a constant pace between them allows: the pace is
// within ((pb-pa-q)/dt, (pb-pa+q)/dt), what is left at b within
// (1-pb-q, 1-pb]. ok is false when the pairs disagree (the pace changed)
// or no pair shows progress.
func bounds(s []sample) (lo, hi time.Time, fast, ok bool) {
	hi = farFuture
	for j := 1; j < len(s); j++ {
		b := s[j]
		for _, a := range s[:j] {
			dt := b.At.Sub(a.At).Seconds()
			if dt <= 0 || a.Percent >= b.Percent {
				continue
			}
			ok = true
			most := (b.Percent - a.Percent + quantum) / dt
			least := (b.Percent - a.Percent - quantum) / dt
			// A reading of 0 may be INIT, not yet the pace: the job can have
			// started any time after it, so it bounds the pace from below
			// only.
			if a.Percent > 0 {
				fast = true
				if e := b.At.Add(seconds(max(1-b.Percent-quantum, 0) / most)); e.After(lo) {
					lo = e
				}
			}
			if least > 0 {
				if e := b.At.Add(seconds((1 - b.Percent) / least)); e.Before(hi) {
					hi = e
				}
			}
		}
	}
	return lo, hi, fast, ok && !lo.After(hi)
}

func seconds(s float64) time.Duration {
	if s > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s * float64(time.Second))
}

// backoffFrom is base times Factor to the power of the queries made,
// capped at Max.
func (p policy) backoffFrom(base time.Duration, polls int) time.Duration {
	f := math.Pow(p.Factor, float64(max(polls-1, 0)))
	d := time.Duration(float64(base) * f)
	if d <= 0 || d > p.Max || math.IsInf(f, 0) {
		return p.Max
	}
	return d
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
