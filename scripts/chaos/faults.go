package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// functions are the function kinds the harness runs, two replicas each.
var functions = []string{"import", "export", "poller", "distribute"}

const replicas = 2

// fault is one scheduled kill -9.
type fault struct {
	At   time.Duration // after the feed starts
	NATS bool          // the node leading IMSFLOW_JOBS at that moment; else a function replica
	// Function and Replica name the victim of a replica kill
	// (import-2 ...).
	Function string
	Replica  int
	// Down is how long the victim stays dead before it is started again.
	Down time.Duration
}

func (f fault) String() string {
	if f.NATS {
		return fmt.Sprintf("+%s kill -9 the NATS node leading %s, restart after %s", f.At.Round(100*time.Millisecond), streamJobs, f.Down.Round(100*time.Millisecond))
	}
	return fmt.Sprintf("+%s kill -9 %s-%d, restart after %s", f.At.Round(100*time.Millisecond), f.Function, f.Replica, f.Down.Round(100*time.Millisecond))
}

// schedule draws the faults of a profile from seed. Replica kills come
// every p.KillEvery (±40%) between p.FaultStart and p.FaultEnd, each
// function hit at least once; with KillEvery 0, one kill of each function,
// spread over the window. NATS kills are p.NATSKills, evenly spaced.
func schedule(p profile, seed uint64) []fault {
	r := rand.New(rand.NewPCG(seed^0x5eed, seed+7))
	var out []fault
	window := p.FaultEnd - p.FaultStart
	if window <= 0 {
		return nil
	}
	replicaDown := func() time.Duration { return 2*time.Second + time.Duration(r.Int64N(int64(4*time.Second))) }
	if p.KillEvery <= 0 {
		order := r.Perm(len(functions))
		for i, fi := range order {
			at := p.FaultStart + window*time.Duration(2*i+1)/time.Duration(2*len(functions))
			out = append(out, fault{At: at, Function: functions[fi], Replica: 1 + r.IntN(replicas), Down: replicaDown()})
		}
	} else {
		first := r.Perm(len(functions)) // every function is killed at least once
		for i, at := 0, p.FaultStart; at <= p.FaultEnd; i++ {
			fn := functions[r.IntN(len(functions))]
			if i < len(first) {
				fn = functions[first[i]]
			}
			out = append(out, fault{At: at, Function: fn, Replica: 1 + r.IntN(replicas), Down: replicaDown()})
			jitter := time.Duration((r.Float64()*0.8 - 0.4) * float64(p.KillEvery))
			at += p.KillEvery + jitter
		}
	}
	for k := range p.NATSKills {
		at := p.FaultStart + window*time.Duration(k+1)/time.Duration(p.NATSKills+1)
		out = append(out, fault{At: at, NATS: true, Down: 5*time.Second + time.Duration(r.Int64N(int64(7*time.Second)))})
	}
	slices.SortStableFunc(out, func(a, b fault) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	return out
}
