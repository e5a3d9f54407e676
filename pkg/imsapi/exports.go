package imsapi

import (
	"context"
	"strings"
)

// ExportRequest is the body of ExportImage.
type ExportRequest struct {
	// BucketURL is the target, "bucket:object-key", OBS Standard class, same
	// region as the image. The object must not exist yet (IMG.0070).
	BucketURL string `json:"bucket_url"`
	// FileFormat is qcow2, vhd, zvhd or vmdk; required for a normal export
	// and not sent for a quick one (which always writes ZVHD2).
	FileFormat string `json:"file_format,omitempty"`
	// IsQuickExport asks for a quick export: the only way for images from
	// 128 GB to 1 TB, and not available for encrypted images.
	IsQuickExport bool `json:"is_quick_export"`
}

// Validate returns the documented rules r breaks (see [ValidationError]).
func (r *ExportRequest) Validate() error {
	if r == nil {
		return nilRequest()
	}
	var v validator
	_, key := v.bucketURL("bucket_url", r.BucketURL)
	if strings.Contains(key, " ") {
		v.add("bucket_url", "format", "IMG.0175", "object key %q contains a space, which export file names cannot", key)
	}
	switch {
	case r.IsQuickExport && r.FileFormat != "":
		v.add("file_format", "conflict", "IMG.0072", "must be empty for a quick export, which always writes ZVHD2")
	case !r.IsQuickExport && r.FileFormat == "":
		v.add("file_format", "required", "IMG.0072", "is required for a normal export: one of qcow2, vhd, zvhd, vmdk")
	default:
		v.enum("file_format", "IMG.0072", r.FileFormat, FormatQCOW2, FormatVHD, FormatZVHD, FormatVMDK)
	}
	return v.err()
}

// ExportImage starts the export of image imageID to an OBS object
// (ExportImage). It returns an error wrapping [ErrInvalidArgument] (with a
// [*ValidationError] per broken rule) before any I/O, an [*APIError] for a
// refusal (IMG.0148 export already running, IMG.0070 target exists, IMG.0160
// too large for a normal export, ...), or a [*TransportError].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0609.html
//
//meta:operation POST /v1/cloudimages/{image_id}/file
func (c *Client) ExportImage(ctx context.Context, imageID string, r *ExportRequest) (*JobRef, error) {
	var v validator
	v.id("image_id", imageID)
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return c.submit(ctx, OpExport, "/v1/cloudimages/"+imageID+"/file", r)
}
