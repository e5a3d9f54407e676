// Package rateshare shares one IMS request rate among the replicas of
// imsflow by need: each process keeps a heartbeat key in a JetStream KV
// bucket saying how many requests a second it made and whether it wanted
// more (its requests waited for its limiter), and every process sets its
// own limiter to its part of the total: replicas that want more split
// what the others, which keep a little more than they use, leave. So an
// import with a backlog gets nearly all of the account's rate while the
// export and the poller are idle, and its part shrinks within a
// heartbeat or two when they get work. The client-side limiter of
// pkg/imsapi does the waiting; this only sets its rate.
//
// Every process computes the same division from the same heartbeats, but
// not at the same moment: for at most one heartbeat after a replica's
// need changes, the parts can add up to more than the total, by at most
// the part of the replica whose need grew. IMS's own limit (429, which
// the functions wait out) is the backstop.
package rateshare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Heartbeat is how often a replica renews its key and recounts; a replica
// that stops is forgotten after three heartbeats.
const Heartbeat = 5 * time.Second

// Meter measures a replica's use of its rate: the requests its IMS client
// made and how long they waited for the limiter. Observe is an
// imsapi.WithObserver function.
type Meter struct {
	mu       sync.Mutex
	requests int64         // since the last take
	wait     time.Duration // their waits, summed
	mean     time.Duration // the recent waits, exponentially weighted
	lastSeen time.Time
}

// Observe counts one request.
func (m *Meter) Observe(o imsapi.Observation) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests++
	m.wait += o.Wait
	m.mean += time.Duration(meanWeight * float64(o.Wait-m.mean))
	m.lastSeen = time.Now()
}

// meanWeight is the weight of a new request's wait in MeanWait; meanAge
// is how long MeanWait trusts the last request: quiet since, it is 0.
const (
	meanWeight = 0.1
	meanAge    = 10 * time.Second
)

// MeanWait is how long the process's recent IMS requests waited for its
// limiter, on average: the length of its queue for the IMS rate.
func (m *Meter) MeanWait() time.Duration {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.lastSeen) > meanAge {
		return 0
	}
	return m.mean
}

type meterKey struct{}

// NewContext returns ctx carrying m, for a function's build to find.
func NewContext(ctx context.Context, m *Meter) context.Context {
	return context.WithValue(ctx, meterKey{}, m)
}

// FromContext returns the Meter ctx carries, or nil.
func FromContext(ctx context.Context) *Meter {
	m, _ := ctx.Value(meterKey{}).(*Meter)
	return m
}

func (m *Meter) take() (requests int64, wait time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	requests, wait = m.requests, m.wait
	m.requests, m.wait = 0, 0
	return requests, wait
}

// need is what a replica's heartbeat says.
type need struct {
	// Used is the requests a second the replica made since its last beat.
	Used float64 `json:"used"`
	// Hungry is true when it wanted more: its requests waited for its
	// limiter, or it used nearly all of its part.
	Hungry bool `json:"hungry"`
}

// hungryWait is the mean wait for the limiter from which a replica wants
// more than it has; hungryUse the part of its limit in use from which too.
const (
	hungryWait = 10 * time.Millisecond
	hungryUse  = 0.8
)

// Share keeps the limiter at the replica's part of total (burst likewise,
// at least 1) until ctx ends, measured by m (nil: a replica that always
// wants its equal part). replica must be unique per process; the first
// part is set before Share returns.
func Share(ctx context.Context, js jetstream.JetStream, replica string, total float64, burst int, l *rate.Limiter, m *Meter) error {
	return share(ctx, js, replica, total, burst, l, m, Heartbeat)
}

// share is Share with its heartbeat (shorter in tests and benchmarks).
func share(ctx context.Context, js jetstream.JetStream, replica string, total float64, burst int, l *rate.Limiter, m *Meter, heartbeat time.Duration) error {
	kv, err := js.KeyValue(ctx, runner.BucketReplicas)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", runner.BucketReplicas, err)
	}
	s := &sharer{kv: kv, key: keyFor(replica), total: total, burst: burst, l: l, m: m, last: time.Now()}
	if err := s.beat(ctx); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = kv.Delete(context.Background(), s.key)
				return
			case <-t.C:
				_ = s.beat(ctx)
			}
		}
	}()
	return nil
}

// keyFor is a replica's key: its name may hold any character.
func keyFor(replica string) string { return "r." + events.Hash(replica, 32) }

type sharer struct {
	kv    jetstream.KeyValue
	key   string
	total float64
	burst int
	l     *rate.Limiter
	m     *Meter
	last  time.Time
}

// measure is the replica's need since its last beat.
func (s *sharer) measure(now time.Time) need {
	if s.m == nil {
		return need{Hungry: true}
	}
	requests, wait := s.m.take()
	window := now.Sub(s.last).Seconds()
	s.last = now
	if requests == 0 || window <= 0 {
		return need{}
	}
	used := float64(requests) / window
	limit := float64(s.l.Limit())
	return need{Used: used, Hungry: wait/time.Duration(requests) > hungryWait || used >= hungryUse*limit}
}

func (s *sharer) beat(ctx context.Context) error {
	mine, _ := json.Marshal(s.measure(time.Now()))
	if _, err := s.kv.Put(ctx, s.key, mine); err != nil {
		return fmt.Errorf("replica heartbeat: %w", err)
	}
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("count replicas: %w", err)
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	sort.Strings(names)
	needs := make([]need, 0, len(names))
	me := -1
	for _, k := range names {
		e, err := s.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue // gone since the listing
		case err != nil:
			return fmt.Errorf("read replica %s: %w", k, err)
		}
		var n need
		if json.Unmarshal(e.Value(), &n) != nil {
			n = need{Hungry: true} // an older replica's timestamp: its equal part
		}
		if k == s.key {
			me = len(needs)
		}
		needs = append(needs, n)
	}
	if me < 0 { // not listed yet: count ourselves
		var n need
		_ = json.Unmarshal(mine, &n)
		me, needs = len(needs), append(needs, n)
	}
	part := allocate(s.total, needs)[me]
	s.l.SetLimit(rate.Limit(part))
	s.l.SetBurst(max(int(float64(s.burst)*part/s.total+0.5), 1))
	return nil
}

// idleShare is the part of an equal share a replica that does not want
// more keeps at the least, for its next few requests.
const idleShare = 0.1

// allocate divides total among replicas by need: one that is not hungry
// gets half again what it used, and at least idleShare of an equal share;
// the hungry split what is left equally (at least that floor each); what
// no one wants is divided equally among all. The parts add up to total.
func allocate(total float64, needs []need) []float64 {
	n := len(needs)
	parts := make([]float64, n)
	if n == 0 {
		return parts
	}
	floor := idleShare * total / float64(n)
	hungry, given := 0, 0.0
	for i, nd := range needs {
		if nd.Hungry {
			hungry++
			continue
		}
		parts[i] = max(1.5*nd.Used, floor)
		given += parts[i]
	}
	if given > total { // the satisfied alone would take more: scale them
		for i := range parts {
			parts[i] *= total / given
		}
		given = total
	}
	rest := total - given
	if hungry == 0 {
		for i := range parts {
			parts[i] += rest / float64(n)
		}
		return parts
	}
	each := rest / float64(hungry)
	if each < floor { // too little left: every replica to its equal part
		for i := range parts {
			parts[i] = total / float64(n)
		}
		return parts
	}
	for i, nd := range needs {
		if nd.Hungry {
			parts[i] = each
		}
	}
	return parts
}
