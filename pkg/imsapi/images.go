package imsapi

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
)

// Image statuses; only ImageActive images are usable.
const (
	ImageQueued  = "queued"
	ImageSaving  = "saving"
	ImageDeleted = "deleted"
	ImageKilled  = "killed"
	ImageActive  = "active"
)

// Image is an image as ListImages reports it (ImageInfo). IMS's extension
// attributes keep their double-underscore JSON names.
type Image struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Status          string     `json:"status"`
	Visibility      string     `json:"visibility,omitempty"`
	Owner           string     `json:"owner,omitempty"`
	Protected       FlexBool   `json:"protected,omitempty"`
	DiskFormat      string     `json:"disk_format,omitempty"`
	ContainerFormat string     `json:"container_format,omitempty"`
	MinDisk         int        `json:"min_disk"`
	MinRAM          int        `json:"min_ram,omitempty"`
	MaxRAM          FlexString `json:"max_ram,omitempty"`
	Tags            []string   `json:"tags,omitempty"`
	CreatedAt       string     `json:"created_at,omitempty"`
	UpdatedAt       string     `json:"updated_at,omitempty"`
	// ActiveAt is when the image became active: for an import, when it
	// finished. Empty while queued or saving, and for an image that failed.
	ActiveAt            string `json:"active_at,omitempty"`
	VirtualEnvType      string `json:"virtual_env_type,omitempty"`
	EnterpriseProjectID string `json:"enterprise_project_id,omitempty"`
	Architecture        string `json:"architecture,omitempty"`
	HWFirmwareType      string `json:"hw_firmware_type,omitempty"`
	File                string `json:"file,omitempty"`
	Self                string `json:"self,omitempty"`
	Schema              string `json:"schema,omitempty"`

	// ImageSize is "__image_size", the bytes stored, as a decimal string.
	ImageSize         string   `json:"__image_size,omitempty"`
	ImageType         string   `json:"__imagetype,omitempty"` // gold, private, shared, market
	OSType            string   `json:"__os_type,omitempty"`
	OSVersion         string   `json:"__os_version,omitempty"`
	OSBit             string   `json:"__os_bit,omitempty"`
	Platform          string   `json:"__platform,omitempty"`
	Description       string   `json:"__description,omitempty"`
	IsRegistered      FlexBool `json:"__isregistered,omitempty"`
	IsConfigInit      FlexBool `json:"__is_config_init,omitempty"`
	WholeImage        FlexBool `json:"__whole_image,omitempty"`   // full-ECS image: not exportable
	SystemCMKID       string   `json:"__system__cmkid,omitempty"` // set: encrypted
	RootOrigin        string   `json:"__root_origin,omitempty"`   // "file": imported from a file
	OriginalImageName string   `json:"__originalimagename,omitempty"`
	ProductCode       string   `json:"__productcode,omitempty"`
	AccountCode       string   `json:"__account_code,omitempty"`
	DataOrigin        string   `json:"__data_origin,omitempty"`
	BackupID          string   `json:"__backup_id,omitempty"`
	ImageSourceType   string   `json:"__image_source_type,omitempty"`
	ImageLocation     string   `json:"__image_location,omitempty"`
	LazyLoading       FlexBool `json:"__lazyloading,omitempty"`
	SupportARM        FlexBool `json:"__support_arm,omitempty"`
}

// SizeBytes parses __image_size; false when it is missing or not a number.
func (im *Image) SizeBytes() (int64, bool) {
	n, err := strconv.ParseInt(im.ImageSize, 10, 64)
	return n, err == nil && n >= 0
}

// Encrypted reports whether the image is encrypted with a KMS key
// (__system__cmkid set), which rules out quick export.
func (im *Image) Encrypted() bool { return im.SystemCMKID != "" }

// ListImagesOptions filters and pages [Client.ListImages]. Empty fields are
// not sent.
type ListImagesOptions struct {
	ID     string
	Name   string
	Status string // queued, saving, deleted, killed, active
	// Tag filters by one tag, written "key.value".
	Tag            string
	ImageType      string // __imagetype: gold, private, shared, market
	OSType         string // __os_type
	Platform       string // __platform
	DiskFormat     string
	VirtualEnvType string
	Architecture   string
	// EnterpriseProjectID, "0" for the default project, "all_granted_eps" for all.
	EnterpriseProjectID string
	// Limit is the page size (IMS's default is 500).
	Limit int
	// Marker is the ID of the last image of the previous page.
	Marker string
	// Extra carries any other documented filter, e.g. created_at=gt:2026-01-01T00:00:00Z.
	Extra url.Values
}

// DefaultPageSize is the page size IMS uses when no limit is given.
const DefaultPageSize = 500

func (o *ListImagesOptions) query() (url.Values, error) {
	q := url.Values{}
	if o == nil {
		return q, nil
	}
	for k, vs := range o.Extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("id", o.ID)
	set("name", o.Name)
	set("status", o.Status)
	set("tag", o.Tag)
	set("__imagetype", o.ImageType)
	set("__os_type", o.OSType)
	set("__platform", o.Platform)
	set("disk_format", o.DiskFormat)
	set("virtual_env_type", o.VirtualEnvType)
	set("architecture", o.Architecture)
	set("enterprise_project_id", o.EnterpriseProjectID)
	set("marker", o.Marker)
	if o.Limit < 0 {
		return nil, &ValidationError{Field: "limit", Rule: "range", Code: "IMG.0001", Message: fmt.Sprintf("is %d; it cannot be negative", o.Limit)}
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	return q, nil
}

// ImagePage is one page of [Client.ListImages].
type ImagePage struct {
	Images []Image `json:"images"`
	// NextMarker is the marker of the next page: the last image's ID, ""
	// after an empty page.
	NextMarker string `json:"-"`
}

// ListImages returns one page of images matching opts (ListImages). It
// returns an [*APIError] or a [*TransportError].
//
//meta:operation GET /v2/cloudimages
func (c *Client) ListImages(ctx context.Context, opts *ListImagesOptions) (*ImagePage, error) {
	q, err := opts.query()
	if err != nil {
		return nil, err
	}
	var page ImagePage
	if err := c.do(ctx, OpListImages, http.MethodGet, "/v2/cloudimages", q, nil, &page); err != nil {
		return nil, err
	}
	// IMS may cap a page below the limit asked for, so any non-empty page
	// may have a successor; the last page is the empty one.
	if n := len(page.Images); n > 0 {
		page.NextMarker = page.Images[n-1].ID
	}
	return &page, nil
}

// AllImages iterates over every image matching opts, page after page,
// starting at opts.Marker. It stops after yielding the first error.
func (c *Client) AllImages(ctx context.Context, opts *ListImagesOptions) iter.Seq2[*Image, error] {
	return func(yield func(*Image, error) bool) {
		o := ListImagesOptions{}
		if opts != nil {
			o = *opts
		}
		for {
			page, err := c.ListImages(ctx, &o)
			if err != nil {
				yield(nil, err)
				return
			}
			for i := range page.Images {
				if !yield(&page.Images[i], nil) {
					return
				}
			}
			if page.NextMarker == "" || page.NextMarker == o.Marker {
				return
			}
			o.Marker = page.NextMarker
		}
	}
}

// Image returns the image with the given ID, looked up with ListImages
// (?id=). It returns an error that errors.Is [ErrNotFound] when there is no
// such image, an error wrapping [ErrInvalidArgument] for a malformed ID, an
// [*APIError] or a [*TransportError].
//
//meta:operation GET /v2/cloudimages
func (c *Client) Image(ctx context.Context, id string) (*Image, error) {
	var v validator
	v.id("image_id", id)
	if err := v.err(); err != nil {
		return nil, err
	}
	page, err := c.ListImages(ctx, &ListImagesOptions{ID: id})
	if err != nil {
		return nil, err
	}
	for i := range page.Images {
		if page.Images[i].ID == id {
			return &page.Images[i], nil
		}
	}
	return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
}
