package imsemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

const (
	regionA = "ap-southeast-1" // the first region, also at the root
	regionB = "ap-southeast-3"
	regionC = "cn-north-4"

	peerDomain   = "0f0e0d0c0b0a09080706050403020100"
	peerAK       = "PEERAK"
	peerSK       = "PEERSK-secret"
	peerProjectA = "1111111111111111111111111111111a"
	peerProjectB = "1111111111111111111111111111111b"

	agency     = "ims_admin_agency"
	keyDefault = "00000000-0000-4000-a000-00000000def0"
	keyCMK     = "bd66288c-9081-460a-8227-4cbd0c814cb4"
	keyOther   = "5e0c8e5a-7a1e-4b4e-9c40-3b1f4d2a9a10"
	keyOff     = "6f1d9f6b-8b2f-4c5f-ad51-4c2a5e3bab21"
)

// dist is a three-region emulator with a second account, and clients of
// both accounts.
type dist struct {
	s     *Server
	clock *ManualClock
	a, b  *imsapi.Client // the emulator's own account in regions A and B
	peerA *imsapi.Client // the other account in region A
	root  *imsapi.Client // at the root: region A
}

// newDist: region B has an image quota of 3; the peer account has projects
// in A and B; one agency; a default, a customer, another and a disabled KMS
// key.
func newDist(t *testing.T, mutate func(*Config)) *dist {
	t.Helper()
	clock := NewManualClock(start)
	cfg := Config{
		Credentials: map[string]imsapi.Secret{ak: sk}, ProjectID: project, Clock: clock, Seed: 11,
		Regions: []Region{{Name: regionA}, {Name: regionB, ImageQuota: 3}, {Name: regionC}},
		Accounts: []Account{{DomainID: peerDomain, Credentials: map[string]imsapi.Secret{peerAK: peerSK},
			Projects: map[string]string{regionA: peerProjectA, regionB: peerProjectB}}},
		Agencies: []string{agency},
		KMSKeys:  []KMSKey{{ID: keyDefault, Default: true}, {ID: keyCMK}, {ID: keyOther}, {ID: keyOff, Disabled: true}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	d := &dist{s: s, clock: clock}
	for _, c := range []struct {
		into **imsapi.Client
		make func() (*imsapi.Client, error)
	}{
		{&d.a, func() (*imsapi.Client, error) { return s.RegionClient(regionA) }},
		{&d.b, func() (*imsapi.Client, error) { return s.RegionClient(regionB) }},
		{&d.peerA, func() (*imsapi.Client, error) { return s.AccountClient(peerDomain, regionA) }},
		{&d.root, func() (*imsapi.Client, error) { return s.Client() }},
	} {
		var err error
		if *c.into, err = c.make(); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// add puts an active image of the emulator's own account into region A.
func (d *dist) add(t *testing.T, im imsapi.Image) imsapi.Image {
	t.Helper()
	if im.ImageSize == "" {
		im.ImageSize = fmt.Sprint(10 * gib)
	}
	got, err := d.s.AddImageTo(regionA, im)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// done moves the clock past every job of the test and returns the job.
func (d *dist) done(t *testing.T, c *imsapi.Client, jobID string) *imsapi.Job {
	t.Helper()
	d.clock.Advance(time.Hour)
	j, err := c.JobProgress(t.Context(), jobID)
	if err != nil {
		t.Fatalf("JobProgress(%s): %v", jobID, err)
	}
	return j
}

func code(err error) string {
	if e, ok := errors.AsType[*imsapi.APIError](err); ok {
		return e.Code
	}
	return fmt.Sprintf("no APIError: %v", err)
}

func find(t *testing.T, c *imsapi.Client, opts *imsapi.ListImagesOptions) []imsapi.Image {
	t.Helper()
	page, err := c.ListImages(t.Context(), opts)
	if err != nil {
		t.Fatalf("ListImages(%+v): %v", opts, err)
	}
	return page.Images
}

func TestRegionsAreSeparateCatalogues(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	for _, o := range []Object{{Bucket: "images", Key: "a.qcow2", Size: gib}, {Bucket: "images", Key: "b.qcow2", Size: gib}} {
		d.s.PutObject(o)
	}
	refA, err := d.a.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: "same", ImageURL: "images:a.qcow2", MinDisk: 40, Tags: []string{"run.1"}})
	if err != nil {
		t.Fatal(err)
	}
	refB, err := d.b.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: "same", ImageURL: "images:b.qcow2", MinDisk: 40, Tags: []string{"run.2"}})
	if err != nil {
		t.Fatal(err)
	}
	d.clock.Advance(time.Hour)

	// The root is region A; each region lists its own images, with its
	// name and tag filters.
	inA, inRoot, inB := find(t, d.a, &imsapi.ListImagesOptions{Name: "same"}), find(t, d.root, nil), find(t, d.b, &imsapi.ListImagesOptions{Tag: "run.2"})
	if len(inA) != 1 || len(inRoot) != 1 || inA[0].ID != inRoot[0].ID || len(inB) != 1 || inB[0].ID == inA[0].ID {
		t.Fatalf("A %+v, root %+v, B %+v: want one image each, A's at the root", inA, inRoot, inB)
	}
	if got := find(t, d.b, &imsapi.ListImagesOptions{Tag: "run.1"}); len(got) != 0 {
		t.Errorf("region B lists region A's tag: %+v", got)
	}
	if imgs := d.s.RegionImages(regionC); len(imgs) != 0 {
		t.Errorf("region C has %+v", imgs)
	}
	if imgs := d.s.RegionImages("nowhere"); imgs != nil {
		t.Errorf("RegionImages(unknown) = %+v", imgs)
	}
	if len(d.s.Images()) != 1 || d.s.Images()[0].ID != inA[0].ID {
		t.Errorf("Images() = %+v, want region A's", d.s.Images())
	}
	// Owners are each region's project.
	rb, _ := d.s.Region(regionB)
	if inA[0].Owner != project || inB[0].Owner != rb.ProjectID || rb.ProjectID == project || rb.ProjectName != regionB {
		t.Errorf("owners %s and %s, region B %+v", inA[0].Owner, inB[0].Owner, rb)
	}
	// Jobs are queried in their region only.
	if _, err := d.b.JobProgress(ctx, refA.JobID); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("region A's job from region B: %v, want ErrNotFound", err)
	}
	if j, err := d.b.Job(ctx, refB.JobID); err != nil || j.Status != imsapi.JobSuccess {
		t.Errorf("Job in region B = %+v, %v", j, err)
	}
	// Images too: region B does not know region A's image.
	if _, err := d.b.Image(ctx, inA[0].ID); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("region A's image from region B: %v", err)
	}
	if err := d.b.GlanceDeleteImage(ctx, inA[0].ID); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("delete region A's image in region B: %v", err)
	}
	// Quota per region: B's is 3.
	q, err := d.b.Quota(ctx)
	if r, _ := q.Resource(imsapi.QuotaImage); err != nil || r.Used != 1 || r.Quota != 3 {
		t.Errorf("quota in B = %+v, %v", q, err)
	}
	q, err = d.a.Quota(ctx)
	if r, _ := q.Resource(imsapi.QuotaImage); err != nil || r.Used != 1 || r.Quota != DefaultImageQuota {
		t.Errorf("quota in A = %+v, %v", q, err)
	}
	if subs := d.s.Submissions(); len(subs) != 2 || subs[0].Region != regionA || subs[1].Region != regionB {
		t.Errorf("submissions = %+v", subs)
	}
}

func TestRegionRouting(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	if status, c := call(t, d.s, http.MethodGet, "/region/nowhere/v1/cloudimages/quota", ""); status != 404 || c != "APIGW.0101" {
		t.Errorf("unknown region: %d %s, want 404 APIGW.0101", status, c)
	}
	// Region A's project sent to region B: the tenant is not found there.
	wrong, err := newClient(d.s.RegionURL(regionB), imsapi.AKSK{AccessKey: ak, SecretKey: sk}, project, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Quota(ctx); code(err) != imsapi.CodeTenantNotFound {
		t.Errorf("region A's project in region B: %v, want IMG.0108", err)
	}
	// The peer has no project in region C.
	peerC, err := newClient(d.s.RegionURL(regionC), imsapi.AKSK{AccessKey: peerAK, SecretKey: peerSK}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peerC.Quota(ctx); code(err) != imsapi.CodeTenantNotFound {
		t.Errorf("peer in region C: %v, want IMG.0108", err)
	}
	if _, err := d.s.AccountClient(peerDomain, regionC); err == nil {
		t.Error("AccountClient in a region without a project")
	}
	if _, err := d.s.RegionClient("nowhere"); err == nil {
		t.Error("RegionClient(unknown) succeeded")
	}
	resp, err := http.Get(d.s.URL + AdminPrefix + "regions/" + regionB + "/images")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("admin region images: %d %s", resp.StatusCode, b)
	}
}

// TestZeroConfigRegion: without Regions the emulator is one region, at the
// root and under its name, with any X-Project-Id accepted as before.
func TestZeroConfigRegion(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	rg, ok := f.s.Region(DefaultRegion)
	if !ok || rg.ProjectID != project || rg.ImageQuota != DefaultImageQuota {
		t.Fatalf("Region(%s) = %+v, %v", DefaultRegion, rg, ok)
	}
	c, err := f.s.RegionClient(DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	im := f.s.AddImage(imsapi.Image{Name: "x"})
	if got, err := c.Image(t.Context(), im.ID); err != nil || got.Name != "x" {
		t.Errorf("Image via /region/%s = %+v, %v", DefaultRegion, got, err)
	}
	other, err := newClient(f.s.URL, imsapi.AKSK{AccessKey: ak, SecretKey: sk}, "ffffffffffffffffffffffffffffffff", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Quota(t.Context()); err != nil {
		t.Errorf("another X-Project-Id without regions: %v", err)
	}
}

func TestRegionConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"bad region name":     {Regions: []Region{{Name: "AP/1"}}},
		"region twice":        {Regions: []Region{{Name: "a"}, {Name: "a"}}},
		"account without id":  {Accounts: []Account{{}}},
		"account twice":       {Accounts: []Account{{DomainID: "d"}, {DomainID: "d"}}},
		"unknown region":      {Accounts: []Account{{DomainID: "d", Projects: map[string]string{"x": "p"}}}},
		"project taken":       {ProjectID: "p", Accounts: []Account{{DomainID: "d", Projects: map[string]string{DefaultRegion: "p"}}}},
		"access key taken":    {Credentials: map[string]imsapi.Secret{"K": "s"}, Accounts: []Account{{DomainID: "d", Credentials: map[string]imsapi.Secret{"K": "t"}}}},
		"KMS key twice":       {KMSKeys: []KMSKey{{ID: "k"}, {ID: "k"}}},
		"negative copy speed": {CopySpeed: -1},
	} {
		if _, err := newServer(cfg); err == nil {
			t.Errorf("%s: newServer accepted %+v", name, cfg)
		}
	}
}

func TestCrossRegionCopyLifecycle(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	src := d.add(t, imsapi.Image{Name: "web-01", Tags: []string{"src.1"}, OSVersion: "Ubuntu 22.04 server 64bit"})
	ref, err := d.a.CopyImageCrossRegion(ctx, src.ID, &imsapi.CopyImageCrossRegionRequest{
		Name: "web-01-b", Description: "replica", Region: regionB, ProjectName: regionB, AgencyName: agency})
	if err != nil {
		t.Fatal(err)
	}
	j, err := d.a.JobProgress(ctx, ref.JobID)
	if err != nil || j.Status != imsapi.JobInit || j.JobType != imsapi.JobTypeCrossRegionCopy || j.Entities.ImageName != "web-01-b" || j.Entities.SubJobID != "" {
		t.Fatalf("new copy job = %+v, %v", j, err)
	}
	copyID := j.Entities.ImageID
	// The copy is in region B only, queued, and counts against B's quota.
	inB := find(t, d.b, &imsapi.ListImagesOptions{Name: "web-01-b"})
	if len(inB) != 1 || inB[0].ID != copyID || copyID == src.ID || inB[0].Status != imsapi.ImageQueued {
		t.Fatalf("region B during INIT: %+v (job names %s)", inB, copyID)
	}
	if got := find(t, d.a, &imsapi.ListImagesOptions{Name: "web-01-b"}); len(got) != 0 {
		t.Errorf("the copy is listed in region A: %+v", got)
	}
	if q, _ := d.b.Quota(ctx); q != nil {
		if r, _ := q.Resource(imsapi.QuotaImage); r.Used != 1 {
			t.Errorf("region B quota used %d during the copy, want 1", r.Used)
		}
	}
	// It is queried in the source region, not the target.
	if _, err := d.b.JobProgress(ctx, ref.JobID); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("copy job from region B: %v, want ErrNotFound", err)
	}
	// 10 GiB at 128 MiB/s: 80 s after 2 s of INIT.
	d.clock.Advance(2*time.Second + 40*time.Second)
	j, _ = d.a.JobProgress(ctx, ref.JobID)
	if p, _ := j.Progress(); j.Status != imsapi.JobRunning || p <= 0 || p >= 1 || j.Entities.CurrentTask == "" {
		t.Errorf("copy job half way = %+v", j)
	}
	if im, _ := d.b.Image(ctx, copyID); im == nil || im.Status != imsapi.ImageSaving {
		t.Errorf("copy while running = %+v", im)
	}
	d.clock.Advance(40 * time.Second)
	j, _ = d.a.JobProgress(ctx, ref.JobID)
	if j.Status != imsapi.JobSuccess || j.Entities.ImageID != copyID || !j.EndTime.Equal(start.Add(82*time.Second)) {
		t.Errorf("finished copy job = %+v", j)
	}
	cp, err := d.b.Image(ctx, copyID)
	if err != nil || cp.Status != imsapi.ImageActive || cp.OriginalImageName != src.ID || cp.Description != "replica" ||
		cp.OSVersion != src.OSVersion || len(cp.Tags) != 0 || cp.ImageSize != src.ImageSize {
		t.Errorf("copy = %+v, %v", cp, err)
	}
	if im, err := d.a.Image(ctx, src.ID); err != nil || im.Status != imsapi.ImageActive {
		t.Errorf("source after the copy = %+v, %v", im, err)
	}
	if subs := d.s.Submissions(); len(subs) != 1 || subs[0].Operation != OpCopyCrossRegion || subs[0].Region != regionA || subs[0].ImageID != copyID {
		t.Errorf("submissions = %+v", subs)
	}
}

func TestCrossRegionCopyRefusals(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	plain := d.add(t, imsapi.Image{Name: "plain"}).ID
	enc := d.add(t, imsapi.Image{Name: "enc", SystemCMKID: keyCMK}).ID
	iso := d.add(t, imsapi.Image{Name: "iso", VirtualEnvType: imsapi.TypeIsoImage}).ID
	big := d.add(t, imsapi.Image{Name: "big", ImageSize: fmt.Sprint(128*gib + 1)}).ID
	limit := d.add(t, imsapi.Image{Name: "limit", ImageSize: fmt.Sprint(128 * gib)}).ID
	saving := d.add(t, imsapi.Image{Name: "saving", Status: imsapi.ImageSaving}).ID
	whole := d.add(t, imsapi.Image{Name: "whole", WholeImage: true}).ID
	req := func(f func(*imsapi.CopyImageCrossRegionRequest)) *imsapi.CopyImageCrossRegionRequest {
		r := &imsapi.CopyImageCrossRegionRequest{Name: "c", Region: regionC, ProjectName: regionC, AgencyName: agency}
		if f != nil {
			f(r)
		}
		return r
	}
	tests := []struct {
		name string
		id   string
		req  *imsapi.CopyImageCrossRegionRequest
		code string
	}{
		{"encrypted", enc, req(nil), imsapi.CodeEncryptedNoCopy},
		{"iso", iso, req(nil), imsapi.CodeISONotSupported},
		{"above 128 GB", big, req(nil), imsapi.CodeImageTooLarge},
		{"not active", saving, req(nil), imsapi.CodeImageUnavailable},
		{"full-ECS without vault", whole, req(nil), imsapi.CodeFullECSNoCopy},
		{"same region", plain, req(func(r *imsapi.CopyImageCrossRegionRequest) { r.Region, r.ProjectName = regionA, regionA }), "IMG.0001"},
		{"unknown region", plain, req(func(r *imsapi.CopyImageCrossRegionRequest) { r.Region, r.ProjectName = "eu-west-0", "eu-west-0" }), "IMG.0001"},
		{"wrong project name", plain, req(func(r *imsapi.CopyImageCrossRegionRequest) { r.ProjectName = regionB }), imsapi.CodeProjectName},
		{"unknown agency", plain, req(func(r *imsapi.CopyImageCrossRegionRequest) { r.AgencyName = "other" }), imsapi.CodeAgency},
		{"unknown image", "00000000-0000-4000-a000-000000000000", req(nil), imsapi.CodeImageNotExist},
	}
	for _, tt := range tests {
		_, err := d.a.CopyImageCrossRegion(ctx, tt.id, tt.req)
		if code(err) != tt.code || imsapi.IsRetryable(err) {
			t.Errorf("%s: %v, want a permanent %s", tt.name, err, tt.code)
		}
	}
	// 128 GB exactly, and a full-ECS image with its vault, are fine.
	if _, err := d.a.CopyImageCrossRegion(ctx, limit, req(nil)); err != nil {
		t.Errorf("128 GB image: %v", err)
	}
	if _, err := d.a.CopyImageCrossRegion(ctx, whole, req(func(r *imsapi.CopyImageCrossRegionRequest) { r.VaultID = "d14r5tef-1bc3-4c4f-823e-3e471rg65e65" })); err != nil {
		t.Errorf("full-ECS image with a vault: %v", err)
	}
	// Region B's quota is 3: the fourth copy into it is refused.
	for i := range 4 {
		_, err := d.a.CopyImageCrossRegion(ctx, plain, req(func(r *imsapi.CopyImageCrossRegionRequest) {
			r.Name, r.Region, r.ProjectName = fmt.Sprint("q", i), regionB, regionB
		}))
		if want := ""; i == 3 {
			if code(err) != "IMG.0015" {
				t.Errorf("copy %d into a full region: %v, want IMG.0015", i, err)
			}
		} else if err != nil {
			t.Errorf("copy %d: %v (want %q)", i, err, want)
		}
	}
	// The peer cannot copy the owner's images.
	if _, err := d.peerA.CopyImageCrossRegion(ctx, plain, req(nil)); code(err) != imsapi.CodeImageNotExist {
		t.Errorf("peer copies the owner's image: %v", err)
	}
}

// TestReplicationCap: at most five cross-region copies of one account run
// at once; the sixth is flow-controlled (retryable) and succeeds once one
// has ended. In-region copies and other accounts do not count.
func TestReplicationCap(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	src := d.add(t, imsapi.Image{Name: "src"}).ID
	cp := func(i int) error {
		_, err := d.a.CopyImageCrossRegion(ctx, src, &imsapi.CopyImageCrossRegionRequest{Name: fmt.Sprint("c", i), Region: regionC, ProjectName: regionC, AgencyName: agency})
		return err
	}
	for i := range imsapi.MaxReplicationTasks {
		if err := cp(i); err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
	}
	if _, err := d.a.CopyImageInRegion(ctx, src, &imsapi.CopyImageInRegionRequest{Name: "in-region"}); err != nil {
		t.Errorf("in-region copy at the cross-region cap: %v", err)
	}
	err := cp(5)
	if code(err) != imsapi.CodeFlowControl || !imsapi.IsRetryable(err) || !errors.Is(err, imsapi.ErrThrottled) || imsapi.MaybeApplied(err) {
		t.Fatalf("sixth copy: %v, want a retryable IMG.0060", err)
	}
	if st := d.s.Stats(); st.CopyCapped != 1 {
		t.Errorf("stats = %+v, want CopyCapped 1", st)
	}
	d.clock.Advance(time.Hour)
	if err := cp(5); err != nil {
		t.Errorf("after the copies ended: %v", err)
	}
	unlimited := newDist(t, func(c *Config) { c.MaxReplicationTasks = -1 })
	s2 := unlimited.add(t, imsapi.Image{Name: "src"}).ID
	for i := range 8 {
		if _, err := unlimited.a.CopyImageCrossRegion(ctx, s2, &imsapi.CopyImageCrossRegionRequest{Name: fmt.Sprint("c", i), Region: regionC, ProjectName: regionC, AgencyName: agency}); err != nil {
			t.Fatalf("uncapped copy %d: %v", i, err)
		}
	}
}

func TestCopyInRegion(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	enc := d.add(t, imsapi.Image{Name: "enc", SystemCMKID: keyCMK}).ID
	plainSrc := d.add(t, imsapi.Image{Name: "plain"}).ID
	copyOf := func(id string, r *imsapi.CopyImageInRegionRequest) imsapi.Image {
		t.Helper()
		ref, err := d.a.CopyImageInRegion(ctx, id, r)
		if err != nil {
			t.Fatal(err)
		}
		j := d.done(t, d.a, ref.JobID)
		if j.Status != imsapi.JobSuccess || j.JobType != imsapi.JobTypeCopyInRegion {
			t.Fatalf("copy job = %+v", j)
		}
		im, err := d.a.Image(ctx, j.Entities.ImageID)
		if err != nil {
			t.Fatal(err)
		}
		return *im
	}
	if im := copyOf(enc, &imsapi.CopyImageInRegionRequest{Name: "decrypted"}); im.Encrypted() || im.Name != "decrypted" || im.OriginalImageName != enc {
		t.Errorf("copy without cmk_id = %+v, want a plain image", im)
	}
	if im := copyOf(plainSrc, &imsapi.CopyImageInRegionRequest{Name: "encrypted", CMKID: keyCMK, EnterpriseProjectID: "0"}); im.SystemCMKID != keyCMK {
		t.Errorf("copy with cmk_id = %+v, want encrypted with %s", im, keyCMK)
	}
	if im := copyOf(enc, &imsapi.CopyImageInRegionRequest{Name: "rekeyed", CMKID: keyOther}); im.SystemCMKID != keyOther {
		t.Errorf("re-keyed copy = %+v", im)
	}
	iso := d.add(t, imsapi.Image{Name: "iso", VirtualEnvType: imsapi.TypeIsoImage}).ID
	whole := d.add(t, imsapi.Image{Name: "whole", WholeImage: true}).ID
	big := d.add(t, imsapi.Image{Name: "big", ImageSize: fmt.Sprint(200 * gib)}).ID
	for _, tt := range []struct {
		name, id, key, code string
	}{
		{"iso", iso, "", imsapi.CodeISONotSupported},
		{"full-ECS", whole, "", imsapi.CodeFullECSNoCopy},
		{"above 128 GB", big, "", imsapi.CodeImageTooLarge},
		{"unknown key", plainSrc, "0a0a0a0a-0000-4000-a000-000000000000", imsapi.CodeKeyNotFound},
		{"disabled key", plainSrc, keyOff, imsapi.CodeKeyDisabled},
		{"the image's own key", enc, keyCMK, imsapi.CodeSameKey},
	} {
		if _, err := d.a.CopyImageInRegion(ctx, tt.id, &imsapi.CopyImageInRegionRequest{Name: "x", CMKID: tt.key}); code(err) != tt.code {
			t.Errorf("%s: %v, want %s", tt.name, err, tt.code)
		}
	}
}

// share shares image id with members and waits for the job.
func (d *dist) share(t *testing.T, r *imsapi.BatchAddMembersRequest) *imsapi.Job {
	t.Helper()
	ref, err := d.a.BatchAddMembers(t.Context(), r)
	if err != nil {
		t.Fatalf("BatchAddMembers(%+v): %v", r, err)
	}
	return d.done(t, d.a, ref.JobID)
}

func TestSharingLifecycle(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	im := d.add(t, imsapi.Image{Name: "golden", SystemCMKID: keyCMK}) // a customer key may be shared
	ref, err := d.a.BatchAddMembers(ctx, &imsapi.BatchAddMembersRequest{Images: []string{im.ID}, Projects: []string{peerProjectA}})
	if err != nil {
		t.Fatal(err)
	}
	j, _ := d.a.JobProgress(ctx, ref.JobID)
	if j.Status != imsapi.JobInit || j.JobType != imsapi.JobTypeAddMembers || j.Entities.ImageID != "" {
		t.Errorf("member job = %+v", j)
	}
	if ms := d.s.ImageMembers(im.ID); len(ms) != 0 {
		t.Errorf("members before the job ended: %+v", ms)
	}
	// INIT 2 s, then one second.
	d.clock.Advance(3 * time.Second)
	j, _ = d.a.JobProgress(ctx, ref.JobID)
	if p, _ := j.Progress(); j.Status != imsapi.JobSuccess || p != 1 {
		t.Fatalf("member job after 3 s = %+v", j)
	}
	members, err := d.a.ListImageMembers(ctx, im.ID)
	if m, ok := members.Member(peerProjectA); err != nil || !ok || m.Status != imsapi.MemberPending || m.MemberType != imsapi.MemberTypeProject || members.Schema != "/v2/schemas/members" {
		t.Fatalf("members = %+v, %v", members, err)
	}
	// Pending: the recipient lists it only when asked for pending shares.
	if got := find(t, d.peerA, nil); len(got) != 0 {
		t.Errorf("recipient lists a pending share: %+v", got)
	}
	if got := find(t, d.peerA, &imsapi.ListImagesOptions{Extra: url.Values{"member_status": {"pending"}}}); len(got) != 1 || got[0].ImageType != "shared" {
		t.Errorf("recipient's pending shares = %+v", got)
	}
	// Only the recipient accepts, for its own project.
	accept := &imsapi.BatchUpdateMembersRequest{Images: []string{im.ID}, ProjectID: peerProjectA, Status: imsapi.MemberAccepted}
	if _, err := d.a.BatchUpdateMembers(ctx, accept); code(err) != imsapi.CodeProjectID {
		t.Errorf("the owner accepts for the recipient: %v, want IMG.0067", err)
	}
	other := *accept
	other.ProjectID = peerProjectB
	if _, err := d.peerA.BatchUpdateMembers(ctx, &other); code(err) != imsapi.CodeProjectID {
		t.Errorf("the recipient names its project of another region: %v, want IMG.0067", err)
	}
	ref, err = d.peerA.BatchUpdateMembers(ctx, accept)
	if err != nil {
		t.Fatal(err)
	}
	if j := d.done(t, d.peerA, ref.JobID); j.Status != imsapi.JobSuccess || j.JobType != imsapi.JobTypeUpdateMembers {
		t.Errorf("update job = %+v", j)
	}
	if _, err := d.a.JobProgress(ctx, ref.JobID); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("the recipient's job seen by the owner: %v", err)
	}
	got := find(t, d.peerA, nil)
	if len(got) != 1 || got[0].ID != im.ID || got[0].ImageType != "shared" {
		t.Errorf("recipient's images after accepting = %+v", got)
	}
	if own, err := d.peerA.ListImageMembers(ctx, im.ID); err != nil || len(own.Members) != 1 || own.Members[0].Status != imsapi.MemberAccepted {
		t.Errorf("recipient's view of the members = %+v, %v", own, err)
	}
	// The recipient cannot share, tag, copy or delete the owner's image.
	if _, err := d.peerA.BatchAddMembers(ctx, &imsapi.BatchAddMembersRequest{Images: []string{im.ID}, Projects: []string{project}}); code(err) != imsapi.CodeOwnerOnly {
		t.Errorf("recipient shares: %v", err)
	}
	if err := d.peerA.BatchAddOrDeleteTags(ctx, im.ID, &imsapi.BatchAddOrDeleteTagsRequest{Action: imsapi.TagActionCreate, Tags: []imsapi.ImageTag{{Key: "k"}}}); code(err) != imsapi.CodeOwnerOnly {
		t.Errorf("recipient tags: %v", err)
	}
	if err := d.peerA.GlanceDeleteImage(ctx, im.ID); code(err) != imsapi.CodeDeleteOwnerOnly {
		t.Errorf("recipient deletes: %v", err)
	}
	// Reject, then unshare.
	reject := *accept
	reject.Status = imsapi.MemberRejected
	ref, _ = d.peerA.BatchUpdateMembers(ctx, &reject)
	d.done(t, d.peerA, ref.JobID)
	if got := find(t, d.peerA, nil); len(got) != 0 {
		t.Errorf("recipient lists a rejected share: %+v", got)
	}
	ref, err = d.a.BatchDeleteMembers(ctx, &imsapi.BatchAddMembersRequest{Images: []string{im.ID}, Projects: []string{peerProjectA, "ffffffffffffffffffffffffffffffff"}})
	if err != nil {
		t.Fatal(err)
	}
	if j := d.done(t, d.a, ref.JobID); j.Status != imsapi.JobSuccess || j.JobType != imsapi.JobTypeDeleteMembers {
		t.Errorf("unshare job = %+v", j)
	}
	if ms, _ := d.a.ListImageMembers(ctx, im.ID); len(ms.Members) != 0 {
		t.Errorf("members after unsharing = %+v", ms)
	}
	if _, err := d.peerA.ListImageMembers(ctx, im.ID); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("the former recipient sees the image: %v", err)
	}
}

func TestSharingRules(t *testing.T) {
	t.Parallel()
	d := newDist(t, func(c *Config) { c.MaxImageMembers = 2 })
	ctx := t.Context()
	plain := d.add(t, imsapi.Image{Name: "plain"}).ID
	byDefault := d.add(t, imsapi.Image{Name: "default-key", SystemCMKID: keyDefault}).ID
	gold := d.add(t, imsapi.Image{Name: "public", ImageType: "gold"}).ID
	whole := d.add(t, imsapi.Image{Name: "whole", WholeImage: true}).ID
	queued := d.add(t, imsapi.Image{Name: "queued", Status: imsapi.ImageQueued}).ID
	inB, err := d.s.AddImageTo(regionB, imsapi.Image{Name: "in-b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		req  imsapi.BatchAddMembersRequest
		code string
	}{
		{"default key", imsapi.BatchAddMembersRequest{Images: []string{byDefault}, Projects: []string{peerProjectA}}, imsapi.CodeEncryptedNotShared},
		{"public image", imsapi.BatchAddMembersRequest{Images: []string{gold}, Projects: []string{peerProjectA}}, imsapi.CodePublicNotShareable},
		{"full-ECS", imsapi.BatchAddMembersRequest{Images: []string{whole}, Projects: []string{peerProjectA}}, imsapi.CodeFullECSNoShare},
		{"not active", imsapi.BatchAddMembersRequest{Images: []string{queued}, Projects: []string{peerProjectA}}, imsapi.CodeImageUnavailable},
		{"another region's image", imsapi.BatchAddMembersRequest{Images: []string{inB.ID}, Projects: []string{peerProjectA}}, imsapi.CodeImageNotExist},
		{"with itself", imsapi.BatchAddMembersRequest{Images: []string{plain}, Projects: []string{project}}, imsapi.CodeShareWithSelf},
		{"with its own account", imsapi.BatchAddMembersRequest{Images: []string{plain}, Domains: []string{d.s.owner.domainID}}, imsapi.CodeShareWithSelf},
		{"member limit", imsapi.BatchAddMembersRequest{Images: []string{plain}, Projects: []string{peerProjectA, "a1", "a2"}}, imsapi.CodeMemberLimit},
	} {
		if _, err := d.a.BatchAddMembers(ctx, &tt.req); code(err) != tt.code {
			t.Errorf("%s: %v, want %s", tt.name, err, tt.code)
		}
	}
	// Unknown members fail the job, and add nobody: a project nobody has,
	// and the peer's project of another region.
	for _, p := range []string{"ffffffffffffffffffffffffffffffff", peerProjectB} {
		j := d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{plain}, Projects: []string{peerProjectA, p}})
		if j.Status != imsapi.JobFail || j.ErrorCode != imsapi.CodeTenantNotFound || !strings.Contains(string(j.FailReason), p) {
			t.Errorf("share with %s: job %+v, want FAIL IMG.0108", p, j)
		}
		if ms := d.s.ImageMembers(plain); len(ms) != 0 {
			t.Errorf("members after a failed share = %+v", ms)
		}
	}
	if j := d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{plain}, Domains: []string{"feedfeedfeedfeedfeedfeedfeedfeed"}}); j.Status != imsapi.JobFail {
		t.Errorf("share with an unknown account: %+v", j)
	}
	// Two members is the limit; sharing again with a member is no new one.
	if j := d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{plain}, Projects: []string{peerProjectA}, Domains: []string{peerDomain}}); j.Status != imsapi.JobSuccess {
		t.Fatalf("share = %+v", j)
	}
	if j := d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{plain}, Projects: []string{peerProjectA}}); j.Status != imsapi.JobSuccess {
		t.Errorf("share again = %+v", j)
	}
	ms := d.s.ImageMembers(plain)
	if len(ms) != 2 || ms[1].MemberType != imsapi.MemberTypeDomain || ms[1].MemberID != peerDomain {
		t.Errorf("members = %+v", ms)
	}
	q, err := d.a.Quota(ctx)
	shared, _ := q.Resource(imsapi.QuotaImageShared)
	member, _ := q.Resource(imsapi.QuotaImageMember)
	if err != nil || shared.Used != 1 || member.Used != 2 || member.Quota != 2 {
		t.Errorf("quota = %+v, %v", q, err)
	}
	// The peer shares with an account: it accepts as that account with
	// any of its projects in the region.
	ref, err := d.peerA.BatchUpdateMembers(ctx, &imsapi.BatchUpdateMembersRequest{Images: []string{plain}, ProjectID: peerProjectA, Status: imsapi.MemberAccepted})
	if err != nil {
		t.Fatal(err)
	}
	d.done(t, d.peerA, ref.JobID)
	// Organisations are taken as given.
	org := "organizations::" + peerDomain + ":organization:o-1"
	other := d.add(t, imsapi.Image{Name: "org"}).ID
	if j := d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{other}, Organizations: []string{org}}); j.Status != imsapi.JobSuccess {
		t.Errorf("share with an organisation = %+v", j)
	}
	if ms := d.s.ImageMembers(other); len(ms) != 1 || ms[0].URN != org || ms[0].MemberType != imsapi.MemberTypeOrganization {
		t.Errorf("organisation member = %+v", ms)
	}
}

func TestTagsAction(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	im := d.add(t, imsapi.Image{Name: "t", Tags: []string{"a.1", "b.2"}})
	tag := func(action string, tags ...imsapi.ImageTag) error {
		return d.a.BatchAddOrDeleteTags(ctx, im.ID, &imsapi.BatchAddOrDeleteTagsRequest{Action: action, Tags: tags})
	}
	tagsNow := func() []string {
		got, err := d.a.Image(ctx, im.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Tags
	}
	if err := tag(imsapi.TagActionCreate, imsapi.ImageTag{Key: "b", Value: "3"}, imsapi.ImageTag{Key: "imsflow-copy", Value: "run-7"}); err != nil {
		t.Fatal(err)
	}
	if got := tagsNow(); !slices.Equal(got, []string{"a.1", "b.3", "imsflow-copy.run-7"}) {
		t.Errorf("tags after create = %v", got)
	}
	if got := find(t, d.a, &imsapi.ListImagesOptions{Tag: "imsflow-copy.run-7"}); len(got) != 1 || got[0].ID != im.ID {
		t.Errorf("tag filter = %+v", got)
	}
	if err := tag(imsapi.TagActionDelete, imsapi.ImageTag{Key: "a", Value: "other"}, imsapi.ImageTag{Key: "missing"}); err != nil {
		t.Fatal(err)
	}
	if got := tagsNow(); !slices.Equal(got, []string{"b.3", "imsflow-copy.run-7"}) {
		t.Errorf("tags after delete = %v", got)
	}
	// Ten at most, checked on the result, refused whole.
	var many []imsapi.ImageTag
	for i := range 9 {
		many = append(many, imsapi.ImageTag{Key: fmt.Sprint("k", i)})
	}
	if err := tag(imsapi.TagActionCreate, many...); code(err) != "IMG.0116" {
		t.Errorf("an eleventh tag: %v, want IMG.0116", err)
	}
	if got := tagsNow(); len(got) != 2 {
		t.Errorf("tags after a refused create = %v", got)
	}
	if err := tag(imsapi.TagActionCreate, many[:8]...); err != nil {
		t.Errorf("ten tags: %v", err)
	}
	// The raw call answers 204, and checks the project in the path.
	body := `{"action":"delete","tags":[{"key":"k0","value":""}]}`
	if status, _ := callRaw(t, d.s, http.MethodPost, "/v2/"+project+"/images/"+im.ID+"/tags/action", body); status != http.StatusNoContent {
		t.Errorf("status %d, want 204", status)
	}
	if status, c := call(t, d.s, http.MethodPost, "/v2/"+peerProjectA+"/images/"+im.ID+"/tags/action", body); status != 400 || c != "IMG.0001" {
		t.Errorf("another project in the path: %d %s", status, c)
	}
	if status, c := call(t, d.s, http.MethodPost, "/v2/"+project+"/images/"+im.ID+"/tags/action", `{"action":"Create","tags":[{"key":"x","value":""}]}`); status != 400 || c != "IMG.0001" {
		t.Errorf("action Create: %d %s", status, c)
	}
}

func TestDeleteImage(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	d.s.PutObject(Object{Bucket: "images", Key: "d.qcow2", Size: gib})
	d.s.AddBucket("exports")
	plain := d.add(t, imsapi.Image{Name: "plain"}).ID
	if err := d.a.GlanceDeleteImage(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if _, err := d.a.Image(ctx, plain); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("deleted image: %v", err)
	}
	if err := d.a.GlanceDeleteImage(ctx, plain); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("deleting again: %v, want ErrNotFound", err)
	}
	if q, _ := d.a.Quota(ctx); q != nil {
		if r, _ := q.Resource(imsapi.QuotaImage); r.Used != 0 {
			t.Errorf("quota used %d after the delete", r.Used)
		}
	}
	// Being created, or read by a job: refused until the job ends.
	ref, err := d.a.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: "new", ImageURL: "images:d.qcow2", MinDisk: 40})
	if err != nil {
		t.Fatal(err)
	}
	j, _ := d.a.JobProgress(ctx, ref.JobID)
	if err := d.a.GlanceDeleteImage(ctx, j.Entities.ImageID); code(err) != imsapi.CodeImageBeingCreated {
		t.Errorf("delete during its import: %v, want IMG.0090", err)
	}
	src := d.add(t, imsapi.Image{Name: "src"}).ID
	if _, err := d.a.CopyImageCrossRegion(ctx, src, &imsapi.CopyImageCrossRegionRequest{Name: "c", Region: regionC, ProjectName: regionC, AgencyName: agency}); err != nil {
		t.Fatal(err)
	}
	if err := d.a.GlanceDeleteImage(ctx, src); code(err) != imsapi.CodeNotSupported {
		t.Errorf("delete the source of a running copy: %v", err)
	}
	exp := d.add(t, imsapi.Image{Name: "exp"}).ID
	if _, err := d.a.ExportImage(ctx, exp, &imsapi.ExportRequest{BucketURL: "exports:e.qcow2", FileFormat: imsapi.FormatQCOW2}); err != nil {
		t.Fatal(err)
	}
	if err := d.a.GlanceDeleteImage(ctx, exp); code(err) != imsapi.CodeNotSupported {
		t.Errorf("delete an image being exported: %v", err)
	}
	d.clock.Advance(time.Hour)
	for _, id := range []string{j.Entities.ImageID, src, exp} {
		if err := d.a.GlanceDeleteImage(ctx, id); err != nil {
			t.Errorf("delete %s after its jobs: %v", id, err)
		}
	}
	if gold := d.add(t, imsapi.Image{Name: "public", ImageType: "gold"}).ID; code(d.a.GlanceDeleteImage(ctx, gold)) != "IMG.0094" {
		t.Error("a public image was deleted")
	}
	// Shared: a pending project member does not block, an accepted one
	// does, and so does an account.
	pending := d.add(t, imsapi.Image{Name: "pending"}).ID
	d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{pending}, Projects: []string{peerProjectA}})
	if err := d.a.GlanceDeleteImage(ctx, pending); err != nil {
		t.Errorf("delete an image shared but not accepted: %v", err)
	}
	if _, err := d.peerA.ListImageMembers(ctx, pending); !errors.Is(err, imsapi.ErrNotFound) {
		t.Errorf("the deleted image to its former recipient: %v", err)
	}
	accepted := d.add(t, imsapi.Image{Name: "accepted"}).ID
	d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{accepted}, Projects: []string{peerProjectA}})
	ref, _ = d.peerA.BatchUpdateMembers(ctx, &imsapi.BatchUpdateMembersRequest{Images: []string{accepted}, ProjectID: peerProjectA, Status: imsapi.MemberAccepted})
	d.done(t, d.peerA, ref.JobID)
	if err := d.a.GlanceDeleteImage(ctx, accepted); code(err) != imsapi.CodeNotSupported {
		t.Errorf("delete an accepted share: %v, want IMG.0105", err)
	}
	domain := d.add(t, imsapi.Image{Name: "domain"}).ID
	d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{domain}, Domains: []string{peerDomain}})
	if err := d.a.GlanceDeleteImage(ctx, domain); code(err) != imsapi.CodeNotSupported {
		t.Errorf("delete an image shared with an account: %v, want IMG.0105", err)
	}
	// Unshared, it goes.
	ref, _ = d.a.BatchDeleteMembers(ctx, &imsapi.BatchAddMembersRequest{Images: []string{accepted, domain}, Projects: []string{peerProjectA}, Domains: []string{peerDomain}})
	d.done(t, d.a, ref.JobID)
	for _, id := range []string{accepted, domain} {
		if err := d.a.GlanceDeleteImage(ctx, id); err != nil {
			t.Errorf("delete %s after unsharing: %v", id, err)
		}
	}
	if status, _ := callRaw(t, d.s, http.MethodDelete, "/v2/images/"+d.add(t, imsapi.Image{Name: "raw"}).ID, `{"delete_backup":true}`); status != http.StatusNoContent {
		t.Errorf("raw delete with a body: %d, want 204", status)
	}
}

// TestDistributionFailureRules: a rule fails exactly one copy job (by its
// target region and name) and the retry succeeds; rules fail member jobs
// by image name too.
func TestDistributionFailureRules(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	ctx := t.Context()
	if err := d.s.AddFailureRule(FailureRule{Operation: OpCopyCrossRegion, Region: regionB, NamePattern: "web-*", Times: 1,
		ErrorCode: "IMG.0061", FailReason: "replication failed", AtPercent: 0.4}); err != nil {
		t.Fatal(err)
	}
	if err := d.s.AddFailureRule(FailureRule{Operation: OpAddMembers, NamePattern: "flaky"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []FailureRule{{}, {Region: "nowhere"}, {NamePattern: "["}, {NamePattern: "x", Times: -1}} {
		if err := d.s.AddFailureRule(bad); err == nil {
			t.Errorf("AddFailureRule(%+v) accepted", bad)
		}
	}
	src := d.add(t, imsapi.Image{Name: "src"}).ID
	copyTo := func(region, name string) *imsapi.Job {
		t.Helper()
		ref, err := d.a.CopyImageCrossRegion(ctx, src, &imsapi.CopyImageCrossRegionRequest{Name: name, Region: region, ProjectName: region, AgencyName: agency})
		if err != nil {
			t.Fatal(err)
		}
		return d.done(t, d.a, ref.JobID)
	}
	// Region C does not match; the first web-* copy into B fails, its
	// image killed; the retry with the same name succeeds.
	if j := copyTo(regionC, "web-01"); j.Status != imsapi.JobSuccess {
		t.Errorf("copy into C = %+v", j)
	}
	j := copyTo(regionB, "web-01")
	if p, _ := j.Progress(); j.Status != imsapi.JobFail || j.ErrorCode != "IMG.0061" || j.FailReason != "replication failed" || p != 0.4 {
		t.Fatalf("first copy into B = %+v", j)
	}
	if im, _ := d.b.Image(ctx, j.Entities.ImageID); im == nil || im.Status != imsapi.ImageKilled {
		t.Errorf("image of the failed copy = %+v", im)
	}
	if j := copyTo(regionB, "web-01"); j.Status != imsapi.JobSuccess {
		t.Errorf("retried copy = %+v", j)
	}
	// The killed copy is not an image of the quota, and both are found by
	// name, the active one among them.
	got := find(t, d.b, &imsapi.ListImagesOptions{Name: "web-01"})
	if len(got) != 2 || got[0].Status != imsapi.ImageActive || got[1].Status != imsapi.ImageKilled {
		t.Errorf("copies named web-01 in B = %+v", got)
	}
	flaky := d.add(t, imsapi.Image{Name: "flaky"}).ID
	if j := d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{src, flaky}, Projects: []string{peerProjectA}}); j.Status != imsapi.JobFail || j.ErrorCode != "IMG.1075" {
		t.Errorf("member job matching a rule = %+v", j)
	}
	if st := d.s.Stats(); st.JobsFailed != 2 {
		t.Errorf("stats = %+v, want 2 failed jobs", st)
	}
}

// TestDistributionFaults: injected errors, dropped connections and
// FailNext apply to the new operations as to every other.
func TestDistributionFaults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		d := newDist(t, func(c *Config) { c.Faults.ErrorRate = 1 })
		id := d.add(t, imsapi.Image{Name: "x"}).ID
		_, err := d.a.CopyImageCrossRegion(ctx, id, &imsapi.CopyImageCrossRegionRequest{Name: "c", Region: regionB, ProjectName: regionB, AgencyName: agency})
		if e, ok := errors.AsType[*imsapi.APIError](err); !ok || (e.StatusCode != 500 && e.StatusCode != 503) || !imsapi.IsRetryable(err) || !imsapi.MaybeApplied(err) {
			t.Errorf("copy under errors: %v", err)
		}
		if _, err := d.a.ListImageMembers(ctx, id); !imsapi.IsRetryable(err) {
			t.Errorf("member list under errors: %v", err)
		}
		if len(d.s.Submissions()) != 0 {
			t.Error("an injected error was accepted")
		}
	})
	t.Run("fail next", func(t *testing.T) {
		t.Parallel()
		d := newDist(t, nil)
		id := d.add(t, imsapi.Image{Name: "x"}).ID
		if err := d.s.FailNext(503, 429); err != nil {
			t.Fatal(err)
		}
		err := d.a.GlanceDeleteImage(ctx, id)
		if e, ok := errors.AsType[*imsapi.APIError](err); !ok || e.StatusCode != 503 {
			t.Errorf("first delete: %v, want 503", err)
		}
		if err := d.a.GlanceDeleteImage(ctx, id); !errors.Is(err, imsapi.ErrThrottled) {
			t.Errorf("second delete: %v, want 429", err)
		}
		if err := d.a.GlanceDeleteImage(ctx, id); err != nil {
			t.Errorf("third delete: %v", err)
		}
	})
	t.Run("dropped after accepting a PUT", func(t *testing.T) {
		t.Parallel()
		d := newDist(t, nil)
		id := d.add(t, imsapi.Image{Name: "x"}).ID
		d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{id}, Projects: []string{peerProjectA}})
		if err := d.s.SetFaults(Faults{DropRate: 1, AcceptBeforeDrop: true}); err != nil {
			t.Fatal(err)
		}
		_, err := d.peerA.BatchUpdateMembers(ctx, &imsapi.BatchUpdateMembersRequest{Images: []string{id}, ProjectID: peerProjectA, Status: imsapi.MemberAccepted})
		if te, ok := errors.AsType[*imsapi.TransportError](err); !ok || !imsapi.MaybeApplied(err) {
			t.Fatalf("dropped PUT: %v (%+v), want a TransportError that may have applied", err, te)
		}
		if err := d.s.SetFaults(Faults{}); err != nil {
			t.Fatal(err)
		}
		subs := d.s.Submissions()
		if last := subs[len(subs)-1]; last.Operation != OpUpdateMembers || last.AccessKey != peerAK {
			t.Fatalf("last submission = %+v, want the dropped update", last)
		}
		d.clock.Advance(time.Hour)
		if ms := d.s.ImageMembers(id); len(ms) != 1 || ms[0].Status != imsapi.MemberAccepted {
			t.Errorf("members after the dropped, applied update = %+v", ms)
		}
	})
	t.Run("dropped before accepting", func(t *testing.T) {
		t.Parallel()
		d := newDist(t, func(c *Config) { c.Faults.DropRate = 1 })
		id := d.add(t, imsapi.Image{Name: "x"}).ID
		if _, err := d.a.CopyImageInRegion(ctx, id, &imsapi.CopyImageInRegionRequest{Name: "c"}); !imsapi.MaybeApplied(err) {
			t.Errorf("dropped copy: %v", err)
		}
		if n := len(d.s.Submissions()); n != 0 || len(d.s.RegionImages(regionA)) != 1 {
			t.Errorf("%d submissions, images %+v: the dropped copy took effect", n, d.s.RegionImages(regionA))
		}
	})
	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		d := newDist(t, func(c *Config) { c.Faults.Latency = Duration(5 * time.Millisecond) })
		id := d.add(t, imsapi.Image{Name: "x"}).ID
		begin := time.Now()
		if _, err := d.a.ListImageMembers(ctx, id); err != nil {
			t.Fatal(err)
		}
		if since := time.Since(begin); since < 5*time.Millisecond {
			t.Errorf("answered in %s, before the latency", since)
		}
	})
}

// TestDistributionConcurrency: many goroutines share, tag, copy and read at
// once (run with -race).
func TestDistributionConcurrency(t *testing.T) {
	t.Parallel()
	d := newDist(t, func(c *Config) { c.Regions[1].ImageQuota = -1 })
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		id := d.add(t, imsapi.Image{Name: fmt.Sprint("img-", i)}).ID
		wg.Go(func() {
			steps := []func() error{
				func() error {
					_, err := d.a.BatchAddMembers(ctx, &imsapi.BatchAddMembersRequest{Images: []string{id}, Projects: []string{peerProjectA}})
					return err
				},
				func() error {
					return d.a.BatchAddOrDeleteTags(ctx, id, &imsapi.BatchAddOrDeleteTagsRequest{Action: imsapi.TagActionCreate, Tags: []imsapi.ImageTag{{Key: "n", Value: fmt.Sprint(i)}}})
				},
				func() error {
					_, err := d.a.CopyImageInRegion(ctx, id, &imsapi.CopyImageInRegionRequest{Name: fmt.Sprint("copy-", i)})
					return err
				},
				func() error { _, err := d.a.ListImageMembers(ctx, id); return err },
				func() error { _, err := d.a.Quota(ctx); return err },
			}
			for _, step := range steps {
				if err := step(); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d.clock.Advance(time.Hour)
	if n := len(d.s.RegionImages(regionA)); n != 32 {
		t.Errorf("%d images in region A, want 16 and their copies", n)
	}
	for _, im := range d.s.RegionImages(regionA) {
		if strings.HasPrefix(im.Name, "img-") && len(d.s.ImageMembers(im.ID)) != 1 {
			t.Errorf("%s has members %+v", im.Name, d.s.ImageMembers(im.ID))
		}
	}
}

// TestMemberListJSON: the Glance member list as IMS writes it.
func TestMemberListJSON(t *testing.T) {
	t.Parallel()
	d := newDist(t, nil)
	id := d.add(t, imsapi.Image{Name: "x"}).ID
	d.share(t, &imsapi.BatchAddMembersRequest{Images: []string{id}, Projects: []string{peerProjectA}})
	status, b := callRaw(t, d.s, http.MethodGet, "/v2/images/"+id+"/members", "")
	var raw struct {
		Members []map[string]any `json:"members"`
		Schema  string           `json:"schema"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || status != 200 || len(raw.Members) != 1 || raw.Schema != "/v2/schemas/members" {
		t.Fatalf("%d %s: %v", status, b, err)
	}
	m := raw.Members[0]
	for _, k := range []string{"status", "created_at", "updated_at", "image_id", "member_id", "schema"} {
		if s, ok := m[k].(string); !ok || s == "" {
			t.Errorf("member field %s = %v", k, m[k])
		}
	}
	if _, ok := m["urn"]; ok {
		t.Errorf("a project member has a urn: %v", m)
	}
	other := d.add(t, imsapi.Image{Name: "y"}).ID
	if _, b := callRaw(t, d.s, http.MethodGet, "/v2/images/"+other+"/members", ""); !strings.Contains(string(b), `"members":[]`) {
		t.Errorf("an unshared image's members: %s", b)
	}
}
