package imsemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// TestQuickImportMinDiskExceedsDisk: ImportImageQuick's min_disk "must
// exceed the disk size in the file": min_disk GB strictly above the disk's
// bytes, refused as a min_disk out of range is (400 IMG.0055). CreateImage
// (also with is_quick_import) and CreateDataImage keep "at least the disk".
func TestQuickImportMinDiskExceedsDisk(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	for _, o := range []Object{
		{Bucket: "images", Key: "edge/byte.raw", Size: 1},
		{Bucket: "images", Key: "edge/1g.raw", Size: gib},
		{Bucket: "images", Key: "edge/1g1.raw", Size: gib + 1},
		{Bucket: "images", Key: "edge/200g.raw", Size: 200 * gib},
		{Bucket: "images", Key: "edge/1023g1.raw", Size: 1023*gib + 1},
		{Bucket: "images", Key: "edge/1024g.raw", Size: 1024 * gib},
		{Bucket: "images", Key: "edge/1t1.raw", Size: imsapi.TiB + 1},
		{Bucket: "images", Key: "edge/v200.zvhd2", Size: 50 * gib, VirtualSize: 200 * gib},
		{Bucket: "images", Key: "edge/nov.zvhd2", Size: 200 * gib}, // disk unknown
		{Bucket: "images", Key: "edge/v50.qcow2", Size: 5 * gib, VirtualSize: 50 * gib},
	} {
		f.s.PutObject(o)
		if bitmap, ok := strings.CutSuffix(o.Key, ".raw"); ok {
			f.s.PutObject(Object{Bucket: o.Bucket, Key: bitmap + ".mf", Size: 1 << 20})
		}
	}
	quick := func(key string, minDisk int) string {
		return fmt.Sprintf(`{"name":"q","image_url":"images:%s","min_disk":%d,"type":"DataImage"}`, key, minDisk)
	}
	tests := []struct {
		name, path, body string
		code             string // "" for accepted
	}{
		{"1 byte, min_disk 10", quickPath, quick("edge/byte.raw", 10), ""},
		{"exactly 1 GiB, min_disk 10", quickPath, quick("edge/1g.raw", 10), ""},
		{"1 GiB + 1, min_disk 10", quickPath, quick("edge/1g1.raw", 10), ""},
		{"exactly 200 GiB, min_disk 200", quickPath, quick("edge/200g.raw", 200), "IMG.0055"},
		{"exactly 200 GiB, min_disk 199", quickPath, quick("edge/200g.raw", 199), "IMG.0055"},
		{"exactly 200 GiB, min_disk 201", quickPath, quick("edge/200g.raw", 201), ""},
		{"1023 GiB + 1, min_disk 1023", quickPath, quick("edge/1023g1.raw", 1023), "IMG.0055"},
		{"1023 GiB + 1, min_disk 1024", quickPath, quick("edge/1023g1.raw", 1024), ""},
		{"exactly 1024 GiB, min_disk 1024", quickPath, quick("edge/1024g.raw", 1024), "IMG.0055"},
		{"1 TiB + 1, min_disk 1024", quickPath, quick("edge/1t1.raw", 1024), "IMG.0059"},
		{"zvhd2 virtual 200 GiB, min_disk 200", quickPath, quick("edge/v200.zvhd2", 200), "IMG.0055"},
		{"zvhd2 virtual 200 GiB, min_disk 201", quickPath, quick("edge/v200.zvhd2", 201), ""},
		{"zvhd2 disk unknown, min_disk equal to the file", quickPath, quick("edge/nov.zvhd2", 200), ""},
		{"CreateImage is_quick_import takes equal", imagePath,
			`{"name":"s","image_url":"images:edge/200g.raw","min_disk":200,"os_version":"CentOS 7.9 64bit","is_quick_import":true}`, ""},
		{"CreateImage is_quick_import below", imagePath,
			`{"name":"s","image_url":"images:edge/200g.raw","min_disk":199,"os_version":"CentOS 7.9 64bit","is_quick_import":true}`, "IMG.0055"},
		{"CreateDataImage takes equal", dataPath, `{"name":"d","image_url":"images:edge/v50.qcow2","min_disk":50}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, code := call(t, f.s, http.MethodPost, tt.path, tt.body)
			want := http.StatusOK
			if tt.code != "" {
				want = http.StatusBadRequest
			}
			if status != want || code != tt.code {
				t.Errorf("answer %d %q, want %d %q", status, code, want, tt.code)
			}
		})
	}
}

// TestQuickImportMinDiskAnswerShape: the refusal of a min_disk not above
// the disk is the answer IMS gives a min_disk out of range, field for field.
func TestQuickImportMinDiskAnswerShape(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	// db/db-01.raw is 20 GiB: min_disk 20 does not exceed it; 1025 is out of range.
	notAbove, body := callRaw(t, f.s, http.MethodPost, quickPath, `{"name":"q","image_url":"images:db/db-01.raw","min_disk":20,"type":"DataImage"}`)
	outOfRange, ref := callRaw(t, f.s, http.MethodPost, quickPath, `{"name":"q","image_url":"images:db/db-01.raw","min_disk":1025,"type":"DataImage"}`)
	shape := func(b []byte) (keys []string, code string) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		for k, v := range m {
			var inner map[string]any
			if json.Unmarshal(v, &inner) == nil {
				for ik := range inner {
					keys = append(keys, k+"."+ik)
				}
				if c, ok := inner["code"].(string); ok {
					code = c
				}
			} else {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		return keys, code
	}
	ka, ca := shape(body)
	kb, cb := shape(ref)
	if notAbove != http.StatusBadRequest || notAbove != outOfRange || ca != "IMG.0055" || ca != cb || !slices.Equal(ka, kb) {
		t.Errorf("not above the disk: %d %s\nout of range: %d %s", notAbove, body, outOfRange, ref)
	}
	if n := len(f.s.Submissions()); n != 0 {
		t.Errorf("%d refused submissions were logged as accepted", n)
	}
	// One GB more is enough.
	if _, err := f.c.QuickImport(t.Context(), &imsapi.QuickImportRequest{Name: "q", ImageURL: "images:db/db-01.raw", MinDisk: 21, Type: imsapi.TypeDataImage}); err != nil {
		t.Errorf("min_disk 21 on a 20 GiB RAW: %v", err)
	}
}

// TestAssumedRAWIsUnderMinDisk: "imsflow dev" takes an unknown RAW file as
// the largest disk the quick import's min_disk exceeds, so that it is
// accepted, again on a second import of the same key; ZVHD2 (disk unknown)
// keeps the size of min_disk (TestAssumeObjectsSize).
func TestAssumedRAWIsUnderMinDisk(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.AssumeObjects = true })
	for i := range 2 {
		ref, err := f.c.QuickImport(t.Context(), &imsapi.QuickImportRequest{Name: "r" + strconv.Itoa(i), ImageURL: "images:assumed/db.raw", MinDisk: 200, Type: imsapi.TypeDataImage})
		if err != nil {
			t.Fatalf("import %d: %v", i+1, err)
		}
		j := f.job(t, ref.JobID)
		im, err := f.c.Image(t.Context(), j.Entities.ImageID)
		if err != nil {
			t.Fatal(err)
		}
		if want := strconv.FormatInt(200*gib-1, 10); im.ImageSize != want {
			t.Errorf("import %d: image_size %s, want %s", i+1, im.ImageSize, want)
		}
	}
}
