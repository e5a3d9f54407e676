package importer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/objstore"
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
	// HashBudget is how long one delivery reads an object to check its
	// checksum; HashLease, how long a reading is its attempt's (AckWait:
	// no delivery lasts longer); hashChunk, how much is read at a time.
	// ChecksumWait bounds how long an object whose rule requires a
	// checksum waits for its checksum file; ChecksumPoll is how often it
	// looks again meanwhile (verify.go).
	HashBudget, HashLease      time.Duration
	hashChunk                  int
	ChecksumWait, ChecksumPoll time.Duration
}

// importer handles object-created notifications.
type importer struct {
	cfg     handlerConfig
	ims     imsAPI
	ledger  *ledger.Ledger     // BucketImports: one record per object version
	imports jetstream.KeyValue // BucketImports: bitmaps and waiting RAW files too
	slots   jetstream.KeyValue // BucketSlots
	js      jetstream.JetStream
	objects objectStore // nil without bucket access
	now     func() time.Time
	hashed  prometheus.Counter // bytes read to check checksums
	// fullUntil: every slot was taken at this moment's last look (unix
	// nanoseconds); until then an import waits without asking again, so a
	// backlog of waiting imports does not scan the bucket on every delivery.
	fullUntil atomic.Int64
}

// waitRecord is a RAW file waiting for its bitmap (or an object for its
// checksum file): its notification, so that the companion's arrival can
// replay it at once, and when imsflow first saw it, which starts the wait
// (never the sender's clock).
type waitRecord struct {
	Data      []byte    `json:"data"`
	FirstSeen time.Time `json:"first_seen"`
}

// Subjects on which the import function passes messages to itself: a
// waiting RAW file's notification replayed, and each record of a
// notification that carried several.
const (
	subjectRejoin = runner.SubjectRejoin
	subjectSplit  = runner.SubjectSplit
)

// handle processes one notification message. A notification of several
// records is split first, one message per record, so that each is
// handled, retried and answered on its own.
func (h *importer) handle(ctx context.Context, m runner.Msg) ([]events.Event, error) {
	records, skipped, err := events.SplitObjectEvents(m.Data)
	if err != nil {
		input := string(m.Data[:min(len(m.Data), 1024)])
		rej := events.Rejected{Kind: events.KindImport, Stage: "decode", ReasonCode: events.ReasonUndecodable,
			Reason: err.Error(), Input: input, At: h.now().UTC()}
		return []events.Event{rej}, runner.Term(err.Error())
	}
	if len(skipped) > 0 {
		zerolog.Ctx(ctx).Debug().Strs("skipped", skipped).Msg("events other than object-created")
	}
	switch len(records) {
	case 0:
		return nil, nil
	case 1:
		evs, err := h.object(ctx, m, records[0].ObjectCreated)
		if err == nil && len(evs) == 1 {
			if r, ok := evs[0].(events.Rejected); ok {
				return evs, runner.Term(r.Reason)
			}
		}
		return evs, err
	}
	return nil, h.split(ctx, records)
}

// split passes each record on as a message of its own, with an ID built
// on the record, so that a split repeated after a crash stores nothing
// twice. The publishes are asynchronous and all confirmed before the
// notification is acknowledged.
func (h *importer) split(ctx context.Context, records []events.ObjectRecord) error {
	acks := make([]jetstream.PubAckFuture, 0, len(records))
	for _, r := range records {
		msg := &nats.Msg{Subject: subjectSplit, Data: r.Body, Header: nats.Header{}}
		f, err := h.js.PublishMsgAsync(msg, jetstream.WithMsgID("split:"+r.RecordID()))
		if err != nil {
			return fmt.Errorf("split a notification of %d records: %w", len(records), err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("split a notification of %d records: %w", len(records), err)
		case <-ctx.Done():
			return fmt.Errorf("split a notification of %d records: %w", len(records), ctx.Err())
		}
	}
	zerolog.Ctx(ctx).Info().Int("records", len(records)).Msg("notification split, one message per record")
	return nil
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
	case actChecksum:
		log.Debug().Msg("checksum file: not imported")
		return nil, h.checksumArrived(ctx, o)
	case actReject:
		return []events.Event{h.rejected(p, "route", p.reasonCode, p.reason, "", batch)}, nil
	}

	key := "v." + p.hash[:tagHashLen]
	var e ledger.Entry
	var err error
	verifies := h.verifies(p)
	if m.Delivery <= 1 && !p.needsBitmap && !verifies {
		// A first delivery is almost always a version never seen: claim it
		// without reading first, one round trip fewer. If a record exists
		// after all (a notification sent twice), Create fails and what it
		// found is judged as Open would have.
		evs, found, ferr := h.submitFresh(ctx, p, key, batch)
		if found == nil {
			return evs, ferr
		}
		e, err = h.ledger.Assess(*found)
	} else {
		e, err = h.ledger.Open(ctx, key)
	}
	switch {
	case err != nil:
		return nil, err
	case e.Record.Final():
		// Already imported or refused: repeat its event (its ID makes it a
		// no-op if it was published before).
		return []events.Event{e.Record.Event()}, nil
	case e.Takeover():
		return h.takeover(ctx, p, e, batch)
	}
	hashed := false
	if verifies {
		// Before the claim: a version refused here is not recorded, so that
		// it is judged again once the object or its checksum is put right.
		var evs []events.Event
		if evs, hashed, err = h.verify(ctx, m, o, p, batch); err != nil || len(evs) > 0 {
			return evs, err
		}
	}
	if p.needsBitmap {
		next, waiting, err := h.awaitBitmap(ctx, m, o, p, batch)
		if err != nil || next == nil {
			return waiting, err
		}
		p = *next
	}
	evs, err := h.submit(ctx, p, e, batch)
	if hashed && err == nil {
		h.dropSum(ctx, o) // the ledger answers from now on
	}
	return evs, err
}

// takeover handles an attempt that died or hangs holding the claim: it
// may have got as far as IMS, so look for its image before submitting.
func (h *importer) takeover(ctx context.Context, p plan, e ledger.Entry, batch string) ([]events.Event, error) {
	slot, err := h.keepSlot(ctx, e)
	if err != nil {
		return nil, err
	}
	if err := h.ledger.Claim(ctx, &e, slot); err != nil {
		h.releaseUnclaimed(ctx, e.Key, slot)
		return nil, err
	}
	im, err := h.lookup(ctx, p)
	if err != nil {
		return nil, err
	}
	if im == nil {
		return h.submitClaimed(ctx, p, e, batch)
	}
	zerolog.Ctx(ctx).Info().Str("image_id", im.ID).Msg("found the import of an earlier attempt")
	ho := h.handoff(p, "", im.ID, batch, e.Record.HeldSlot())
	return h.ledger.Settle(ctx, e, ledger.Record{State: ledger.Submitted, ClaimedAt: h.now(), Slot: ho.Slot, SlotRev: ho.SlotRev, Handoff: &ho})
}

// submit takes an in-flight slot, claims the object version holding it,
// and submits. With no slot free it waits unclaimed.
func (h *importer) submit(ctx context.Context, p plan, e ledger.Entry, batch string) ([]events.Event, error) {
	slot, err := h.acquireSlot(ctx, e.Key)
	if err != nil {
		return nil, err
	}
	if slot.Name == "" && h.cfg.MaxInFlight > 0 {
		return nil, runner.Delay(h.cfg.SlotWait, fmt.Sprintf("%d IMS image-creation jobs in flight", h.cfg.MaxInFlight))
	}
	if err := h.ledger.Claim(ctx, &e, slot); err != nil {
		h.releaseUnclaimed(ctx, e.Key, slot)
		return nil, err
	}
	return h.submitClaimed(ctx, p, e, batch)
}

// submitFresh claims key as fresh and submits. If the record exists it
// returns it, as read, for the caller to judge, having freed the slot it
// took unless that record holds it.
func (h *importer) submitFresh(ctx context.Context, p plan, key, batch string) ([]events.Event, *ledger.Entry, error) {
	slot, err := h.acquireSlot(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	if slot.Name == "" && h.cfg.MaxInFlight > 0 {
		return nil, nil, runner.Delay(h.cfg.SlotWait, fmt.Sprintf("%d IMS image-creation jobs in flight", h.cfg.MaxInFlight))
	}
	e := ledger.Entry{Key: key}
	err = h.ledger.Claim(ctx, &e, slot)
	if err == nil {
		evs, err := h.submitClaimed(ctx, p, e, batch)
		return evs, nil, err
	}
	if !ledger.LostRace(err) {
		h.releaseUnclaimed(ctx, key, slot)
		return nil, nil, err
	}
	found, rerr := h.ledger.Read(ctx, key)
	if rerr != nil {
		h.releaseSlot(ctx, slot)
		return nil, nil, rerr
	}
	if !found.Record.Holds(slot) {
		h.releaseSlot(ctx, slot)
	}
	return nil, &found, nil
}

// submitClaimed submits the import under a claim that holds its slot.
func (h *importer) submitClaimed(ctx context.Context, p plan, e ledger.Entry, batch string) ([]events.Event, error) {
	slot := e.Record.HeldSlot()
	var ref *imsapi.JobRef
	var err error
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
		return h.ledger.Settle(ctx, e, ledger.Record{State: ledger.Submitted, ClaimedAt: h.now(), Slot: slot.Name, SlotRev: slot.Rev, Handoff: &ho})
	case imsapi.MaybeApplied(err):
		// IMS may have started the job: keep the claim and the slot; after
		// the claim's TTL the next attempt looks the image up first.
		return nil, fmt.Errorf("submit %s (it may have been accepted): %w", p.name, err)
	case imsapi.IsRetryable(err):
		h.ledger.Abandon(ctx, e)
		h.releaseSlot(ctx, slot)
		if d, ok := imsapi.ThrottleDelay(err, h.cfg.ThrottleWait); ok {
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
		return h.ledger.Settle(ctx, e, ledger.Record{State: ledger.Rejected, ClaimedAt: h.now(), Rejected: &rej})
	}
}

// lookup finds the image an earlier attempt may have created, by its
// provenance tag: one that lives if there is one, else one whose job
// failed (killed) or that was deleted. A failed one counts: the object
// version had its IMS job, and the poller reports how it ended; a second
// job for the same version is never submitted.
func (h *importer) lookup(ctx context.Context, p plan) (*imsapi.Image, error) {
	page, err := h.ims.ListImages(ctx, &imsapi.ListImagesOptions{Tag: provenanceTag + "." + p.hash[:tagHashLen]})
	if err != nil {
		return nil, fmt.Errorf("look for an earlier import of %s: %w", p.name, err)
	}
	var ended *imsapi.Image
	for i := range page.Images {
		switch page.Images[i].Status {
		case imsapi.ImageKilled, imsapi.ImageDeleted:
			ended = cmp.Or(ended, &page.Images[i])
		default:
			return &page.Images[i], nil
		}
	}
	return ended, nil
}

func (h *importer) handoff(p plan, jobID, imageID, batch string, slot ledger.Slot) events.JobSubmitted {
	src := p.source
	jobType := imsapi.JobTypeImportDataImage
	if p.imageType == events.ImageSystem {
		jobType = imsapi.JobTypeImportImage
	}
	return events.JobSubmitted{
		JobID: jobID, JobType: jobType, Kind: events.KindImport, Method: p.method, ImageID: imageID, ImageName: p.name,
		SubmittedAt: h.now().UTC(), BatchID: batch, ImageType: p.imageType, Source: &src, Slot: slot.Name, SlotRev: slot.Rev,
		Rule: p.rule.Label(),
	}
}

func (h *importer) rejected(p plan, stage, code, reason, imsCode, batch string) events.Rejected {
	src := p.source
	return events.Rejected{Kind: events.KindImport, Stage: stage, ReasonCode: code, Reason: reason,
		Source: &src, ErrorCode: imsCode, BatchID: batch, At: h.now().UTC()}
}

// ---- in-flight slots ----------------------------------------------------

// acquireSlot takes one of MaxInFlight slots for owner, the key of the
// object version's record (none when all are taken, or when there is no
// cap). Each slot is a key created only if absent, so two replicas never
// hold the same one. The poller deletes it when the job ends; its sweep
// frees a slot whose owner does not hold it (a replica died between taking
// it and claiming), and SlotTTL is the last resort.
func (h *importer) acquireSlot(ctx context.Context, owner string) (ledger.Slot, error) {
	n := h.cfg.MaxInFlight
	if n <= 0 {
		return ledger.Slot{}, nil
	}
	now := h.now()
	if now.UnixNano() < h.fullUntil.Load() {
		return ledger.Slot{}, nil
	}
	first, _ := strconv.ParseUint(events.Hash(owner, 8), 16, 32)
	start := int(first % uint64(n)) // spread imports over the slots
	for i := range n {
		name := fmt.Sprintf("slot.%04d", (start+i)%n)
		rev, err := h.slots.Create(ctx, name, []byte(owner), jetstream.KeyTTL(h.cfg.SlotTTL))
		switch {
		case err == nil:
			return ledger.Slot{Name: name, Rev: rev}, nil
		case ledger.Conflict(err):
			// Taken; perhaps by this very object version, in an attempt
			// whose Create took effect but whose answer was lost (a leader
			// election): then it is this attempt's to use.
			if e, gerr := h.slots.Get(ctx, name); gerr == nil && string(e.Value()) == owner {
				return ledger.Slot{Name: name, Rev: e.Revision()}, nil
			}
			continue
		default:
			return ledger.Slot{}, fmt.Errorf("take an in-flight slot: %w", err)
		}
	}
	h.fullUntil.Store(now.Add(fullRecheck).UnixNano())
	return ledger.Slot{}, nil
}

// fullRecheck is how long a process trusts that every slot is taken.
const fullRecheck = time.Second

// keepSlot is the slot a takeover holds: the expired claim's own, if it
// still has it, else a new one. With none free the takeover waits.
func (h *importer) keepSlot(ctx context.Context, e ledger.Entry) (ledger.Slot, error) {
	if name := e.Record.Slot; name != "" {
		s, err := h.slots.Get(ctx, name)
		if err == nil && string(s.Value()) == e.Key {
			return ledger.Slot{Name: name, Rev: s.Revision()}, nil
		}
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return ledger.Slot{}, fmt.Errorf("read in-flight slot %s: %w", name, err)
		}
	}
	slot, err := h.acquireSlot(ctx, e.Key)
	if err == nil && slot.Name == "" && h.cfg.MaxInFlight > 0 {
		err = runner.Delay(h.cfg.SlotWait, fmt.Sprintf("%d IMS image-creation jobs in flight", h.cfg.MaxInFlight))
	}
	return slot, err
}

// releaseSlot frees a slot this attempt took, that holding of it and no
// later one. It does so even when the attempt's own time is up (a claim
// that timed out in a leader election): a slot left behind would wait for
// the sweep.
func (h *importer) releaseSlot(ctx context.Context, slot ledger.Slot) {
	if slot.Name == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	var opts []jetstream.KVDeleteOpt
	if slot.Rev != 0 {
		opts = append(opts, jetstream.LastRevision(slot.Rev))
	}
	_ = h.slots.Delete(ctx, slot.Name, opts...)
}

// releaseUnclaimed frees a slot after this attempt failed to claim key
// with it, unless the claim that won holds that very holding of it (two
// attempts at one object version can both find the slot their owner
// took). The revision matters: the winner's job may have ended and freed
// the slot, and this attempt taken it again under the same name.
func (h *importer) releaseUnclaimed(ctx context.Context, key string, slot ledger.Slot) {
	if slot.Name == "" {
		return
	}
	if e, err := h.ledger.Read(ctx, key); err == nil && e.Record.Holds(slot) {
		return
	}
	h.releaseSlot(ctx, slot)
}

// releaseTimeout bounds the release of a slot after the attempt's time.
const releaseTimeout = 5 * time.Second

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

// awaitBitmap decides what a RAW file without a known bitmap does: the
// plan to submit (quick, or the normal import it falls back to), or no
// plan and what to say meanwhile (a waiting event and a planned wait, or
// the rejection). The wait runs from when imsflow first saw the file,
// recorded durably, never from the notification's own time: a backlog or
// a replay waits as long as a fresh upload, and a sender's clock does not
// matter. With bucket access the bucket is asked too.
func (h *importer) awaitBitmap(ctx context.Context, m runner.Msg, o events.ObjectCreated, p plan, batch string) (*plan, []events.Event, error) {
	ok, err := h.bitmapPresent(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	if ok {
		h.dropWait(ctx, o)
		return &p, nil, nil
	}
	w, created, err := h.saveWait(ctx, o, m.Data)
	if err != nil {
		return nil, nil, err
	}
	until := w.FirstSeen.Add(h.cfg.BitmapWait)
	if left := until.Sub(h.now()); left > 0 {
		var evs []events.Event
		if created {
			src := p.source
			evs = append(evs, events.Waiting{Kind: events.KindImport, Source: &src, Missing: bitmapKey(o.Key),
				Reason: fmt.Sprintf("a RAW file is quick-imported with its bitmap %s; waiting for it until %s", bitmapKey(o.Key), until.UTC().Format(time.RFC3339)),
				Since:  w.FirstSeen.UTC(), Until: until.UTC(), BatchID: batch})
		}
		return nil, evs, runner.Delay(min(left, h.cfg.BitmapPoll), "waiting for the RAW file's bitmap "+bitmapKey(o.Key))
	}
	h.dropWait(ctx, o)
	where := "no notification of it arrived"
	if h.objects != nil {
		where = "it is not in bucket " + o.Bucket
	}
	if p.fallback == nil {
		rej := h.rejected(p, "route", events.ReasonMissingBitmap, fmt.Sprintf("the RAW file's bitmap %s is missing (%s) %s after imsflow first saw the file at %s, and above 128 GB only quick import works: upload the bitmap (CreateMF.jar), then the RAW file again",
			bitmapKey(o.Key), where, h.cfg.BitmapWait, w.FirstSeen.UTC().Format(time.RFC3339)), "", batch)
		return nil, []events.Event{rej}, nil
	}
	zerolog.Ctx(ctx).Info().Str("key", o.Key).Str("first_seen", w.FirstSeen.UTC().Format(time.RFC3339)).Msg("no bitmap in time: normal import instead")
	return p.fallback, nil, nil
}

// bitmapPresent reports whether a RAW file's bitmap is known: from its
// own notification, or, with bucket access, from the bucket itself.
func (h *importer) bitmapPresent(ctx context.Context, o events.ObjectCreated) (bool, error) {
	_, err := h.imports.Get(ctx, companion("mf.", o.Bucket, o.Key))
	switch {
	case err == nil:
		return true, nil
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return false, fmt.Errorf("look for the bitmap: %w", err)
	case h.objects == nil:
		return false, nil
	}
	_, err = h.objects.Head(ctx, o.Bucket, bitmapKey(o.Key))
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look for the bitmap in the bucket: %w", err)
	}
	if _, err := h.imports.Put(ctx, companion("mf.", o.Bucket, o.Key), []byte(o.Bucket+":"+bitmapKey(o.Key))); err != nil {
		return false, fmt.Errorf("record the bitmap: %w", err)
	}
	return true, nil
}

// bitmapArrived records a bitmap and replays its RAW file's notification
// if the RAW file is waiting, so the order of the two uploads does not
// matter and the join is immediate.
func (h *importer) bitmapArrived(ctx context.Context, o events.ObjectCreated) error {
	if _, err := h.imports.Put(ctx, companion("mf.", o.Bucket, o.Key), []byte(o.Bucket+":"+o.Key)); err != nil {
		return fmt.Errorf("record the bitmap: %w", err)
	}
	return h.replayWait(ctx, companion("wait.", o.Bucket, o.Key), "the waiting RAW file")
}

// replayWait publishes again the notification of what waits under
// waitKey (what it is), if anything does, under an ID of the wait's
// revision so that a repeated replay stores nothing twice.
func (h *importer) replayWait(ctx context.Context, waitKey, what string) error {
	entry, err := h.imports.Get(ctx, waitKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look for %s: %w", what, err)
	}
	var w waitRecord
	if err := json.Unmarshal(entry.Value(), &w); err != nil {
		return nil
	}
	id := fmt.Sprintf("rejoin:%s:%d", waitKey, entry.Revision())
	if _, err := h.js.Publish(ctx, subjectRejoin, w.Data, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("replay %s: %w", what, err)
	}
	zerolog.Ctx(ctx).Info().Str("wait", waitKey).Msg("companion arrived: replaying " + what)
	return nil
}

// saveWait records a RAW file's wait the first time it is seen and
// returns the record, new or as first saved.
func (h *importer) saveWait(ctx context.Context, o events.ObjectCreated, data []byte) (w waitRecord, created bool, err error) {
	return h.saveWaitAt(ctx, companion("wait.", o.Bucket, o.Key), data, "the RAW file's wait")
}

// saveWaitAt records a wait (what it is) under key the first time it is
// seen and returns the record, new or as first saved.
func (h *importer) saveWaitAt(ctx context.Context, key string, data []byte, what string) (w waitRecord, created bool, err error) {
	w = waitRecord{Data: data, FirstSeen: h.now()}
	b, _ := json.Marshal(w)
	_, err = h.imports.Create(ctx, key, b)
	if err == nil {
		return w, true, nil
	}
	if !ledger.Conflict(err) {
		return w, false, fmt.Errorf("record %s: %w", what, err)
	}
	entry, err := h.imports.Get(ctx, key)
	if err != nil {
		return w, false, fmt.Errorf("read %s: %w", what, err)
	}
	if err := json.Unmarshal(entry.Value(), &w); err != nil || w.FirstSeen.IsZero() {
		// A record of an older version without its first sighting: start now.
		w = waitRecord{Data: data, FirstSeen: h.now()}
	}
	return w, false, nil
}

func (h *importer) dropWait(ctx context.Context, o events.ObjectCreated) {
	_ = h.imports.Delete(ctx, companion("wait.", o.Bucket, o.Key))
}
