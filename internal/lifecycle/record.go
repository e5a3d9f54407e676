package lifecycle

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imsflow/imsflow/pkg/events"
)

// Kinds of leg, in the order a lifecycle runs them.
const (
	KindCopy      = "copy"      // in-region copy: re-key or plain (IMS job)
	KindReplicate = "replicate" // cross-region copy (IMS job)
	KindShare     = "share"     // add members (IMS job)
	KindTag       = "tag"       // set tags (synchronous)
	KindLatest    = "latest"    // the family's latest pointer (KV)
	KindRetain    = "retain"    // delete the family's older images (synchronous)
	KindSource    = "source"    // delete the uploaded object (bucket)
)

// States of a leg.
const (
	LegPending   = "pending"   // waits for the legs it comes after
	LegRunning   = "running"   // claimed; submitted once JobID is set
	LegSucceeded = "succeeded" // done
	LegFailed    = "failed"    // IMS's job failed or the attempt gave up: Reason says why
	LegRefused   = "refused"   // cannot work as declared (Reason names the rule and what to change)
	LegBlocked   = "blocked"   // a leg it comes after failed or was refused
)

// States of a lifecycle.
const (
	Running   = "running"
	Succeeded = "succeeded" // every leg succeeded
	Failed    = "failed"    // every leg ended, some did not succeed; a retry reopens it
)

// Leg is one step of a lifecycle.
type Leg struct {
	Name   string   `json:"name"` // kind, or kind:region
	Kind   string   `json:"kind"`
	Region string   `json:"region"`
	After  []string `json:"after,omitempty"`
	State  string   `json:"state"`
	// Attempt counts the leg's runs: 1 for the first, one more per retry.
	Attempt   int       `json:"attempt"`
	ClaimedAt time.Time `json:"claimed_at,omitzero"`
	// JobID is the leg's IMS job once submitted; ImageID the image it
	// made (copies) or acted on.
	JobID   string `json:"job_id,omitempty"`
	ImageID string `json:"image_id,omitempty"`
	// Slot and SlotRev are the replication slot a cross-region copy
	// holds (released by the poller when its job ends).
	Slot    string `json:"slot,omitempty"`
	SlotRev uint64 `json:"slot_rev,omitempty"`
	// Removed are the images a retention leg deleted.
	Removed    []string  `json:"removed,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	ErrorCode  string    `json:"error_code,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Ended reports whether the leg will not move without a retry.
func (l Leg) Ended() bool {
	return l.State == LegSucceeded || l.State == LegFailed || l.State == LegRefused || l.State == LegBlocked
}

// Record is the durable state of one image's lifecycle.
type Record struct {
	// ID is the lifecycle's key: l.<hash of the imported object version>.
	ID   string `json:"id"`
	Rule string `json:"rule"`
	// Family and Declaration are the rule's at the lifecycle's start: a
	// later change of the rules file does not change a lifecycle under way.
	Family       string         `json:"family"`
	Declaration  Declaration    `json:"declaration"`
	Source       *events.Source `json:"source,omitempty"`
	SourceRegion string         `json:"source_region"`
	// ImageID and ImageName are the imported image's.
	ImageID   string `json:"image_id"`
	ImageName string `json:"image_name"`
	Legs      []Leg  `json:"legs"`
	State     string `json:"state"`
	// Generation counts the lifecycle's ends: each retry after an end
	// starts a new one, whose completion event is new.
	Generation int       `json:"generation"`
	BatchID    string    `json:"batch_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Leg returns the leg named name, or nil.
func (r *Record) Leg(name string) *Leg {
	for i := range r.Legs {
		if r.Legs[i].Name == name {
			return &r.Legs[i]
		}
	}
	return nil
}

// ImageIn is the lifecycle's image in region: the source region's is the
// in-region copy's, if there is one, else the import's; another region's
// is its replica's ("" until that copy succeeded).
func (r *Record) ImageIn(region string) string {
	if region == r.SourceRegion {
		if c := r.Leg(KindCopy); c != nil {
			return c.ImageID
		}
		return r.ImageID
	}
	if c := r.Leg(legName(KindReplicate, region)); c != nil && c.State == LegSucceeded {
		return c.ImageID
	}
	return ""
}

// Regions are the regions the lifecycle reaches: its own first.
func (r *Record) Regions() []string {
	out := []string{r.SourceRegion}
	for _, reg := range r.Declaration.Regions {
		out = append(out, reg.Region)
	}
	return out
}

// Ready are the legs that can run now: pending, and every leg they come
// after succeeded.
func (r *Record) Ready() []string {
	var out []string
	for _, l := range r.Legs {
		if l.State == LegPending && r.afterAll(l, LegSucceeded) {
			out = append(out, l.Name)
		}
	}
	return out
}

func (r *Record) afterAll(l Leg, state string) bool {
	for _, a := range l.After {
		if dep := r.Leg(a); dep == nil || dep.State != state {
			return false
		}
	}
	return true
}

// Settle records how a leg's run ended (LegSucceeded, LegFailed or
// LegRefused) and ends the lifecycle if it was the last leg running. It
// reports false, changing nothing, for a leg that is not running: an
// answer about a run already settled (a duplicate event, or a run a retry
// replaced) changes nothing.
func (r *Record) Settle(name string, attempt int, state, imageID, reason, code string, now time.Time) bool {
	l := r.Leg(name)
	if l == nil || l.State != LegRunning || (attempt != 0 && l.Attempt != attempt) {
		return false
	}
	l.State, l.Reason, l.ErrorCode, l.FinishedAt = state, reason, code, now.UTC()
	if imageID != "" {
		l.ImageID = imageID
	}
	r.propagate()
	r.UpdatedAt = now.UTC()
	return true
}

// propagate blocks the pending legs behind a leg that did not succeed and
// ends the lifecycle when no leg can move.
func (r *Record) propagate() {
	for changed := true; changed; {
		changed = false
		for i := range r.Legs {
			l := &r.Legs[i]
			if l.State != LegPending {
				continue
			}
			for _, a := range l.After {
				if dep := r.Leg(a); dep != nil && (dep.State == LegFailed || dep.State == LegRefused || dep.State == LegBlocked) {
					l.State, l.Reason = LegBlocked, fmt.Sprintf("%s %s", a, dep.State)
					changed = true
					break
				}
			}
		}
	}
	for _, l := range r.Legs {
		if !l.Ended() {
			return
		}
	}
	r.State = Succeeded
	for _, l := range r.Legs {
		if l.State != LegSucceeded {
			r.State = Failed
		}
	}
}

// ErrNotRetryable is Retry's error for a leg that does not exist or did
// not fail: a request a person must correct, not a fault to retry.
var ErrNotRetryable = errors.New("not a leg to retry")

// Retry runs a leg that failed or was refused again, alone: the leg is
// pending once more, with its attempt counted, and the legs it blocked
// wait for it again. A lifecycle that had ended starts a new generation.
func (r *Record) Retry(name string, now time.Time) error {
	l := r.Leg(name)
	switch {
	case l == nil:
		return fmt.Errorf("%w: lifecycle %s has no leg %q (legs: %s)", ErrNotRetryable, r.ID, name, strings.Join(r.legNames(), ", "))
	case l.State != LegFailed && l.State != LegRefused:
		return fmt.Errorf("%w: leg %s of lifecycle %s is %s: only a failed or refused leg is retried", ErrNotRetryable, name, r.ID, l.State)
	}
	l.State, l.Reason, l.ErrorCode, l.JobID, l.ClaimedAt, l.FinishedAt = LegPending, "", "", "", time.Time{}, time.Time{}
	l.Slot, l.SlotRev = "", 0
	l.Attempt++
	r.unblock(name)
	if r.State != Running {
		r.State = Running
		r.Generation++
	}
	r.UpdatedAt = now.UTC()
	return nil
}

// unblock turns the legs blocked behind name pending again.
func (r *Record) unblock(name string) {
	for i := range r.Legs {
		l := &r.Legs[i]
		if l.State == LegBlocked && slices.Contains(l.After, name) {
			l.State, l.Reason = LegPending, ""
			r.unblock(l.Name)
		}
	}
}

func (r *Record) legNames() []string {
	out := make([]string, len(r.Legs))
	for i, l := range r.Legs {
		out[i] = l.Name
	}
	return out
}

// Failed are the legs that failed or were refused.
func (r *Record) FailedLegs() []Leg {
	var out []Leg
	for _, l := range r.Legs {
		if l.State == LegFailed || l.State == LegRefused {
			out = append(out, l)
		}
	}
	return out
}

func legName(kind, region string) string {
	if region == "" {
		return kind
	}
	return kind + ":" + region
}
