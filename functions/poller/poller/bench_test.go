package poller

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// simJob is a job as IMS reports it: INIT, then process_percent along the
// emulator's curve (imsemu.ProgressAt) at an uneven pace, cut to two
// decimals and at most 0.99 while running, then SUCCESS.
type simJob struct {
	init, run time.Duration
	wobble    float64 // 0..1: how uneven the pace is
}

func (j simJob) at(t time.Duration) (done bool, percent float64) {
	if t < j.init {
		return false, 0
	}
	if t >= j.init+j.run {
		return true, 1
	}
	x := float64(t-j.init) / float64(j.run)
	x += j.wobble * 0.02 * math.Sin(x*17) * math.Sin(x*math.Pi) // uneven, still rising, and whole at both ends
	p := imsemu.ProgressAt(min(max(x, 0), 1))
	return false, min(math.Floor(p*100+1e-9)/100, 0.99)
}

// simulate polls one job with next and returns the queries spent and how
// long after the end the poller saw it.
func simulate(j simJob, first time.Duration, next func(samples []sample, polls int, now time.Time) time.Duration) (polls int, delay time.Duration) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t := first
	var samples []sample
	var last time.Time
	for polls < 1_000_000 {
		polls++
		done, p := j.at(t)
		if done {
			return polls, t - (j.init + j.run)
		}
		now := start.Add(t)
		samples, last = addSample(samples, sample{At: now, Percent: p}, last)
		// Timers fire on whole seconds.
		t += max(next(samples, polls, now).Truncate(time.Second), time.Second)
	}
	return polls, 0
}

// jobMixes are the job lengths the polling is measured on: 1,000 jobs
// uniform and log-uniform between 5 and 120 minutes, and 300 of each
// length (within ±10%) for the delay at every length. INIT lasts 5 to 60
// seconds.
func jobMixes() []struct {
	name string
	jobs []simJob
} {
	r := rand.New(rand.NewPCG(1, 2))
	job := func(run time.Duration) simJob {
		return simJob{init: time.Duration(5+r.IntN(56)) * time.Second, run: run, wobble: r.Float64()}
	}
	minutes := func(m float64) time.Duration { return time.Duration(m * float64(time.Minute)) }
	var mixes []struct {
		name string
		jobs []simJob
	}
	add := func(name string, n int, length func() time.Duration) {
		jobs := make([]simJob, n)
		for i := range jobs {
			jobs[i] = job(length())
		}
		mixes = append(mixes, struct {
			name string
			jobs []simJob
		}{name, jobs})
	}
	add("uniform-5-120m", 1000, func() time.Duration { return minutes(5 + 115*r.Float64()) })
	add("log-uniform-5-120m", 1000, func() time.Duration { return minutes(5 * math.Pow(24, r.Float64())) })
	for _, m := range []float64{5, 15, 30, 60, 120} {
		add(fmt.Sprintf("len-%gm", m), 300, func() time.Duration { return minutes(m * (0.9 + 0.2*r.Float64())) })
	}
	return mixes
}

// pollResult is a strategy's figures on a mix.
type pollResult struct {
	polls              float64 // per job
	p95Delay, maxDelay time.Duration
}

func runMix(jobs []simJob, first time.Duration, next func([]sample, int, time.Time) time.Duration) pollResult {
	var polls int
	delays := make([]time.Duration, len(jobs))
	for i, j := range jobs {
		p, d := simulate(j, first, next)
		polls += p
		delays[i] = d
	}
	slices.Sort(delays)
	return pollResult{polls: float64(polls) / float64(len(jobs)), p95Delay: delays[len(delays)*95/100], maxDelay: delays[len(delays)-1]}
}

// BenchmarkPolling measures the adaptive policy with its defaults against
// the fixed cadences of the tools users compare imsflow with, on the same
// jobs: status queries per job, and the 95th percentile and the maximum
// of the delay from a job's end to the query that sees it. The headline
// is adaptive/uniform-5-120m; its fewer-than-10s-x is how many times
// fewer queries it makes than a fixed 10-second poller on those jobs.
func BenchmarkPolling(b *testing.B) {
	var cfg Config // the defaults, as a poller with no settings has them
	if err := imsconfig.ParseEnv(&cfg, map[string]string{}); err != nil {
		b.Fatal(err)
	}
	pol := cfg.policy()
	far := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	fixed := func(d time.Duration) func([]sample, int, time.Time) time.Duration {
		return func([]sample, int, time.Time) time.Duration { return d }
	}
	strategies := []struct {
		name  string
		first time.Duration
		next  func([]sample, int, time.Time) time.Duration
	}{
		{"adaptive", cfg.FirstPoll, func(s []sample, polls int, now time.Time) time.Duration { return pol.next(s, polls, now, far) }},
		{"fixed-2s-openstacksdk", 2 * time.Second, fixed(2 * time.Second)},
		{"fixed-5s-packer-aws", 5 * time.Second, fixed(5 * time.Second)},
		{"fixed-10s-terraform-huawei", 10 * time.Second, fixed(10 * time.Second)},
		{"fixed-15s-golangsdk", 15 * time.Second, fixed(15 * time.Second)},
	}
	for _, st := range strategies {
		b.Run(st.name, func(b *testing.B) {
			for _, mix := range jobMixes() {
				b.Run(mix.name, func(b *testing.B) {
					var r pollResult
					for b.Loop() {
						r = runMix(mix.jobs, st.first, st.next)
					}
					b.ReportMetric(r.polls, "polls/job")
					b.ReportMetric(r.p95Delay.Seconds(), "p95-delay-s")
					b.ReportMetric(r.maxDelay.Seconds(), "max-delay-s")
					if st.name == "adaptive" {
						ref := runMix(mix.jobs, 10*time.Second, fixed(10*time.Second))
						b.ReportMetric(ref.polls/r.polls, "fewer-than-10s-x")
					}
				})
			}
		})
	}
}
