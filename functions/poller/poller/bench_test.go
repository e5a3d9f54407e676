package poller

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// simJob is a job as IMS reports it: INIT, then process_percent rising
// linearly (floored to two decimals, with some unevenness), then SUCCESS.
type simJob struct {
	init, run time.Duration
	wobble    float64 // 0..1: how uneven the progress is
}

func (j simJob) at(t time.Duration) (done bool, percent float64) {
	if t < j.init {
		return false, 0
	}
	if t >= j.init+j.run {
		return true, 1
	}
	x := float64(t-j.init) / float64(j.run)
	x += j.wobble * 0.05 * math.Sin(x*17) // uneven, still rising overall
	x = min(max(x, 0), 0.99)
	return false, math.Floor(x*100) / 100
}

// simulate polls one job with next and returns the queries spent and how
// long after the end the poller saw it.
func simulate(j simJob, first time.Duration, next func(samples []sample, polls int, now time.Time) time.Duration) (polls int, delay time.Duration) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t := first
	var samples []sample
	var last time.Time
	for polls < 100000 {
		polls++
		done, p := j.at(t)
		if done {
			return polls, t - (j.init + j.run)
		}
		now := start.Add(t)
		samples, last = addSample(samples, sample{At: now, Percent: p}, last)
		// Timers fire on whole seconds.
		t += next(samples, polls, now).Truncate(time.Second)
	}
	return polls, 0
}

// jobMix is a spread of import and export durations, from a small data
// disk to a large quick import.
func jobMix(n int) []simJob {
	r := rand.New(rand.NewPCG(1, 2))
	runs := []time.Duration{45 * time.Second, 3 * time.Minute, 12 * time.Minute, 40 * time.Minute, 2 * time.Hour, 6 * time.Hour}
	jobs := make([]simJob, n)
	for i := range jobs {
		base := runs[i%len(runs)]
		jobs[i] = simJob{
			init:   time.Duration(5+r.IntN(40)) * time.Second,
			run:    time.Duration(float64(base) * (0.7 + 0.6*r.Float64())),
			wobble: r.Float64(),
		}
	}
	return jobs
}

// BenchmarkPolling compares the adaptive policy with defaults against a
// fixed 10-second interval (the cadence of Huawei's Terraform provider
// and Packer builder) on the same mix of jobs: status queries per job and
// seconds from a job's end to the poller seeing it.
func BenchmarkPolling(b *testing.B) {
	var cfg Config
	cfg.FirstPoll, cfg.MinInterval, cfg.MaxInterval, cfg.MaxAimed, cfg.Backoff = 10*time.Second, 5*time.Second, 5*time.Minute, 30*time.Minute, 1.6
	pol := cfg.policy()
	far := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	strategies := []struct {
		name  string
		first time.Duration
		next  func([]sample, int, time.Time) time.Duration
	}{
		{"adaptive", cfg.FirstPoll, func(s []sample, polls int, now time.Time) time.Duration { return pol.next(s, polls, now, far) }},
		{"fixed-10s", 10 * time.Second, func([]sample, int, time.Time) time.Duration { return 10 * time.Second }},
	}
	jobs := jobMix(600)
	for _, st := range strategies {
		b.Run(st.name, func(b *testing.B) {
			var polls int
			var delay time.Duration
			for b.Loop() {
				polls, delay = 0, 0
				for _, j := range jobs {
					p, d := simulate(j, st.first, st.next)
					polls += p
					delay += d
				}
			}
			b.ReportMetric(float64(polls)/float64(len(jobs)), "polls/job")
			b.ReportMetric(delay.Seconds()/float64(len(jobs)), "delay-s/job")
		})
	}
}
