package imsemu_test

import (
	"context"
	"fmt"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// Two regions, a copy from the first into the second, and the recipient
// account accepting a share: all on a manual clock.
func ExampleServer_RegionClient() {
	ctx := context.Background()
	clock := imsemu.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	emu, err := imsemu.New(imsemu.Config{
		Credentials: map[string]imsapi.Secret{"AK": "SK"},
		Clock:       clock,
		Regions:     []imsemu.Region{{Name: "ap-southeast-1"}, {Name: "ap-southeast-3"}},
		Accounts: []imsemu.Account{{DomainID: "peer", Credentials: map[string]imsapi.Secret{"PEER-AK": "PEER-SK"},
			Projects: map[string]string{"ap-southeast-3": "peer-project"}}},
	})
	if err != nil {
		panic(err)
	}
	defer emu.Close()
	src := emu.AddImage(imsapi.Image{Name: "web-01", ImageSize: fmt.Sprint(imsapi.GiB)})
	a, _ := emu.RegionClient("ap-southeast-1")
	b, _ := emu.RegionClient("ap-southeast-3")

	ref, err := a.CopyImageCrossRegion(ctx, src.ID, &imsapi.CopyImageCrossRegionRequest{
		Name: "web-01", Region: "ap-southeast-3", ProjectName: "ap-southeast-3", AgencyName: "ims_agency"})
	if err != nil {
		panic(err)
	}
	clock.Advance(time.Minute)
	job, _ := a.JobProgress(ctx, ref.JobID) // queried in the source region
	cp, _ := b.Image(ctx, job.Entities.ImageID)
	fmt.Println(job.JobType, job.Status, cp.Name, cp.Status)

	share, _ := b.BatchAddMembers(ctx, &imsapi.BatchAddMembersRequest{Images: []string{cp.ID}, Projects: []string{"peer-project"}})
	clock.Advance(time.Minute)
	peer, _ := emu.AccountClient("peer", "ap-southeast-3")
	accept, _ := peer.BatchUpdateMembers(ctx, &imsapi.BatchUpdateMembersRequest{Images: []string{cp.ID}, ProjectID: "peer-project", Status: imsapi.MemberAccepted})
	clock.Advance(time.Minute)
	j1, _ := b.JobProgress(ctx, share.JobID)
	j2, _ := peer.JobProgress(ctx, accept.JobID)
	members, _ := b.ListImageMembers(ctx, cp.ID)
	fmt.Println(j1.Status, j2.Status, members.Members[0].MemberID, members.Members[0].Status)
	// Output:
	// imsCrossRegionCopyImageJob SUCCESS web-01 active
	// SUCCESS SUCCESS peer-project accepted
}
