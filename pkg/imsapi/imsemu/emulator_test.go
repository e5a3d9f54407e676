package imsemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
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
	raw, err := f.c.QuickImport(ctx, &imsapi.QuickImportRequest{Name: "db-01", ImageURL: "images:db/db-01.raw", MinDisk: 20, Type: imsapi.TypeDataImage})
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
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
		ErrorCode string `json:"error_code"`
	}
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error.Code + e.ErrorCode
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
		f.s.FailNext(503, 429, 500)
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
	for i, s := range subs {
		if !seen[s.JobID] || s.Seq != i+1 || s.Operation != OpDataImageImport || s.URL != "images:data/d.qcow2" {
			t.Errorf("submission %+v", s)
		}
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
}

func TestUnknownPath(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	status, code := call(t, f.s, http.MethodGet, "/v3/nothing", "")
	if status != 404 || code != "APIGW.0101" {
		t.Errorf("unknown path: %d %s", status, code)
	}
}
