// Package lifecycle is what happens to an image after its import: the
// declaration a routing rule carries (regions to copy to, members to share
// with, tags, a re-key, retention, the source object's fate), the plan of
// legs it turns into, and the durable record of each lifecycle, whose
// legs move from pending to an end one at a time and can be run again
// alone.
//
// A lifecycle is declared once, in the rules file, beside the rule that
// routes the upload:
//
//	{"name": "web", "bucket": "images", "prefix": "web/", "image_type": "system", "os_version": "Ubuntu 22.04 server 64bit",
//	 "lifecycle": {
//	   "family": "web-base",
//	   "regions": [{"region": "ap-southeast-3", "agency_name": "ims_admin_agency", "share": {"projects": ["0f1e..."]}}],
//	   "share": {"projects": ["4a5b..."]},
//	   "tags": {"channel": "stable"},
//	   "keep_last": 3,
//	   "source_object": "delete"}}
//
// The IMS rules each leg meets are in ../shared/reference/ims-api.md
// section 10; Check enforces the ones a declaration alone can break.
package lifecycle

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Declaration is what a routing rule asks for once its import succeeded.
// The zero value asks for nothing.
type Declaration struct {
	// Family groups the images of one line of builds: the "latest" pointer
	// and retention are per family. Default: the rule's label.
	Family string `json:"family,omitempty"`
	// Copy makes an in-region copy first and distributes the copy: a
	// re-key (CMKID) or, for an encrypted import, a plain copy, which
	// sharing and cross-region copies need.
	Copy *Copy `json:"copy,omitempty"`
	// Regions are the regions the image is copied to, each with the
	// members it is shared with there.
	Regions []Region `json:"regions,omitempty"`
	// Share is who the image is shared with in its own region.
	Share Members `json:"share,omitzero"`
	// Tags are set on the image in every region (the promotion tag, such
	// as a channel name, goes here).
	Tags map[string]string `json:"tags,omitempty"`
	// KeepLast keeps the newest KeepLast images of the family in each
	// region and deletes older ones that are neither shared nor in use;
	// 0 keeps every image.
	KeepLast int `json:"keep_last,omitempty"`
	// SourceObject is what becomes of the uploaded object once every leg
	// succeeded: SourceKeep (the default) or SourceDelete.
	SourceObject string `json:"source_object,omitempty"`
	// Fallback is what a cross-region copy that cannot work does:
	// FallbackNone (the default: the leg fails, saying why) or
	// FallbackExportImport (export to the region's bucket, import there).
	Fallback string `json:"fallback,omitempty"`
}

// Copy is the in-region copy made before distribution.
type Copy struct {
	// CMKID re-keys: the copy is encrypted with this KMS key.
	CMKID string `json:"cmk_id,omitempty"`
	// Plain asks for an unencrypted copy of an encrypted import (IMS
	// neither shares nor copies across regions an encrypted image).
	Plain bool `json:"plain,omitempty"`
}

// Region is one cross-region copy target.
type Region struct {
	// Region is the target region's name, e.g. ap-southeast-3.
	Region string `json:"region"`
	// ProjectName is the target IAM project (default: the region's name,
	// the region's default project).
	ProjectName string `json:"project_name,omitempty"`
	// AgencyName is the IAM agency IMS acts through for the copy.
	AgencyName string `json:"agency_name"`
	// Share is who the copy is shared with in that region (project IDs
	// are per region).
	Share Members `json:"share,omitzero"`
	// Fallback overrides the declaration's for this region.
	Fallback string `json:"fallback,omitempty"`
	// Bucket is the OBS bucket in that region that FallbackExportImport
	// exports to and imports from.
	Bucket string `json:"bucket,omitempty"`
}

// Members are who an image is shared with.
type Members struct {
	Projects      []string `json:"projects,omitempty"`
	Domains       []string `json:"domains,omitempty"`       // account IDs
	Organizations []string `json:"organizations,omitempty"` // organisation URNs
}

// Empty reports whether m names no one.
func (m Members) Empty() bool { return len(m.Projects)+len(m.Domains)+len(m.Organizations) == 0 }

func (m Members) count() int { return len(m.Projects) + len(m.Domains) + len(m.Organizations) }

// All are the members' IDs: projects, accounts, then organisations.
func (m Members) All() []string { return slices.Concat(m.Projects, m.Domains, m.Organizations) }

// Values of Declaration.SourceObject and Fallback.
const (
	SourceKeep   = "keep"
	SourceDelete = "delete"

	FallbackNone         = "none"
	FallbackExportImport = "export_import"
)

// IMS's limits that a declaration can break (ims-api.md section 10).
const (
	MaxTags          = imsapi.MaxTags             // tags per image
	MaxMembers       = imsapi.MaxImageMembers     // members per image (the strictest documented figure)
	MaxReplications  = imsapi.MaxReplicationTasks // cross-region copies running at once per tenant
	MaxCopyGB        = 128                        // largest image a cross-region copy takes
	reservedTagCount = 2                          // imsflow's provenance and family tags on every image
)

// FamilyTag is the tag key that marks an image's family in every region,
// for retention to find the family's images.
const FamilyTag = "imsflow-family"

var regionName = regexp.MustCompile(`^[a-z]{2,}(-[a-z0-9]+)+$`)

// Active reports whether the declaration asks for anything.
func (d *Declaration) Active() bool {
	return d != nil && (d.Copy != nil || len(d.Regions) > 0 || !d.Share.Empty() || len(d.Tags) > 0 ||
		d.KeepLast > 0 || d.SourceObject == SourceDelete)
}

// Check reports the first rule of IMS or of imsflow the declaration
// breaks, for the rules file's load to refuse it with the rule's label.
func (d *Declaration) Check() error {
	if d == nil {
		return nil
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if d.Copy != nil {
		switch {
		case d.Copy.CMKID == "" && !d.Copy.Plain:
			bad("copy: give cmk_id (re-key) or plain: true (decrypt); an empty copy does nothing")
		case d.Copy.CMKID != "" && d.Copy.Plain:
			bad("copy: cmk_id and plain contradict each other: a copy is either re-keyed or plain")
		}
	}
	if d.Copy != nil && d.Copy.CMKID != "" && (len(d.Regions) > 0 || !d.Share.Empty()) {
		bad("copy: a re-keyed copy is encrypted, and IMS neither shares nor copies across regions an encrypted image: drop cmk_id or the regions and shares")
	}
	seen := map[string]bool{}
	for i, r := range d.Regions {
		at := fmt.Sprintf("regions[%d]", i)
		switch {
		case !regionName.MatchString(r.Region):
			bad("%s: region %q is not a region name such as ap-southeast-3", at, r.Region)
		case seen[r.Region]:
			bad("%s: region %s is listed twice", at, r.Region)
		}
		seen[r.Region] = true
		if strings.TrimSpace(r.AgencyName) == "" {
			bad("%s (%s): agency_name is required: IMS copies across regions through an IAM agency", at, r.Region)
		}
		if err := checkFallback(r.Fallback); err != nil {
			bad("%s (%s): %v", at, r.Region, err)
		}
		if fallback(d, r) == FallbackExportImport {
			bad("%s (%s): fallback export_import is not available yet: a copy that cannot work fails saying why (docs/lifecycle.md)", at, r.Region)
		}
		if err := r.Share.check(); err != nil {
			bad("%s (%s): share: %v", at, r.Region, err)
		}
	}
	if err := d.Share.check(); err != nil {
		bad("share: %v", err)
	}
	if n := len(d.Tags); n > MaxTags-reservedTagCount {
		bad("tags: %d tags; IMS keeps at most %d per image and imsflow's provenance and family tags are two", n, MaxTags)
	}
	// The tags as the tag leg sets them, judged by the client's own rules
	// (IMS's charset and lengths).
	if _, own := d.Tags[FamilyTag]; own {
		bad("tags: %s is imsflow's own tag (set from family)", FamilyTag)
	}
	req := imsapi.BatchAddOrDeleteTagsRequest{Action: imsapi.TagActionCreate, Tags: d.ImageTags(cmp.Or(d.Family, "family"))}
	if err := req.Validate(); err != nil {
		bad("tags: %v", err)
	}
	if d.KeepLast < 0 {
		bad("keep_last %d is negative", d.KeepLast)
	}
	switch d.SourceObject {
	case "", SourceKeep, SourceDelete:
	default:
		bad("source_object %q: want keep or delete", d.SourceObject)
	}
	if err := checkFallback(d.Fallback); err != nil {
		bad("%v", err)
	}
	return errors.Join(errs...)
}

func (m Members) check() error {
	if n := m.count(); n > MaxMembers {
		return fmt.Errorf("%d members; IMS shares an image with at most %d", n, MaxMembers)
	}
	for _, list := range [][]string{m.Projects, m.Domains, m.Organizations} {
		for i, id := range list {
			if strings.TrimSpace(id) == "" {
				return fmt.Errorf("member %d is empty", i)
			}
			if slices.Index(list, id) != i {
				return fmt.Errorf("member %s is listed twice", id)
			}
		}
	}
	return nil
}

func checkFallback(f string) error {
	switch f {
	case "", FallbackNone, FallbackExportImport:
		return nil
	}
	return fmt.Errorf("fallback %q: want none or export_import", f)
}

// fallback is region r's fallback under d.
func fallback(d *Declaration, r Region) string {
	switch {
	case r.Fallback != "":
		return r.Fallback
	case d.Fallback != "":
		return d.Fallback
	}
	return FallbackNone
}

// ImageTags are the tags the lifecycle sets on its image in every region:
// the family's, then the declared ones by key.
func (d Declaration) ImageTags(family string) []imsapi.ImageTag {
	tags := []imsapi.ImageTag{{Key: FamilyTag, Value: family}}
	for _, k := range slices.Sorted(maps.Keys(d.Tags)) {
		if k != FamilyTag {
			tags = append(tags, imsapi.ImageTag{Key: k, Value: d.Tags[k]})
		}
	}
	return tags
}
