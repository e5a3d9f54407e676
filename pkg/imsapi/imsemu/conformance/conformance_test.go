package conformance

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	ims "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ims/v2"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ims/v2/model"

	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

const (
	ak, sk    = "CONFORMANCEAK", "conformance-secret-key"
	projectID = "0000000000000000000000000000f10c"
	gib       = int64(1) << 30
)

type fixture struct {
	emu   *imsemu.Server
	clock *imsemu.ManualClock
	sdk   *ims.ImsClient
}

// newFixture starts an emulator on a manual clock and the official SDK's
// client against it, signing with AK/SK.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	clock := imsemu.NewManualClock(time.Now())
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{ak: sk}, ProjectID: projectID, Clock: clock, ImageQuota: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	for _, o := range []imsemu.Object{
		{Bucket: "images", Key: "big.zvhd2", Size: 300 * gib},
		{Bucket: "images", Key: "data.qcow2", Size: 4 * gib},
		{Bucket: "images", Key: "broken.qcow2", Size: 4 * gib},
		{Bucket: "images", Key: "sys.qcow2", Size: 30 * gib},
		{Bucket: "images", Key: "huge.qcow2", Size: 200 * gib},
	} {
		emu.PutObject(o)
	}
	emu.AddBucket("exports")
	if err := emu.AddFailureRule(imsemu.FailureRule{KeyPattern: "broken*", ErrorCode: "IMG.0057", FailReason: "the image file is damaged"}); err != nil {
		t.Fatal(err)
	}
	cred, err := basic.NewCredentialsBuilder().WithAk(ak).WithSk(sk).WithProjectId(projectID).SafeBuild()
	if err != nil {
		t.Fatal(err)
	}
	hc, err := ims.ImsClientBuilder().WithEndpoints([]string{emu.URL}).WithCredential(cred).SafeBuild()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{emu: emu, clock: clock, sdk: ims.NewImsClient(hc)}
}

var linux = model.GetCreateDataImageRequestBodyOsTypeEnum().LINUX

// set reports whether an optional string of the SDK's is there.
func set(s *string) bool { return s != nil && *s != "" }

// quickImport submits a quick import of a system disk through the SDK.
func (f *fixture) quickImport(t *testing.T, name, url string, minDisk int32) string {
	t.Helper()
	typ := model.GetQuickImportImageByFileRequestBodyTypeEnum().ECS
	resp, err := f.sdk.ImportImageQuick(&model.ImportImageQuickRequest{Body: &model.QuickImportImageByFileRequestBody{
		Name: name, ImageUrl: url, MinDisk: minDisk, OsVersion: "Ubuntu 22.04 server 64bit", Type: &typ}})
	if err != nil {
		t.Fatalf("ImportImageQuick: %v", err)
	}
	if resp.JobId == nil || *resp.JobId == "" {
		t.Fatalf("ImportImageQuick: no job_id in %v", resp)
	}
	return *resp.JobId
}

// TestJobsThroughTheirStates: both job APIs decode through INIT,
// RUNNING and SUCCESS, and FAIL with IMS's code and reason.
func TestJobsThroughTheirStates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	job := f.quickImport(t, "big", "images:big.zvhd2", 300)
	status := func() (string, *model.ShowJobProgressResponse) {
		p, err := f.sdk.ShowJobProgress(&model.ShowJobProgressRequest{JobId: job})
		if err != nil {
			t.Fatalf("ShowJobProgress: %v", err)
		}
		if p.Status == nil {
			t.Fatalf("ShowJobProgress without a status: %v", p)
		}
		return p.Status.Value(), p
	}
	if s, _ := status(); s != "INIT" {
		t.Errorf("status right after submission = %s, want INIT", s)
	}
	f.clock.Advance(imsemu.DefaultInitDuration + time.Second)
	if s, p := status(); s != "RUNNING" || p.Entities == nil {
		t.Errorf("status after INIT = %s, entities %v; want RUNNING with entities", s, p.Entities)
	}
	f.clock.Advance(24 * time.Hour)
	s, p := status()
	if s != "SUCCESS" || p.BeginTime == nil || p.EndTime == nil || p.Entities == nil || p.Entities.ImageId == nil || *p.Entities.ImageId == "" {
		t.Errorf("status at the end = %s: %v; want SUCCESS with begin, end and the image ID", s, p)
	}
	j, err := f.sdk.ShowJob(&model.ShowJobRequest{JobId: job})
	if err != nil || j.Status == nil || j.Status.Value() != "SUCCESS" || j.Entities == nil || j.Entities.ImageId == nil {
		t.Errorf("ShowJob: %v, %v; want SUCCESS with the image ID", j, err)
	}

	resp, err := f.sdk.CreateDataImage(&model.CreateDataImageRequest{Body: &model.CreateDataImageRequestBody{
		Name: "broken", ImageUrl: "images:broken.qcow2", MinDisk: 40, OsType: &linux}})
	if err != nil || resp.JobId == nil {
		t.Fatalf("CreateDataImage: %v, %v", resp, err)
	}
	f.clock.Advance(24 * time.Hour)
	fj, err := f.sdk.ShowJob(&model.ShowJobRequest{JobId: *resp.JobId})
	if err != nil || fj.Status == nil || fj.Status.Value() != "FAIL" || fj.ErrorCode == nil || *fj.ErrorCode != "IMG.0057" || fj.FailReason == nil {
		t.Errorf("ShowJob of a failing import: %v, %v; want FAIL IMG.0057 with a reason", fj, err)
	}
	fp, err := f.sdk.ShowJobProgress(&model.ShowJobProgressRequest{JobId: *resp.JobId})
	if err != nil || fp.Status == nil || fp.Status.Value() != "FAIL" || fp.ErrorCode == nil || *fp.ErrorCode != "IMG.0057" || fp.FailReason == nil {
		t.Errorf("ShowJobProgress of a failing import: %v, %v; want FAIL IMG.0057 with a reason", fp, err)
	}
}

// TestListImagesDecodes: ListImages and GlanceShowImage decode with a
// quick-imported, a killed and an ARM image among the answers.
func TestListImagesDecodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.quickImport(t, "big", "images:big.zvhd2", 300)
	if _, err := f.sdk.CreateDataImage(&model.CreateDataImageRequest{Body: &model.CreateDataImageRequestBody{
		Name: "broken", ImageUrl: "images:broken.qcow2", MinDisk: 40, OsType: &linux}}); err != nil {
		t.Fatal(err)
	}
	arm := f.emu.AddImage(imsapi.Image{Name: "arm", Architecture: "arm", ImageSize: fmt.Sprint(10 * gib)})
	f.clock.Advance(24 * time.Hour)
	resp, err := f.sdk.ListImages(&model.ListImagesRequest{})
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	if resp.Images == nil || len(*resp.Images) != 3 {
		t.Fatalf("ListImages: %v, want 3 images", resp.Images)
	}
	byName := map[string]model.ImageInfo{}
	for _, im := range *resp.Images {
		byName[im.Name] = im
		if im.Id == "" || im.Self == "" || !set(im.File) || !set(im.Schema) || im.Isregistered.Value() == "" || im.ImageSourceType.Value() == "" {
			t.Errorf("image %s lacks a field the SDK treats as always there: %v", im.Name, im)
		}
	}
	if im := byName["big"]; im.Status.Value() != "active" || im.Lazyloading == nil || *im.Lazyloading != "True" || im.ActiveAt == "" {
		t.Errorf("quick-imported image: %v; want active, lazily loaded, with active_at", im)
	}
	if im := byName["broken"]; im.Status.Value() != "killed" {
		t.Errorf("failed import's image: %v; want killed", im)
	}
	if im := byName["arm"]; im.SupportArm == nil || im.SupportArm.Value() != "true" {
		t.Errorf("ARM image: %v; want __support_arm true", im)
	}
	// Filters, as the SDK sends them.
	private, killed := model.GetListImagesRequestImagetypeEnum().PRIVATE, model.GetListImagesRequestStatusEnum().KILLED
	for _, tt := range []struct {
		name string
		req  model.ListImagesRequest
		want []string
	}{
		{"by name", model.ListImagesRequest{Name: str("arm")}, []string{"arm"}},
		{"killed", model.ListImagesRequest{Status: &killed}, []string{"broken"}},
		{"private, by name", model.ListImagesRequest{Imagetype: &private, Name: str("big")}, []string{"big"}},
	} {
		resp, err := f.sdk.ListImages(&tt.req)
		var got []string
		if err == nil && resp.Images != nil {
			for _, im := range *resp.Images {
				got = append(got, im.Name)
			}
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ListImages %s: %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	show, err := f.sdk.GlanceShowImage(&model.GlanceShowImageRequest{ImageId: arm.ID})
	if err != nil || show.Id == nil || *show.Id != arm.ID {
		t.Errorf("GlanceShowImage: %v, %v", show, err)
	}
}

// TestExportQuotaOSVersions: ExportImage, ShowImageQuota and
// ListOsVersions answer in the SDK's types.
func TestExportQuotaOSVersions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	im := f.emu.AddImage(imsapi.Image{Name: "exp", ImageSize: fmt.Sprint(10 * gib)})
	exp, err := f.sdk.ExportImage(&model.ExportImageRequest{ImageId: im.ID, Body: &model.ExportImageRequestBody{
		BucketUrl: "exports:exp.qcow2", FileFormat: model.GetExportImageRequestBodyFileFormatEnum().QCOW2}})
	if err != nil || exp.JobId == nil || *exp.JobId == "" {
		t.Fatalf("ExportImage: %v, %v", exp, err)
	}
	f.clock.Advance(24 * time.Hour)
	if j, err := f.sdk.ShowJob(&model.ShowJobRequest{JobId: *exp.JobId}); err != nil || j.Status == nil || j.Status.Value() != "SUCCESS" {
		t.Errorf("ShowJob of the export: %v, %v; want SUCCESS", j, err)
	}
	q, err := f.sdk.ShowImageQuota(&model.ShowImageQuotaRequest{})
	if err != nil || q.Quotas == nil || len(q.Quotas.Resources) == 0 {
		t.Errorf("ShowImageQuota: %v, %v; want the image quota", q, err)
	}
	os, err := f.sdk.ListOsVersions(&model.ListOsVersionsRequest{})
	if err != nil || os.Body == nil || len(*os.Body) == 0 || (*os.Body)[0].Platform == "" || len((*os.Body)[0].VersionList) == 0 {
		t.Errorf("ListOsVersions: %v, %v; want platforms with versions", os, err)
	}
}

// TestCreateImageFromFile: a system image from a file, normally and with
// is_quick_import, is a job that ends with the image.
func TestCreateImageFromFile(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tt := range []struct {
		name, url string
		quick     bool
		minDisk   int32
	}{{"sys", "images:sys.qcow2", false, 40}, {"big", "images:big.zvhd2", true, 300}} {
		quick := tt.quick
		resp, err := f.sdk.CreateImage(&model.CreateImageRequest{Body: &model.CreateImageRequestBody{
			Name: str(tt.name), ImageUrl: str(tt.url), MinDisk: &tt.minDisk, OsVersion: str("CentOS 7.9 64bit"), IsQuickImport: &quick}})
		if err != nil || resp.JobId == nil {
			t.Fatalf("CreateImage %s: %v, %v", tt.name, resp, err)
		}
		f.clock.Advance(24 * time.Hour)
		j, err := f.sdk.ShowJob(&model.ShowJobRequest{JobId: *resp.JobId})
		if err != nil || j.Status == nil || j.Status.Value() != "SUCCESS" || j.Entities == nil || j.Entities.ImageId == nil {
			t.Errorf("CreateImage %s: job %v, %v; want SUCCESS with the image", tt.name, j, err)
		}
	}
}

func str(s string) *string { return &s }

// TestErrorsAreServiceResponseErrors: IMS's errors reach the SDK's
// callers as ServiceResponseError with IMS's status and code.
func TestErrorsAreServiceResponseErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	minDisk := int32(40)
	for _, tt := range []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"unknown job", func() error {
			_, err := f.sdk.ShowJob(&model.ShowJobRequest{JobId: "ff80808288d41e1b018d0e35c6a5136a"})
			return err
		}, 404, "IMG.0001"},
		{"export of an unknown image", func() error {
			_, err := f.sdk.ExportImage(&model.ExportImageRequest{ImageId: "00000000-0000-4000-a000-000000000000", Body: &model.ExportImageRequestBody{
				BucketUrl: "exports:x.qcow2", FileFormat: model.GetExportImageRequestBodyFileFormatEnum().QCOW2}})
			return err
		}, 400, "IMG.0027"},
		{"normal import above 128 GB", func() error {
			_, err := f.sdk.CreateDataImage(&model.CreateDataImageRequest{Body: &model.CreateDataImageRequestBody{
				Name: "huge", ImageUrl: "images:huge.qcow2", MinDisk: 300, OsType: &linux}})
			return err
		}, 400, "IMG.0059"},
		{"a signature with the wrong secret key", func() error {
			cred, err := basic.NewCredentialsBuilder().WithAk(ak).WithSk("not-the-secret").WithProjectId(projectID).SafeBuild()
			if err != nil {
				return err
			}
			hc, err := ims.ImsClientBuilder().WithEndpoints([]string{f.emu.URL}).WithCredential(cred).SafeBuild()
			if err != nil {
				return err
			}
			_, err = ims.NewImsClient(hc).ShowImageQuota(&model.ShowImageQuotaRequest{})
			return err
		}, 401, "APIGW.0301"},
		{"unknown bucket", func() error {
			_, err := f.sdk.CreateImage(&model.CreateImageRequest{Body: &model.CreateImageRequestBody{
				Name: str("x"), ImageUrl: str("nobucket:x.qcow2"), MinDisk: &minDisk, OsVersion: str("CentOS 7.9 64bit")}})
			return err
		}, 400, "IMG.0069"},
	} {
		err := tt.call()
		var sre *sdkerr.ServiceResponseError
		if !errors.As(err, &sre) || sre.StatusCode != tt.status || sre.ErrorCode != tt.code {
			t.Errorf("%s: %v; want a %d ServiceResponseError with %s", tt.name, err, tt.status, tt.code)
		}
	}
}
