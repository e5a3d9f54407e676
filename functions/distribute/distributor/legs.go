package distributor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// run claims a leg and runs it: a ready leg, or (takeover) a running one
// whose attempt died before it recorded its job. It reports whether it
// ran anything: false when another attempt claimed the leg first.
//
// A leg that submits an IMS job claims it first (a compare-and-set on the
// lifecycle), submits, and records the job; one that dies in between is
// taken over after ClaimTTL, and the takeover looks for what the dead
// attempt did before it submits: a leg's job is never submitted twice.
func (d *distributor) run(ctx context.Context, rec *lifecycle.Record, name string, takeover bool) ([]events.Event, bool, error) {
	l := *rec.Leg(name)
	at := d.now().UTC()
	won := false
	if _, err := d.store.Change(ctx, rec.ID, func(r *lifecycle.Record) (bool, error) {
		won = false
		x := r.Leg(name)
		switch {
		case x == nil:
			return false, nil
		case takeover:
			if x.State != lifecycle.LegRunning || x.JobID != "" || x.Attempt != l.Attempt || !x.ClaimedAt.Equal(l.ClaimedAt) {
				return false, nil
			}
		case x.State != lifecycle.LegPending || !slices.Contains(r.Ready(), name):
			return false, nil
		}
		x.State, x.ClaimedAt = lifecycle.LegRunning, at
		won = true
		return true, nil
	}); err != nil || !won {
		return nil, false, err
	}
	l.State, l.ClaimedAt = lifecycle.LegRunning, at
	log := zerolog.Ctx(ctx).With().Str("lifecycle", rec.ID).Str("leg", name).Int("attempt", l.Attempt).Bool("takeover", takeover).Logger()
	ctx = log.WithContext(ctx)
	log.Debug().Msg("leg claimed")
	switch l.Kind {
	case lifecycle.KindCopy, lifecycle.KindReplicate:
		return d.copy(ctx, rec, l, takeover)
	case lifecycle.KindShare:
		return d.share(ctx, rec, l, takeover)
	case lifecycle.KindTag:
		return d.tag(ctx, rec, l)
	case lifecycle.KindLatest:
		return d.latest(ctx, rec, l)
	case lifecycle.KindRetain:
		return d.retain(ctx, rec, l)
	case lifecycle.KindSource:
		return d.source(ctx, rec, l)
	}
	return nil, true, d.settle(ctx, rec, l, lifecycle.LegRefused, "", fmt.Sprintf("rule %s: leg kind %q is unknown to this version of imsflow", rec.Rule, l.Kind), "")
}

// settle ends the leg's run (as claimed at l.ClaimedAt).
func (d *distributor) settle(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg, state, imageID, reason, code string) error {
	_, err := d.store.Change(ctx, rec.ID, func(r *lifecycle.Record) (bool, error) {
		if x := r.Leg(l.Name); x == nil || !x.ClaimedAt.Equal(l.ClaimedAt) {
			return false, nil
		}
		return r.Settle(l.Name, l.Attempt, state, imageID, reason, code, d.now()), nil
	})
	return err
}

// release gives a claim back: the leg is pending again, as if never
// claimed (IMS certainly did nothing), and its slot is freed.
func (d *distributor) release(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg, slot ledger.Slot) {
	d.freeSlot(ctx, slot)
	_, _ = d.store.Change(context.WithoutCancel(ctx), rec.ID, func(r *lifecycle.Record) (bool, error) {
		x := r.Leg(l.Name)
		if x == nil || x.State != lifecycle.LegRunning || x.JobID != "" || !x.ClaimedAt.Equal(l.ClaimedAt) {
			return false, nil
		}
		x.State, x.ClaimedAt = lifecycle.LegPending, time.Time{}
		return true, nil
	})
}

// submitted records the outcome of a leg's submission: the job and its
// hand-off, a wait, or the leg's failure with IMS's reason.
func (d *distributor) submitted(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg, ref *imsapi.JobRef, err error, slot ledger.Slot) ([]events.Event, bool, error) {
	switch {
	case err == nil:
		l.JobID, l.Slot, l.SlotRev = ref.JobID, slot.Name, slot.Rev
		if _, err := d.store.Change(ctx, rec.ID, func(r *lifecycle.Record) (bool, error) {
			x := r.Leg(l.Name)
			if x == nil || x.State != lifecycle.LegRunning || !x.ClaimedAt.Equal(l.ClaimedAt) {
				return false, fmt.Errorf("leg %s of %s was taken over while its job %s was submitted", l.Name, rec.ID, ref.JobID)
			}
			x.JobID, x.Slot, x.SlotRev = l.JobID, l.Slot, l.SlotRev
			return true, nil
		}); err != nil {
			// The job runs but is not recorded: the takeover finds it.
			return nil, true, err
		}
		zerolog.Ctx(ctx).Info().Str("job_id", ref.JobID).Msg("leg submitted")
		return []events.Event{d.handoff(rec, l)}, true, nil
	case imsapi.MaybeApplied(err):
		// IMS may have taken it: keep the claim (and the slot); the
		// takeover looks for the leg's result first.
		return nil, true, fmt.Errorf("%s (it may have been accepted): %w", l.Name, err)
	case imsapi.IsRetryable(err):
		d.release(ctx, rec, l, slot)
		return nil, true, d.transient(err, l.Name)
	}
	d.freeSlot(ctx, slot)
	code := ""
	if apiErr, ok := errors.AsType[*imsapi.APIError](err); ok {
		code = apiErr.Code
	}
	return nil, true, d.settle(ctx, rec, l, lifecycle.LegFailed, "", fmt.Sprintf("rule %s: IMS refused %s: %v", rec.Rule, l.Name, err), code)
}

// handoff is the poller's hand-off of a leg's job.
func (d *distributor) handoff(rec *lifecycle.Record, l lifecycle.Leg) events.JobSubmitted {
	jobType := map[string]string{lifecycle.KindCopy: imsapi.JobTypeCopyInRegion, lifecycle.KindReplicate: imsapi.JobTypeCrossRegionCopy,
		lifecycle.KindShare: imsapi.JobTypeAddMembers}[l.Kind]
	region := l.Region
	if l.Kind == lifecycle.KindReplicate {
		region = "" // a cross-region copy's job is the source region's
	}
	jobID, image := l.JobID, sourceImage(rec, l)
	if id, found := strings.CutPrefix(l.JobID, imageRefPrefix); found {
		// An earlier attempt's copy, found by its name: followed by its
		// image, in the region it is in (JobSubmitted.Ref is image:<id>).
		jobID, image, region = "", id, l.Region
	}
	return events.JobSubmitted{JobID: jobID, JobType: jobType, Kind: events.KindDistribute, Method: events.MethodNormal,
		ImageID: image, ImageName: rec.ImageName, SubmittedAt: l.ClaimedAt, BatchID: rec.BatchID,
		Slot: l.Slot, SlotRev: l.SlotRev, Rule: rec.Rule,
		Leg: &events.LegRef{Lifecycle: rec.ID, Leg: l.Name, Attempt: l.Attempt, Region: regionOr(region, rec.SourceRegion)}}
}

// imageRefPrefix marks a leg's JobID that is an image found, not a job.
const imageRefPrefix = "image:"

// sourceImage is the image a leg acts on: the import (in-region copy),
// the source region's image (cross-region copy), or the region's image.
func sourceImage(rec *lifecycle.Record, l lifecycle.Leg) string {
	switch l.Kind {
	case lifecycle.KindCopy:
		return rec.ImageID
	case lifecycle.KindReplicate:
		return rec.ImageIn(rec.SourceRegion)
	}
	return rec.ImageIn(regionOr(l.Region, rec.SourceRegion))
}

// copyName is the name of a leg's copy, by which a takeover finds it: the
// import's name in another region; with a suffix in the source region.
func copyName(rec *lifecycle.Record, l lifecycle.Leg) string {
	if l.Kind == lifecycle.KindReplicate {
		return rec.ImageName
	}
	const suffix = "-copy"
	return rec.ImageName[:min(len(rec.ImageName), imsapi.MaxNameLength-len(suffix))] + suffix
}

// findCopy looks for a leg's copy by its name in its region: one that
// is active or on its way (none: nil).
func (d *distributor) findCopy(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg) (*imsapi.Image, error) {
	ims, err := d.ims(l.Region)
	if err != nil {
		return nil, err
	}
	page, err := ims.ListImages(ctx, &imsapi.ListImagesOptions{Name: copyName(rec, l)})
	if err != nil {
		return nil, d.transient(err, "look for the copy of "+l.Name)
	}
	for i := range page.Images {
		switch page.Images[i].Status {
		case imsapi.ImageActive, imsapi.ImageQueued, imsapi.ImageSaving:
			if page.Images[i].ID != rec.ImageID {
				return &page.Images[i], nil
			}
		}
	}
	return nil, nil
}

// copy runs an in-region or cross-region copy.
func (d *distributor) copy(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg, takeover bool) ([]events.Event, bool, error) {
	var slot ledger.Slot
	if l.Kind == lifecycle.KindReplicate {
		var err error
		if slot, err = d.replicationSlot(ctx, rec, l, takeover); err != nil {
			d.release(ctx, rec, l, slot)
			return nil, true, err
		}
		if slot.Name == "" {
			d.release(ctx, rec, l, slot)
			return nil, true, runner.Delay(d.cfg.SlotWait, fmt.Sprintf("the tenant's %d cross-region copies are running", lifecycle.MaxReplications))
		}
	}
	if takeover {
		im, err := d.findCopy(ctx, rec, l)
		if err != nil {
			return nil, true, err
		}
		if im != nil {
			// The dead attempt's copy: follow it by its image (no job ID).
			zerolog.Ctx(ctx).Info().Str("image_id", im.ID).Msg("found the copy of an earlier attempt")
			l.JobID, l.ImageID, l.Slot, l.SlotRev = imageRefPrefix+im.ID, im.ID, slot.Name, slot.Rev
			if _, err := d.store.Change(ctx, rec.ID, func(r *lifecycle.Record) (bool, error) {
				x := r.Leg(l.Name)
				if x == nil || x.State != lifecycle.LegRunning || !x.ClaimedAt.Equal(l.ClaimedAt) {
					return false, nil
				}
				x.JobID, x.ImageID, x.Slot, x.SlotRev = l.JobID, l.ImageID, l.Slot, l.SlotRev
				return true, nil
			}); err != nil {
				return nil, true, err
			}
			return []events.Event{d.handoff(rec, l)}, true, nil
		}
	}
	home, err := d.ims("")
	if err != nil {
		return nil, true, err
	}
	src := sourceImage(rec, l)
	var ref *imsapi.JobRef
	if l.Kind == lifecycle.KindCopy {
		c := rec.Declaration.Copy
		ref, err = home.CopyImageInRegion(ctx, src, &imsapi.CopyImageInRegionRequest{Name: copyName(rec, l), CMKID: c.CMKID,
			Description: "imsflow lifecycle " + rec.ID})
	} else {
		reg := declaredRegion(rec, l.Region)
		ref, err = home.CopyImageCrossRegion(ctx, src, &imsapi.CopyImageCrossRegionRequest{Name: copyName(rec, l), Region: reg.Region,
			ProjectName: cmp.Or(reg.ProjectName, reg.Region), AgencyName: reg.AgencyName, Description: "imsflow lifecycle " + rec.ID})
	}
	return d.submitted(ctx, rec, l, ref, err, slot)
}

// declaredRegion is the declaration's target region name.
func declaredRegion(rec *lifecycle.Record, name string) lifecycle.Region {
	for _, r := range rec.Declaration.Regions {
		if r.Region == name {
			return r
		}
	}
	return lifecycle.Region{Region: name}
}

// members is who a share leg in region shares with.
func members(rec *lifecycle.Record, region string) lifecycle.Members {
	if region == rec.SourceRegion || region == "" {
		return rec.Declaration.Share
	}
	return declaredRegion(rec, region).Share
}

// share shares the region's image with its members.
func (d *distributor) share(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg, takeover bool) ([]events.Event, bool, error) {
	ims, err := d.ims(l.Region)
	if err != nil {
		return nil, true, d.settle(ctx, rec, l, lifecycle.LegFailed, "", fmt.Sprintf("rule %s: %v", rec.Rule, err), "")
	}
	image := sourceImage(rec, l)
	want := members(rec, l.Region)
	if takeover {
		have, err := ims.ListImageMembers(ctx, image)
		if err != nil {
			return nil, true, d.transient(err, "list the members of "+image)
		}
		missing := slices.DeleteFunc(want.All(), func(id string) bool { _, ok := have.Member(id); return ok })
		if len(missing) == 0 {
			return nil, true, d.settle(ctx, rec, l, lifecycle.LegSucceeded, image, "", "")
		}
	}
	ref, err := ims.BatchAddMembers(ctx, &imsapi.BatchAddMembersRequest{Images: []string{image}, Projects: nonNil(want.Projects),
		Domains: want.Domains, Organizations: want.Organizations})
	return d.submitted(ctx, rec, l, ref, err, ledger.Slot{})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// tag sets the declared tags and the family tag on the region's image.
func (d *distributor) tag(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg) ([]events.Event, bool, error) {
	ims, err := d.ims(l.Region)
	if err != nil {
		return nil, true, d.settle(ctx, rec, l, lifecycle.LegFailed, "", fmt.Sprintf("rule %s: %v", rec.Rule, err), "")
	}
	tags := rec.Declaration.ImageTags(rec.Family)
	image := sourceImage(rec, l)
	err = ims.BatchAddOrDeleteTags(ctx, image, &imsapi.BatchAddOrDeleteTagsRequest{Action: imsapi.TagActionCreate, Tags: tags})
	return d.synchronous(ctx, rec, l, image, err)
}

// synchronous ends a leg whose IMS call answered at once.
func (d *distributor) synchronous(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg, image string, err error) ([]events.Event, bool, error) {
	switch {
	case err == nil:
		return nil, true, d.settle(ctx, rec, l, lifecycle.LegSucceeded, image, "", "")
	case imsapi.IsRetryable(err) || imsapi.MaybeApplied(err):
		d.release(ctx, rec, l, ledger.Slot{})
		return nil, true, d.transient(err, l.Name)
	}
	code := ""
	if apiErr, ok := errors.AsType[*imsapi.APIError](err); ok {
		code = apiErr.Code
	}
	return nil, true, d.settle(ctx, rec, l, lifecycle.LegFailed, image, fmt.Sprintf("rule %s: IMS refused %s: %v", rec.Rule, l.Name, err), code)
}

// latest points the family at this lifecycle's images, unless a newer
// import's are already named.
func (d *distributor) latest(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg) ([]events.Event, bool, error) {
	p := lifecycle.Pointer{Family: rec.Family, Lifecycle: rec.ID, Images: map[string]string{}, ImportedAt: rec.CreatedAt}
	for _, region := range rec.Regions() {
		p.Images[region] = rec.ImageIn(region)
	}
	named, err := d.store.SetLatest(ctx, p)
	if err != nil {
		return nil, true, err
	}
	reason := ""
	if !named {
		reason = "a newer image of family " + rec.Family + " is its latest"
	}
	return nil, true, d.settle(ctx, rec, l, lifecycle.LegSucceeded, "", reason, "")
}

// retain deletes the family's images in the region beyond the newest
// KeepLast, except those shared with anyone, the family's latest, and
// those IMS refuses to delete (in use).
func (d *distributor) retain(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg) ([]events.Event, bool, error) {
	ims, err := d.ims(l.Region)
	if err != nil {
		return nil, true, d.settle(ctx, rec, l, lifecycle.LegFailed, "", fmt.Sprintf("rule %s: %v", rec.Rule, err), "")
	}
	var family []imsapi.Image
	opts := &imsapi.ListImagesOptions{Tag: lifecycle.FamilyTag + "." + rec.Family}
	for {
		page, err := ims.ListImages(ctx, opts)
		if err != nil {
			return nil, true, d.transient(err, "list the images of family "+rec.Family)
		}
		for _, im := range page.Images {
			if im.Status == imsapi.ImageActive {
				family = append(family, im)
			}
		}
		if len(page.Images) == 0 || len(page.Images) < cmp.Or(opts.Limit, imsapi.DefaultPageSize) {
			break
		}
		opts.Marker = page.Images[len(page.Images)-1].ID
	}
	slices.SortStableFunc(family, func(a, b imsapi.Image) int { return cmp.Compare(b.CreatedAt, a.CreatedAt) })
	keep := map[string]bool{rec.ImageIn(l.Region): true}
	if p, _, err := d.store.Latest(ctx, rec.Family); err == nil && p != nil {
		keep[p.Images[l.Region]] = true
	}
	var removed, kept []string
	for i, im := range family {
		if i < rec.Declaration.KeepLast || keep[im.ID] {
			continue
		}
		mem, err := ims.ListImageMembers(ctx, im.ID)
		if err != nil {
			return nil, true, d.transient(err, "list the members of "+im.ID)
		}
		if len(mem.Members) > 0 {
			kept = append(kept, im.ID+" (shared)")
			continue
		}
		switch err := ims.GlanceDeleteImage(ctx, im.ID); {
		case err == nil, errors.Is(err, imsapi.ErrNotFound):
			removed = append(removed, im.ID)
		case imsapi.IsRetryable(err) || imsapi.MaybeApplied(err):
			return nil, true, d.transient(err, "delete "+im.ID)
		default:
			kept = append(kept, fmt.Sprintf("%s (%v)", im.ID, err))
		}
	}
	reason := ""
	if len(kept) > 0 {
		reason = fmt.Sprintf("kept beyond keep_last %d: %v", rec.Declaration.KeepLast, kept)
	}
	_, err = d.store.Change(ctx, rec.ID, func(r *lifecycle.Record) (bool, error) {
		x := r.Leg(l.Name)
		if x == nil || !x.ClaimedAt.Equal(l.ClaimedAt) || !r.Settle(l.Name, l.Attempt, lifecycle.LegSucceeded, "", reason, "", d.now()) {
			return false, nil
		}
		x.Removed = append(x.Removed, removed...)
		return true, nil
	})
	if len(removed) > 0 {
		zerolog.Ctx(ctx).Info().Strs("removed", removed).Str("family", rec.Family).Str("region", l.Region).Msg("retention deleted older images")
	}
	return nil, true, err
}

// source deletes the uploaded object.
func (d *distributor) source(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg) ([]events.Event, bool, error) {
	if d.objects == nil || rec.Source == nil {
		return nil, true, d.settle(ctx, rec, l, lifecycle.LegRefused, "", fmt.Sprintf("rule %s: source_object delete needs bucket access (S3_*), which this process lacks", rec.Rule), "")
	}
	src := rec.Source
	switch err := d.objects.RemoveVersion(ctx, src.Bucket, src.Key, src.VersionID, src.ETag); {
	case errors.Is(err, objstore.ErrReplaced):
		// An unversioned bucket whose key holds a newer upload: the
		// imported object is gone already, and the newer one is not ours.
		return nil, true, d.settle(ctx, rec, l, lifecycle.LegSucceeded, "", "left alone: "+err.Error(), "")
	case err != nil:
		d.release(ctx, rec, l, ledger.Slot{})
		return nil, true, fmt.Errorf("delete %s:%s: %w", src.Bucket, src.Key, err)
	}
	zerolog.Ctx(ctx).Info().Str("bucket", src.Bucket).Str("key", src.Key).Msg("source object deleted")
	return nil, true, d.settle(ctx, rec, l, lifecycle.LegSucceeded, "", "", "")
}

// replicationSlot takes one of the tenant's MaxReplications slots for the
// leg's run (none: the zero Slot), or finds the one it took already. A
// takeover looks for the dead attempt's slot first, on the bucket's
// leader: taking a free one before reaching it would leave it held.
func (d *distributor) replicationSlot(ctx context.Context, rec *lifecycle.Record, l lifecycle.Leg, takeover bool) (ledger.Slot, error) {
	owner := rec.ID + "/" + l.Name + "/" + strconv.Itoa(l.Attempt)
	if takeover {
		for i := range lifecycle.MaxReplications {
			name := fmt.Sprintf("repl.%d", i)
			e, err := ledger.LeaderGet(ctx, d.js, d.slots.Bucket(), name)
			switch {
			case err == nil && string(e.Value) == owner:
				return ledger.Slot{Name: name, Rev: e.Revision}, nil
			case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
				return ledger.Slot{}, fmt.Errorf("look for the replication slot of %s: %w", l.Name, err)
			}
		}
	}
	for i := range lifecycle.MaxReplications {
		name := fmt.Sprintf("repl.%d", i)
		rev, err := d.slots.Create(ctx, name, []byte(owner), jetstream.KeyTTL(d.cfg.SlotTTL))
		switch {
		case err == nil:
			return ledger.Slot{Name: name, Rev: rev}, nil
		case ledger.Conflict(err):
			if e, gerr := d.slots.Get(ctx, name); gerr == nil && string(e.Value()) == owner {
				return ledger.Slot{Name: name, Rev: e.Revision()}, nil
			}
		default:
			return ledger.Slot{}, fmt.Errorf("take a replication slot: %w", err)
		}
	}
	return ledger.Slot{}, nil
}

func (d *distributor) freeSlot(ctx context.Context, slot ledger.Slot) {
	if slot.Name == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = d.slots.Delete(ctx, slot.Name, jetstream.LastRevision(slot.Rev))
}
