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
	regionA, regionB = "ap-southeast-1", "ap-southeast-3"
	peerDomain       = "0f0e0d0c0b0a09080706050403020100"
	peerAK, peerSK   = "PEERAK", "peer-secret-key"
	peerProject      = "1111111111111111111111111111111a"
)

// sdkClient is the official SDK's client of endpoint, signing with ak/sk
// for project.
func sdkClient(t *testing.T, endpoint, ak, sk, project string) *ims.ImsClient {
	t.Helper()
	cred, err := basic.NewCredentialsBuilder().WithAk(ak).WithSk(sk).WithProjectId(project).SafeBuild()
	if err != nil {
		t.Fatal(err)
	}
	hc, err := ims.ImsClientBuilder().WithEndpoints([]string{endpoint}).WithCredential(cred).SafeBuild()
	if err != nil {
		t.Fatal(err)
	}
	return ims.NewImsClient(hc)
}

// TestDistributionThroughTheSDK drives the distribution operations with
// Huawei's SDK: its request bodies, paths and methods are what the
// emulator takes, and the emulator's answers decode into its models. The
// SDK reaches region A only, at the root: it replaces an endpoint's path
// with the API's (core/request fillPath), so a RegionURL's /region/<name>
// prefix never reaches the emulator (the peer's client below shows it:
// its requests land at the root, region A, too). imsapi.Client keeps and
// signs the prefix.
func TestDistributionThroughTheSDK(t *testing.T) {
	t.Parallel()
	clock := imsemu.NewManualClock(time.Now())
	emu, err := imsemu.New(imsemu.Config{
		Credentials: map[string]imsapi.Secret{ak: sk}, ProjectID: projectID, Clock: clock,
		Regions: []imsemu.Region{{Name: regionA}, {Name: regionB}},
		Accounts: []imsemu.Account{{DomainID: peerDomain, Credentials: map[string]imsapi.Secret{peerAK: peerSK},
			Projects: map[string]string{regionA: peerProject}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	owner := sdkClient(t, emu.URL, ak, sk, projectID)
	peer := sdkClient(t, emu.RegionURL(regionA), peerAK, peerSK, peerProject)
	src := emu.AddImage(imsapi.Image{Name: "src", ImageSize: fmt.Sprint(gib)})

	jobDone := func(c *ims.ImsClient, resp any, jobID *string, err error) *model.ShowJobProgressResponse {
		t.Helper()
		if err != nil || jobID == nil {
			t.Fatalf("submission: %v, %v", resp, err)
		}
		clock.Advance(time.Hour)
		p, err := c.ShowJobProgress(&model.ShowJobProgressRequest{JobId: *jobID})
		if err != nil || p.Status == nil || p.Status.Value() != "SUCCESS" || p.JobType == nil {
			t.Fatalf("ShowJobProgress(%s) = %v, %v", *jobID, p, err)
		}
		return p
	}

	// Cross-region copy: the job in A names the copy, which is in B.
	cr, err := owner.CopyImageCrossRegion(&model.CopyImageCrossRegionRequest{ImageId: src.ID, Body: &model.CopyImageCrossRegionRequestBody{
		Name: "src-b", Region: regionB, ProjectName: regionB, AgencyName: "agency", Description: str("replica")}})
	p := jobDone(owner, cr, cr.JobId, err)
	if *p.JobType != imsapi.JobTypeCrossRegionCopy || p.Entities == nil || p.Entities.ImageId == nil {
		t.Fatalf("copy job = %v", p)
	}
	if inB := emu.RegionImages(regionB); len(inB) != 1 || inB[0].ID != *p.Entities.ImageId || inB[0].Status != imsapi.ImageActive {
		t.Errorf("region B = %+v, want the copy", inB)
	}

	// In-region copy with a key.
	ir, err := owner.CopyImageInRegion(&model.CopyImageInRegionRequest{ImageId: src.ID, Body: &model.CopyImageInRegionRequestBody{
		Name: "src-enc", CmkId: str("bd66288c-9081-460a-8227-4cbd0c814cb4")}})
	if p := jobDone(owner, ir, ir.JobId, err); *p.JobType != imsapi.JobTypeCopyInRegion {
		t.Errorf("in-region copy job = %v", p)
	}

	// Share with the peer's project and account; the peer accepts.
	domains := []string{peerDomain}
	am, err := owner.BatchAddMembers(&model.BatchAddMembersRequest{Body: &model.BatchAddMembersRequestBody{
		Images: []string{src.ID}, Projects: []string{peerProject}, Domains: &domains}})
	jobDone(owner, am, am.JobId, err)
	members, err := owner.GlanceListImageMembers(&model.GlanceListImageMembersRequest{ImageId: src.ID})
	if err != nil || members.Members == nil || len(*members.Members) != 2 || (*members.Members)[0].Status != imsapi.MemberPending ||
		(*members.Members)[0].MemberId != peerProject || members.Schema == nil {
		t.Fatalf("GlanceListImageMembers = %v, %v", members, err)
	}
	um, err := peer.BatchUpdateMembers(&model.BatchUpdateMembersRequest{Body: &model.BatchUpdateMembersRequestBody{
		Images: []string{src.ID}, ProjectId: peerProject, Status: model.GetBatchUpdateMembersRequestBodyStatusEnum().ACCEPTED}})
	jobDone(peer, um, um.JobId, err)
	if ms := emu.ImageMembers(src.ID); len(ms) != 2 || ms[0].Status != imsapi.MemberAccepted {
		t.Errorf("members after accepting = %+v", ms)
	}
	q, err := owner.ShowImageQuota(&model.ShowImageQuotaRequest{})
	if err != nil || q.Quotas == nil || len(q.Quotas.Resources) != 3 {
		t.Errorf("ShowImageQuota = %v, %v", q, err)
	}

	// Tags, with the project ID in the path filled in by the SDK.
	_, err = owner.BatchAddOrDeleteTags(&model.BatchAddOrDeleteTagsRequest{ImageId: src.ID, Body: &model.BatchAddOrDeleteTagsRequestBody{
		Action: model.GetBatchAddOrDeleteTagsRequestBodyActionEnum().CREATE, Tags: []model.ResourceTag{{Key: "imsflow", Value: "v1"}}}})
	if err != nil {
		t.Fatalf("BatchAddOrDeleteTags: %v", err)
	}
	if im := emu.Images()[0]; len(im.Tags) != 1 || im.Tags[0] != "imsflow.v1" {
		t.Errorf("tags = %v", im.Tags)
	}

	// Delete: refused while shared with an account, then done.
	_, err = owner.GlanceDeleteImage(&model.GlanceDeleteImageRequest{ImageId: src.ID})
	var sre *sdkerr.ServiceResponseError
	if !errors.As(err, &sre) || sre.StatusCode != 400 || sre.ErrorCode != imsapi.CodeNotSupported {
		t.Errorf("deleting a shared image: %v", err)
	}
	dm, err := owner.BatchDeleteMembers(&model.BatchDeleteMembersRequest{Body: &model.BatchAddMembersRequestBody{
		Images: []string{src.ID}, Projects: []string{peerProject}, Domains: &domains}})
	jobDone(owner, dm, dm.JobId, err)
	if _, err := owner.GlanceDeleteImage(&model.GlanceDeleteImageRequest{ImageId: src.ID}); err != nil {
		t.Errorf("GlanceDeleteImage: %v", err)
	}
	if _, err := owner.GlanceShowImage(&model.GlanceShowImageRequest{ImageId: src.ID}); !errors.As(err, &sre) || sre.StatusCode != 404 {
		t.Errorf("the deleted image: %v", err)
	}
}
