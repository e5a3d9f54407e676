package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/imsflow/imsflow/pkg/events"
)

// Buckets of a run: uploads, and the targets of exports.
const (
	bucketImages  = "chaos-images"
	bucketExports = "chaos-exports"
	// sourceName is the <source> of imsflow.in.objects.<source>.
	sourceName = "chaos"
	gib        = int64(1) << 30
)

// kind is what an input is, and so what should become of it.
type kind string

const (
	kindNormal    kind = "normal"      // qcow2, vhd, vmdk up to 128 GB: normal import
	kindZVHD2     kind = "zvhd2"       // quick import
	kindRAW       kind = "raw"         // quick import, with its .mf bitmap notification
	kindFail      kind = "ims-fails"   // a normal import that IMS fails half way (-failures rule)
	kindEmpty     kind = "empty"       // size 0
	kindTooLarge  kind = "too-large"   // above 1 TB
	kindNeedsConv kind = "needs-conv"  // a VMDK above 128 GB
	kindSkipped   kind = "unsupported" // not an image extension: skipped by design, no event
	kindExport    kind = "export"      // an export of a seeded image
	kindExportNF  kind = "export-nf"   // an export of an image that does not exist
	kindLifecycle kind = "lifecycle"   // a normal import under a rule with a lifecycle (lifecycle.go)
	failPrefix         = "chaos/fail-" // the keys the emulator's failure rule matches
)

// mix is the share of each kind among the inputs (percent).
var mix = []struct {
	k     kind
	share int
}{
	{kindNormal, 30}, {kindLifecycle, 10}, {kindZVHD2, 18}, {kindRAW, 12}, {kindFail, 2},
	{kindExport, 17}, {kindExportNF, 1},
	{kindEmpty, 2}, {kindTooLarge, 2}, {kindNeedsConv, 2}, {kindSkipped, 4},
}

// item is one input: an object-created notification or an export request.
type item struct {
	ID   string // n00042 (objects) or x00042 (exports): a token found in every log line about it
	Kind kind
	// Objects.
	Key         string
	Size        int64
	ETag        string
	BitmapFirst bool // RAW: its .mf notification is published before it
	// Exports.
	ImageID   string
	ImageSize int64
	BucketURL string
	RequestID string
	// Expect is the acceptable final outcomes ("succeeded",
	// "rejected:empty_file", ...); none for an input skipped by design.
	Expect []string
	Dup    bool // published twice
	// Canary: not in the feed; published after a fault of make
	// test-cluster (compose.go), to see the pipeline end new work again.
	Canary bool `json:",omitempty"`
	// Lifecycles (kindLifecycle): the family of the rule the key falls
	// under, and the region whose first cross-region copy the emulator
	// fails (a failure rule with times 1; "" none), for the harness to
	// retry that leg alone.
	Family     string `json:",omitempty"`
	FailCopyTo string `json:",omitempty"`
}

func (it *item) isExport() bool { return it.Kind == kindExport || it.Kind == kindExportNF }

// identity is how an output event names the input: the object version
// (bucket, key, etag) or the export's request_id.
func (it *item) identity() string {
	if it.isExport() {
		return "req:" + it.RequestID
	}
	return objIdentity(bucketImages, it.Key, it.ETag)
}

func objIdentity(bucket, key, etag string) string { return "obj:" + bucket + "/" + key + "@" + etag }

// imsURL is the URL the emulator records for the item's job: image_url of
// an import, bucket_url of an export.
func (it *item) imsURL() string {
	if it.isExport() {
		return it.BucketURL
	}
	return bucketImages + ":" + it.Key
}

// slotHash is the value the import function stores in a slot it takes:
// the hash of the object version (importer: events.Hash(VersionKey, 64)).
func (it *item) slotHash() string {
	src := events.Source{Bucket: bucketImages, Key: it.Key, ETag: it.ETag}
	return events.Hash(src.VersionKey(""), 64)
}

// publication is one message the feed sends.
type publication struct {
	At      time.Duration // after the feed starts
	Item    int           // index into items
	Role    string        // input, duplicate, bitmap
	Subject string
	MsgID   string // Nats-Msg-Id: a retried publish is stored once; a duplicate has its own
}

// workload is every input of a run, and when each is sent.
type workload struct {
	Items []*item
	Pubs  []publication
}

// newWorkload draws n inputs and their publication times over feed from
// seed: the same seed gives the same workload.
func newWorkload(n int, feed time.Duration, seed uint64) *workload {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &workload{}
	total := 0
	for _, m := range mix {
		total += m.share
	}
	var exportImages []*item // exports whose image another export may share
	for i := range n {
		pick := r.IntN(total)
		var k kind
		for _, m := range mix {
			if pick < m.share {
				k = m.k
				break
			}
			pick -= m.share
		}
		it := &item{Kind: k, ETag: fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64())}
		if k == kindExport || k == kindExportNF {
			it.ID = fmt.Sprintf("x%05d", i)
			it.RequestID = "chaos-" + it.ID
		} else {
			it.ID = fmt.Sprintf("n%05d", i)
		}
		switch k {
		case kindNormal:
			ext := []string{"qcow2", "vhd", "vmdk"}[r.IntN(3)]
			it.Key, it.Size = "chaos/"+it.ID+"."+ext, imageSize(r, 128*gib)
			it.Expect = []string{"succeeded"}
		case kindLifecycle:
			// Small (1-4 GB): IMS copies across regions at most 128 GB, and
			// the tenant's five cross-region copies at a time are the
			// lifecycles' bottleneck.
			it.Family = lcFamilies[r.IntN(len(lcFamilies))]
			it.Key, it.Size = lcPrefix+it.Family+"/"+it.ID+".qcow2", (1+r.Int64N(4))*gib-r.Int64N(gib/2)
			it.Expect = []string{"succeeded"}
			if r.IntN(100) < copyFailShare {
				it.FailCopyTo = copyFailRegion
			}
		case kindZVHD2:
			it.Key, it.Size = "chaos/"+it.ID+".zvhd2", imageSize(r, 300*gib)
			it.Expect = []string{"succeeded"}
		case kindRAW:
			it.Key, it.Size = "chaos/"+it.ID+".raw", imageSize(r, 300*gib)
			it.BitmapFirst = r.IntN(2) == 0
			it.Expect = []string{"succeeded"}
		case kindFail:
			it.Key, it.Size = failPrefix+it.ID+".qcow2", imageSize(r, 64*gib)
			it.Expect = []string{"failed"}
		case kindEmpty:
			it.Key = "chaos/" + it.ID + ".qcow2"
			it.Expect = []string{"rejected:" + events.ReasonEmptyFile}
		case kindTooLarge:
			it.Key, it.Size = "chaos/"+it.ID+".zvhd2", 2048*gib
			it.Expect = []string{"rejected:" + events.ReasonTooLarge}
		case kindNeedsConv:
			it.Key, it.Size = "chaos/"+it.ID+".vmdk", 200*gib
			it.Expect = []string{"rejected:" + events.ReasonNeedsConversion}
		case kindSkipped:
			it.Key, it.Size = "chaos/"+it.ID+"."+[]string{"ova", "txt", "tar.gz"}[r.IntN(3)], imageSize(r, 16*gib)
		case kindExport:
			it.ImageID, it.ImageSize = uuid(r), imageSize(r, 300*gib)
			if len(exportImages) > 0 && r.IntN(10) == 0 {
				// Some exports share an image with an earlier one: IMS
				// exports one image at a time, so one of them waits.
				other := exportImages[r.IntN(len(exportImages))]
				it.ImageID, it.ImageSize = other.ImageID, other.ImageSize
			} else {
				exportImages = append(exportImages, it)
			}
			ext := "qcow2"
			if it.ImageSize > 128*gib {
				ext = "zvhd2" // quick export, chosen by the export function
			}
			it.BucketURL = bucketExports + ":out/" + it.ID + "." + ext
			it.Expect = []string{"succeeded"}
		case kindExportNF:
			it.ImageID = uuid(r)
			it.BucketURL = bucketExports + ":out/" + it.ID + ".qcow2"
			it.Expect = []string{"rejected:" + events.ReasonImageNotFound}
		}
		it.Dup = r.IntN(100) < 5
		w.Items = append(w.Items, it)
	}
	// Publication times: the inputs in a shuffled order, evenly over the
	// feed with a little jitter; a duplicate 1 to 60 s after its first copy,
	// a bitmap 0.5 to 3 s before its RAW file or 1 to 20 s after it.
	order := r.Perm(n)
	step := feed / time.Duration(max(n, 1))
	for slot, idx := range order {
		it := w.Items[idx]
		at := time.Duration(slot)*step + time.Duration(r.Int64N(int64(step)+1))
		at = min(at, feed)
		subject := events.SubjectObjectsPrefix + sourceName
		if it.isExport() {
			subject = events.SubjectExportRequests
		}
		w.Pubs = append(w.Pubs, publication{At: at, Item: idx, Role: "input", Subject: subject, MsgID: "chaos:" + it.ID + ":1"})
		if it.Dup {
			d := time.Second + time.Duration(r.Int64N(int64(59*time.Second)))
			w.Pubs = append(w.Pubs, publication{At: min(at+d, feed), Item: idx, Role: "duplicate", Subject: subject, MsgID: "chaos:" + it.ID + ":2"})
		}
		if it.Kind == kindRAW {
			var bat time.Duration
			if it.BitmapFirst {
				bat = max(at-500*time.Millisecond-time.Duration(r.Int64N(int64(2500*time.Millisecond))), 0)
			} else {
				bat = min(at+time.Second+time.Duration(r.Int64N(int64(19*time.Second))), feed)
			}
			w.Pubs = append(w.Pubs, publication{At: bat, Item: idx, Role: "bitmap", Subject: subject, MsgID: "chaos:" + it.ID + ":mf"})
		}
	}
	// Stable, so that a bitmap sent "before" at the same instant stays before.
	slices.SortStableFunc(w.Pubs, func(a, b publication) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		case a.Role == "bitmap" && b.Role != "bitmap" && w.Items[a.Item].BitmapFirst:
			return -1
		}
		return 0
	})
	return w
}

// addCanaries appends n inputs that the feed does not send, alternately a
// 2 GB QCOW2 import and an export of a 2 GB image, and returns their
// indexes. They are the same for every seed: small and quick, so that the
// time to their outcomes is the pipeline's time to take new work after a
// fault, not IMS's.
func (w *workload) addCanaries(n int) []int {
	var out []int
	for range n {
		i := len(w.Items)
		it := &item{Kind: kindNormal, Canary: true, Expect: []string{"succeeded"}, ETag: fmt.Sprintf("ca4a%028x", i)}
		if len(out)%2 == 0 {
			it.ID = fmt.Sprintf("n%05d", i)
			it.Key, it.Size = "chaos/"+it.ID+".qcow2", 2*gib
		} else {
			it.Kind, it.ID = kindExport, fmt.Sprintf("x%05d", i)
			it.RequestID = "chaos-" + it.ID
			it.ImageID = fmt.Sprintf("ca4a0000-0000-4000-8000-%012x", i)
			it.ImageSize = 2 * gib
			it.BucketURL = bucketExports + ":out/" + it.ID + ".qcow2"
		}
		w.Items = append(w.Items, it)
		out = append(out, i)
	}
	return out
}

// imageSize draws a file size: mostly small, some medium, a few large
// (up to limit).
func imageSize(r *rand.Rand, limit int64) int64 {
	var gb int64
	switch p := r.IntN(100); {
	case p < 70:
		gb = 1 + r.Int64N(16)
	case p < 95:
		gb = 16 + r.Int64N(84)
	default:
		gb = 100 + r.Int64N(max(limit/gib-100, 1))
	}
	return min(gb*gib-r.Int64N(gib/2), limit)
}

func uuid(r *rand.Rand) string {
	a, b := r.Uint64(), r.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", a>>32, (a>>16)&0xffff, a&0xfff, b>>52&0xfff, b&0xffffffffffff)
}

// body is the message of a publication, made when it is sent: an S3/MinIO
// record for objects (the bitmap's own record for a bitmap), an export
// request otherwise.
func (w *workload) body(p publication, now time.Time) []byte {
	it := w.Items[p.Item]
	if it.isExport() {
		b, _ := json.Marshal(events.ExportRequest{ImageID: it.ImageID, BucketURL: it.BucketURL, RequestID: it.RequestID})
		return b
	}
	key, size, etag := it.Key, it.Size, it.ETag
	if p.Role == "bitmap" {
		key, size, etag = bitmapKey(it.Key), 64<<10, "mf"+it.ETag[2:]
	}
	type object struct {
		Key       string `json:"key"`
		Size      int64  `json:"size"`
		ETag      string `json:"eTag"`
		Sequencer string `json:"sequencer"`
	}
	type record struct {
		EventVersion string `json:"eventVersion"`
		EventSource  string `json:"eventSource"`
		EventTime    string `json:"eventTime"`
		EventName    string `json:"eventName"`
		S3           struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object object `json:"object"`
		} `json:"s3"`
	}
	var rec record
	rec.EventVersion, rec.EventSource, rec.EventName = "2.0", "minio:s3", "s3:ObjectCreated:Put"
	rec.EventTime = now.UTC().Format(time.RFC3339Nano)
	rec.S3.Bucket.Name = bucketImages
	rec.S3.Object = object{Key: key, Size: size, ETag: etag, Sequencer: fmt.Sprintf("%016X", now.UnixNano())}
	b, _ := json.Marshal(map[string]any{"Records": []record{rec}})
	return b
}

// bitmapKey is a RAW file's bitmap: the key without extension, .mf.
func bitmapKey(key string) string {
	for i := len(key) - 1; i >= 0 && key[i] != '/'; i-- {
		if key[i] == '.' {
			return key[:i] + ".mf"
		}
	}
	return key + ".mf"
}

// emuObject is an object of the emulator's catalogue (-objects).
type emuObject struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Size   int64  `json:"size"`
}

// catalogue is every object the notifications name (the RAW bitmaps too).
func (w *workload) catalogue() []emuObject {
	var out []emuObject
	for _, it := range w.Items {
		if it.isExport() {
			continue
		}
		out = append(out, emuObject{Bucket: bucketImages, Key: it.Key, Size: it.Size})
		if it.Kind == kindRAW {
			out = append(out, emuObject{Bucket: bucketImages, Key: bitmapKey(it.Key), Size: 64 << 10})
		}
	}
	return out
}

// emuImage is an image seeded in the emulator (POST /_emulator/images).
type emuImage struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	ImageSize  string `json:"__image_size"`
	MinDisk    int    `json:"min_disk"`
	DiskFormat string `json:"disk_format"`
	OSType     string `json:"__os_type"`
}

// images are the images the exports name (once each).
func (w *workload) images() []emuImage {
	seen := map[string]bool{}
	var out []emuImage
	for _, it := range w.Items {
		if it.Kind != kindExport || seen[it.ImageID] {
			continue
		}
		seen[it.ImageID] = true
		out = append(out, emuImage{ID: it.ImageID, Name: "golden-" + it.ID, ImageSize: fmt.Sprint(it.ImageSize),
			MinDisk: int(max((it.ImageSize+gib-1)/gib, 40)), DiskFormat: "zvhd2", OSType: "Linux"})
	}
	return out
}

// counts sums the workload up by kind.
func (w *workload) counts() map[kind]int {
	out := map[kind]int{}
	for _, it := range w.Items {
		out[it.Kind]++
	}
	return out
}
