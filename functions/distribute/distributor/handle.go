package distributor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// handle takes an import's or a leg's end.
func (d *distributor) handle(ctx context.Context, m runner.Msg) ([]events.Event, error) {
	var f events.JobFinished
	if err := json.Unmarshal(m.Data, &f); err != nil {
		return d.reject(m, "decode", "not a job event: "+err.Error())
	}
	switch {
	case f.Kind == events.KindImport && f.Status == events.StatusSucceeded:
		return d.start(ctx, m, f)
	case f.Kind == events.KindDistribute && f.Leg != nil:
		return d.legEnded(ctx, m, f)
	}
	return nil, nil
}

// handleRetry takes a LifecycleRetry request.
func (d *distributor) handleRetry(ctx context.Context, m runner.Msg) ([]events.Event, error) {
	var req events.LifecycleRetry
	if err := json.Unmarshal(m.Data, &req); err != nil || req.Lifecycle == "" || req.Leg == "" {
		why := `want {"lifecycle": "<id>", "leg": "<leg>"}`
		if err != nil {
			why = err.Error() + ": " + why
		}
		return d.reject(m, "decode", why)
	}
	_, err := d.store.Change(ctx, req.Lifecycle, func(r *lifecycle.Record) (bool, error) {
		l := r.Leg(req.Leg)
		if l != nil && m.Delivery > 1 && l.Attempt > 1 && l.State != lifecycle.LegFailed && l.State != lifecycle.LegRefused {
			// This request's own earlier delivery retried it (and then
			// waited): the leg runs or ran again; drive it on.
			return false, nil
		}
		return true, r.Retry(req.Leg, d.now())
	})
	switch {
	case errors.Is(err, lifecycle.ErrNotFound), errors.Is(err, lifecycle.ErrNotRetryable):
		return d.reject(m, "retry", err.Error())
	case err != nil:
		return nil, err
	}
	zerolog.Ctx(ctx).Info().Str("lifecycle", req.Lifecycle).Str("leg", req.Leg).Msg("leg to run again")
	return d.advance(ctx, m, req.Lifecycle)
}

// reject ends a message that cannot be processed with a rejected event.
func (d *distributor) reject(m runner.Msg, stage, reason string) ([]events.Event, error) {
	rej := events.Rejected{Kind: events.KindDistribute, Stage: stage, ReasonCode: events.ReasonInvalidRequest, Reason: reason,
		Input: string(m.Data[:min(len(m.Data), 1024)]), At: d.now().UTC()}
	return []events.Event{rej}, runner.Term(reason)
}

// start begins the lifecycle of an imported image, if its rule declares
// one. A second delivery finds the lifecycle made and only advances it.
func (d *distributor) start(ctx context.Context, m runner.Msg, f events.JobFinished) ([]events.Event, error) {
	rule, ok := d.rule(f.Rule)
	if !ok || f.ImageID == "" {
		return nil, nil
	}
	id := LifecycleID(f.ImageID)
	if _, _, err := d.store.Load(ctx, id); err == nil {
		return d.advance(ctx, m, id)
	} else if !errors.Is(err, lifecycle.ErrNotFound) {
		return nil, err
	}
	home, err := d.ims("")
	if err != nil {
		return nil, err
	}
	im, err := home.Image(ctx, f.ImageID)
	if err != nil {
		return nil, d.transient(err, "look up the imported image "+f.ImageID)
	}
	rec := lifecycle.Plan(lifecycle.Start{ID: id, Rule: rule.Label(), Declaration: *rule.Lifecycle, SourceRegion: d.regions.Home,
		Image: imageOf(im), Source: f.Source, BatchID: f.BatchID, At: d.now()})
	if _, _, err := d.store.Create(ctx, rec); err != nil {
		return nil, err
	}
	zerolog.Ctx(ctx).Info().Str("lifecycle", id).Str("rule", rec.Rule).Str("image_id", f.ImageID).Int("legs", len(rec.Legs)).Msg("lifecycle started")
	return d.advance(ctx, m, id)
}

// LifecycleID is the lifecycle of an imported image: one per image.
func LifecycleID(imageID string) string { return events.Hash("lifecycle\x00"+imageID, 32) }

func imageOf(im *imsapi.Image) lifecycle.Image {
	gb := im.MinDisk
	if n, err := strconv.ParseInt(im.ImageSize, 10, 64); err == nil && n > 0 {
		gb = int(math.Ceil(float64(n) / float64(imsapi.GiB)))
	}
	return lifecycle.Image{ID: im.ID, Name: im.Name, Encrypted: im.SystemCMKID != "", ISO: im.DiskFormat == "iso", SizeGB: gb}
}

// legEnded records how a leg's IMS job ended, then advances.
func (d *distributor) legEnded(ctx context.Context, m runner.Msg, f events.JobFinished) ([]events.Event, error) {
	ref := *f.Leg
	rec, _, err := d.store.Load(ctx, ref.Lifecycle)
	if errors.Is(err, lifecycle.ErrNotFound) {
		zerolog.Ctx(ctx).Warn().Str("lifecycle", ref.Lifecycle).Msg("a leg ended of a lifecycle that is not (any longer) known")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l := rec.Leg(ref.Leg)
	if l == nil || l.State != lifecycle.LegRunning || l.Attempt != ref.Attempt {
		return d.advance(ctx, m, ref.Lifecycle) // already settled, or a replaced run's
	}
	state, reason, imageID := lifecycle.LegSucceeded, "", ""
	switch f.Status {
	case events.StatusSucceeded:
		if l.Kind == lifecycle.KindCopy || l.Kind == lifecycle.KindReplicate {
			im, err := d.findCopy(ctx, rec, *l)
			switch {
			case err != nil:
				return nil, err
			case im == nil:
				state, reason = lifecycle.LegFailed, fmt.Sprintf("IMS reported the copy done, but %s has no image named %s", regionOr(l.Region, rec.SourceRegion), copyName(rec, *l))
			default:
				imageID = im.ID
			}
		}
	case events.StatusTimedOut:
		state, reason = lifecycle.LegFailed, "the job did not end in time: "+f.FailReason
	default:
		state, reason = lifecycle.LegFailed, "IMS's job failed: "+f.FailReason
	}
	if _, err := d.store.Change(ctx, ref.Lifecycle, func(r *lifecycle.Record) (bool, error) {
		return r.Settle(ref.Leg, ref.Attempt, state, imageID, reason, f.ErrorCode, d.now()), nil
	}); err != nil {
		return nil, err
	}
	zerolog.Ctx(ctx).Info().Str("lifecycle", ref.Lifecycle).Str("leg", ref.Leg).Str("state", state).Str("reason", reason).Msg("leg ended")
	return d.advance(ctx, m, ref.Lifecycle)
}

// advance runs every leg that can run now, again until none can, and
// returns the hand-offs of the jobs submitted and, once no leg can move,
// the lifecycle's completion event. A redelivered message hands off again
// what its earlier delivery may not have (JetStream drops duplicates).
func (d *distributor) advance(ctx context.Context, m runner.Msg, id string) ([]events.Event, error) {
	var out []events.Event
	for range 64 { // bounded: each round runs at least one leg
		rec, _, err := d.store.Load(ctx, id)
		if err != nil {
			return out, err
		}
		ran := false
		for _, name := range rec.Ready() {
			evs, did, err := d.run(ctx, rec, name, false)
			out = append(out, evs...)
			if err != nil {
				return out, err
			}
			ran = ran || did
		}
		for _, l := range rec.Legs {
			if l.State == lifecycle.LegRunning && l.JobID == "" && d.now().Sub(l.ClaimedAt) >= d.cfg.ClaimTTL {
				evs, did, err := d.run(ctx, rec, l.Name, true)
				out = append(out, evs...)
				if err != nil {
					return out, err
				}
				ran = ran || did
			}
		}
		if !ran {
			break
		}
	}
	rec, _, err := d.store.Load(ctx, id)
	if err != nil {
		return out, err
	}
	if m.Delivery > 1 {
		sent := map[string]bool{}
		for _, e := range out {
			if h, ok := e.(events.JobSubmitted); ok {
				sent[h.ID()] = true
			}
		}
		for _, l := range rec.Legs {
			if h := d.handoff(rec, l); l.State == lifecycle.LegRunning && l.JobID != "" && !sent[h.ID()] {
				out = append(out, h)
			}
		}
	}
	if rec.State != lifecycle.Running {
		out = append(out, Completed(rec))
	}
	// A leg claimed and not yet submitted or settled: another attempt runs
	// it now, or died doing so. This message comes back to see it done, or
	// to take it over once the claim expires: nothing else would wake the
	// lifecycle then.
	for _, l := range rec.Legs {
		if l.State == lifecycle.LegRunning && l.JobID == "" {
			left := d.cfg.ClaimTTL - d.now().Sub(l.ClaimedAt)
			return out, runner.Delay(max(min(left, recheck), time.Second), fmt.Sprintf("leg %s is being run by another attempt", l.Name))
		}
	}
	return out, nil
}

// recheck is how soon a message looks again at a leg another attempt runs.
const recheck = 2 * time.Second

// transient turns IMS throttling into a wait and passes other errors on.
func (d *distributor) transient(err error, what string) error {
	if w, ok := imsapi.ThrottleDelay(err, d.cfg.ThrottleWait); ok {
		return runner.Delay(w, "IMS throttles: "+err.Error())
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Completed is the completion event of a lifecycle that ended.
func Completed(r *lifecycle.Record) events.LifecycleCompleted {
	e := events.LifecycleCompleted{Lifecycle: r.ID, Status: events.StatusSucceeded, Generation: r.Generation, Rule: r.Rule, Family: r.Family,
		Source: r.Source, Images: map[string]string{}, Tags: r.Declaration.Tags, BatchID: r.BatchID, At: r.UpdatedAt}
	if r.State == lifecycle.Failed {
		e.Status = events.StatusFailed
	}
	for _, region := range r.Regions() {
		if id := r.ImageIn(region); id != "" {
			e.Images[region] = id
		}
	}
	for _, l := range r.Legs {
		e.Legs = append(e.Legs, events.LifecycleLeg{Name: l.Name, State: l.State, Attempt: l.Attempt, ImageID: l.ImageID, JobID: l.JobID,
			Reason: l.Reason, ErrorCode: l.ErrorCode})
		if l.State != lifecycle.LegSucceeded {
			continue
		}
		switch l.Kind {
		case lifecycle.KindShare:
			if e.SharedWith == nil {
				e.SharedWith = map[string][]string{}
			}
			e.SharedWith[l.Region] = members(r, l.Region).All()
		case lifecycle.KindLatest:
			e.Latest = l.Reason == ""
		case lifecycle.KindRetain:
			if len(l.Removed) > 0 {
				if e.Removed == nil {
					e.Removed = map[string][]string{}
				}
				e.Removed[l.Region] = l.Removed
			}
		case lifecycle.KindSource:
			e.SourceGone = l.Reason == "" // else left alone, saying why
		}
	}
	return e
}

func regionOr(region, home string) string {
	if region == "" {
		return home
	}
	return region
}
