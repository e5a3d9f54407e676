package imsemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

const (
	ak      = "EMUAK"
	sk      = "EMUSK-secret"
	project = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	gib     = imsapi.GiB
)

var start = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

type fixture struct {
	s     *Server
	clock *ManualClock
	c     *imsapi.Client
}

// newEmu starts an emulator on a manual clock with a few objects: a 10 GiB
// ZVHD2, a 20 GiB RAW with its bitmap, a 4 GiB QCOW2, a 30 GiB VMDK and an
// ISO in bucket "images", and an empty bucket "exports".
func newEmu(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	clock := NewManualClock(start)
	cfg := Config{Credentials: map[string]imsapi.Secret{ak: sk}, ProjectID: project, Clock: clock, Seed: 7}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for _, o := range []Object{
		{Bucket: "images", Key: "web/web-01.zvhd2", Size: 10 * gib},
		{Bucket: "images", Key: "db/db-01.raw", Size: 20 * gib},
		{Bucket: "images", Key: "db/db-01.mf", Size: 1 << 20},
		{Bucket: "images", Key: "data/d.qcow2", Size: 4 * gib},
		{Bucket: "images", Key: "sys/centos.vmdk", Size: 30 * gib},
		{Bucket: "images", Key: "iso/installer.iso", Size: 3 * gib},
	} {
		s.PutObject(o)
	}
	s.AddBucket("exports")
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{s: s, clock: clock, c: c}
}

func (f *fixture) job(t *testing.T, id string) *imsapi.Job {
	t.Helper()
	j, err := f.c.JobProgress(t.Context(), id)
	if err != nil {
		t.Fatalf("JobProgress(%s): %v", id, err)
	}
	return j
}

func (f *fixture) image(t *testing.T, opts *imsapi.ListImagesOptions) imsapi.Image {
	t.Helper()
	page, err := f.c.ListImages(t.Context(), opts)
	if err != nil || len(page.Images) != 1 {
		t.Fatalf("ListImages(%+v) = %+v, %v; want one image", opts, page, err)
	}
	return page.Images[0]
}

func percent(j *imsapi.Job) float64 { p, _ := j.Progress(); return p }

// TestQuickImportLifecycle follows one job from INIT to SUCCESS under the
// manual clock, with the image record going queued, saving, active.
func TestQuickImportLifecycle(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	ref, err := f.c.QuickImport(t.Context(), &imsapi.QuickImportRequest{
		Name: "web-01", ImageURL: "images:web/web-01.zvhd2", MinDisk: 40, OSVersion: "Ubuntu 22.04 server 64bit",
		ImageTags: []imsapi.ImageTag{{Key: "imsflow-src", Value: "abc"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	j := f.job(t, ref.JobID)
	if j.Status != imsapi.JobInit || j.JobType != imsapi.JobTypeImportImage || percent(j) != 0 || !j.BeginTime.Equal(start) || !j.EndTime.IsZero() {
		t.Fatalf("new job = %+v", j)
	}
	if j.Entities.SubJobID == "" || j.Entities.ImageName != "web-01" || j.Entities.ImageID == "" {
		t.Errorf("entities = %+v", j.Entities)
	}
	if im := f.image(t, &imsapi.ListImagesOptions{Name: "web-01"}); im.Status != imsapi.ImageQueued || im.ID != j.Entities.ImageID {
		t.Errorf("image during INIT = %+v", im)
	}

	// 10 GiB at 256 MiB/s runs 40 s after 2 s of INIT.
	f.clock.Advance(2 * time.Second)
	var last float64
	for i := range 4 {
		f.clock.Advance(9 * time.Second)
		j = f.job(t, ref.JobID)
		if j.Status != imsapi.JobRunning || percent(j) <= last || percent(j) >= 1 {
			t.Fatalf("step %d: job = %s %.2f after %.2f", i, j.Status, percent(j), last)
		}
		last = percent(j)
	}
	if im := f.image(t, &imsapi.ListImagesOptions{Tag: "imsflow-src.abc"}); im.Status != imsapi.ImageSaving {
		t.Errorf("image while RUNNING = %s, want saving", im.Status)
	}
	f.clock.Advance(4 * time.Second)
	j = f.job(t, ref.JobID)
	if j.Status != imsapi.JobSuccess || percent(j) != 1 || !j.EndTime.Equal(start.Add(42*time.Second)) || j.ErrorCode != "" {
		t.Fatalf("finished job = %+v", j)
	}
	im := f.image(t, &imsapi.ListImagesOptions{ID: j.Entities.ImageID})
	size, _ := im.SizeBytes()
	want := imsapi.Image{Status: imsapi.ImageActive, ImageType: "private", Visibility: "private", RootOrigin: "file",
		DiskFormat: "zvhd2", MinDisk: 40, VirtualEnvType: "FusionCompute", OSVersion: "Ubuntu 22.04 server 64bit", OSType: imsapi.OSLinux}
	got := imsapi.Image{Status: im.Status, ImageType: im.ImageType, Visibility: im.Visibility, RootOrigin: im.RootOrigin,
		DiskFormat: im.DiskFormat, MinDisk: im.MinDisk, VirtualEnvType: im.VirtualEnvType, OSVersion: im.OSVersion, OSType: im.OSType}
	if !reflect.DeepEqual(got, want) || size != 10*gib || len(im.Tags) != 1 || im.Tags[0] != "imsflow-src.abc" {
		t.Errorf("image = %+v\nwant  %+v (size %d, tags %v)", got, want, size, im.Tags)
	}
	if st := f.s.Stats(); st.JobsSucceeded != 1 || st.RunningJobs != 0 || st.MaxRunning != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// TestTimeScale: a 500 GB quick import runs for seconds at a time scale of 1000.
func TestTimeScale(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.TimeScale = 1000 })
	f.s.PutObject(Object{Bucket: "images", Key: "big.zvhd2", Size: 500 * gib})
	ref, err := f.c.QuickImport(t.Context(), &imsapi.QuickImportRequest{Name: "big", ImageURL: "images:big.zvhd2", MinDisk: 600, Type: imsapi.TypeDataImage})
	if err != nil {
		t.Fatal(err)
	}
	// 500 GiB / 256 MiB/s = 2000 s, /1000 = 2 s, plus 2 ms of INIT.
	f.clock.Advance(2 * time.Second)
	if j := f.job(t, ref.JobID); j.Status != imsapi.JobRunning {
		t.Fatalf("at 2s: %s", j.Status)
	}
	f.clock.Advance(10 * time.Millisecond)
	if j := f.job(t, ref.JobID); j.Status != imsapi.JobSuccess || j.JobType != imsapi.JobTypeImportDataImage {
		t.Fatalf("at 2.01s: %s %s", j.Status, j.JobType)
	}
}

// TestEveryOperation runs each client method against the emulator.
func TestEveryOperation(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	ctx := t.Context()
	data, err := f.c.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: "data-01", ImageURL: "images:data/d.qcow2", MinDisk: 40, Tags: []string{"team.storage"}})
	if err != nil {
		t.Fatal(err)
	}
	sys, err := f.c.ImportImage(ctx, &imsapi.ImageRequest{Name: "centos", ImageURL: "images:sys/centos.vmdk", MinDisk: 40, OSVersion: "CentOS 7.9 64bit"})
	if err != nil {
		t.Fatal(err)
	}
	iso, err := f.c.ImportImage(ctx, &imsapi.ImageRequest{Name: "installer", ImageURL: "images:iso/installer.iso", MinDisk: 40, Type: imsapi.TypeIsoImage, OSVersion: "CentOS 7.9 64bit"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := f.c.QuickImport(ctx, &imsapi.QuickImportRequest{Name: "db-01", ImageURL: "images:db/db-01.raw", MinDisk: 21, Type: imsapi.TypeDataImage})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	for _, id := range []string{data.JobID, sys.JobID, iso.JobID, raw.JobID} {
		if j, err := f.c.Job(ctx, id); err != nil || j.Status != imsapi.JobSuccess || j.Entities.SubJobID != "" {
			t.Errorf("Job(%s) = %+v, %v", id, j, err)
		}
	}
	if im := f.image(t, &imsapi.ListImagesOptions{Name: "installer"}); im.VirtualEnvType != imsapi.TypeIsoImage {
		t.Errorf("iso image = %+v", im)
	}
	im := f.image(t, &imsapi.ListImagesOptions{Name: "data-01", Status: imsapi.ImageActive, Tag: "team.storage"})
	if im.VirtualEnvType != imsapi.TypeDataImage || im.DiskFormat != "qcow2" {
		t.Errorf("data image = %+v", im)
	}

	exp, err := f.c.ExportImage(ctx, im.ID, &imsapi.ExportRequest{BucketURL: "exports:data-01.vmdk", FileFormat: imsapi.FormatVMDK})
	if err != nil {
		t.Fatal(err)
	}
	if j := f.job(t, exp.JobID); j.JobType != imsapi.JobTypeExportImage || j.Entities.ImageID != im.ID || j.Entities.SubJobID != "" {
		t.Errorf("export job = %+v", j)
	}
	if _, ok := f.s.Object("exports", "data-01.vmdk"); ok {
		t.Error("exported object exists before the job ended")
	}
	f.clock.Advance(time.Hour)
	if o, ok := f.s.Object("exports", "data-01.vmdk"); !ok || o.Size != 4*gib {
		t.Errorf("exported object = %+v, %v", o, ok)
	}

	// Paging: four images, two per page, newest first.
	var names []string
	for im, err := range f.c.AllImages(ctx, &imsapi.ListImagesOptions{Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, im.Name)
	}
	if strings.Join(names, ",") != "db-01,installer,centos,data-01" {
		t.Errorf("AllImages = %v", names)
	}
	if got, err := f.c.Image(ctx, im.ID); err != nil || got.Name != "data-01" {
		t.Errorf("Image = %+v, %v", got, err)
	}
	if _, err := f.c.Image(ctx, "00000000-0000-4000-a000-000000000000"); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("Image(unknown) = %v", err)
	}

	all, err := f.c.ListOSVersions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all.Find("CentOS 7.0 64bit"); !ok {
		t.Errorf("os versions lack CentOS 7.0: %+v", all)
	}
	uefi, _ := f.c.ListOSVersions(ctx, imsapi.OSTagUEFI)
	if _, ok := uefi.Find("CentOS 7.0 64bit"); ok {
		t.Error("uefi list has CentOS 7.0, which is not tagged uefi")
	}
	q, err := f.c.Quota(ctx)
	if r, ok := q.Resource(imsapi.QuotaImage); err != nil || !ok || r.Used != 4 || r.Quota != DefaultImageQuota {
		t.Errorf("quota = %+v, %v", q, err)
	}
	if _, err := f.c.JobProgress(ctx, "ffffffffffffffffffffffffffffffff"); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("unknown job: %v, want ErrNotFound", err)
	}
}

// call sends a signed request with a raw body, bypassing the client's own
// validation, and returns the status and the error code of the answer.
func call(t *testing.T, s *Server, method, path, body string) (int, string) {
	t.Helper()
	status, b := callRaw(t, s, method, path, body)
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
		ErrorCode string `json:"error_code"`
	}
	_ = json.Unmarshal(b, &e)
	return status, e.Error.Code + e.ErrorCode
}

// callRaw sends a signed request and returns the status and body of the answer.
func callRaw(t *testing.T, s *Server, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	if err := (imsapi.Signer{AccessKey: ak, SecretKey: sk}).Sign(req, []byte(body), time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

const (
	quickPath = "/v2/cloudimages/quickimport/action"
	dataPath  = "/v1/cloudimages/dataimages/action"
	imagePath = "/v2/cloudimages/action"
)

// TestValidationRules: IMS's documented rules, one request each, sent raw
// so that the emulator's own checks answer.
func TestValidationRules(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	f.s.PutObject(Object{Bucket: "images", Key: "huge.vmdk", Size: 129 * gib})
	f.s.PutObject(Object{Bucket: "images", Key: "huge.zvhd2", Size: 1025 * gib})
	f.s.PutObject(Object{Bucket: "images", Key: "cold.qcow2", Size: gib, StorageClass: "COLD"})
	f.s.PutObject(Object{Bucket: "images", Key: "empty.qcow2", Size: 0})
	f.s.PutObject(Object{Bucket: "images", Key: "nobitmap.raw", Size: gib})
	f.s.PutObject(Object{Bucket: "images", Key: "big-disk.qcow2", Size: gib, VirtualSize: 50 * gib})
	f.s.PutObject(Object{Bucket: "images", Key: "disk.img", Size: gib})
	tests := []struct {
		name, path, body, code string
	}{
		{"malformed json", dataPath, `{"name":`, "IMG.0001"},
		{"field of the wrong type", dataPath, `{"name":"d","image_url":"images:data/d.qcow2","min_disk":"forty"}`, "IMG.0001"},
		{"name missing", dataPath, `{"image_url":"images:data/d.qcow2","min_disk":40}`, "IMG.0001"},
		{"name longer than 128", dataPath, `{"name":"` + strings.Repeat("n", 129) + `","image_url":"images:data/d.qcow2","min_disk":40}`, "IMG.0002"},
		{"name bad character", dataPath, `{"name":"a*b","image_url":"images:data/d.qcow2","min_disk":40}`, "IMG.0003"},
		{"description longer than 1024", dataPath, `{"name":"d","description":"` + strings.Repeat("x", 1025) + `","image_url":"images:data/d.qcow2","min_disk":40}`, "IMG.0004"},
		{"description with <", dataPath, `{"name":"d","description":"<script>","image_url":"images:data/d.qcow2","min_disk":40}`, "IMG.0054"},
		{"tags and image_tags", dataPath, `{"name":"d","image_url":"images:data/d.qcow2","min_disk":40,"tags":["a.b"],"image_tags":[{"key":"c","value":"d"}]}`, "IMG.0115"},
		{"eleven tags", dataPath, `{"name":"d","image_url":"images:data/d.qcow2","min_disk":40,"tags":["a","b","c","d","e","f","g","h","i","j","k"]}`, "IMG.0116"},
		{"tag key too long", dataPath, `{"name":"d","image_url":"images:data/d.qcow2","min_disk":40,"tags":["` + strings.Repeat("k", 37) + `.v"]}`, "IMG.0115"},
		{"data image min_disk 39", dataPath, `{"name":"d","image_url":"images:data/d.qcow2","min_disk":39}`, "IMG.0055"},
		{"data image min_disk 2049", dataPath, `{"name":"d","image_url":"images:data/d.qcow2","min_disk":2049}`, "IMG.0055"},
		{"system image min_disk 1025", imagePath, `{"name":"s","image_url":"images:sys/centos.vmdk","min_disk":1025}`, "IMG.0055"},
		{"quick import min_disk 1025", quickPath, `{"name":"q","image_url":"images:web/web-01.zvhd2","min_disk":1025,"os_version":"CentOS 7.0 64bit"}`, "IMG.0055"},
		{"min_disk below the disk in the file", dataPath, `{"name":"d","image_url":"images:big-disk.qcow2","min_disk":40}`, "IMG.0055"},
		{"quick import system disk without os_version", quickPath, `{"name":"q","image_url":"images:web/web-01.zvhd2","min_disk":40}`, "IMG.0056"},
		{"iso without os_version", imagePath, `{"name":"i","image_url":"images:iso/installer.iso","min_disk":40,"type":"IsoImage"}`, "IMG.0056"},
		{"unknown os_version", imagePath, `{"name":"s","image_url":"images:sys/centos.vmdk","min_disk":40,"os_version":"CentOS 99"}`, "IMG.0056"},
		{"quick import type", quickPath, `{"name":"q","image_url":"images:web/web-01.zvhd2","min_disk":40,"type":"IsoImage"}`, "IMG.0024"},
		{"data image os_type", dataPath, `{"name":"d","image_url":"images:data/d.qcow2","min_disk":40,"os_type":"Other"}`, "IMG.0122"},
		{"architecture", imagePath, `{"name":"s","image_url":"images:sys/centos.vmdk","min_disk":40,"architecture":"mips"}`, "IMG.0212"},
		{"hw_firmware_type", imagePath, `{"name":"s","image_url":"images:sys/centos.vmdk","min_disk":40,"hw_firmware_type":"efi"}`, "IMG.0141"},
		{"image_url not bucket:key", dataPath, `{"name":"d","image_url":"images/data/d.qcow2","min_disk":40}`, "IMG.0017"},
		{"unknown bucket", dataPath, `{"name":"d","image_url":"nosuchbucket:d.qcow2","min_disk":40}`, "IMG.0069"},
		{"missing object", dataPath, `{"name":"d","image_url":"images:nope.qcow2","min_disk":40}`, "IMG.0057"},
		{"non-standard storage class", dataPath, `{"name":"d","image_url":"images:cold.qcow2","min_disk":40}`, "IMG.0057"},
		{"empty file", dataPath, `{"name":"d","image_url":"images:empty.qcow2","min_disk":40}`, "IMG.0057"},
		{"unsupported format", dataPath, `{"name":"d","image_url":"images:disk.img","min_disk":40}`, "IMG.0057"},
		{"quick import of qcow2", quickPath, `{"name":"q","image_url":"images:data/d.qcow2","min_disk":40,"type":"DataImage"}`, "IMG.0057"},
		{"quick import of raw without bitmap", quickPath, `{"name":"q","image_url":"images:nobitmap.raw","min_disk":40,"type":"DataImage"}`, "IMG.0057"},
		{"iso through the data image path", dataPath, `{"name":"d","image_url":"images:iso/installer.iso","min_disk":40}`, "IMG.0057"},
		{"normal import above 128 GB", dataPath, `{"name":"d","image_url":"images:huge.vmdk","min_disk":200}`, "IMG.0059"},
		{"quick import above 1 TB", quickPath, `{"name":"q","image_url":"images:huge.zvhd2","min_disk":1024,"type":"DataImage"}`, "IMG.0059"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, code := call(t, f.s, http.MethodPost, tt.path, tt.body)
			if status != http.StatusBadRequest || code != tt.code {
				t.Errorf("answer %d %s, want 400 %s", status, code, tt.code)
			}
		})
	}
	t.Cleanup(func() {
		if n := len(f.s.Submissions()); n != 0 {
			t.Errorf("%d refused submissions were logged as accepted", n)
		}
	})
}

// TestExportRules: what IMS refuses to export, one case each.
func TestExportRules(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	add := func(im imsapi.Image) string { return f.s.AddImage(im).ID }
	ok := add(imsapi.Image{Name: "ok", ImageSize: "1073741824"})
	big := add(imsapi.Image{Name: "big", ImageSize: "214748364800"})
	f.s.PutObject(Object{Bucket: "exports", Key: "taken.qcow2", Size: 1})
	tests := []struct {
		name, id, body, code string
	}{
		{"no such image", "00000000-0000-4000-a000-000000000000", `{"bucket_url":"exports:a.qcow2","file_format":"qcow2"}`, "IMG.0027"},
		{"public image", add(imsapi.Image{Name: "pub", ImageType: "gold", ImageSize: "1"}), `{"bucket_url":"exports:a.qcow2","file_format":"qcow2"}`, "IMG.0077"},
		{"market image", add(imsapi.Image{Name: "mkt", ImageType: "market", ImageSize: "1"}), `{"bucket_url":"exports:a.qcow2","file_format":"qcow2"}`, "IMG.0079"},
		{"charged derivative", add(imsapi.Image{Name: "chg", ProductCode: "p1", ImageSize: "1"}), `{"bucket_url":"exports:a.qcow2","file_format":"qcow2"}`, "IMG.0079"},
		{"shared image", add(imsapi.Image{Name: "shr", ImageType: "shared", ImageSize: "1"}), `{"bucket_url":"exports:a.qcow2","file_format":"qcow2"}`, "IMG.0071"},
		{"whole-ECS image", add(imsapi.Image{Name: "whole", WholeImage: true, ImageSize: "1"}), `{"bucket_url":"exports:a.qcow2","file_format":"qcow2"}`, "IMG.0128"},
		{"iso image", add(imsapi.Image{Name: "iso", VirtualEnvType: imsapi.TypeIsoImage, ImageSize: "1"}), `{"bucket_url":"exports:a.qcow2","file_format":"qcow2"}`, "IMG.0071"},
		{"not active", add(imsapi.Image{Name: "killed", Status: imsapi.ImageKilled, ImageSize: "1"}), `{"bucket_url":"exports:a.qcow2","file_format":"qcow2"}`, "IMG.0071"},
		{"1 TB or more", add(imsapi.Image{Name: "tb", ImageSize: "1099511627776"}), `{"bucket_url":"exports:a.zvhd2","is_quick_export":true}`, "IMG.0160"},
		{"above 128 GB without quick", big, `{"bucket_url":"exports:a.qcow2","file_format":"qcow2"}`, "IMG.0160"},
		{"encrypted quick export", add(imsapi.Image{Name: "enc", SystemCMKID: "key-1", ImageSize: "1"}), `{"bucket_url":"exports:a.zvhd2","is_quick_export":true}`, "IMG.0071"},
		{"file_format with quick", ok, `{"bucket_url":"exports:a.zvhd2","file_format":"qcow2","is_quick_export":true}`, "IMG.0072"},
		{"no file_format without quick", ok, `{"bucket_url":"exports:a.qcow2"}`, "IMG.0072"},
		{"unsupported file_format", ok, `{"bucket_url":"exports:a.raw","file_format":"raw"}`, "IMG.0072"},
		{"space in file name", ok, `{"bucket_url":"exports:a b.qcow2","file_format":"qcow2"}`, "IMG.0175"},
		{"unknown bucket", ok, `{"bucket_url":"nosuchbucket:a.qcow2","file_format":"qcow2"}`, "IMG.0069"},
		{"target exists", ok, `{"bucket_url":"exports:taken.qcow2","file_format":"qcow2"}`, "IMG.0070"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, code := call(t, f.s, http.MethodPost, "/v1/cloudimages/"+tt.id+"/file", tt.body)
			if status != http.StatusBadRequest || code != tt.code {
				t.Errorf("answer %d %s, want 400 %s", status, code, tt.code)
			}
		})
	}
	t.Run("already being exported", func(t *testing.T) {
		t.Parallel()
		id := add(imsapi.Image{Name: "twice", ImageSize: "1073741824"})
		if status, code := call(t, f.s, http.MethodPost, "/v1/cloudimages/"+id+"/file", `{"bucket_url":"exports:twice-1.qcow2","file_format":"qcow2"}`); status != 200 {
			t.Fatalf("first export: %d %s", status, code)
		}
		if status, code := call(t, f.s, http.MethodPost, "/v1/cloudimages/"+id+"/file", `{"bucket_url":"exports:twice-2.qcow2","file_format":"qcow2"}`); status != 400 || code != "IMG.0148" {
			t.Errorf("second export: %d %s, want 400 IMG.0148", status, code)
		}
	})
	t.Run("quick export above 128 GB", func(t *testing.T) {
		t.Parallel()
		if status, code := call(t, f.s, http.MethodPost, "/v1/cloudimages/"+big+"/file", `{"bucket_url":"exports:big.zvhd2","is_quick_export":true}`); status != 200 {
			t.Errorf("quick export of 200 GB: %d %s, want 200", status, code)
		}
	})
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.Tokens = []imsapi.Secret{"iam-token"} })
	ctx := t.Context()
	tests := []struct {
		name  string
		creds imsapi.Credentials
		opts  []imsapi.Option
		code  string // "" for success
	}{
		{"signed", imsapi.AKSK{AccessKey: ak, SecretKey: sk}, nil, ""},
		{"token", imsapi.Token{Token: "iam-token"}, nil, ""},
		{"wrong secret", imsapi.AKSK{AccessKey: ak, SecretKey: "other"}, nil, "APIGW.0301"},
		{"unknown access key", imsapi.AKSK{AccessKey: "NOPE", SecretKey: sk}, nil, "APIGW.0301"},
		{"wrong token", imsapi.Token{Token: "stolen"}, nil, "APIGW.0301"},
		{"signature 20 minutes old", imsapi.AKSK{AccessKey: ak, SecretKey: sk}, []imsapi.Option{imsapi.WithClock(func() time.Time { return time.Now().Add(-20 * time.Minute) })}, "APIGW.0303"},
	}
	for _, tt := range tests {
		c, err := imsapi.New(f.s.URL, tt.creds, tt.opts...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Quota(ctx)
		apiErr, _ := errors.AsType[*imsapi.APIError](err)
		switch {
		case tt.code == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.code != "" && (apiErr == nil || apiErr.StatusCode != 401 || apiErr.Code != tt.code || apiErr.RequestID == ""):
			t.Errorf("%s: %v, want 401 %s with a request ID", tt.name, err, tt.code)
		}
	}
	resp, err := http.Get(f.s.URL + "/v1/cloudimages/quota")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("unsigned request: %d, want 401", resp.StatusCode)
	}
}

// TestRateLimit: the per-AK rate follows the emulator clock, so the test
// decides when tokens come back.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.RateLimit, c.RateBurst = 1, 2 })
	ctx := t.Context()
	for i := range 2 {
		if _, err := f.c.Quota(ctx); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := f.c.Quota(ctx)
	apiErr, _ := errors.AsType[*imsapi.APIError](err)
	if apiErr == nil || apiErr.StatusCode != 429 || apiErr.Code != imsapi.CodeGatewayThrottled || !errors.Is(err, imsapi.ErrThrottled) {
		t.Fatalf("third call: %v, want 429 APIGW.0308", err)
	}
	f.clock.Advance(time.Second)
	if _, err := f.c.Quota(ctx); err != nil {
		t.Errorf("after a second: %v", err)
	}
	if st := f.s.Stats(); st.Throttled != 1 || st.Statuses[429] != 1 || st.Statuses[200] != 3 {
		t.Errorf("stats = %+v", st)
	}
}

// TestRunningJobsCap: the third import while two run is refused with
// IMG.0194, and accepted once one has ended.
func TestRunningJobsCap(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.MaxRunningJobs = 2 })
	ctx := t.Context()
	submit := func(name string) error {
		_, err := f.c.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: name, ImageURL: "images:data/d.qcow2", MinDisk: 40})
		return err
	}
	if err := submit("a"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	if err := submit("b"); err != nil {
		t.Fatal(err)
	}
	err := submit("c")
	if !errors.Is(err, imsapi.ErrThrottled) || !imsapi.IsRetryable(err) || !strings.Contains(err.Error(), "IMG.0194") {
		t.Fatalf("third import: %v, want retryable IMG.0194", err)
	}
	// a: 2 s INIT + 16 s (4 GiB at 256 MiB/s) = 18 s; b ends a second later.
	f.clock.Advance(17 * time.Second)
	if err := submit("c"); err != nil {
		t.Errorf("after one job ended: %v", err)
	}
	if st := f.s.Stats(); st.Capped != 1 || st.MaxRunning != 2 || st.JobsSubmitted != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	req := &imsapi.DataImageRequest{Name: "d", ImageURL: "images:data/d.qcow2", MinDisk: 40}

	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		f := newEmu(t, func(c *Config) { c.Faults.ErrorRate = 1 })
		for range 10 {
			_, err := f.c.Quota(ctx)
			apiErr, _ := errors.AsType[*imsapi.APIError](err)
			if apiErr == nil || (apiErr.StatusCode != 500 && apiErr.StatusCode != 503) || !imsapi.IsRetryable(err) {
				t.Fatalf("%v, want a retryable 500 or 503", err)
			}
		}
		if err := f.s.SetFaults(Faults{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.c.Quota(ctx); err != nil {
			t.Errorf("after clearing faults: %v", err)
		}
	})

	t.Run("dropped before accepting", func(t *testing.T) {
		t.Parallel()
		f := newEmu(t, func(c *Config) { c.Faults.DropRate = 1 })
		_, err := f.c.ImportDataImage(ctx, req)
		if te, ok := errors.AsType[*imsapi.TransportError](err); !ok || !te.MaybeApplied {
			t.Fatalf("%v, want a TransportError", err)
		}
		if n := len(f.s.Submissions()); n != 0 {
			t.Errorf("%d submissions, want 0", n)
		}
	})

	t.Run("dropped after accepting", func(t *testing.T) {
		t.Parallel()
		f := newEmu(t, func(c *Config) { c.Faults = Faults{DropRate: 1, AcceptBeforeDrop: true} })
		_, err := f.c.ImportDataImage(ctx, req)
		if _, ok := errors.AsType[*imsapi.TransportError](err); !ok {
			t.Fatalf("%v, want a TransportError", err)
		}
		subs := f.s.Submissions()
		if len(subs) != 1 || subs[0].Name != "d" {
			t.Fatalf("submissions = %+v, want the one that was accepted", subs)
		}
		if err := f.s.SetFaults(Faults{}); err != nil {
			t.Fatal(err)
		}
		// The caller can find the job's image by name, as imsflow will.
		if im := (&fixture{c: f.c}).image(t, &imsapi.ListImagesOptions{Name: "d"}); im.ID != subs[0].ImageID {
			t.Errorf("image = %+v", im)
		}
		if st := f.s.Stats(); st.Dropped != 1 || st.Statuses[0] != 1 {
			t.Errorf("stats = %+v", st)
		}
	})

	t.Run("fail next", func(t *testing.T) {
		t.Parallel()
		f := newEmu(t, nil)
		if err := f.s.FailNext(503, 429, 500); err != nil {
			t.Fatal(err)
		}
		for _, want := range []int{503, 429, 500, 200} {
			_, err := f.c.Quota(ctx)
			got := 200
			if apiErr, ok := errors.AsType[*imsapi.APIError](err); ok {
				got = apiErr.StatusCode
			}
			if got != want {
				t.Errorf("status %d (%v), want %d", got, err, want)
			}
		}
	})

	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		f := newEmu(t, func(c *Config) { c.Faults.Latency = Duration(20 * time.Millisecond) })
		begin := time.Now()
		if _, err := f.c.Quota(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(begin); d < 20*time.Millisecond {
			t.Errorf("answered in %s, before the 20ms latency", d)
		}
	})
}

// TestFailureRules: a scripted failure ends the job in FAIL with IMS's
// error code and reason, and kills the image.
func TestFailureRules(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	if err := f.s.AddFailureRule(FailureRule{KeyPattern: "data/*", ErrorCode: "IMG.0057", FailReason: "the image file is damaged", AtPercent: 0.3}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.AddFailureRule(FailureRule{KeyPattern: "["}); err == nil {
		t.Error("a bad pattern was accepted")
	}
	ref, err := f.c.ImportDataImage(t.Context(), &imsapi.DataImageRequest{Name: "bad", ImageURL: "images:data/d.qcow2", MinDisk: 40})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := f.c.QuickImport(t.Context(), &imsapi.QuickImportRequest{Name: "good", ImageURL: "images:web/web-01.zvhd2", MinDisk: 40, Type: imsapi.TypeDataImage})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	j := f.job(t, ref.JobID)
	if j.Status != imsapi.JobFail || j.ErrorCode != "IMG.0057" || j.FailReason != "the image file is damaged" || percent(j) != 0.3 || j.EndTime.IsZero() {
		t.Errorf("failed job = %+v", j)
	}
	if im := f.image(t, &imsapi.ListImagesOptions{Name: "bad"}); im.Status != imsapi.ImageKilled {
		t.Errorf("image of the failed job is %s, want killed", im.Status)
	}
	if j := f.job(t, ok.JobID); j.Status != imsapi.JobSuccess {
		t.Errorf("other job = %s", j.Status)
	}
}

// TestConcurrentSubmissions: many goroutines through one client; every
// accepted submission is logged once with its own job.
func TestConcurrentSubmissions(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.MaxRunningJobs, c.ImageQuota = -1, -1 })
	var wg sync.WaitGroup
	ids := make(chan string, 64)
	for i := range 64 {
		wg.Go(func() {
			ref, err := f.c.ImportDataImage(t.Context(), &imsapi.DataImageRequest{Name: "d" + string(rune('a'+i%26)), ImageURL: "images:data/d.qcow2", MinDisk: 40})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- ref.JobID
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	subs := f.s.Submissions()
	if len(seen) != 64 || len(subs) != 64 {
		t.Fatalf("%d distinct jobs, %d submissions; want 64 each", len(seen), len(subs))
	}
	var seqs, want []int
	for i, s := range subs {
		seqs = append(seqs, s.Seq)
		want = append(want, i+1)
		if !seen[s.JobID] || s.Operation != OpDataImageImport || s.URL != "images:data/d.qcow2" {
			t.Errorf("submission %+v", s)
		}
	}
	if slices.Sort(seqs); !slices.Equal(seqs, want) {
		t.Errorf("submission numbers %v, want each of 1..64 once", seqs)
	}
}

// TestConcurrentCap: 64 submissions at once against a cap of 40 running
// import jobs; exactly 40 are accepted and 24 refused with IMG.0194.
func TestConcurrentCap(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.MaxRunningJobs, c.ImageQuota = 40, -1 })
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			_, err := f.c.ImportDataImage(t.Context(), &imsapi.DataImageRequest{Name: fmt.Sprintf("d%d", i), ImageURL: "images:data/d.qcow2", MinDisk: 40})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	accepted, capped := 0, 0
	for err := range errs {
		apiErr, _ := errors.AsType[*imsapi.APIError](err)
		switch {
		case err == nil:
			accepted++
		case apiErr != nil && apiErr.StatusCode == 400 && apiErr.Code == imsapi.CodeTooManyImports:
			capped++
		default:
			t.Errorf("unexpected answer: %v", err)
		}
	}
	st := f.s.Stats()
	if accepted != 40 || capped != 24 || st.Capped != 24 || st.MaxRunning != 40 || len(f.s.Submissions()) != 40 {
		t.Errorf("accepted %d, capped %d, stats %+v, %d submissions; want 40 accepted and 24 IMG.0194", accepted, capped, st, len(f.s.Submissions()))
	}
}

func TestAdminEndpoint(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	post := func(method, path, body string) int {
		req, _ := http.NewRequest(method, f.s.URL+AdminPrefix+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("POST", "objects", `[{"bucket":"upl","key":"a.zvhd2","size":1073741824}]`); st != 200 {
		t.Fatalf("POST objects: %d", st)
	}
	if st := post("POST", "objects", `{"bucket":"upl","key":"b.qcow2","size":1073741824,"colour":"red"}`); st != 400 {
		t.Errorf("POST objects with an unknown field: %d, want 400", st)
	}
	if st := post("POST", "failures", `{"key_pattern":"a.*","error_code":"IMG.0057","fail_reason":"broken"}`); st != 200 {
		t.Fatalf("POST failures: %d", st)
	}
	if _, err := f.c.QuickImport(t.Context(), &imsapi.QuickImportRequest{Name: "a", ImageURL: "upl:a.zvhd2", MinDisk: 10, Type: imsapi.TypeDataImage}); err != nil {
		t.Fatal(err)
	}
	if st := post("PUT", "faults", `{"error_rate":1}`); st != 200 {
		t.Fatalf("PUT faults: %d", st)
	}
	if _, err := f.c.Quota(t.Context()); !imsapi.IsRetryable(err) {
		t.Errorf("after PUT faults: %v, want an injected retryable error", err)
	}
	if st := post("PUT", "faults", `{"error_rate":2}`); st != 400 {
		t.Errorf("PUT faults error_rate 2: %d, want 400", st)
	}
	if st := post("PUT", "faults", `{}`); st != 200 {
		t.Fatalf("PUT faults: %d", st)
	}
	if st := post("POST", "fail-next", `{"statuses":[503]}`); st != 200 {
		t.Fatalf("POST fail-next: %d", st)
	}
	if _, err := f.c.Quota(t.Context()); err == nil {
		t.Error("fail-next had no effect")
	}
	f.clock.Advance(time.Hour)
	resp, err := http.Get(f.s.URL + AdminPrefix + "submissions")
	if err != nil {
		t.Fatal(err)
	}
	var subs []Submission
	err = json.NewDecoder(resp.Body).Decode(&subs)
	resp.Body.Close()
	if err != nil || len(subs) != 1 || subs[0].URL != "upl:a.zvhd2" || !bytes.Contains(subs[0].Body, []byte(`"min_disk":10`)) {
		t.Errorf("submissions = %+v, %v", subs, err)
	}
	resp, err = http.Get(f.s.URL + AdminPrefix + "stats")
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.JobsFailed != 1 || st.Injected != 2 || st.Requests[OpQuickImport] != 1 {
		t.Errorf("stats = %+v, %v", st, err)
	}
	f.s.PutObject(Object{Bucket: "upl", Key: "0.qcow2", Size: 1})
	resp, err = http.Get(f.s.URL + AdminPrefix + "objects")
	if err != nil {
		t.Fatal(err)
	}
	var objs []Object
	err = json.NewDecoder(resp.Body).Decode(&objs)
	resp.Body.Close()
	var upl []Object // the fixture's own objects are in bucket images
	for _, o := range objs {
		if o.Bucket == "upl" {
			upl = append(upl, o)
		}
	}
	if err != nil || len(objs) < 3 || objs[0].Bucket != "images" || len(upl) != 2 || upl[0].Key != "0.qcow2" || upl[1].Key != "a.zvhd2" || upl[1].Size != 1<<30 {
		t.Errorf("GET objects = %+v, %v; want the bucket upl's 0.qcow2 and a.zvhd2 after images', by key", objs, err)
	}
}

func TestUnknownPath(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	status, code := call(t, f.s, http.MethodGet, "/v3/nothing", "")
	if status != 404 || code != "APIGW.0101" {
		t.Errorf("unknown path: %d %s", status, code)
	}
}

// TestJobStart: a job is INIT (its image queued) until exactly the end of
// the INIT duration, and RUNNING (saving) from that instant; a negative
// InitDuration means no INIT at all.
func TestJobStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		config time.Duration // Config.InitDuration
		init   time.Duration // the INIT phase it gives
	}{
		{"default", 0, DefaultInitDuration},
		{"five seconds", 5 * time.Second, 5 * time.Second},
		{"none", -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newEmu(t, func(c *Config) { c.InitDuration = tt.config })
			ref, err := f.c.ImportDataImage(t.Context(), &imsapi.DataImageRequest{Name: "d", ImageURL: "images:data/d.qcow2", MinDisk: 40})
			if err != nil {
				t.Fatal(err)
			}
			check := func(when string, status imsapi.JobStatus, task, imageStatus string) {
				t.Helper()
				j := f.job(t, ref.JobID)
				if j.Status != status || percent(j) != 0 || j.Entities.CurrentTask != task {
					t.Errorf("%s: job %s %.2f %q, want %s 0 %q", when, j.Status, percent(j), j.Entities.CurrentTask, status, task)
				}
				if im := f.image(t, &imsapi.ListImagesOptions{ID: j.Entities.ImageID}); im.Status != imageStatus {
					t.Errorf("%s: image %s, want %s", when, im.Status, imageStatus)
				}
			}
			if tt.init > 0 {
				check("at submission", imsapi.JobInit, "ImportImageTask:ObtainImageInfoTask", imsapi.ImageQueued)
				f.clock.Advance(tt.init - time.Nanosecond)
				check("a nanosecond before the end of INIT", imsapi.JobInit, "ImportImageTask:ObtainImageInfoTask", imsapi.ImageQueued)
				f.clock.Advance(time.Nanosecond)
			}
			check("at the end of INIT", imsapi.JobRunning, "ImportImageTask:RegisterImageTask", imsapi.ImageSaving)
		})
	}
}

// TestProcessPercent: process_percent is the progress (ProgressAt) cut to
// two decimals, exactly: 0.29 stays 0.29 (not 0.28), 0.575 is 0.57.
func TestProcessPercent(t *testing.T) {
	t.Parallel()
	// 4 GiB at 256 MiB/s runs 16 s after 2 s of INIT.
	const run = 16 * time.Second
	tests := []struct {
		name    string
		failAt  float64       // a failure rule's AtPercent; 0 for none
		elapsed time.Duration // after INIT
		status  imsapi.JobStatus
		want    float64
	}{
		{"running at the start", 0, 0, imsapi.JobRunning, 0},
		{"running at 0.29", 0, at(run, 0.29), imsapi.JobRunning, 0.29},
		{"running at 0.57", 0, at(run, 0.57), imsapi.JobRunning, 0.57},
		{"running at 0.575", 0, at(run, 0.575), imsapi.JobRunning, 0.57},
		{"running a nanosecond before the end", 0, run - time.Nanosecond, imsapi.JobRunning, 0.99},
		{"success", 0, run, imsapi.JobSuccess, 1},
		{"failed at 0.29", 0.29, time.Hour, imsapi.JobFail, 0.29},
		{"failed at 0.57", 0.57, time.Hour, imsapi.JobFail, 0.57},
		{"failed at 0.58", 0.58, time.Hour, imsapi.JobFail, 0.58},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newEmu(t, nil)
			if tt.failAt > 0 {
				if err := f.s.AddFailureRule(FailureRule{KeyPattern: "data/*", AtPercent: tt.failAt}); err != nil {
					t.Fatal(err)
				}
			}
			ref, err := f.c.ImportDataImage(t.Context(), &imsapi.DataImageRequest{Name: "d", ImageURL: "images:data/d.qcow2", MinDisk: 40})
			if err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(DefaultInitDuration + tt.elapsed)
			for _, get := range []func(context.Context, string) (*imsapi.Job, error){f.c.JobProgress, f.c.Job} {
				j, err := get(t.Context(), ref.JobID)
				if err != nil {
					t.Fatal(err)
				}
				if j.Status != tt.status || percent(j) != tt.want {
					t.Errorf("job %s %v, want %s %v", j.Status, percent(j), tt.status, tt.want)
				}
			}
		})
	}
}

// at is how long into a RUNNING phase of length run ProgressAt reaches p.
func at(run time.Duration, p float64) time.Duration {
	return time.Duration(math.Ceil(float64(run) * progressTime(p)))
}

// TestFinishedJobAnswer: both job APIs carry current_task "" once a job has
// ended, as IMS's SUCCESS example does, and error_code/fail_reason null
// unless it failed; an unknown job is 404 IMG.0001.
func TestFinishedJobAnswer(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	if err := f.s.AddFailureRule(FailureRule{KeyPattern: "broken*", ErrorCode: "IMG.0057", FailReason: "damaged"}); err != nil {
		t.Fatal(err)
	}
	f.s.PutObject(Object{Bucket: "images", Key: "broken.qcow2", Size: gib})
	ctx := t.Context()
	ok, err := f.c.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: "ok", ImageURL: "images:data/d.qcow2", MinDisk: 40})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := f.c.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: "bad", ImageURL: "images:broken.qcow2", MinDisk: 40})
	if err != nil {
		t.Fatal(err)
	}
	src := f.s.AddImage(imsapi.Image{Name: "src", ImageSize: "1073741824"})
	exp, err := f.c.ExportImage(ctx, src.ID, &imsapi.ExportRequest{BucketURL: "exports:src.qcow2", FileFormat: imsapi.FormatQCOW2})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	tests := []struct {
		name, id, status string
		errorCode        any
	}{
		{"import success", ok.JobID, "SUCCESS", nil},
		{"import failure", bad.JobID, "FAIL", "IMG.0057"},
		{"export success", exp.JobID, "SUCCESS", nil},
	}
	for _, tt := range tests {
		for _, path := range []string{"/v1/cloudimages/job/" + tt.id, "/v1/" + project + "/jobs/" + tt.id} {
			status, body := callRaw(t, f.s, http.MethodGet, path, "")
			var got struct {
				Status    string         `json:"status"`
				ErrorCode any            `json:"error_code"`
				Entities  map[string]any `json:"entities"`
			}
			if err := json.Unmarshal(body, &got); err != nil || status != 200 {
				t.Fatalf("%s %s: %d %s (%v)", tt.name, path, status, body, err)
			}
			task, present := got.Entities["current_task"]
			if got.Status != tt.status || got.ErrorCode != tt.errorCode || !present || task != "" || got.Entities["process_percent"] == nil {
				t.Errorf("%s %s: %s; want status %s, error_code %v and current_task \"\"", tt.name, path, body, tt.status, tt.errorCode)
			}
		}
	}
	if status, code := call(t, f.s, http.MethodGet, "/v1/cloudimages/job/ffffffffffffffffffffffffffffffff", ""); status != 404 || code != "IMG.0001" {
		t.Errorf("unknown job: %d %s, want 404 IMG.0001", status, code)
	}
}

// TestFailNextStatuses: only error statuses (400-599) can be injected, from
// Go or through /_emulator/fail-next; a list with any other queues nothing.
func TestFailNextStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		statuses []int
		ok       bool
	}{
		{[]int{0}, false},
		{[]int{200}, false},
		{[]int{399}, false},
		{[]int{600}, false},
		{[]int{1000}, false},
		{[]int{503, 0}, false},
		{[]int{400}, true},
		{[]int{599, 429}, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.statuses), func(t *testing.T) {
			t.Parallel()
			for _, admin := range []bool{false, true} {
				f := newEmu(t, nil)
				var err error
				if admin {
					body, _ := json.Marshal(map[string][]int{"statuses": tt.statuses})
					resp, herr := http.Post(f.s.URL+AdminPrefix+"fail-next", "application/json", bytes.NewReader(body))
					if herr != nil {
						t.Fatal(herr)
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("answer %d", resp.StatusCode)
					}
				} else {
					err = f.s.FailNext(tt.statuses...)
				}
				if (err == nil) != tt.ok {
					t.Fatalf("admin %v: %v, want accepted %v", admin, err, tt.ok)
				}
				want := []int{200}
				if tt.ok {
					want = append(slices.Clone(tt.statuses), 200)
				}
				for _, w := range want {
					_, err := f.c.Quota(t.Context())
					got := 200
					if apiErr, ok := errors.AsType[*imsapi.APIError](err); ok {
						got = apiErr.StatusCode
					}
					if got != w {
						t.Errorf("admin %v: answer %d (%v), want %d", admin, got, err, w)
					}
				}
			}
		})
	}
}

// TestTags: a tag is stored one way ("key.value", "key." for an empty
// value) whether it came as tags or image_tags, and the tag filter
// matches "k" and "k." alike.
func TestTags(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	ctx := t.Context()
	submit := []struct {
		name      string
		tags      []string
		imageTags []imsapi.ImageTag
		stored    []string
	}{
		{"bare", []string{"k"}, nil, []string{"k."}},
		{"dot", []string{"k."}, nil, []string{"k."}},
		{"empty-image-tag", nil, []imsapi.ImageTag{{Key: "k"}}, []string{"k."}},
		{"value", []string{"k.v", "x.a.b"}, nil, []string{"k.v", "x.a.b"}},
		{"value-image-tag", nil, []imsapi.ImageTag{{Key: "k", Value: "v"}}, []string{"k.v"}},
	}
	for _, s := range submit {
		if _, err := f.c.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: s.name, ImageURL: "images:data/d.qcow2", MinDisk: 40, Tags: s.tags, ImageTags: s.imageTags}); err != nil {
			t.Fatal(err)
		}
		if im := f.image(t, &imsapi.ListImagesOptions{Name: s.name}); !slices.Equal(im.Tags, s.stored) {
			t.Errorf("%s: tags %q, want %q", s.name, im.Tags, s.stored)
		}
	}
	f.s.AddImage(imsapi.Image{Name: "added", Tags: []string{"k"}})
	filters := []struct {
		tag  string
		want []string // newest first
	}{
		{"k", []string{"added", "empty-image-tag", "dot", "bare"}},
		{"k.", []string{"added", "empty-image-tag", "dot", "bare"}},
		{"k.v", []string{"value-image-tag", "value"}},
		{"x.a.b", []string{"value"}},
		{"x", nil},
	}
	for _, tt := range filters {
		page, err := f.c.ListImages(ctx, &imsapi.ListImagesOptions{Tag: tt.tag})
		if err != nil {
			t.Fatal(err)
		}
		if got := names(page.Images); !slices.Equal(got, tt.want) {
			t.Errorf("tag=%s: %v, want %v", tt.tag, got, tt.want)
		}
	}
}

func names(images []imsapi.Image) []string {
	var out []string
	for _, im := range images {
		out = append(out, im.Name)
	}
	return out
}

// TestListFilters: each ListImages filter the emulator implements, alone
// and together.
func TestListFilters(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	for _, im := range []imsapi.Image{
		{Name: "a", EnterpriseProjectID: "ep-1", Visibility: "public", ImageType: "gold", Protected: true, MinDisk: 40, OSBit: "64",
			CreatedAt: "2026-01-01T00:00:00Z", UpdatedAt: "2026-03-01T00:00:00Z"},
		{Name: "b", EnterpriseProjectID: "0", MinDisk: 40, OSBit: "32",
			CreatedAt: "2026-02-01T00:00:00Z", UpdatedAt: "2026-02-01T00:00:00Z"},
		{Name: "c", MinDisk: 100, OSBit: "64", CreatedAt: "2026-03-01T00:00:00Z", UpdatedAt: "2026-03-01T00:00:00Z"},
	} {
		f.s.AddImage(im)
	}
	tests := []struct {
		name  string
		opts  imsapi.ListImagesOptions
		query url.Values
		want  []string
	}{
		{"no filter", imsapi.ListImagesOptions{}, nil, []string{"c", "b", "a"}},
		{"enterprise project", imsapi.ListImagesOptions{EnterpriseProjectID: "ep-1"}, nil, []string{"a"}},
		{"default enterprise project", imsapi.ListImagesOptions{EnterpriseProjectID: "0"}, nil, []string{"c", "b"}},
		{"all granted enterprise projects", imsapi.ListImagesOptions{EnterpriseProjectID: "all_granted_eps"}, nil, []string{"c", "b", "a"}},
		{"unknown enterprise project", imsapi.ListImagesOptions{EnterpriseProjectID: "nope"}, nil, nil},
		{"visibility public", imsapi.ListImagesOptions{}, url.Values{"visibility": {"public"}}, []string{"a"}},
		{"visibility private", imsapi.ListImagesOptions{}, url.Values{"visibility": {"private"}}, []string{"c", "b"}},
		{"protected", imsapi.ListImagesOptions{}, url.Values{"protected": {"true"}}, []string{"a"}},
		{"not protected", imsapi.ListImagesOptions{}, url.Values{"protected": {"false"}}, []string{"c", "b"}},
		{"min_disk", imsapi.ListImagesOptions{}, url.Values{"min_disk": {"40"}}, []string{"b", "a"}},
		{"__os_bit", imsapi.ListImagesOptions{}, url.Values{"__os_bit": {"32"}}, []string{"b"}},
		{"created_at gt", imsapi.ListImagesOptions{}, url.Values{"created_at": {"gt:2026-02-01T00:00:00Z"}}, []string{"c"}},
		{"created_at gte", imsapi.ListImagesOptions{}, url.Values{"created_at": {"gte:2026-02-01T00:00:00Z"}}, []string{"c", "b"}},
		{"created_at lt", imsapi.ListImagesOptions{}, url.Values{"created_at": {"lt:2026-02-01T00:00:00Z"}}, []string{"a"}},
		{"created_at lte", imsapi.ListImagesOptions{}, url.Values{"created_at": {"lte:2026-02-01T00:00:00Z"}}, []string{"b", "a"}},
		{"created_at eq", imsapi.ListImagesOptions{}, url.Values{"created_at": {"eq:2026-02-01T00:00:00Z"}}, []string{"b"}},
		{"created_at neq", imsapi.ListImagesOptions{}, url.Values{"created_at": {"neq:2026-02-01T00:00:00Z"}}, []string{"c", "a"}},
		{"created_at in the future", imsapi.ListImagesOptions{}, url.Values{"created_at": {"gt:2099-01-01T00:00:00Z"}}, nil},
		{"updated_at", imsapi.ListImagesOptions{}, url.Values{"updated_at": {"eq:2026-03-01T00:00:00Z"}}, []string{"c", "a"}},
		{"combined", imsapi.ListImagesOptions{ImageType: "private"}, url.Values{"min_disk": {"40"}, "updated_at": {"lt:2026-03-01T00:00:00Z"}}, []string{"b"}},
		{"ignored known filter", imsapi.ListImagesOptions{}, url.Values{"member_status": {"accepted"}, "__support_kvm": {"true"}}, []string{"c", "b", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			opts.Extra = tt.query
			page, err := f.c.ListImages(t.Context(), &opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(page.Images); !slices.Equal(got, tt.want) {
				t.Errorf("%v, want %v", got, tt.want)
			}
		})
	}
}

// TestListSort: sort_key and sort_dir; the default is newest first.
func TestListSort(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	for i, n := range []string{"b", "c", "a"} {
		f.s.AddImage(imsapi.Image{Name: n, ID: fmt.Sprintf("0000000%d-0000-4000-a000-000000000000", 3-i), ImageSize: fmt.Sprint(i + 1)})
		f.clock.Advance(time.Second)
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"a", "c", "b"}},
		{"?sort_key=created_at&sort_dir=asc", []string{"b", "c", "a"}},
		{"?sort_key=name", []string{"c", "b", "a"}},
		{"?sort_key=name&sort_dir=asc", []string{"a", "b", "c"}},
		{"?sort_key=id&sort_dir=asc", []string{"a", "c", "b"}},
		{"?sort_key=size", []string{"a", "c", "b"}},
		{"?sort_key=name&sort_dir=asc&limit=1&marker=00000003-0000-4000-a000-000000000000", []string{"c"}},
	}
	for _, tt := range tests {
		status, body := callRaw(t, f.s, http.MethodGet, "/v2/cloudimages"+tt.query, "")
		var page imsapi.ImagePage
		if err := json.Unmarshal(body, &page); err != nil || status != 200 {
			t.Fatalf("%s: %d %s", tt.query, status, body)
		}
		if got := names(page.Images); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.query, got, tt.want)
		}
	}
}

// TestListRefusals: a query parameter IMS does not document, or a
// malformed value, is 400 IMG.0001 rather than silently ignored.
func TestListRefusals(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	f.s.AddImage(imsapi.Image{Name: "a"})
	for _, q := range []string{
		"colour=red",
		"imagetype=gold",
		"created_at=2026-01-01T00:00:00Z",
		"created_at=after:2026-01-01T00:00:00Z",
		"updated_at=gt:yesterday",
		"protected=maybe",
		"min_disk=big",
		"sort_key=colour",
		"sort_dir=up",
		"limit=0",
		"marker=00000000-0000-4000-a000-000000000000",
	} {
		if status, code := call(t, f.s, http.MethodGet, "/v2/cloudimages?"+q, ""); status != 400 || code != "IMG.0001" {
			t.Errorf("?%s: %d %s, want 400 IMG.0001", q, status, code)
		}
	}
}

// TestPagingWhenTheMarkerStopsMatching: the marker is a position in the
// whole list, so the next page follows it even when the marker's image no
// longer matches the filter (it was saving, now it is active).
func TestPagingWhenTheMarkerStopsMatching(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.InitDuration = -1 })
	ctx := t.Context()
	old := f.s.AddImage(imsapi.Image{Name: "old"}) // active
	f.clock.Advance(time.Second)
	// long: 10 GiB, saving for 40 s; short: 4 GiB, saving for 16 s.
	if _, err := f.c.QuickImport(ctx, &imsapi.QuickImportRequest{Name: "long", ImageURL: "images:web/web-01.zvhd2", MinDisk: 40, Type: imsapi.TypeDataImage}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	if _, err := f.c.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: "short", ImageURL: "images:data/d.qcow2", MinDisk: 40}); err != nil {
		t.Fatal(err)
	}
	first, err := f.c.ListImages(ctx, &imsapi.ListImagesOptions{Status: imsapi.ImageSaving, Limit: 1})
	if err != nil || !slices.Equal(names(first.Images), []string{"short"}) {
		t.Fatalf("first page = %v, %v; want [short]", names(first.Images), err)
	}
	f.clock.Advance(20 * time.Second) // short is active now, long still saving
	long := f.image(t, &imsapi.ListImagesOptions{Name: "long"})
	tests := []struct {
		name   string
		opts   imsapi.ListImagesOptions
		want   []string
		status int
	}{
		{"same filter", imsapi.ListImagesOptions{Status: imsapi.ImageSaving, Marker: first.NextMarker}, []string{"long"}, 200},
		{"other filter", imsapi.ListImagesOptions{Status: imsapi.ImageActive, Marker: first.NextMarker}, []string{"old"}, 200},
		{"no filter", imsapi.ListImagesOptions{Marker: first.NextMarker}, []string{"long", "old"}, 200},
		{"after the last match", imsapi.ListImagesOptions{Status: imsapi.ImageSaving, Marker: long.ID}, nil, 200},
		{"after the last image", imsapi.ListImagesOptions{Marker: old.ID}, nil, 200},
		{"unknown marker", imsapi.ListImagesOptions{Marker: "00000000-0000-4000-a000-000000000000"}, nil, 400},
	}
	for _, tt := range tests {
		page, err := f.c.ListImages(ctx, &tt.opts)
		status := 200
		if apiErr, ok := errors.AsType[*imsapi.APIError](err); ok {
			status = apiErr.StatusCode
			if apiErr.Code != "IMG.0001" {
				t.Errorf("%s: %v, want IMG.0001", tt.name, err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		if status != tt.status || (err == nil && !slices.Equal(names(page.Images), tt.want)) {
			t.Errorf("%s: status %d, page %v; want %d %v", tt.name, status, page, tt.status, tt.want)
		}
	}
}

// TestConfigIsCopied: changing the Config's maps and slices after New
// (or DefaultOSVersions, which it defaults to) does not reach the emulator.
func TestConfigIsCopied(t *testing.T) {
	t.Parallel()
	creds := map[string]imsapi.Secret{ak: sk}
	tokens := []imsapi.Secret{"iam-token"}
	versions := []OSVersion{{"CentOS", "CentOS 7.0 64bit", 64, imsapi.OSLinux, false, false}}
	s, err := New(Config{Credentials: creds, Tokens: tokens, OSVersions: versions, Clock: NewManualClock(start)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	delete(creds, ak)
	creds["OTHER"] = "other-secret"
	tokens[0] = "other-token"
	versions[0].Version = "Changed 1.0"
	for _, c := range []imsapi.Credentials{imsapi.AKSK{AccessKey: ak, SecretKey: sk}, imsapi.Token{Token: "iam-token"}} {
		client, err := imsapi.New(s.URL, c)
		if err != nil {
			t.Fatal(err)
		}
		list, err := client.ListOSVersions(t.Context(), "")
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if _, ok := list.Find("CentOS 7.0 64bit"); !ok {
			t.Errorf("the caller's change of OSVersions reached the emulator: %+v", list)
		}
	}
}

// TestAssumeObjects: with AssumeObjects an import of an unknown object is
// accepted; without it, refused.
func TestAssumeObjects(t *testing.T) {
	t.Parallel()
	for _, assume := range []bool{false, true} {
		f := newEmu(t, func(c *Config) { c.AssumeObjects = assume })
		_, err := f.c.QuickImport(t.Context(), &imsapi.QuickImportRequest{Name: "x", ImageURL: "anybucket:new/disk.raw", MinDisk: 10, Type: imsapi.TypeDataImage})
		if assume && err != nil {
			t.Errorf("AssumeObjects: %v", err)
		}
		if !assume && (err == nil || !strings.Contains(err.Error(), "IMG.0069")) {
			t.Errorf("without AssumeObjects: %v, want IMG.0069", err)
		}
	}
}
