package imsemu

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// The distribution operations: copies within and across regions, sharing,
// tags and deletion, with the rules of imsapi/distribution.go. The rules
// the documentation states are enforced as stated; where it names no error
// code, or leaves the behaviour open, the choice is marked UNCONFIRMED.
//
//	CopyImageCrossRegion  400 unless: the image is the caller's (IMG.0027,
//	                      IMG.0047) and active (IMG.0046); the target region
//	                      exists and is another (IMG.0001); project_name is
//	                      the caller's project there (IMG.0145); the agency
//	                      is known (IMG.0179); the image is not encrypted
//	                      (IMG.0197), not ISO (IMG.0167), not full-ECS without
//	                      vault_id (IMG.0130), at most 128 GB (IMG.0059); the
//	                      target quota allows one more image (IMG.0015); the
//	                      caller has fewer than MaxReplicationTasks copies
//	                      running (IMG.0060, retryable). Then a job of the
//	                      source region makes a new image in the target
//	                      region, queued, saving, active (killed on FAIL).
//	CopyImageInRegion     the same but: full-ECS refused (IMG.0130); cmk_id
//	                      must be a known (IMG.0095), enabled (IMG.0097) key
//	                      other than the image's own (IMG.0096); the copy is
//	                      encrypted with cmk_id, plain without.
//	BatchAddMembers       400 unless every image is the caller's, active,
//	                      not public (IMG.0089), not full-ECS (IMG.0135), not
//	                      encrypted with a default key (IMG.0098); no member
//	                      is the caller (IMG.0076); no image would exceed
//	                      MaxImageMembers (IMG.0088). A project or account
//	                      the region does not know fails the job (IMG.0108)
//	                      and adds nobody. Members start pending.
//	BatchUpdateMembers    by the recipient: project_id must be its own project
//	                      (IMG.0067), each image shared with it (IMG.0027).
//	BatchDeleteMembers    the caller's images; members they lack are ignored.
//	BatchAddOrDeleteTags  synchronous (204); at most 10 tags (IMG.0116).
//	GlanceDeleteImage     204; refused for another's image (IMG.0092), a
//	                      public one (IMG.0094), one being created (IMG.0090),
//	                      one a running job uses, and one shared with an
//	                      account, an organisation or a project that accepted
//	                      it (IMG.0105).
//
// Member jobs run InitDuration and then one emulated second, as the
// documented examples (2 to 3 seconds) do.

// memberJobRun is the RUNNING phase of a member job, before TimeScale.
const memberJobRun = time.Second

func (s *Server) distributionRoutes(api func(pattern, op string, h handlerFunc)) {
	api("POST /v1/cloudimages/{image_id}/cross_region_copy", OpCopyCrossRegion, s.copyCrossRegion)
	api("POST /v1/cloudimages/{image_id}/copy", OpCopyInRegion, s.copyInRegion)
	api("POST /v1/cloudimages/members", OpAddMembers, s.addMembers)
	api("PUT /v1/cloudimages/members", OpUpdateMembers, s.updateMembers)
	api("DELETE /v1/cloudimages/members", OpDeleteMembers, s.deleteMembers)
	api("GET /v2/images/{image_id}/members", OpListMembers, s.listMembers)
	api("POST /v2/{project_id}/images/{image_id}/tags/action", OpTags, s.tagsAction)
	api("DELETE /v2/images/{image_id}", OpDeleteImage, s.deleteImage)
}

// copyable checks what both copies require of the source image.
func copyable(im imsapi.Image) *apiError {
	size, _ := im.SizeBytes()
	switch {
	case im.Status != imsapi.ImageActive:
		return imsError(imsapi.CodeImageUnavailable, "The image is %s; only active images can be replicated.", im.Status)
	case im.VirtualEnvType == imsapi.TypeIsoImage:
		return imsError(imsapi.CodeISONotSupported, "This operation cannot be performed for ISO images.")
	case size > imsapi.MaxCopySize:
		return imsError(imsapi.CodeImageTooLarge, "The image is %d bytes; only images of up to 128 GB can be replicated.", size)
	}
	return nil
}

// newCopy makes the record of a copy of src named name, queued, acct's in
// rg.
func (s *Server) newCopy(r *request, src *image, rg *region, project, name, description string) *image {
	im := src.info
	im.ID = s.uuid()
	im.Name, im.Description = name, description
	im.Status = imsapi.ImageQueued
	im.Owner = project
	im.ImageType, im.Visibility = "private", "private"
	// UNCONFIRMED: whether IMS carries tags over to a copy; the emulator
	// does not, so that a copy is found by the tags its maker gives it.
	im.Tags = nil
	im.OriginalImageName = src.info.ID
	im.ActiveAt, im.File, im.Self = "", "", ""
	stamp := r.now.UTC().Format("2006-01-02T15:04:05Z")
	im.CreatedAt, im.UpdatedAt = stamp, stamp
	return &image{info: im, created: r.now, region: rg, owner: r.caller}
}

func (s *Server) copyCrossRegion(r *request) (any, *apiError) {
	img, e := s.ownedImage(r, r.PathValue("image_id"))
	if e != nil {
		return nil, e
	}
	var req imsapi.CopyImageCrossRegionRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	target := s.regionByName[req.Region]
	switch {
	case req.Region == r.region.name:
		return nil, imsError("IMG.0001", "The destination region cannot be the same as the source region.")
	case target == nil:
		return nil, imsError("IMG.0001", "The destination region %s does not exist.", req.Region)
	}
	im := img.view(r.now)
	if e := copyable(im); e != nil {
		return nil, e
	}
	project, ok := r.caller.projects[target.name]
	switch {
	case !ok || req.ProjectName != target.projectName:
		return nil, imsError(imsapi.CodeProjectName, "The project name %s is incorrect: it is not the caller's project in region %s.", req.ProjectName, target.name)
	case s.cfg.Agencies != nil && !slices.Contains(s.cfg.Agencies, req.AgencyName):
		return nil, imsError(imsapi.CodeAgency, "The agency %s cannot be used.", req.AgencyName)
	case im.Encrypted():
		return nil, imsError(imsapi.CodeEncryptedNoCopy, "Encrypted images cannot be replicated across regions; copy it to a plain image in its region first.")
	case bool(im.WholeImage) && req.VaultID == "":
		return nil, imsError(imsapi.CodeFullECSNoCopy, "A full-ECS image needs vault_id to be replicated across regions.")
	}
	if e := s.admitImage(target, r.caller); e != nil {
		return nil, e
	}
	if m := s.cfg.MaxReplicationTasks; m > 0 {
		n := 0
		for _, j := range s.pending {
			if j.op == OpCopyCrossRegion && j.account == r.caller {
				n++
			}
		}
		if n >= m {
			s.stats.CopyCapped++
			return nil, imsError(imsapi.CodeFlowControl, "%d images are being replicated across regions, the most at a time; try again later.", n)
		}
	}
	size, _ := im.SizeBytes()
	cp := s.newCopy(r, img, target, project, req.Name, req.Description)
	j := &job{jobType: imsapi.JobTypeCrossRegionCopy, image: cp, source: img, imageID: cp.info.ID, imageName: cp.info.Name,
		run:  duration(size, s.cfg.CopySpeed, s.cfg.TimeScale),
		fail: s.failureFor(OpCopyCrossRegion, target.name, "", req.Name)}
	cp.job = j
	s.addImage(cp)
	return imsapi.JobRef{JobID: s.startJob(r, j, OpCopyCrossRegion, req.Name, "")}, nil
}

func (s *Server) copyInRegion(r *request) (any, *apiError) {
	img, e := s.ownedImage(r, r.PathValue("image_id"))
	if e != nil {
		return nil, e
	}
	var req imsapi.CopyImageInRegionRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	im := img.view(r.now)
	if bool(im.WholeImage) {
		return nil, imsError(imsapi.CodeFullECSNoCopy, "Full-ECS images cannot be replicated within a region.")
	}
	if e := copyable(im); e != nil {
		return nil, e
	}
	if req.CMKID != "" {
		key, known := s.kmsKey(req.CMKID)
		switch {
		case !known:
			return nil, imsError(imsapi.CodeKeyNotFound, "The KMS key %s does not exist.", req.CMKID)
		case key.Disabled:
			return nil, imsError(imsapi.CodeKeyDisabled, "The KMS key %s is not enabled.", req.CMKID)
		case req.CMKID == im.SystemCMKID:
			return nil, imsError(imsapi.CodeSameKey, "The specified KMS key ID must be different from the image key ID.")
		}
	}
	if e := s.admitImage(r.region, r.caller); e != nil {
		return nil, e
	}
	size, _ := im.SizeBytes()
	cp := s.newCopy(r, img, r.region, r.project, req.Name, req.Description)
	cp.info.SystemCMKID = req.CMKID // without cmk_id, a copy of an encrypted image is plain
	if req.EnterpriseProjectID != "" {
		cp.info.EnterpriseProjectID = req.EnterpriseProjectID
	}
	j := &job{jobType: imsapi.JobTypeCopyInRegion, image: cp, source: img, imageID: cp.info.ID, imageName: cp.info.Name,
		run:  duration(size, s.cfg.CopySpeed, s.cfg.TimeScale),
		fail: s.failureFor(OpCopyInRegion, r.region.name, "", req.Name)}
	cp.job = j
	s.addImage(cp)
	return imsapi.JobRef{JobID: s.startJob(r, j, OpCopyInRegion, req.Name, "")}, nil
}

// kmsKey returns the key id; with no KMSKeys configured every ID is a
// known, enabled, non-default key.
func (s *Server) kmsKey(id string) (KMSKey, bool) {
	if s.cfg.KMSKeys == nil {
		return KMSKey{ID: id}, true
	}
	i := slices.IndexFunc(s.cfg.KMSKeys, func(k KMSKey) bool { return k.ID == id })
	if i < 0 {
		return KMSKey{}, false
	}
	return s.cfg.KMSKeys[i], true
}

// memberImages returns the caller's images ids of a member request.
func (s *Server) memberImages(r *request, ids []string) ([]*image, *apiError) {
	out := make([]*image, 0, len(ids))
	for _, id := range ids {
		img, e := s.ownedImage(r, id)
		if e != nil {
			return nil, e
		}
		if !slices.Contains(out, img) {
			out = append(out, img)
		}
	}
	return out, nil
}

func imageNames(imgs []*image) []string {
	names := make([]string, len(imgs))
	for i, im := range imgs {
		names[i] = im.info.Name
	}
	return names
}

// wanted is a member a request names.
type wanted struct{ kind, id string }

func requestedMembers(req *imsapi.BatchAddMembersRequest) []wanted {
	var out []wanted
	add := func(kind string, ids []string) {
		for _, id := range ids {
			if w := (wanted{kind, id}); !slices.Contains(out, w) {
				out = append(out, w)
			}
		}
	}
	add(imsapi.MemberTypeProject, req.Projects)
	add(imsapi.MemberTypeDomain, req.Domains)
	add(imsapi.MemberTypeOrganization, req.Organizations)
	return out
}

func (m *member) is(w wanted) bool { return m.kind == w.kind && m.id == w.id }

func (s *Server) addMembers(r *request) (any, *apiError) {
	var req imsapi.BatchAddMembersRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	imgs, e := s.memberImages(r, req.Images)
	if e != nil {
		return nil, e
	}
	for _, img := range imgs {
		im := img.view(r.now)
		switch {
		case im.Status != imsapi.ImageActive:
			return nil, imsError(imsapi.CodeImageUnavailable, "The image %s is %s; only active images can be shared.", im.ID, im.Status)
		case im.ImageType == "gold":
			return nil, imsError(imsapi.CodePublicNotShareable, "The public image %s cannot be shared.", im.ID)
		case bool(im.WholeImage):
			return nil, imsError(imsapi.CodeFullECSNoShare, "The full-ECS image %s cannot be shared.", im.ID)
		case im.Encrypted():
			if key, _ := s.kmsKey(im.SystemCMKID); key.Default {
				return nil, imsError(imsapi.CodeEncryptedNotShared, "The image %s is encrypted with a default key and cannot be shared; copy it to a plain image first.", im.ID)
			}
		}
	}
	want := requestedMembers(&req)
	for _, w := range want {
		if w.kind == imsapi.MemberTypeProject && w.id == r.project || w.kind == imsapi.MemberTypeDomain && w.id == r.caller.domainID {
			return nil, imsError(imsapi.CodeShareWithSelf, "You cannot share an image with yourself.")
		}
	}
	for _, img := range imgs {
		n := len(img.members)
		for _, w := range want {
			if !slices.ContainsFunc(img.members, func(m *member) bool { return m.is(w) }) {
				n++
			}
		}
		if m := s.cfg.MaxImageMembers; m > 0 && n > m {
			return nil, imsError(imsapi.CodeMemberLimit, "The image %s would have %d members; at most %d are allowed.", img.info.ID, n, s.cfg.MaxImageMembers)
		}
	}
	// A member the region does not know fails the job, not the request:
	// IMS resolves the tenants in the job (UNCONFIRMED; the documentation
	// only says that a project ID of another region "cannot be found").
	fail := s.unknownMember(r.region, want)
	if fail == nil {
		fail = s.failureFor(OpAddMembers, r.region.name, "", imageNames(imgs)...)
	}
	j := &job{jobType: imsapi.JobTypeAddMembers, members: imgs, run: scale(memberJobRun, s.cfg.TimeScale), fail: fail}
	j.apply = func(at time.Time) {
		for _, img := range imgs {
			for _, w := range want {
				if !slices.ContainsFunc(img.members, func(m *member) bool { return m.is(w) }) {
					img.members = append(img.members, &member{kind: w.kind, id: w.id, status: imsapi.MemberPending, created: at, updated: at})
				}
			}
		}
	}
	return imsapi.JobRef{JobID: s.startJob(r, j, OpAddMembers, "", "")}, nil
}

// unknownMember is the failure of a member job naming a project the region
// does not know, or an unknown account; nil when all are known.
// Organisations are not modelled and always known.
func (s *Server) unknownMember(rg *region, want []wanted) *FailureRule {
	for _, w := range want {
		known := true
		switch w.kind {
		case imsapi.MemberTypeProject:
			known = s.projectOwner(rg, w.id) != nil
		case imsapi.MemberTypeDomain:
			known = slices.ContainsFunc(s.others, func(a *account) bool { return a.domainID == w.id })
		}
		if !known {
			return &FailureRule{ErrorCode: imsapi.CodeTenantNotFound, AtPercent: 0.5,
				FailReason: fmt.Sprintf("The tenant %s was not found in the current region %s.", w.id, rg.name)}
		}
	}
	return nil
}

func (s *Server) updateMembers(r *request) (any, *apiError) {
	var req imsapi.BatchUpdateMembersRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	if req.ProjectID != r.project {
		return nil, imsError(imsapi.CodeProjectID, "The project ID %s is incorrect: a member updates its own project's shares only.", req.ProjectID)
	}
	var imgs []*image
	var ms []*member
	for _, id := range req.Images {
		img := s.imageByID[id]
		var m *member
		if img != nil && !img.deleted && img.region == r.region {
			m = img.memberFor(r.caller)
		}
		if m == nil {
			return nil, imsError(imsapi.CodeImageNotExist, "The image %s does not exist or is not shared with project %s.", id, req.ProjectID)
		}
		imgs, ms = append(imgs, img), append(ms, m)
	}
	j := &job{jobType: imsapi.JobTypeUpdateMembers, members: imgs, run: scale(memberJobRun, s.cfg.TimeScale),
		fail: s.failureFor(OpUpdateMembers, r.region.name, "", imageNames(imgs)...)}
	j.apply = func(at time.Time) {
		for _, m := range ms {
			m.status, m.updated = req.Status, at
		}
	}
	return imsapi.JobRef{JobID: s.startJob(r, j, OpUpdateMembers, "", "")}, nil
}

func (s *Server) deleteMembers(r *request) (any, *apiError) {
	var req imsapi.BatchAddMembersRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	imgs, e := s.memberImages(r, req.Images)
	if e != nil {
		return nil, e
	}
	want := requestedMembers(&req)
	j := &job{jobType: imsapi.JobTypeDeleteMembers, members: imgs, run: scale(memberJobRun, s.cfg.TimeScale),
		fail: s.failureFor(OpDeleteMembers, r.region.name, "", imageNames(imgs)...)}
	j.apply = func(time.Time) {
		for _, img := range imgs {
			img.members = slices.DeleteFunc(img.members, func(m *member) bool {
				return slices.ContainsFunc(want, m.is)
			})
		}
	}
	return imsapi.JobRef{JobID: s.startJob(r, j, OpDeleteMembers, "", "")}, nil
}

// listMembers is GlanceListImageMembers: the owner sees every member, a
// member its own membership.
func (s *Server) listMembers(r *request) (any, *apiError) {
	id := r.PathValue("image_id")
	img := s.imageByID[id]
	if img == nil || img.deleted || !s.canSee(r, img) {
		return nil, notFound(id)
	}
	out := imsapi.ImageMembers{Members: []imsapi.ImageMember{}, Schema: "/v2/schemas/members"}
	for _, m := range img.members {
		if img.owner == r.caller || m == img.memberFor(r.caller) {
			out.Members = append(out.Members, m.view(id))
		}
	}
	return out, nil
}

func (s *Server) tagsAction(r *request) (any, *apiError) {
	if p := r.PathValue("project_id"); r.project != "" && p != r.project {
		return nil, imsError("IMG.0001", "The project %s in the path is not the credentials' project.", p)
	}
	img, e := s.ownedImage(r, r.PathValue("image_id"))
	if e != nil {
		return nil, e
	}
	var req imsapi.BatchAddOrDeleteTagsRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	tags := slices.Clone(img.info.Tags)
	index := func(key string) int {
		return slices.IndexFunc(tags, func(t string) bool { k, _, _ := strings.Cut(t, "."); return k == key })
	}
	for _, t := range req.Tags {
		i := index(t.Key)
		switch {
		case req.Action == imsapi.TagActionDelete:
			// By key: the value is not checked (UNCONFIRMED).
			if i >= 0 {
				tags = slices.Delete(tags, i, i+1)
			}
		case i >= 0:
			tags[i] = canonicalTag(t.Key + "." + t.Value)
		default:
			tags = append(tags, canonicalTag(t.Key+"."+t.Value))
		}
	}
	if len(tags) > imsapi.MaxTags {
		return nil, imsError("IMG.0116", "The image would have %d tags; at most %d are allowed.", len(tags), imsapi.MaxTags)
	}
	img.info.Tags = tags
	img.info.UpdatedAt = r.now.UTC().Format("2006-01-02T15:04:05Z")
	return noContent{}, nil
}

// deleteImage is GlanceDeleteImage.
func (s *Server) deleteImage(r *request) (any, *apiError) {
	id := r.PathValue("image_id")
	if len(strings.TrimSpace(string(r.body))) > 0 {
		var body struct {
			DeleteBackup *bool `json:"delete_backup"`
		}
		if e := decode(r, &body); e != nil {
			return nil, e
		}
	}
	img := s.imageByID[id]
	if img == nil || img.deleted || !s.canSee(r, img) {
		return nil, notFound(id)
	}
	if img.owner != r.caller {
		return nil, imsError(imsapi.CodeDeleteOwnerOnly, "The image can only be deleted by the owner.")
	}
	if img.info.ImageType == "gold" {
		return nil, imsError("IMG.0094", "The public image cannot be deleted.")
	}
	if img.job != nil && !img.job.finished {
		return nil, imsError(imsapi.CodeImageBeingCreated, "The image being created cannot be deleted.")
	}
	if j := s.jobUsing(img); j != nil {
		// UNCONFIRMED: what IMS answers for an image a job reads.
		return nil, imsError(imsapi.CodeNotSupported, "The image is in use by job %s; delete it when the job has ended.", j.id)
	}
	// Documented: an image shared with an account or an organisation
	// cannot be deleted. The emulator also refuses one a project has
	// accepted (UNCONFIRMED: the OTC reference says other shared images can
	// be deleted at any time), so that a caller unshares before deleting.
	for _, m := range img.members {
		if m.kind != imsapi.MemberTypeProject || m.status == imsapi.MemberAccepted {
			return nil, imsError(imsapi.CodeNotSupported, "The image is shared with %s %s; stop sharing it (BatchDeleteMembers) before deleting it.", m.kind, m.id)
		}
	}
	img.deleted = true
	img.members = nil
	img.info.Status = imsapi.ImageDeleted
	img.info.UpdatedAt = r.now.UTC().Format("2006-01-02T15:04:05Z")
	return noContent{}, nil
}

// jobUsing returns an unfinished job that reads img: an export of it, a
// copy of it, or a member job on it.
func (s *Server) jobUsing(img *image) *job {
	for _, j := range s.pending {
		if j.source == img || (j.op == OpExport && j.image == img) || slices.Contains(j.members, img) {
			return j
		}
	}
	return nil
}
