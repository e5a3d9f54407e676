package lifecycle

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	_, js := testenv.StartNATS(t).Connect(t)
	if err := runner.Ensure(t.Context(), js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), runner.BucketLifecycles)
	if err != nil {
		t.Fatal(err)
	}
	return &Store{KV: kv, JS: js, Now: time.Now}
}

// TestStoreConcurrentLegs: legs settled at once by many replicas all
// land (each write a compare-and-set, retried on conflict), and the
// lifecycle ends once, when the last does.
func TestStoreConcurrentLegs(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), t.Context()
	var regions []Region
	for i := range 6 {
		regions = append(regions, Region{Region: fmt.Sprintf("ap-southeast-%d", i+1), AgencyName: "a"})
	}
	r := Plan(Start{ID: "c1", Rule: "r", Declaration: Declaration{Regions: regions}, SourceRegion: "cn-north-4", Image: Image{ID: "img"}, At: t0})
	if _, created, err := s.Create(ctx, r); err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if again, created, err := s.Create(ctx, Plan(Start{ID: "c1", Rule: "other", SourceRegion: "x", At: t0})); err != nil || created || again.Rule != "r" {
		t.Fatalf("a second create: created %v, rule %q (%v); want the first record", created, again.Rule, err)
	}
	ready := r.Ready()
	if _, err := s.Change(ctx, "c1", func(r *Record) (bool, error) {
		for _, name := range ready {
			r.Leg(name).State = LegRunning
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, name := range ready {
		wg.Go(func() {
			if _, err := s.Change(context.Background(), "c1", func(r *Record) (bool, error) {
				return r.Settle(name, 1, LegSucceeded, "img-"+name, "", "", t0), nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, _, err := s.Load(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range ready {
		if l := got.Leg(name); l.State != LegSucceeded || l.ImageID != "img-"+name {
			t.Errorf("%s: %s %q, want succeeded with its image", name, l.State, l.ImageID)
		}
	}
	if _, _, err := s.Load(ctx, "nope"); err == nil {
		t.Error("a missing lifecycle was found")
	}
}

// TestLatestNeverMovesBack: a lifecycle that ends after a newer one does
// not take the family's pointer back.
func TestLatestNeverMovesBack(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), t.Context()
	newer := Pointer{Family: "web", Lifecycle: "l-new", Images: map[string]string{"cn-north-4": "i2"}, ImportedAt: t0.Add(time.Hour)}
	older := Pointer{Family: "web", Lifecycle: "l-old", Images: map[string]string{"cn-north-4": "i1"}, ImportedAt: t0}
	if ok, err := s.SetLatest(ctx, newer); err != nil || !ok {
		t.Fatalf("set newer: %v %v", ok, err)
	}
	if ok, err := s.SetLatest(ctx, older); err != nil || ok {
		t.Fatalf("set older: %v %v, want refused", ok, err)
	}
	if ok, err := s.SetLatest(ctx, newer); err != nil || !ok {
		t.Fatalf("set newer again: %v %v, want it still named", ok, err)
	}
	p, _, err := s.Latest(ctx, "web")
	if err != nil || p.Lifecycle != "l-new" || p.Images["cn-north-4"] != "i2" {
		t.Fatalf("latest = %+v (%v), want l-new", p, err)
	}
	if p, _, err := s.Latest(ctx, "db"); err != nil || p != nil {
		t.Errorf("a family without images: %+v %v", p, err)
	}
}
