package imsapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The distribution operations: what happens to an image once it is
// imported. Sources: Huawei's API reference (ims_03_0628 cross-region copy,
// ims_03_0627/0627_1 in-region copy, ims_03_0623/0624/0625 members,
// ims_03_0723 member list, ims_03_0617 tags, ims_03_0706 delete,
// ims_03_0630 quota), Huawei's Go SDK
// (huaweicloud-sdk-go-v3 v0.1.207, services/ims/v2: the operation names, the
// request bodies' JSON names, the paths in ims_meta.go), and the Open
// Telekom Cloud copy of the same reference (image_sharing/, error_codes.rst,
// the job examples of querying_the_progress_of_an_asynchronous_job.rst).
// What none of them settles is marked UNCONFIRMED where it is decided.

// Limits of the distribution operations.
const (
	// MaxCopySize is the largest image, in bytes of __image_size, that can be
	// copied to another region or within one: 128 GB (ims_03_0628,
	// ims_03_0627_1).
	MaxCopySize = 128 * GiB
	// MaxReplicationTasks is how many cross-region copies one tenant may have
	// running at once (ims_03_0628: "a maximum of five private images can be
	// replicated at a time").
	MaxReplicationTasks = 5
	// MaxImageMembers is the most projects, accounts and organisations one
	// image can be shared with: 128, the strictest documented figure (newer
	// pages say 256 for system and data disk images, 10 for full-ECS ones).
	MaxImageMembers = 128
	// MaxTagDeleteKeyLength and MaxTagDeleteValueLength bound the keys and
	// values of a tag deletion, which IMS checks for length only.
	MaxTagDeleteKeyLength   = 127
	MaxTagDeleteValueLength = 255
)

// Member states of a shared image (Glance's), and the two a recipient can
// set with [Client.BatchUpdateMembers].
const (
	MemberPending  = "pending"
	MemberAccepted = "accepted"
	MemberRejected = "rejected"
)

// Member types of [ImageMember].MemberType. Huawei's SDK documents
// "organization" (the urn field comes with it); "project" and "domain" are
// UNCONFIRMED spellings of the other two.
const (
	MemberTypeProject      = "project"
	MemberTypeDomain       = "domain"
	MemberTypeOrganization = "organization"
)

// Actions of [BatchAddOrDeleteTagsRequest] (case-sensitive).
const (
	TagActionCreate = "create"
	TagActionDelete = "delete"
)

// IMS error codes of the distribution operations, from IMS's error code
// table (OTC error_codes.rst). Which refusal IMS answers with which of them
// is documented for none of the copy and share rules: each use is
// UNCONFIRMED, chosen from the code's own description.
const (
	CodeImageQuota         = "IMG.0015" // private image quota reached
	CodeImageUnavailable   = "IMG.0046" // the image is not active
	CodeOwnerOnly          = "IMG.0047" // only the image's owner may do this
	CodeImageTooLarge      = "IMG.0059" // above 128 GB (copies)
	CodeProjectID          = "IMG.0067" // project_id is not the caller's project
	CodeShareWithSelf      = "IMG.0076" // an image cannot be shared with its owner
	CodeMemberLimit        = "IMG.0088" // too many members
	CodePublicNotShareable = "IMG.0089" // public images cannot be shared
	CodeImageBeingCreated  = "IMG.0090" // an image being created cannot be deleted
	CodeDeleteOwnerOnly    = "IMG.0092" // only the owner can delete
	CodeKeyNotFound        = "IMG.0095" // KMS key missing
	CodeSameKey            = "IMG.0096" // re-key with the image's own key
	CodeKeyDisabled        = "IMG.0097" // KMS key disabled
	CodeEncryptedNotShared = "IMG.0098" // encrypted (default key) images cannot be shared
	CodeNotSupported       = "IMG.0105" // operation not supported (delete of a shared image)
	CodeTenantNotFound     = "IMG.0108" // project not in this region
	CodeFullECSNoCopy      = "IMG.0130" // full-ECS images cannot be replicated
	CodeFullECSNoShare     = "IMG.0135" // full-ECS images cannot be shared
	CodeProjectName        = "IMG.0145" // wrong project name
	CodeISONotSupported    = "IMG.0167" // not for ISO images
	CodeAgency             = "IMG.0179" // the agency cannot be used
	CodeEncryptedNoCopy    = "IMG.0197" // encrypted images cannot be replicated
)

// CopyImageCrossRegionRequest is the body of CopyImageCrossRegion
// (CopyImageCrossRegionRequestBody): a copy of an image in another region
// of the same account. The copy gets a new ID in the target region.
type CopyImageCrossRegionRequest struct {
	// Name is the copy's name (the image name rules).
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Region is the target region's ID, e.g. "ap-southeast-3"; not the
	// source's own.
	Region string `json:"region"`
	// ProjectName is the IAM project in the target region, usually named
	// as the region ("ap-southeast-3"); IAM projects only, not enterprise
	// projects.
	ProjectName string `json:"project_name"`
	// AgencyName is an IAM agency IMS may act through in the target region.
	AgencyName string `json:"agency_name"`
	// VaultID is the CBR vault of a full-ECS image's copy (required for one).
	VaultID string `json:"vault_id,omitempty"`
}

// Validate returns the documented rules r breaks (see [ValidationError]).
func (r *CopyImageCrossRegionRequest) Validate() error {
	if r == nil {
		return nilRequest()
	}
	var v validator
	v.name("name", r.Name)
	v.description("description", r.Description)
	v.regionID("region", r.Region)
	v.iamName("project_name", CodeProjectName, r.ProjectName, func(c rune) bool {
		return asciiAlnum(c) || c == '-' || c == '_'
	}, "letters, digits, '-' and '_'")
	v.iamName("agency_name", CodeAgency, r.AgencyName, func(c rune) bool {
		return unicode.IsPrint(c)
	}, "printable characters")
	if r.AgencyName != "" && r.AgencyName != strings.TrimSpace(r.AgencyName) {
		v.add("agency_name", "format", CodeAgency, "must not start or end with a space")
	}
	v.optionalID("vault_id", r.VaultID)
	return v.err()
}

// CopyImageInRegionRequest is the body of CopyImageInRegion
// (CopyImageInRegionRequestBody): a copy in the same region, the way to
// encrypt an image, re-key it, or (without CMKID) turn an encrypted image
// into a plain one before sharing or replicating it.
type CopyImageInRegionRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// CMKID is the KMS key the copy is encrypted with; empty: not encrypted.
	CMKID string `json:"cmk_id,omitempty"`
	// EnterpriseProjectID is "0" (the default project) or a UUID.
	EnterpriseProjectID string `json:"enterprise_project_id,omitempty"`
}

// Validate returns the documented rules r breaks (see [ValidationError]).
func (r *CopyImageInRegionRequest) Validate() error {
	if r == nil {
		return nilRequest()
	}
	var v validator
	v.name("name", r.Name)
	v.description("description", r.Description)
	if r.CMKID != "" && !isIMSID(r.CMKID) {
		v.add("cmk_id", "format", CodeKeyNotFound, "%q is not a KMS key ID (letters, digits, '-' and '_', at most 64)", r.CMKID)
	}
	v.optionalID("enterprise_project_id", r.EnterpriseProjectID)
	return v.err()
}

// BatchAddMembersRequest is the body of BatchAddMembers and of
// BatchDeleteMembers (BatchAddMembersRequestBody): images shared with, or
// no longer shared with, projects, accounts (domains) and organisations of
// the same region. At least one of Projects, Domains and Organizations must
// be given (ims_03_0624).
type BatchAddMembersRequest struct {
	// Images are the IDs of the caller's images.
	Images []string `json:"images"`
	// Projects are project IDs of the same region. Huawei's SDK sends the
	// field always, so the client sends [] rather than null for none.
	Projects []string `json:"projects"`
	// Domains are account IDs.
	Domains []string `json:"domains,omitempty"`
	// Organizations are organisation URNs, e.g.
	// "organizations::<account>:organization:o-..." (or the IDs of its
	// roots and units).
	Organizations []string `json:"organizations,omitempty"`
}

// Validate returns the documented rules r breaks (see [ValidationError]).
func (r *BatchAddMembersRequest) Validate() error {
	if r == nil {
		return nilRequest()
	}
	var v validator
	v.idList("images", r.Images, true)
	v.idList("projects", r.Projects, false)
	v.idList("domains", r.Domains, false)
	for i, o := range r.Organizations {
		if o == "" || len(o) > 512 || strings.IndexFunc(o, func(c rune) bool { return unicode.IsSpace(c) || !unicode.IsPrint(c) }) >= 0 {
			v.add(fmt.Sprintf("organizations[%d]", i), "format", "IMG.0001", "%q is not an organisation URN or ID", o)
		}
	}
	n := len(r.Projects) + len(r.Domains) + len(r.Organizations)
	switch {
	case n == 0:
		v.add("projects", "required", "IMG.0001", "projects, domains or organizations: at least one member is required")
	case n > MaxImageMembers:
		v.add("projects", "length", CodeMemberLimit, "names %d members; an image can have at most %d", n, MaxImageMembers)
	}
	return v.err()
}

// BatchUpdateMembersRequest is the body of BatchUpdateMembers
// (BatchUpdateMembersRequestBody): the recipient accepts or rejects images
// shared with its project.
type BatchUpdateMembersRequest struct {
	Images []string `json:"images"`
	// ProjectID is the recipient's own project in this region.
	ProjectID string `json:"project_id"`
	// Status is MemberAccepted or MemberRejected. A rejected image is no
	// longer listed, but can still be used.
	Status string `json:"status"`
	// VaultID is required to accept a full-ECS image made from a CBR backup.
	VaultID string `json:"vault_id,omitempty"`
}

// Validate returns the documented rules r breaks (see [ValidationError]).
func (r *BatchUpdateMembersRequest) Validate() error {
	if r == nil {
		return nilRequest()
	}
	var v validator
	v.idList("images", r.Images, true)
	v.id("project_id", r.ProjectID)
	if r.Status == "" {
		v.add("status", "required", "IMG.0001", "is required: %s or %s", MemberAccepted, MemberRejected)
	} else {
		v.enum("status", "IMG.0001", r.Status, MemberAccepted, MemberRejected)
	}
	v.optionalID("vault_id", r.VaultID)
	return v.err()
}

// BatchAddOrDeleteTagsRequest is the body of BatchAddOrDeleteTags
// (BatchAddOrDeleteTagsRequestBody): tags created (or, for an existing key,
// updated) or deleted, all at once.
type BatchAddOrDeleteTagsRequest struct {
	// Action is TagActionCreate or TagActionDelete.
	Action string `json:"action"`
	// Tags are the tags to create or delete. Keys must be unique. A
	// deletion matches by key; a key the image lacks is no error.
	Tags []ImageTag `json:"tags"`
}

// Validate returns the documented rules r breaks (see [ValidationError]):
// for a creation the tag rules of imports (at most 10, keys 1-36 of
// [A-Za-z0-9_-], values 0-43 of [A-Za-z0-9_.-]); for a deletion only
// lengths (keys 1-127, values 0-255), as IMS checks them.
func (r *BatchAddOrDeleteTagsRequest) Validate() error {
	if r == nil {
		return nilRequest()
	}
	var v validator
	switch r.Action {
	case "":
		v.add("action", "required", "IMG.0001", "is required: %s or %s", TagActionCreate, TagActionDelete)
	case TagActionCreate, TagActionDelete:
	default:
		v.add("action", "enum", "IMG.0001", "is %q; allowed are %s and %s (lower case)", r.Action, TagActionCreate, TagActionDelete)
	}
	if len(r.Tags) == 0 {
		v.add("tags", "required", "IMG.0115", "at least one tag is required")
	}
	if r.Action == TagActionDelete {
		seen := make(map[string]bool, len(r.Tags))
		for i, t := range r.Tags {
			f := fmt.Sprintf("tags[%d]", i)
			switch n := utf8.RuneCountInString(t.Key); {
			case strings.TrimSpace(t.Key) == "":
				v.add(f+".key", "required", "IMG.0115", "tag key is empty or blank")
			case n > MaxTagDeleteKeyLength:
				v.add(f+".key", "length", "IMG.0115", "tag key has %d characters, at most %d are allowed", n, MaxTagDeleteKeyLength)
			}
			if n := utf8.RuneCountInString(t.Value); n > MaxTagDeleteValueLength {
				v.add(f+".value", "length", "IMG.0115", "tag value has %d characters, at most %d are allowed", n, MaxTagDeleteValueLength)
			}
			if t.Key != "" && seen[t.Key] {
				v.add(f+".key", "format", "IMG.0115", "tag key %q appears twice", t.Key)
			}
			seen[t.Key] = true
		}
	} else {
		v.tagList("tags", r.Tags)
	}
	return v.err()
}

// ImageMember is one member of a shared image, as the Glance member list
// has it (GlanceImageMembers).
type ImageMember struct {
	// Status is MemberPending, MemberAccepted or MemberRejected.
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
	ImageID   string `json:"image_id"`
	// MemberID is the project ID (or account ID, or organisation) shared with.
	MemberID string `json:"member_id"`
	Schema   string `json:"schema,omitempty"`
	// MemberType is one of the MemberType constants; URN is set for an
	// organisation.
	MemberType string `json:"member_type,omitempty"`
	URN        string `json:"urn,omitempty"`
}

// ImageMembers is the answer of [Client.ListImageMembers].
type ImageMembers struct {
	Members []ImageMember `json:"members"`
	Schema  string        `json:"schema,omitempty"`
}

// Member returns the member with ID memberID (a project, account or
// organisation).
func (m *ImageMembers) Member(memberID string) (ImageMember, bool) {
	i := slices.IndexFunc(m.Members, func(x ImageMember) bool { return x.MemberID == memberID })
	if i < 0 {
		return ImageMember{}, false
	}
	return m.Members[i], true
}

// CopyImageCrossRegion starts a copy of image imageID into another region of
// the same account (CopyImageCrossRegion), through the client's own (the
// source) region; follow the job with [Client.JobProgress] there. The copy
// gets a new ID in the target region: the job's entities.image_id names it
// (UNCONFIRMED: the documented job example does not say whether that is the
// source's or the copy's ID), and it can always be found by its name in the
// target region. IMS refuses encrypted and ISO images, images above
// [MaxCopySize], and more than [MaxReplicationTasks] copies at once.
//
// It returns an error wrapping [ErrInvalidArgument] (with a
// [*ValidationError] per broken rule) before any I/O, an [*APIError] for a
// refusal, or a [*TransportError]. A cap of running copies is answered with
// flow control (UNCONFIRMED: IMG.0060, which [IsRetryable] reports).
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0628.html
//
//meta:operation POST /v1/cloudimages/{image_id}/cross_region_copy
func (c *Client) CopyImageCrossRegion(ctx context.Context, imageID string, r *CopyImageCrossRegionRequest) (*JobRef, error) {
	var v validator
	v.id("image_id", imageID)
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return c.submit(ctx, OpCopyCrossRegion, "/v1/cloudimages/"+imageID+"/cross_region_copy", r)
}

// CopyImageInRegion starts a copy of image imageID in the same region
// (CopyImageInRegion): encrypted with CMKID when given, plain otherwise.
// IMS refuses full-ECS and ISO images and images above [MaxCopySize].
// Errors as for [Client.CopyImageCrossRegion].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0627.html
//
//meta:operation POST /v1/cloudimages/{image_id}/copy
func (c *Client) CopyImageInRegion(ctx context.Context, imageID string, r *CopyImageInRegionRequest) (*JobRef, error) {
	var v validator
	v.id("image_id", imageID)
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return c.submit(ctx, OpCopyInRegion, "/v1/cloudimages/"+imageID+"/copy", r)
}

// BatchAddMembers starts sharing images with projects, accounts or
// organisations of the same region (BatchAddMembers). Project members start
// pending until the recipient accepts ([Client.BatchUpdateMembers]). IMS
// refuses images that are not active, public images, and images encrypted
// with the default KMS key. Errors as for [Client.CopyImageCrossRegion]; a
// member unknown in the region fails the job rather than the request (see
// the emulator).
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0624.html
//
//meta:operation POST /v1/cloudimages/members
func (c *Client) BatchAddMembers(ctx context.Context, r *BatchAddMembersRequest) (*JobRef, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return c.submitWith(ctx, OpAddMembers, http.MethodPost, "/v1/cloudimages/members", r.wire())
}

// BatchUpdateMembers starts accepting or rejecting images shared with the
// caller's project (BatchUpdateMembers). It is the recipient's call: make
// it with a client of the recipient's own credentials and project. Errors
// as for [Client.CopyImageCrossRegion].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0625.html
//
//meta:operation PUT /v1/cloudimages/members
func (c *Client) BatchUpdateMembers(ctx context.Context, r *BatchUpdateMembersRequest) (*JobRef, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return c.submitWith(ctx, OpUpdateMembers, http.MethodPut, "/v1/cloudimages/members", r)
}

// BatchDeleteMembers starts unsharing images (BatchDeleteMembers); its body
// is that of [Client.BatchAddMembers], as in Huawei's SDK. Members the
// images do not have are no error. Errors as for
// [Client.CopyImageCrossRegion].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0623.html
//
//meta:operation DELETE /v1/cloudimages/members
func (c *Client) BatchDeleteMembers(ctx context.Context, r *BatchAddMembersRequest) (*JobRef, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return c.submitWith(ctx, OpDeleteMembers, http.MethodDelete, "/v1/cloudimages/members", r.wire())
}

// wire is r as sent: projects as [] rather than null.
func (r *BatchAddMembersRequest) wire() *BatchAddMembersRequest {
	if r.Projects != nil {
		return r
	}
	cp := *r
	cp.Projects = []string{}
	return &cp
}

// ListImageMembers returns the members of an image, in the shape of
// OpenStack Glance (Huawei's SDK calls this GlanceListImageMembers; its
// ListImageMembers is the same list under /v1/{project_id}/cloudimages/
// {image_id}/members). The owner sees every member; a recipient sees its
// own membership. An image shared with nobody has no members. It returns
// an error wrapping [ErrInvalidArgument] for a malformed ID, an [*APIError]
// (errors.Is [ErrNotFound] for an image the caller cannot see) or a
// [*TransportError].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0723.html
//
//meta:operation GET /v2/images/{image_id}/members
func (c *Client) ListImageMembers(ctx context.Context, imageID string) (*ImageMembers, error) {
	var v validator
	v.id("image_id", imageID)
	if err := v.err(); err != nil {
		return nil, err
	}
	var out ImageMembers
	if err := c.do(ctx, OpListMembers, http.MethodGet, "/v2/images/"+imageID+"/members", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// BatchAddOrDeleteTags creates, updates or deletes tags of an image at once
// (BatchAddOrDeleteTags), synchronously: IMS answers 204 when done. An image
// carries at most [MaxTags] tags; a creation that would exceed that is
// refused whole (IMG.0116). It needs the project ID ([WithProjectID]), part
// of the path. It returns an error wrapping [ErrInvalidArgument] before any
// I/O, an [*APIError] or a [*TransportError].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0617.html
//
//meta:operation POST /v2/{project_id}/images/{image_id}/tags/action
func (c *Client) BatchAddOrDeleteTags(ctx context.Context, imageID string, r *BatchAddOrDeleteTagsRequest) error {
	var v validator
	v.id("image_id", imageID)
	if c.projectID == "" {
		v.add("project_id", "required", "IMG.0001", "is required for POST /v2/{project_id}/images/{image_id}/tags/action; configure it with WithProjectID")
	}
	if err := v.err(); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return err
	}
	return c.do(ctx, OpTags, http.MethodPost, fmt.Sprintf("/v2/%s/images/%s/tags/action", c.projectID, imageID), nil, r, nil)
}

// GlanceDeleteImage deletes one of the caller's private images
// (GlanceDeleteImage, the OpenStack-native delete, confirmed in Huawei's
// SDK as DELETE /v2/images/{image_id} answering 204, and in the OTC
// reference "Deleting an Image (Native OpenStack API)"). The optional body
// (delete_backup, for full-ECS images) is not sent. IMS refuses an image
// being created (IMG.0090), another tenant's image (IMG.0092), a public one
// (IMG.0094), and one shared with an account or organisation. It returns
// an error wrapping [ErrInvalidArgument] for a malformed ID, an [*APIError]
// (errors.Is [ErrNotFound] for an unknown image) or a [*TransportError].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0706.html
//
//meta:operation DELETE /v2/images/{image_id}
func (c *Client) GlanceDeleteImage(ctx context.Context, imageID string) error {
	var v validator
	v.id("image_id", imageID)
	if err := v.err(); err != nil {
		return err
	}
	return c.do(ctx, OpDeleteImage, http.MethodDelete, "/v2/images/"+imageID, nil, nil, nil)
}

// regionID: a region ID such as "cn-north-4": 1-64 of a-z, 0-9 and '-'.
func (v *validator) regionID(field, s string) {
	switch {
	case s == "":
		v.add(field, "required", "IMG.0001", "is required")
	case len(s) > 64 || !allRunes(s, func(c rune) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' }):
		v.add(field, "format", "IMG.0001", "%q is not a region ID (lower-case letters, digits and '-', at most 64)", s)
	}
}

// iamName: a required IAM name of 1-64 characters that ok accepts.
func (v *validator) iamName(field, code, s string, ok func(rune) bool, allowed string) {
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		v.add(field, "required", "IMG.0001", "is required")
	case n > 64:
		v.add(field, "length", code, "has %d characters, at most 64 are allowed", n)
	case !allRunes(s, ok):
		v.add(field, "charset", code, "%q: allowed are %s", s, allowed)
	}
}

// optionalID checks an ID that may be empty.
func (v *validator) optionalID(field, s string) {
	if s != "" && !isIMSID(s) {
		v.add(field, "format", "IMG.0001", "%q is not an ID (letters, digits, '-' and '_', at most 64)", s)
	}
}

// idList checks a list of image, project or account IDs.
func (v *validator) idList(field string, ids []string, required bool) {
	if required && len(ids) == 0 {
		v.add(field, "required", "IMG.0001", "at least one ID is required")
	}
	for i, id := range ids {
		if !isIMSID(id) {
			v.add(fmt.Sprintf("%s[%d]", field, i), "format", "IMG.0001", "%q is not an ID (letters, digits, '-' and '_', at most 64)", id)
		}
	}
}

func isIMSID(s string) bool {
	return s != "" && len(s) <= 64 && allRunes(s, func(r rune) bool { return asciiAlnum(r) || r == '-' || r == '_' })
}
