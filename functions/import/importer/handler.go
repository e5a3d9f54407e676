package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// imsAPI is what the import function needs of IMS; *imsapi.Client has it.
type imsAPI interface {
	QuickImport(ctx context.Context, r *imsapi.QuickImportRequest) (*imsapi.JobRef, error)
	ImportDataImage(ctx context.Context, r *imsapi.DataImageRequest) (*imsapi.JobRef, error)
	ImportImage(ctx context.Context, r *imsapi.ImageRequest) (*imsapi.JobRef, error)
	ListImages(ctx context.Context, opts *imsapi.ListImagesOptions) (*imsapi.ImagePage, error)
}

// handlerConfig tunes the import handler.
type handlerConfig struct {
	route routeConfig
	// BitmapWait bounds how long a RAW file waits for its .mf bitmap;
	// BitmapPoll is how often it looks again meanwhile (the bitmap's own
	// event also wakes it at once).
	BitmapWait, BitmapPoll time.Duration
	// ClaimTTL is how long an attempt at an object version owns it: a
	// claim older than that is taken over after looking the import up.
	ClaimTTL time.Duration
	// MaxInFlight caps IMS image-creation jobs in flight across all
	// replicas (IMS runs at most 40 per account); 0 for no cap. SlotTTL
	// frees a slot its job never released.
	MaxInFlight int
	SlotTTL     time.Duration
	// SlotWait and ThrottleWait are the waits when no slot is free and
	// when IMS throttles without saying how long.
	SlotWait, ThrottleWait time.Duration
}

// importer handles object-created notifications.
type importer struct {
	cfg     handlerConfig
	ims     imsAPI
	imports jetstream.KeyValue // BucketImports
	slots   jetstream.KeyValue // BucketSlots
	js      jetstream.JetStream
	objects objectReader // nil without bucket access
	now     func() time.Time
}

// claimRecheck is how soon a duplicate looks again at a claim that is
// under way: usually the attempt has finished by then.
const claimRecheck = 2 * time.Second

// Import states in BucketImports.
const (
	stateClaimed   = "claimed"   // an attempt is submitting
	stateSubmitted = "submitted" // IMS accepted it; the hand-off says what
	stateRejected  = "rejected"  // IMS refused it
)

// importRecord is the durable state of one object version's import.
type importRecord struct {
	State     string               `json:"state"`
	ClaimedAt time.Time            `json:"claimed_at"`
	Handoff   *events.JobSubmitted `json:"handoff,omitempty"`
	Rejected  *events.Rejected     `json:"rejected,omitempty"`
}

// waitRecord is a RAW file's notification, kept while it waits for its
// bitmap so that the bitmap's arrival can replay it at once.
type waitRecord struct {
	Data []byte `json:"data"`
}

// Subject on which a waiting RAW file's notification is replayed.
const subjectRejoin = events.SubjectObjectsPrefix + "rejoin"

// handle processes one notification message.
func (h *importer) handle(ctx context.Context, m runner.Msg) ([]events.Event, error) {
	created, skipped, err := events.DecodeObjectEvents(m.Data)
	if err != nil {
		input := string(m.Data[:min(len(m.Data), 1024)])
		rej := events.Rejected{Kind: events.KindImport, Stage: "decode", ReasonCode: events.ReasonUndecodable,
			Reason: err.Error(), Input: input, At: h.now().UTC()}
		return []events.Event{rej}, runner.Term(err.Error())
	}
	if len(skipped) > 0 {
		zerolog.Ctx(ctx).Debug().Strs("skipped", skipped).Msg("events other than object-created")
	}
	var out []events.Event
	var rejections []string
	for _, o := range created {
		evs, err := h.object(ctx, m, o)
		if err != nil {
			return out, err
		}
		for _, e := range evs {
			if r, ok := e.(events.Rejected); ok {
				rejections = append(rejections, r.Reason)
			}
		}
		out = append(out, evs...)
	}
	if len(created) == 1 && len(rejections) == 1 {
		return out, runner.Term(rejections[0])
	}
	return out, nil
}

// object handles one object-created record.
func (h *importer) object(ctx context.Context, m runner.Msg, o events.ObjectCreated) ([]events.Event, error) {
	log := zerolog.Ctx(ctx).With().Str("bucket", o.Bucket).Str("key", o.Key).Logger()
	p := route(o, h.cfg.route)
	batch := o.Metadata[MetaBatch]
	if p.act == actSubmit {
		// Know the file, not only its name: its header must agree with its
		// extension, and its virtual size sets min_disk.
		virtual, rej, err := h.checkContent(ctx, o, p)
		if err != nil {
			return nil, err
		}
		if rej != nil {
			return []events.Event{*rej}, nil
		}
		if virtual > 0 {
			p = routeContent(o, h.cfg.route, virtual)
		}
	}
	switch p.act {
	case actSkip:
		log.Debug().Str("reason", p.reason).Msg("skipped")
		return nil, nil
	case actBitmap:
		return nil, h.bitmapArrived(ctx, o)
	case actReject:
		return []events.Event{h.rejected(p, "route", p.reasonCode, p.reason, "", batch)}, nil
	}

	key := "v." + p.hash[:tagHashLen]
	entry, err := h.imports.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return h.fresh(ctx, m, o, p, key, batch)
	case err != nil:
		return nil, fmt.Errorf("read import state: %w", err)
	}
	var rec importRecord
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return nil, fmt.Errorf("%w: import state %s is not JSON: %v", runner.ErrPermanent, key, err)
	}
	switch rec.State {
	case stateSubmitted:
		// Already imported: publish the hand-off again (its ID makes it a
		// no-op if it was published before).
		return []events.Event{*rec.Handoff}, nil
	case stateRejected:
		return []events.Event{*rec.Rejected}, nil
	}
	// Claimed by an attempt that may be under way or may have died.
	if age := h.now().Sub(rec.ClaimedAt); age < h.cfg.ClaimTTL {
		return nil, runner.Delay(min(h.cfg.ClaimTTL-age, claimRecheck), "another attempt at this object version is under way")
	}
	rev, err := h.imports.Update(ctx, key, h.claim(), entry.Revision())
	if err != nil {
		return nil, runner.Delay(time.Second, "the claim changed under us: "+err.Error())
	}
	// The earlier attempt may have got as far as IMS: look for its image.
	im, err := h.lookup(ctx, p)
	if err != nil {
		return nil, err
	}
	if im != nil {
		ho := h.handoff(p, "", im.ID, batch, "")
		log.Info().Str("image_id", im.ID).Msg("found the import of an earlier attempt")
		return h.record(ctx, key, rev, importRecord{State: stateSubmitted, ClaimedAt: h.now(), Handoff: &ho})
	}
	return h.submit(ctx, p, key, rev, batch)
}

// fresh handles an object version seen for the first time.
func (h *importer) fresh(ctx context.Context, m runner.Msg, o events.ObjectCreated, p plan, key, batch string) ([]events.Event, error) {
	if p.needsBitmap {
		ok, err := h.bitmapPresent(ctx, o)
		if err != nil {
			return nil, err
		}
		if !ok {
			start := o.EventTime
			if start.IsZero() {
				start = m.Published
			}
			left := h.cfg.BitmapWait - h.now().Sub(start)
			if left > 0 {
				if err := h.saveWait(ctx, o, m.Data); err != nil {
					return nil, err
				}
				return nil, runner.Delay(min(left, h.cfg.BitmapPoll), "waiting for the RAW file's bitmap "+bitmapKey(o.Key))
			}
			if p.fallback == nil {
				return []events.Event{h.rejected(p, "route", events.ReasonMissingBitmap,
					fmt.Sprintf("the RAW file's bitmap %s did not arrive within %s, and above 128 GB only quick import works: upload the bitmap (CreateMF.jar) and the RAW file again", bitmapKey(o.Key), h.cfg.BitmapWait), "", batch)}, nil
			}
			zerolog.Ctx(ctx).Info().Str("key", o.Key).Msg("no bitmap in time: normal import instead")
			p = *p.fallback
		}
		h.dropWait(ctx, o)
	}
	rev, err := h.imports.Create(ctx, key, h.claim())
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, runner.Delay(time.Second, "another replica claimed this object version")
	}
	if err != nil {
		return nil, fmt.Errorf("claim import: %w", err)
	}
	return h.submit(ctx, p, key, rev, batch)
}

// submit takes an in-flight slot and submits the import.
func (h *importer) submit(ctx context.Context, p plan, key string, rev uint64, batch string) ([]events.Event, error) {
	slot, err := h.acquireSlot(ctx, p.hash)
	if err != nil {
		return nil, err
	}
	if slot == "" && h.cfg.MaxInFlight > 0 {
		h.unclaim(ctx, key, rev)
		return nil, runner.Delay(h.cfg.SlotWait, fmt.Sprintf("%d IMS image-creation jobs in flight", h.cfg.MaxInFlight))
	}
	var ref *imsapi.JobRef
	switch {
	case p.quick != nil:
		ref, err = h.ims.QuickImport(ctx, p.quick)
	case p.data != nil:
		ref, err = h.ims.ImportDataImage(ctx, p.data)
	default:
		ref, err = h.ims.ImportImage(ctx, p.system)
	}
	switch {
	case err == nil:
		ho := h.handoff(p, ref.JobID, "", batch, slot)
		return h.record(ctx, key, rev, importRecord{State: stateSubmitted, ClaimedAt: h.now(), Handoff: &ho})
	case imsapi.MaybeApplied(err):
		// IMS may have started the job: keep the claim and the slot; after
		// ClaimTTL the next attempt looks the image up before submitting.
		return nil, fmt.Errorf("submit %s (it may have been accepted): %w", p.name, err)
	case imsapi.IsRetryable(err):
		h.releaseSlot(ctx, slot)
		h.unclaim(ctx, key, rev)
		if errors.Is(err, imsapi.ErrThrottled) {
			d, ok := imsapi.RetryAfter(err)
			if !ok {
				d = h.cfg.ThrottleWait
			}
			return nil, runner.Delay(d, "IMS throttles: "+err.Error())
		}
		return nil, fmt.Errorf("submit %s: %w", p.name, err)
	default:
		h.releaseSlot(ctx, slot)
		code := ""
		if apiErr, ok := errors.AsType[*imsapi.APIError](err); ok {
			code = apiErr.Code
		}
		rej := h.rejected(p, "submit", events.ReasonIMSRefused, "IMS refused the import: "+err.Error(), code, batch)
		return h.record(ctx, key, rev, importRecord{State: stateRejected, ClaimedAt: h.now(), Rejected: &rej})
	}
}

// record stores the outcome and returns the event it implies. If the
// state cannot be written the message is retried: the next attempt finds
// the claim and looks the image up.
func (h *importer) record(ctx context.Context, key string, rev uint64, rec importRecord) ([]events.Event, error) {
	b, _ := json.Marshal(rec)
	if _, err := h.imports.Update(ctx, key, b, rev); err != nil {
		return nil, fmt.Errorf("record import state %s: %w", rec.State, err)
	}
	if rec.Handoff != nil {
		return []events.Event{*rec.Handoff}, nil
	}
	return []events.Event{*rec.Rejected}, nil
}

func (h *importer) claim() []byte {
	b, _ := json.Marshal(importRecord{State: stateClaimed, ClaimedAt: h.now()})
	return b
}

// unclaim drops a claim whose attempt certainly created nothing.
func (h *importer) unclaim(ctx context.Context, key string, rev uint64) {
	_ = h.imports.Delete(ctx, key, jetstream.LastRevision(rev))
}

// lookup finds the image an earlier attempt may have created, by its
// provenance tag.
func (h *importer) lookup(ctx context.Context, p plan) (*imsapi.Image, error) {
	page, err := h.ims.ListImages(ctx, &imsapi.ListImagesOptions{Tag: provenanceTag + "." + p.hash[:tagHashLen]})
	if err != nil {
		return nil, fmt.Errorf("look for an earlier import of %s: %w", p.name, err)
	}
	for i := range page.Images {
		if st := page.Images[i].Status; st != imsapi.ImageKilled && st != imsapi.ImageDeleted {
			return &page.Images[i], nil
		}
	}
	return nil, nil
}

func (h *importer) handoff(p plan, jobID, imageID, batch, slot string) events.JobSubmitted {
	src := p.source
	jobType := imsapi.JobTypeImportDataImage
	if p.imageType == events.ImageSystem {
		jobType = imsapi.JobTypeImportImage
	}
	return events.JobSubmitted{
		JobID: jobID, JobType: jobType, Kind: events.KindImport, Method: p.method, ImageID: imageID, ImageName: p.name,
		SubmittedAt: h.now().UTC(), BatchID: batch, ImageType: p.imageType, Source: &src, Slot: slot,
	}
}

func (h *importer) rejected(p plan, stage, code, reason, imsCode, batch string) events.Rejected {
	src := p.source
	return events.Rejected{Kind: events.KindImport, Stage: stage, ReasonCode: code, Reason: reason,
		Source: &src, ErrorCode: imsCode, BatchID: batch, At: h.now().UTC()}
}

// ---- in-flight slots ----------------------------------------------------

// acquireSlot takes one of MaxInFlight slots ("" when all are taken, or
// when there is no cap). Each slot is a key created only if absent, so
// two replicas never hold the same one; the poller deletes it when the
// job ends, and SlotTTL frees it if nobody does.
func (h *importer) acquireSlot(ctx context.Context, hash string) (string, error) {
	n := h.cfg.MaxInFlight
	if n <= 0 {
		return "", nil
	}
	start := int(hash[0]) % n // spread replicas over the slots
	for i := range n {
		name := fmt.Sprintf("slot.%04d", (start+i)%n)
		_, err := h.slots.Create(ctx, name, []byte(hash), jetstream.KeyTTL(h.cfg.SlotTTL))
		switch {
		case err == nil:
			return name, nil
		case errors.Is(err, jetstream.ErrKeyExists):
			continue
		default:
			return "", fmt.Errorf("take an in-flight slot: %w", err)
		}
	}
	return "", nil
}

func (h *importer) releaseSlot(ctx context.Context, slot string) {
	if slot != "" {
		_ = h.slots.Delete(ctx, slot)
	}
}

// ---- RAW bitmaps ----------------------------------------------------------

// bitmapKey is the bitmap's object key: the RAW key without extension, .mf.
func bitmapKey(rawKey string) string {
	for i := len(rawKey) - 1; i >= 0 && rawKey[i] != '/'; i-- {
		if rawKey[i] == '.' {
			return rawKey[:i] + ".mf"
		}
	}
	return rawKey + ".mf"
}

// companion is the KV key shared by a RAW file and its bitmap.
func companion(prefix, bucket, key string) string {
	return prefix + events.Hash(bucket+"\x00"+bitmapKey(key), 40)
}

func (h *importer) bitmapPresent(ctx context.Context, o events.ObjectCreated) (bool, error) {
	_, err := h.imports.Get(ctx, companion("mf.", o.Bucket, o.Key))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("look for the bitmap: %w", err)
}

// bitmapArrived records a bitmap and replays its RAW file's notification
// if the RAW file is waiting, so the order of the two uploads does not
// matter and the join is immediate.
func (h *importer) bitmapArrived(ctx context.Context, o events.ObjectCreated) error {
	if _, err := h.imports.Put(ctx, companion("mf.", o.Bucket, o.Key), []byte(o.Bucket+":"+o.Key)); err != nil {
		return fmt.Errorf("record the bitmap: %w", err)
	}
	waitKey := companion("wait.", o.Bucket, o.Key)
	entry, err := h.imports.Get(ctx, waitKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look for a waiting RAW file: %w", err)
	}
	var w waitRecord
	if err := json.Unmarshal(entry.Value(), &w); err != nil {
		return nil
	}
	id := fmt.Sprintf("rejoin:%s:%d", waitKey, entry.Revision())
	if _, err := h.js.Publish(ctx, subjectRejoin, w.Data, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("replay the waiting RAW file: %w", err)
	}
	zerolog.Ctx(ctx).Info().Str("key", o.Key).Msg("bitmap arrived: replaying its RAW file")
	return nil
}

func (h *importer) saveWait(ctx context.Context, o events.ObjectCreated, data []byte) error {
	b, _ := json.Marshal(waitRecord{Data: data})
	if _, err := h.imports.Put(ctx, companion("wait.", o.Bucket, o.Key), b); err != nil {
		return fmt.Errorf("record the RAW file's wait: %w", err)
	}
	return nil
}

func (h *importer) dropWait(ctx context.Context, o events.ObjectCreated) {
	_ = h.imports.Delete(ctx, companion("wait.", o.Bucket, o.Key))
}
