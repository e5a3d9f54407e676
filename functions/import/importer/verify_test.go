package importer

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// verifyRules are the rules of the verification tests: the default rule
// checks a checksum if one is given and the storage class; "strict"
// requires a checksum; "lax" checks no storage class.
const verifyRules = `{"rules":[
	{"name":"strict","prefix":"req/","verify":{"checksum":"required"}},
	{"name":"lax","prefix":"nocheck/","verify":{"checksum":"off","storage_class":false}}
]}`

// verifyEnv is a real MinIO that the verification tests share, each in a
// bucket of its own.
type verifyEnv struct {
	m  *testenv.MinIO
	mc *minio.Client
}

func newVerifyEnv(t *testing.T) *verifyEnv {
	t.Helper()
	m := testenv.StartMinIO(t)
	mc, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return &verifyEnv{m: m, mc: mc}
}

// harness makes bucket and runs the import function on it, as New builds
// it with bucket access and verifyRules, against an emulator that checks
// each import's file in that bucket.
func (ve *verifyEnv) harness(t *testing.T, bucket string, mutate func(*Config)) *harness {
	t.Helper()
	if err := ve.mc.MakeBucket(t.Context(), bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	store, err := imsemu.NewS3Store(ve.m.Endpoint, ve.m.AccessKey, ve.m.SecretKey, false)
	if err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(t.TempDir(), "verify-rules.json")
	if err := os.WriteFile(rules, []byte(verifyRules), 0o600); err != nil {
		t.Fatal(err)
	}
	return newHarness(t, imsemu.Config{Store: store}, func(c *Config) {
		c.RulesFile, c.ChecksumWait = rules, time.Minute
		c.Objects = objstore.Config{Endpoint: ve.m.Endpoint, AccessKey: ve.m.AccessKey, SecretKey: imsapi.Secret(ve.m.SecretKey)}
		if mutate != nil {
			mutate(c)
		}
	})
}

// put uploads data and returns the notification MinIO sends for it.
func (ve *verifyEnv) put(t *testing.T, bucket, key string, data []byte, opts minio.PutObjectOptions) []byte {
	t.Helper()
	info, err := ve.mc.PutObject(t.Context(), bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return minioEvent(bucket, key, info.Size, info.ETag, opts.UserMetadata)
}

// putSum uploads key's checksum file as sha256sum writes it, for content.
func (ve *verifyEnv) putSum(t *testing.T, bucket, key string, content []byte) []byte {
	t.Helper()
	return ve.put(t, bucket, key+ChecksumSuffix, []byte(fmt.Sprintf("%x  %s\n", sha256.Sum256(content), path.Base(key))), minio.PutObjectOptions{})
}

// content is n bytes that differ with seed (ZVHD2 files to imsflow: no
// header of a container, so trusted by their name).
func content(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hashedBytes is imsflow_import_bytes_hashed_total.
func (hs *harness) hashedBytes() int64 {
	return int64(hs.tel.Value("imsflow_import_bytes_hashed_total"))
}

// sumRecord reads an object's checksum reading (false: none).
func (hs *harness) sumRecord(bucket, key string) (hashRecord, bool) {
	hs.t.Helper()
	e, err := hs.h.imports.Get(hs.t.Context(), sumKey(bucket, key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return hashRecord{}, false
	}
	if err != nil {
		hs.t.Fatal(err)
	}
	var rec hashRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		hs.t.Fatal(err)
	}
	return rec, true
}

// withChunk restarts the function reading chunk bytes at a time.
func (hs *harness) withChunk(chunk int) {
	hs.stop()
	hs.h.cfg.hashChunk = chunk
	hs.start()
}

// hashing counts the deliveries that saved a checksum reading and came back.
func hashing(all []runner.Settlement) int {
	n := 0
	for _, s := range all {
		if s.Outcome == runner.OutcomeDelay && strings.Contains(s.Reason, "checking the SHA-256") {
			n++
		}
	}
	return n
}

// TestVerify: what a rule verifies before IMS is called, against a real
// MinIO: checksums from a checksum file or metadata, read across
// deliveries and across a crash, a changed object, a required checksum
// that comes late or never, and the storage class.
func TestVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	t.Parallel()
	ve := newVerifyEnv(t)

	t.Run("checksum file matches: imported", func(t *testing.T) {
		t.Parallel()
		const bucket, key = "v-match", "disks/web.zvhd2"
		hs := ve.harness(t, bucket, nil)
		data := content(3<<20+17, 1)
		ev := ve.put(t, bucket, key, data, minio.PutObjectOptions{})
		ve.putSum(t, bucket, key, data)
		hs.publish(ev)
		if o := hs.settled.FinalOutcomes(t, 1); o[0] != "ack" {
			t.Fatalf("outcome = %v, want ack", o)
		}
		h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
		if h.Source == nil || h.Source.Key != key || h.Method != events.MethodQuick {
			t.Errorf("hand-off = %+v", h)
		}
		if got := hs.hashedBytes(); got != int64(len(data)) {
			t.Errorf("%d bytes hashed, want the object's %d", got, len(data))
		}
		if rec, ok := hs.sumRecord(bucket, key); ok {
			t.Errorf("checksum reading kept after the import: %+v", rec)
		}
		// The same notification again: answered from the ledger, not read again.
		hs.publish(ev)
		hs.settled.Final(t, 2)
		if got := hs.hashedBytes(); got != int64(len(data)) {
			t.Errorf("%d bytes hashed after a repeated notification, want still %d", got, len(data))
		}
		if n := len(hs.emu.Submissions()); n != 1 {
			t.Errorf("%d IMS submissions, want 1", n)
		}
		hs.settled.NoRetries(t)
	})

	t.Run("checksum file differs: rejected, IMS never called", func(t *testing.T) {
		t.Parallel()
		const bucket, key = "v-mismatch", "disks/db.zvhd2"
		hs := ve.harness(t, bucket, nil)
		data := content(1<<20, 2)
		ev := ve.put(t, bucket, key, data, minio.PutObjectOptions{})
		ve.putSum(t, bucket, key, content(1<<20, 3)) // another file's
		hs.publish(ev)
		if o := hs.settled.FinalOutcomes(t, 1); o[0] != "term" {
			t.Fatalf("outcome = %v, want term", o)
		}
		r := testenv.Receive[events.Rejected](t, hs.rejected, 1)[0]
		if r.ReasonCode != events.ReasonChecksumMismatch || r.Stage != "verify" || r.Source == nil || r.Source.Key != key {
			t.Errorf("rejected = %+v", r)
		}
		for _, want := range []string{"rule */", hexSum(data), key + ChecksumSuffix, "upload the file again"} {
			if !strings.Contains(r.Reason, want) {
				t.Errorf("reason %q does not say %q", r.Reason, want)
			}
		}
		if n := len(hs.emu.Submissions()); n != 0 {
			t.Errorf("%d IMS submissions for a file whose checksum differs", n)
		}
		// The result is kept: the notification again is refused without
		// reading the object again.
		hs.publish(ev)
		if fin := hs.settled.Final(t, 2); len(fin) != 2 {
			t.Fatalf("settled %v", fin)
		}
		for _, s := range hs.settled.All() {
			if s.Outcome.Final() && s.Outcome != runner.OutcomeTerm {
				t.Errorf("message %d: %s, want term", s.StreamSeq, s.Outcome)
			}
		}
		if got := hs.hashedBytes(); got != int64(len(data)) {
			t.Errorf("%d bytes hashed for two notifications, want %d (once)", got, len(data))
		}
		if n := len(hs.emu.Submissions()); n != 0 {
			t.Errorf("%d IMS submissions", n)
		}
	})

	t.Run("metadata sha256", func(t *testing.T) {
		t.Parallel()
		const bucket = "v-meta"
		hs := ve.harness(t, bucket, nil)
		good, bad := content(512<<10, 4), content(512<<10, 5)
		hs.publish(ve.put(t, bucket, "m/good.zvhd2", good, minio.PutObjectOptions{UserMetadata: map[string]string{"sha256": strings.ToUpper(hexSum(good))}}))
		hs.publish(ve.put(t, bucket, "m/bad.zvhd2", bad, minio.PutObjectOptions{UserMetadata: map[string]string{"sha256": hexSum(good)}}))
		hs.publish(ve.put(t, bucket, "m/junk.zvhd2", bad, minio.PutObjectOptions{UserMetadata: map[string]string{"sha256": "not-a-digest"}}))
		if o := hs.settled.FinalOutcomes(t, 3); strings.Join(o, ",") != "ack,term,term" {
			t.Fatalf("outcomes = %v, want ack,term,term", o)
		}
		if h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]; h.Source.Key != "m/good.zvhd2" {
			t.Errorf("hand-off = %+v", h)
		}
		codes := map[string]events.Rejected{}
		for _, r := range testenv.Receive[events.Rejected](t, hs.rejected, 2) {
			codes[r.Source.Key] = r
		}
		if r := codes["m/bad.zvhd2"]; r.ReasonCode != events.ReasonChecksumMismatch || !strings.Contains(r.Reason, "metadata sha256") {
			t.Errorf("bad.zvhd2 rejected %s: %s", r.ReasonCode, r.Reason)
		}
		if r := codes["m/junk.zvhd2"]; r.ReasonCode != events.ReasonChecksumInvalid || !strings.Contains(r.Reason, "not-a-digest") {
			t.Errorf("junk.zvhd2 rejected %s: %s", r.ReasonCode, r.Reason)
		}
		if got := ops(hs.emu.Submissions()); len(got) != 1 || got[bucket+":m/good.zvhd2"] == "" {
			t.Errorf("IMS submissions = %v, want good.zvhd2 only", got)
		}
	})

	t.Run("reading resumes across deliveries", func(t *testing.T) {
		t.Parallel()
		const bucket, key, chunk = "v-resume", "big/disk.zvhd2", 64 << 10
		hs := ve.harness(t, bucket, func(c *Config) { c.HashBudget = time.Nanosecond })
		hs.withChunk(chunk)
		data := content(16*chunk+123, 6)
		ev := ve.put(t, bucket, key, data, minio.PutObjectOptions{})
		ve.putSum(t, bucket, key, data)
		hs.publish(ev)
		var end runner.Settlement
		for _, s := range hs.settled.Final(t, 1) {
			end = s
		}
		if end.Outcome != runner.OutcomeAck {
			t.Fatalf("outcome %s (%s), want ack", end.Outcome, end.Reason)
		}
		// One chunk at least per delivery, and no byte read twice: each
		// delivery went on from the state the one before saved.
		if n := hashing(hs.settled.All()); n < 16 {
			t.Errorf("%d deliveries saved a reading and came back, want at least 16 (17 chunks)", n)
		}
		if got := hs.hashedBytes(); got != int64(len(data)) {
			t.Errorf("%d bytes hashed, want exactly the object's %d", got, len(data))
		}
		if h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]; h.Source.Key != key {
			t.Errorf("hand-off = %+v", h)
		}
		hs.settled.NoRetries(t)
	})

	t.Run("a crashed reading is taken over from its last save", func(t *testing.T) {
		t.Parallel()
		const bucket, key = "v-crash", "big/crash.zvhd2"
		hs := ve.harness(t, bucket, nil)
		clock := imsemu.NewManualClock(time.Now())
		hs.stop()
		hs.h.now = clock.Now
		// A waiting attempt found the dead reader's lease: its lease ends.
		hs.rc.Settled = func(s runner.Settlement) {
			hs.settled.Add(s)
			if s.Outcome == runner.OutcomeDelay && strings.Contains(s.Reason, "another attempt is reading") {
				clock.Advance(hs.h.cfg.HashLease)
			}
		}
		hs.start()
		data := content(2<<20, 7)
		ev := ve.put(t, bucket, key, data, minio.PutObjectOptions{})
		ve.putSum(t, bucket, key, data)
		obj, err := hs.h.objects.Head(t.Context(), bucket, key)
		if err != nil {
			t.Fatal(err)
		}
		// What a reader that died after its save at 700,001 bytes, during
		// its next delivery, left: the state there, and its lease.
		const saved = 700_001
		d := sha256.New()
		d.Write(data[:saved])
		state, err := d.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := json.Marshal(hashRecord{ETag: obj.ETag, Size: obj.Size, Offset: saved, State: state, Lease: clock.Now().Add(hs.h.cfg.HashLease), Started: clock.Now()})
		if _, err := hs.h.imports.Create(t.Context(), sumKey(bucket, key), rec); err != nil {
			t.Fatal(err)
		}
		hs.publish(ev)
		var end runner.Settlement
		for _, s := range hs.settled.Final(t, 1) {
			end = s
		}
		if end.Outcome != runner.OutcomeAck {
			t.Fatalf("outcome %s (%s), want ack", end.Outcome, end.Reason)
		}
		if !slices.ContainsFunc(hs.settled.All(), func(s runner.Settlement) bool { return strings.Contains(s.Reason, "another attempt is reading") }) {
			t.Error("the live lease of the dead reader was not waited for")
		}
		if got := hs.hashedBytes(); got != int64(len(data)-saved) {
			t.Errorf("%d bytes hashed, want the %d after the dead reader's save", got, len(data)-saved)
		}
		if n := len(hs.emu.Submissions()); n != 1 {
			t.Errorf("%d IMS submissions, want 1 (the state was right)", n)
		}
	})

	t.Run("a changed object is read again", func(t *testing.T) {
		t.Parallel()
		const bucket, chunk = "v-changed", 64 << 10
		hs := ve.harness(t, bucket, func(c *Config) { c.HashBudget = time.Nanosecond })
		hs.withChunk(chunk)
		ctx := t.Context()
		read := func(key string, obj objstore.Object) error {
			t.Helper()
			_, err := hs.h.hashObject(ctx, obj)
			if !isDelay(err) {
				t.Fatalf("reading %s: %v, want a delay", key, err)
			}
			return err
		}

		// Between deliveries: one delivery read a chunk of the first
		// version; the next finds another ETag and starts again.
		const key = "big/changing.zvhd2"
		ve.put(t, bucket, key, content(8*chunk, 8), minio.PutObjectOptions{})
		old, err := hs.h.objects.Head(ctx, bucket, key)
		if err != nil {
			t.Fatal(err)
		}
		read(key, old)
		if rec, ok := hs.sumRecord(bucket, key); !ok || rec.Offset != chunk || rec.ETag != old.ETag || rec.Sum != "" {
			t.Fatalf("after one reading: %+v, want %d bytes of ETag %s", rec, chunk, old.ETag)
		}
		v2 := content(5*chunk+1, 9)
		ev := ve.put(t, bucket, key, v2, minio.PutObjectOptions{})
		ve.putSum(t, bucket, key, v2)
		hs.publish(ev)
		var end runner.Settlement
		for _, s := range hs.settled.Final(t, 1) {
			end = s
		}
		if end.Outcome != runner.OutcomeAck {
			t.Fatalf("outcome %s (%s), want ack: the second version matches its checksum", end.Outcome, end.Reason)
		}
		if got := hs.hashedBytes(); got != chunk+int64(len(v2)) {
			t.Errorf("%d bytes hashed, want the first version's chunk and all %d of the second, from its start", got, len(v2))
		}
		if n := len(hs.emu.Submissions()); n != 1 {
			t.Errorf("%d IMS submissions, want 1", n)
		}

		// During a delivery: replaced between its HEAD and its read, which
		// asks for the ETag of the HEAD and so sees the change.
		const key2 = "big/replaced.zvhd2"
		ve.put(t, bucket, key2, content(4*chunk, 10), minio.PutObjectOptions{})
		old, err = hs.h.objects.Head(ctx, bucket, key2)
		if err != nil {
			t.Fatal(err)
		}
		ve.put(t, bucket, key2, content(4*chunk, 11), minio.PutObjectOptions{})
		if err := read(key2, old); !strings.Contains(err.Error(), "changed") {
			t.Errorf("reading a replaced object: %v, want a delay saying it changed", err)
		}
		if rec, ok := hs.sumRecord(bucket, key2); !ok || rec.Offset != 0 || rec.ETag != "" || rec.Lease.After(time.Now()) {
			t.Errorf("after the change: %+v, want a reading to start again, and no lease", rec)
		}
	})

	t.Run("required: checksum file after the image", func(t *testing.T) {
		t.Parallel()
		const bucket, key = "v-late", "req/late.zvhd2"
		hs := ve.harness(t, bucket, nil)
		data := content(1<<20, 10)
		hs.publish(ve.put(t, bucket, key, data, minio.PutObjectOptions{}))
		if s := hs.settled.Next(t, 1)[0]; s.Outcome != runner.OutcomeDelay || !strings.Contains(s.Reason, "checksum file") {
			t.Fatalf("image without its checksum file: %s (%s), want a wait", s.Outcome, s.Reason)
		}
		waiting := convDecode[events.Waiting](t, testenv.Stored(t, hs.js, runner.StreamOut, events.OutSubject(events.KindImport, events.StatusWaiting)))
		if len(waiting) != 1 || waiting[0].Missing != key+ChecksumSuffix || !strings.Contains(waiting[0].Reason, "rule strict") {
			t.Fatalf("waiting events = %+v, want one for %s naming rule strict", waiting, key+ChecksumSuffix)
		}
		if n := len(hs.emu.Submissions()); n != 0 {
			t.Fatalf("%d IMS submissions before the checksum file", n)
		}
		// The checksum file's notification replays the image at once (the
		// image's own wait is IMPORT_CHECKSUM_POLL, 2 minutes).
		hs.publish(ve.putSum(t, bucket, key, data))
		h := testenv.Receive[events.JobSubmitted](t, hs.handoffs, 1)[0]
		if h.Source.Key != key {
			t.Errorf("hand-off = %+v", h)
		}
		if got := ops(hs.emu.Submissions()); len(got) != 1 || got[bucket+":"+key] != imsemu.OpQuickImport {
			t.Errorf("IMS submissions = %v", got)
		}
		if _, err := hs.h.imports.Get(t.Context(), sumWaitKey(bucket, key)); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("the wait for the checksum file is kept: %v", err)
		}
		hs.settled.NoRetries(t)
	})

	t.Run("required: no checksum file in time", func(t *testing.T) {
		t.Parallel()
		const bucket, key, wait, maxFailures = "v-missing", "req/never.zvhd2", 5 * time.Minute, 3
		hs := ve.harness(t, bucket, func(c *Config) {
			c.ChecksumWait, c.ChecksumPoll, c.MaxFailures = wait, 20*time.Millisecond, maxFailures
		})
		clock := imsemu.NewManualClock(time.Now())
		convOnClock(hs, clock)
		firstSeen := clock.Now()
		hs.publish(ve.put(t, bucket, key, content(256<<10, 11), minio.PutObjectOptions{}))
		// Waiting is not failing: more waits than MaxFailures.
		hs.settled.WaitFor(t, fmt.Sprintf("more than %d waits for the checksum file", maxFailures), func(all []runner.Settlement) bool {
			return len(all) > maxFailures
		})
		for _, s := range hs.settled.All() {
			if s.Outcome != runner.OutcomeDelay {
				t.Fatalf("before the wait ended: %s (%s)", s.Outcome, s.Reason)
			}
		}
		clock.Advance(wait)
		var end runner.Settlement
		for _, s := range hs.settled.Final(t, 1) {
			end = s
		}
		if end.Outcome != runner.OutcomeTerm {
			t.Fatalf("after the wait: %s (%s), want term", end.Outcome, end.Reason)
		}
		r := testenv.Receive[events.Rejected](t, hs.rejected, 1)[0]
		if r.ReasonCode != events.ReasonChecksumMissing || r.Stage != "verify" {
			t.Errorf("rejected = %+v", r)
		}
		for _, want := range []string{"rule strict", wait.String(), firstSeen.UTC().Format(time.RFC3339), key + ChecksumSuffix} {
			if !strings.Contains(r.Reason, want) {
				t.Errorf("reason %q does not say %q", r.Reason, want)
			}
		}
		if n := len(hs.emu.Submissions()); n != 0 {
			t.Errorf("%d IMS submissions", n)
		}
		if _, err := hs.h.imports.Get(t.Context(), sumWaitKey(bucket, key)); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("the wait for the checksum file is kept after the refusal: %v", err)
		}
		convNoDeadLetters(t, hs)
	})

	t.Run("required: the object goes while it waits", func(t *testing.T) {
		t.Parallel()
		const bucket, key = "v-gone", "req/gone.zvhd2"
		hs := ve.harness(t, bucket, func(c *Config) { c.ChecksumPoll = 20 * time.Millisecond })
		hs.publish(ve.put(t, bucket, key, content(64<<10, 14), minio.PutObjectOptions{}))
		if s := hs.settled.Next(t, 1)[0]; s.Outcome != runner.OutcomeDelay {
			t.Fatalf("image without its checksum file: %s (%s), want a wait", s.Outcome, s.Reason)
		}
		if err := ve.mc.RemoveObject(t.Context(), bucket, key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if r := testenv.Receive[events.Rejected](t, hs.rejected, 1)[0]; r.ReasonCode != events.ReasonObjectMissing {
			t.Errorf("rejected = %+v, want object_missing", r)
		}
		hs.settled.Final(t, 1)
		if _, err := hs.h.imports.Get(t.Context(), sumWaitKey(bucket, key)); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("the wait of an object that is gone is kept: %v", err)
		}
	})

	t.Run("storage class not Standard", func(t *testing.T) {
		t.Parallel()
		const bucket = "v-class"
		hs := ve.harness(t, bucket, nil)
		rrs := minio.PutObjectOptions{StorageClass: "REDUCED_REDUNDANCY"}
		hs.publish(ve.put(t, bucket, "cold/a.zvhd2", content(128<<10, 12), rrs))
		r := testenv.Receive[events.Rejected](t, hs.rejected, 1)[0]
		if r.ReasonCode != events.ReasonStorageClass || r.Stage != "verify" {
			t.Fatalf("rejected = %+v", r)
		}
		for _, want := range []string{"REDUCED_REDUNDANCY", "Standard", "rule */", "restore"} {
			if !strings.Contains(r.Reason, want) {
				t.Errorf("reason %q does not say %q", r.Reason, want)
			}
		}
		asked := func() float64 { return hs.tel.Value("imsflow_ims_requests_total", "operation", "quick_import") }
		if n := asked(); n != 0 {
			t.Errorf("IMS asked %g times to import a non-Standard object", n)
		}
		// A rule that turns the check off leaves such an object to IMS.
		hs.publish(ve.put(t, bucket, "nocheck/b.zvhd2", content(128<<10, 13), rrs))
		hs.settled.Final(t, 2)
		if n := asked(); n != 1 {
			t.Errorf("IMS asked %g times to import nocheck/b.zvhd2, want once (rule lax checks no class)", n)
		}
	})

	t.Run("a checksum file is not imported", func(t *testing.T) {
		t.Parallel()
		const bucket, key = "v-sidecar", "disks/lone.zvhd2"
		hs := ve.harness(t, bucket, nil)
		ev := ve.putSum(t, bucket, key, []byte("x"))
		hs.publish(ev)
		if o := hs.settled.FinalOutcomes(t, 1); o[0] != "ack" {
			t.Fatalf("outcome = %v, want ack", o)
		}
		if n := len(hs.emu.Submissions()); n != 0 {
			t.Errorf("%d IMS submissions for a checksum file", n)
		}
		for _, subj := range []string{events.OutSubject(events.KindImport, events.StatusRejected), events.OutSubject(events.KindImport, events.StatusWaiting)} {
			if got := testenv.Stored(t, hs.js, runner.StreamOut, subj); len(got) != 0 {
				t.Errorf("%s: %s", subj, got[0].Data)
			}
		}
		if got := testenv.Stored(t, hs.js, runner.StreamJobs, events.SubjectJobSubmitted); len(got) != 0 {
			t.Errorf("a checksum file handed off: %s", got[0].Data)
		}
	})
}

func isDelay(err error) bool {
	_, ok := runner.IsDelay(err)
	return ok
}

// TestChecksumFile: the checksum files sha256sum and BSD tools write.
func TestChecksumFile(t *testing.T) {
	t.Parallel()
	const sum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for _, c := range []struct {
		name, file, want, bad string
	}{
		{"sha256sum", sum + "  web.zvhd2\n", sum, ""},
		{"binary mode", sum + " *web.zvhd2\n", sum, ""},
		{"digest alone", strings.ToUpper(sum) + "\n", sum, ""},
		{"another name, one line", sum + "  renamed.zvhd2", sum, ""},
		{"BSD", "SHA256 (web.zvhd2) = " + sum + "\n", sum, ""},
		{"several files", strings.Repeat("0", 64) + "  db.zvhd2\n" + sum + "  dir/web.zvhd2\n", sum, ""},
		{"several, none named", strings.Repeat("0", 64) + "  db.zvhd2\n" + sum + "  x.zvhd2\n", "", "none named web.zvhd2"},
		{"empty", "\n\n", "", "is empty"},
		{"not a digest", "md5: d41d8cd98f00b204e9800998ecf8427e\n", "", "does not give a SHA-256"},
		{"short digest", sum[:60] + "  web.zvhd2\n", "", "does not give a SHA-256"},
	} {
		got, bad := parseChecksumFile([]byte(c.file), "web.zvhd2")
		if got != c.want || !strings.Contains(bad, c.bad) || (c.bad == "") != (bad == "") {
			t.Errorf("%s: parseChecksumFile(%q) = %q, %q; want %q, %q", c.name, c.file, got, bad, c.want, c.bad)
		}
	}
	if got, ok := parseSum("n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="); !ok || got != sum {
		t.Errorf("parseSum(base64) = %q, %v", got, ok)
	}
}

// TestVerifyRules: the verify field is read strictly, checked at load,
// and a required checksum needs bucket access.
func TestVerifyRules(t *testing.T) {
	t.Parallel()
	rs, err := ParseRules([]byte(`{"rules":[{"prefix":"a/","verify":{"checksum":"required","storage_class":false}},{"prefix":"b/"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if v := rs.Rules[0].Verify; v.checksum() != ChecksumRequired || v.storageClass() {
		t.Errorf("rule a/ verify = %+v", v)
	}
	if v := rs.match("x", "b/k").Verify; v.checksum() != ChecksumIfPresent || !v.storageClass() {
		t.Errorf("defaults: checksum %s, storage class %v; want if_present and checked", v.checksum(), v.storageClass())
	}
	for _, c := range []struct{ rules, want string }{
		{`{"rules":[{"name":"x","prefix":"a/","verify":{"checksum":"always"}}]}`, `rule 0 (x): verify: checksum "always"`},
		{`{"rules":[{"prefix":"a/","verify":{"checksums":"required"}}]}`, `unknown field "checksums"`},
		{`{"rules":[{"prefix":"a/","verify":{"storage_class":"yes"}}]}`, `storage_class`},
	} {
		if _, err := ParseRules([]byte(c.rules)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseRules(%s) = %v, want an error with %q", c.rules, err, c.want)
		}
	}
	if got := Describe(obj("disks/web.zvhd2.sha256", 80), rs, false); got.Action != "checksum" || !strings.Contains(got.Reason, "checksum file of disks/web.zvhd2") {
		t.Errorf("Describe(checksum file) = %+v, want skip", got)
	}

	// Required checksums without bucket access stop the function at start.
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	if err := runner.Ensure(t.Context(), js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(file, []byte(`{"rules":[{"name":"strict","prefix":"a/","verify":{"checksum":"required"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = build(t.Context(), Config{RulesFile: file, BitmapPoll: time.Minute, ClaimTTL: 2 * time.Minute, AckWait: time.Minute}, nil, js)
	if err == nil || !strings.Contains(err.Error(), "strict") || !strings.Contains(err.Error(), "S3_ENDPOINT") {
		t.Errorf("build with a required checksum and no bucket = %v, want an error naming the rule and S3_ENDPOINT", err)
	}
	for _, c := range []Config{
		{BitmapPoll: time.Minute, ClaimTTL: 2 * time.Minute, AckWait: time.Minute, HashBudget: 31 * time.Second},
		{BitmapPoll: time.Minute, ClaimTTL: 2 * time.Minute, AckWait: time.Minute, HashBudget: -time.Second},
		{BitmapPoll: time.Minute, ClaimTTL: 2 * time.Minute, AckWait: time.Minute, ChecksumWait: -time.Second},
	} {
		if err := c.Check(); err == nil {
			t.Errorf("Check(%+v) = nil, want an error", c)
		}
	}
}
