package importer

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/pkg/events"
)

// Verification before import: what can be known of an object is checked
// before IMS is called, and a failed check is a rejected event (stage
// "verify") that names the rule which asked for it and says what to do.
// Format and virtual size are sniff.go's; the RAW bitmap is handler.go's.
//
//	check          needs                   refused as
//	storage class  bucket access           storage_class: IMS imports only Standard objects
//	checksum       bucket access and a     checksum_mismatch, checksum_invalid,
//	               checksum file or        checksum_missing (required, none in time)
//	               metadata sha256
//
// A checksum is checked by reading the whole object, up to 1 TB: far
// longer than a delivery may last. So one delivery reads for at most
// HashBudget, saves the running SHA-256 state (crypto/sha256's digest is
// an encoding.BinaryMarshaler) with the offset, size and ETag in
// imsflow_imports under sum.<hash>, and asks for the message again at
// once (runner.Delay); the next delivery, on any replica, goes on from
// there. A lease in the record keeps two deliveries of one object from
// reading it twice over; a crashed reader's lease ends after AckWait and
// the next one resumes from the last save. A changed ETag or size starts
// again. The finished digest is kept, so a redelivery or a duplicate
// notification compares without reading again, until the import is
// submitted (then the ledger answers repeats) or the object changes.

// Verify is what a rule has checked of an object before IMS is called,
// the rule's "verify" field:
//
//	"verify": {"checksum": "off" | "if_present" | "required", "storage_class": true}
//
// Both checks need bucket access (S3_*): without it nothing is verified,
// and a rule that requires a checksum stops the function at start.
type Verify struct {
	// Checksum compares the object's SHA-256 with the one its uploader
	// gave: in a checksum file <key>.sha256, as sha256sum writes it, or in
	// the user metadata sha256 (x-amz-meta-sha256, x-obs-meta-sha256).
	//
	//   - if_present (the default): check what is there when the import is
	//     handled; an object without a checksum imports as before;
	//   - required: also wait for the checksum file, as a RAW file waits
	//     for its bitmap (IMPORT_CHECKSUM_WAIT from when imsflow first saw
	//     the object), then refuse the object (checksum_missing);
	//   - off: never read the object whole.
	//
	// The default is if_present so that nobody who gives no checksum loses
	// anything (no import waits, no object is read whole: reading costs
	// bucket traffic and, for a large file, minutes), while whoever already
	// uploads sha256sum's file or sets the metadata is checked at once.
	Checksum string `json:"checksum,omitempty"`
	// StorageClass refuses an object outside the Standard storage class
	// (storage_class); true when not given. It costs one HEAD, and refuses
	// before IMS what IMS would refuse after taking a job slot.
	StorageClass *bool `json:"storage_class,omitempty"`
}

// Checksum modes (Verify.Checksum).
const (
	ChecksumOff       = "off"
	ChecksumIfPresent = "if_present"
	ChecksumRequired  = "required"
)

// ChecksumSuffix makes the key of an object's checksum file: <key>.sha256.
const ChecksumSuffix = ".sha256"

// MetaSHA256 is the user metadata that can carry an object's SHA-256 (hex).
const MetaSHA256 = "sha256"

func (v Verify) checksum() string { return cmp.Or(v.Checksum, ChecksumIfPresent) }

func (v Verify) storageClass() bool { return v.StorageClass == nil || *v.StorageClass }

func (v Verify) check() error {
	switch v.Checksum {
	case "", ChecksumOff, ChecksumIfPresent, ChecksumRequired:
		return nil
	}
	return fmt.Errorf("checksum %q: want off, if_present or required", v.Checksum)
}

// checksumRequired returns the labels of the rules that require checksums.
func (rs Rules) checksumRequired() []string {
	var out []string
	for _, r := range rs.Rules {
		if r.Verify.checksum() == ChecksumRequired {
			out = append(out, r.Label())
		}
	}
	return out
}

// Keys in imsflow_imports, one per bucket and object key: sum.<hash> is
// the reading of an object's SHA-256 (a hashRecord); sumwait.<hash>, an
// object waiting for its checksum file (a waitRecord).
func sumKey(bucket, key string) string     { return "sum." + events.Hash(bucket+"\x00"+key, 40) }
func sumWaitKey(bucket, key string) string { return "sumwait." + events.Hash(bucket+"\x00"+key, 40) }

// hashRecord is how far the reading of an object's SHA-256 has got.
type hashRecord struct {
	// ETag and Size are the object's when the reading started; another
	// ETag or size starts it again.
	ETag string `json:"etag"`
	Size int64  `json:"size"`
	// Offset bytes are read; State is the SHA-256 state after them
	// (encoding.BinaryMarshaler).
	Offset int64  `json:"offset"`
	State  []byte `json:"state,omitempty"`
	// Sum is the hex SHA-256 of the whole object, once read.
	Sum string `json:"sum,omitempty"`
	// Lease: an attempt is reading until then; others wait.
	Lease   time.Time `json:"lease,omitzero"`
	Started time.Time `json:"started"`
}

// Reading pace.
const (
	// hashPause is the wait between two deliveries' readings of an object:
	// short, it only lets other messages have the worker.
	hashPause = 100 * time.Millisecond
	// leaseRecheck is how soon an attempt that found another reading looks
	// again.
	leaseRecheck = time.Second
	// defaultHashChunk is how much is read at a time (and at least per
	// delivery).
	defaultHashChunk = 1 << 20
	// readGrace is how long a read under way may run past the budget.
	readGrace = 5 * time.Second
	// maxChecksumFile is how much of a checksum file is read.
	maxChecksumFile = 64 << 10
	// maxKeyLength is the longest object key S3 and OBS take: a key
	// longer than that with .sha256 added has no checksum file.
	maxKeyLength = 1024
)

// givenSum is a checksum an object's uploader gave, and where.
type givenSum struct{ sum, from string }

// verifies reports whether the import of p checks anything first: with
// bucket access, unless its rule turns every check off.
func (h *importer) verifies(p plan) bool {
	return h.objects != nil && (p.rule.Verify.storageClass() || p.rule.Verify.checksum() != ChecksumOff)
}

// verify checks the object of p as its rule asks, before any IMS call:
// its storage class, then its SHA-256 against the checksums given. It
// returns no events and no error when the import may go on (hashed: a
// checksum was read, whose record the caller drops once the import is
// done); a rejected event when it may not; or a runner.Delay, with a
// waiting event the first time, while a required checksum file has not
// come, or while the reading of the object goes on in later deliveries.
func (h *importer) verify(ctx context.Context, m runner.Msg, o events.ObjectCreated, p plan, batch string) ([]events.Event, bool, error) {
	v, rule := p.rule.Verify, p.rule.Label()
	refuse := func(code, reason string) ([]events.Event, bool, error) {
		return []events.Event{h.rejected(p, "verify", code, reason, "", batch)}, false, nil
	}
	obj, err := h.objects.Head(ctx, o.Bucket, o.Key)
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		h.forgetSum(ctx, o)
		return refuse(events.ReasonObjectMissing, fmt.Sprintf("%s:%s is no longer in the bucket; upload it again", o.Bucket, o.Key))
	case err != nil:
		return nil, false, fmt.Errorf("look up %s:%s: %w", o.Bucket, o.Key, err)
	}
	if v.storageClass() && !standardClass(obj.StorageClass) {
		return refuse(events.ReasonStorageClass, fmt.Sprintf(
			"%s:%s is in storage class %s, and IMS imports only objects of the Standard class (rule %s checks it): restore the object if it is archived, change its storage class to Standard, then send it again (imsflow bulk import s3://%s/%s)",
			o.Bucket, o.Key, obj.StorageClass, rule, o.Bucket, o.Key))
	}
	mode := v.checksum()
	if mode == ChecksumOff {
		return nil, false, nil
	}
	given, why, err := h.givenSums(ctx, o, obj)
	switch {
	case err != nil:
		return nil, false, err
	case why != "":
		return refuse(events.ReasonChecksumInvalid, why+fmt.Sprintf(" (rule %s checks checksums): write it as sha256sum does (64 hex digits, then the file's name), then send the image again", rule))
	case len(given) == 0 && mode == ChecksumRequired:
		evs, err := h.awaitChecksum(ctx, m, o, p, batch)
		return evs, false, err
	case len(given) == 0:
		return nil, false, nil
	}
	if mode == ChecksumRequired {
		h.dropSumWait(ctx, o)
	}
	sum, err := h.hashObject(ctx, obj)
	if err != nil {
		return nil, false, err
	}
	for _, g := range given {
		if g.sum != sum {
			return refuse(events.ReasonChecksumMismatch, fmt.Sprintf(
				"the SHA-256 of %s:%s (%d bytes, ETag %s) is %s, but %s gives %s (rule %s checks checksums): the file was damaged or changed on its way, or the checksum is another file's; upload the file again (and its checksum), then send it again",
				o.Bucket, o.Key, obj.Size, obj.ETag, sum, g.from, g.sum, rule))
		}
	}
	zerolog.Ctx(ctx).Info().Str("key", o.Key).Str("sha256", sum).Msg("checksum verified")
	return nil, true, nil
}

// standardClass reports whether an object's storage class is Standard:
// OBS's STANDARD, S3's STANDARD, or none said (S3 says none for Standard).
func standardClass(c string) bool { return c == "" || strings.EqualFold(c, "STANDARD") }

// givenSums returns the checksums given for the object: its checksum
// file's and its metadata's. why is set when one of them is no SHA-256.
func (h *importer) givenSums(ctx context.Context, o events.ObjectCreated, obj objstore.Object) (given []givenSum, why string, err error) {
	file := o.Key + ChecksumSuffix
	r, err := io.ReadCloser(nil), objstore.ErrNotFound
	if len(file) <= maxKeyLength {
		r, err = h.objects.Open(ctx, o.Bucket, file, 0, "")
	}
	switch {
	case errors.Is(err, objstore.ErrNotFound):
	case err != nil:
		return nil, "", fmt.Errorf("read the checksum file %s:%s: %w", o.Bucket, file, err)
	default:
		b, err := io.ReadAll(io.LimitReader(r, maxChecksumFile))
		r.Close()
		if err != nil {
			return nil, "", fmt.Errorf("read the checksum file %s:%s: %w", o.Bucket, file, err)
		}
		sum, bad := parseChecksumFile(b, path.Base(o.Key))
		if bad != "" {
			return nil, fmt.Sprintf("the checksum file %s:%s %s", o.Bucket, file, bad), nil
		}
		given = append(given, givenSum{sum: sum, from: "the checksum file " + file})
	}
	if v := strings.TrimSpace(obj.Metadata[MetaSHA256]); v != "" {
		sum, ok := parseSum(v)
		if !ok {
			return nil, fmt.Sprintf("the metadata %s=%q of %s:%s is no SHA-256", MetaSHA256, v, o.Bucket, o.Key), nil
		}
		given = append(given, givenSum{sum: sum, from: "the metadata " + MetaSHA256})
	}
	return given, "", nil
}

// parseSum reads a SHA-256 written as 64 hex digits (either case) or as
// the base64 of its 32 bytes (as S3's x-amz-checksum-sha256), and returns
// it in lower-case hex.
func parseSum(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == sha256.Size {
		return hex.EncodeToString(b), true
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == sha256.Size {
		return hex.EncodeToString(b), true
	}
	return "", false
}

// parseChecksumFile finds the SHA-256 a checksum file gives for the file
// name: the digest of its only line, or of the line naming name, in
// sha256sum's format ("<hex>  <name>", "<hex> *<name>", or the digest
// alone) or BSD's ("SHA256 (<name>) = <hex>"). bad says what is wrong
// with a file it cannot use.
func parseChecksumFile(b []byte, name string) (sum, bad string) {
	type entry struct{ sum, name string }
	var entries []entry
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "SHA256 ("); ok {
			n, s, ok := strings.Cut(rest, ") = ")
			if !ok {
				return "", "is not in the format of sha256sum"
			}
			entries = append(entries, entry{sum: s, name: n})
			continue
		}
		// sha256sum starts a line with \ when it escaped the name.
		s, n, _ := strings.Cut(strings.TrimPrefix(line, `\`), " ")
		entries = append(entries, entry{sum: s, name: strings.TrimPrefix(strings.TrimSpace(n), "*")})
	}
	var e entry
	switch len(entries) {
	case 0:
		return "", "is empty"
	case 1:
		e = entries[0]
	default:
		found := false
		for _, c := range entries {
			if c.name != "" && path.Base(c.name) == name {
				e, found = c, true
				break
			}
		}
		if !found {
			return "", fmt.Sprintf("lists %d files, none named %s", len(entries), name)
		}
	}
	sum, ok := parseSum(e.sum)
	if !ok {
		return "", fmt.Sprintf("does not give a SHA-256 (64 hex digits) but %q", truncate(e.sum, 80))
	}
	return sum, ""
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
}

// awaitChecksum makes an object whose rule requires a checksum wait for
// its checksum file, as a RAW file waits for its bitmap: from when imsflow
// first saw it, recorded durably with its notification so that the
// file's own notification replays it at once (checksumArrived), for
// ChecksumWait; then it is refused.
func (h *importer) awaitChecksum(ctx context.Context, m runner.Msg, o events.ObjectCreated, p plan, batch string) ([]events.Event, error) {
	file := o.Key + ChecksumSuffix
	w, created, err := h.saveWaitAt(ctx, sumWaitKey(o.Bucket, o.Key), m.Data, "the wait for the checksum file")
	if err != nil {
		return nil, err
	}
	until := w.FirstSeen.Add(h.cfg.ChecksumWait)
	if left := until.Sub(h.now()); left > 0 {
		var evs []events.Event
		if created {
			src := p.source
			evs = append(evs, events.Waiting{Kind: events.KindImport, Source: &src, Missing: file,
				Reason: fmt.Sprintf("rule %s requires a SHA-256 checksum: waiting for the checksum file %s (or metadata %s) until %s",
					p.rule.Label(), file, MetaSHA256, until.UTC().Format(time.RFC3339)),
				Since: w.FirstSeen.UTC(), Until: until.UTC(), BatchID: batch})
		}
		return evs, runner.Delay(min(left, h.cfg.ChecksumPoll), "waiting for the checksum file "+file)
	}
	h.dropSumWait(ctx, o)
	rej := h.rejected(p, "verify", events.ReasonChecksumMissing, fmt.Sprintf(
		"rule %s requires a SHA-256 checksum, and %s:%s had none %s after imsflow first saw it at %s: neither a checksum file %s nor the metadata %s; upload the checksum file (sha256sum %s > %s), then the image again",
		p.rule.Label(), o.Bucket, o.Key, h.cfg.ChecksumWait, w.FirstSeen.UTC().Format(time.RFC3339), file, MetaSHA256, path.Base(o.Key), path.Base(file)), "", batch)
	return []events.Event{rej}, nil
}

// checksumArrived handles a checksum file's own notification: the file is
// not imported, and an object waiting for it is replayed at once, so
// that the order of the two uploads does not matter.
func (h *importer) checksumArrived(ctx context.Context, o events.ObjectCreated) error {
	image := strings.TrimSuffix(o.Key, path.Ext(o.Key))
	return h.replayWait(ctx, sumWaitKey(o.Bucket, image), "the object waiting for its checksum file")
}

// hashObject returns the hex SHA-256 of obj once it is known. Until then
// it reads on from where the last delivery stopped, for at most
// HashBudget, saves how far it got, and returns a short runner.Delay.
func (h *importer) hashObject(ctx context.Context, obj objstore.Object) (string, error) {
	key := sumKey(obj.Bucket, obj.Key)
	rec, rev, err := h.readHash(ctx, key)
	if err != nil {
		return "", err
	}
	if rec.ETag != obj.ETag || rec.Size != obj.Size {
		// Never read, or another version: start again.
		rec = hashRecord{ETag: obj.ETag, Size: obj.Size}
	}
	if rec.Sum != "" {
		return rec.Sum, nil
	}
	now := h.now()
	if rec.Lease.After(now) {
		return "", runner.Delay(min(rec.Lease.Sub(now), leaseRecheck), "another attempt is reading "+obj.Bucket+":"+obj.Key+" to check its checksum")
	}
	if rec.Offset == 0 {
		rec.Started = now
	}
	rec.Lease = now.Add(h.cfg.HashLease)
	if rev, err = h.writeHash(ctx, key, rec, rev); err != nil {
		if ledger.Conflict(err) {
			return "", runner.Delay(leaseRecheck, "another attempt is reading "+obj.Bucket+":"+obj.Key+" to check its checksum")
		}
		return "", err
	}

	d := sha256.New()
	if rec.Offset > 0 {
		if err := d.(encoding.BinaryUnmarshaler).UnmarshalBinary(rec.State); err != nil {
			rec.Offset = 0 // a state this build cannot read: start again
			d.Reset()
		}
	}
	from := rec.Offset
	off, rerr := h.hashFrom(ctx, obj, d, from)
	h.hashed.Add(float64(off - from))
	changed := errors.Is(rerr, objstore.ErrChanged) || errors.Is(rerr, objstore.ErrNotFound) || errors.Is(rerr, errShort)
	if changed {
		// Replaced or gone since its HEAD: the next delivery looks again.
		rec = hashRecord{}
	} else {
		rec.Offset = off
		if rec.State, err = d.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return "", fmt.Errorf("%w: save the SHA-256 state: %v", runner.ErrPermanent, err)
		}
		if off == rec.Size {
			rec.Sum, rec.State = hex.EncodeToString(d.Sum(nil)), nil
		}
	}
	rec.Lease = time.Time{}
	// Saved even when the handler's time is up: the reading is not lost.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if _, err := h.writeHash(sctx, key, rec, rev); err != nil {
		if ledger.Conflict(err) {
			// This attempt was too slow and lost its lease to another.
			return "", runner.Delay(leaseRecheck, "another attempt took over reading "+obj.Bucket+":"+obj.Key)
		}
		return "", err
	}
	switch {
	case changed:
		return "", runner.Delay(hashPause, fmt.Sprintf("%s:%s changed while its checksum was read (%v); starting again", obj.Bucket, obj.Key, rerr))
	case rerr != nil:
		return "", fmt.Errorf("read %s:%s to check its checksum (%d of %d bytes read and saved): %w", obj.Bucket, obj.Key, off, obj.Size, rerr)
	case rec.Sum != "":
		return rec.Sum, nil
	}
	zerolog.Ctx(ctx).Debug().Str("key", obj.Key).Int64("offset", off).Int64("size", obj.Size).Int64("read", off-from).Msg("checksum reading saved")
	return "", runner.Delay(hashPause, fmt.Sprintf("checking the SHA-256 of %s:%s: %d of %d bytes read", obj.Bucket, obj.Key, off, obj.Size))
}

// errShort: the object ended before the size its HEAD gave.
var errShort = errors.New("the object is shorter than its size")

// hashFrom reads obj from off into d until its end or until the
// delivery's budget is spent (at least one chunk, so that every delivery
// gets on), and returns the offset reached: every byte before it is in d,
// whatever the error.
func (h *importer) hashFrom(ctx context.Context, obj objstore.Object, d hash.Hash, off int64) (int64, error) {
	if off >= obj.Size {
		return off, nil
	}
	start := time.Now()
	stop := start.Add(h.cfg.HashBudget)
	if dl, ok := ctx.Deadline(); ok {
		// Leave a third of the handler's time to save and to import.
		if last := dl.Add(-dl.Sub(start) / 3); last.Before(stop) {
			stop = last
		}
	}
	rctx, cancel := context.WithDeadline(ctx, stop.Add(readGrace))
	defer cancel()
	r, err := h.objects.Open(rctx, obj.Bucket, obj.Key, off, obj.ETag)
	if err != nil {
		if rctx.Err() != nil {
			return off, nil // out of time: the next delivery goes on
		}
		return off, err
	}
	defer r.Close()
	buf := make([]byte, min(int64(h.cfg.hashChunk), obj.Size-off))
	for off < obj.Size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), obj.Size-off)])
		d.Write(buf[:n])
		off += int64(n)
		switch {
		case err == nil:
		case rctx.Err() != nil:
			return off, nil
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return off, errShort
		default:
			return off, err
		}
		if !time.Now().Before(stop) {
			break
		}
	}
	return off, nil
}

// readHash reads an object's hashRecord (rev 0: none).
func (h *importer) readHash(ctx context.Context, key string) (hashRecord, uint64, error) {
	var rec hashRecord
	e, err := h.imports.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return rec, 0, nil
	case err != nil:
		return rec, 0, fmt.Errorf("read the checksum reading %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return hashRecord{}, e.Revision(), nil // unreadable: start again over it
	}
	return rec, e.Revision(), nil
}

// writeHash writes rec over revision rev (0: a new record).
func (h *importer) writeHash(ctx context.Context, key string, rec hashRecord, rev uint64) (uint64, error) {
	b, _ := json.Marshal(rec)
	if rev == 0 {
		rev, err := h.imports.Create(ctx, key, b)
		if err != nil && !ledger.Conflict(err) {
			err = fmt.Errorf("save the checksum reading %s: %w", key, err)
		}
		return rev, err
	}
	rev, err := h.imports.Update(ctx, key, b, rev)
	if err != nil && !ledger.Conflict(err) {
		err = fmt.Errorf("save the checksum reading %s: %w", key, err)
	}
	return rev, err
}

// dropSum deletes an object's checksum reading once its import is done.
func (h *importer) dropSum(ctx context.Context, o events.ObjectCreated) {
	_ = h.imports.Delete(context.WithoutCancel(ctx), sumKey(o.Bucket, o.Key))
}

// dropSumWait ends an object's wait for its checksum file, if it waited.
func (h *importer) dropSumWait(ctx context.Context, o events.ObjectCreated) {
	key := sumWaitKey(o.Bucket, o.Key)
	if e, err := h.imports.Get(ctx, key); err == nil {
		_ = h.imports.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	}
}

// forgetSum drops what is kept of an object that is gone.
func (h *importer) forgetSum(ctx context.Context, o events.ObjectCreated) {
	if _, err := h.imports.Get(ctx, sumKey(o.Bucket, o.Key)); err == nil {
		h.dropSum(ctx, o)
	}
	h.dropSumWait(ctx, o)
}

// newHashedCounter is imsflow_import_bytes_hashed_total.
func newHashedCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imsflow_import_bytes_hashed_total",
		Help: "Bytes of objects the import function read to check their SHA-256 against the checksum given (a rule's verify.checksum).",
	})
}

// hashedCounter returns the counter of bytes hashed, in the registry of
// the process's telemetry if there is one (the one there already, if an
// importer of this process made it before).
func hashedCounter(tel *telemetry.Telemetry) (prometheus.Counter, error) {
	c := newHashedCounter()
	if tel == nil {
		return c, nil
	}
	if err := tel.Registry().Register(c); err != nil {
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		if !ok {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
			return existing, nil
		}
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return c, nil
}

// Collectors are the import function's own metrics, new and unregistered:
// for listing their names (telemetry.MetricNames).
func Collectors() []prometheus.Collector { return []prometheus.Collector{newHashedCounter()} }
