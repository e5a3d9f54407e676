package imsapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// QuickImportRequest is the body of ImportImageQuick: a system disk (type ECS
// or BMS) or a data disk (type DataImage) from an optimised RAW file with its
// bitmap, or a ZVHD2 file, of up to 1 TB.
type QuickImportRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// ImageURL is the file, "bucket:object-key", OBS Standard class, same region.
	ImageURL string `json:"image_url"`
	// MinDisk in GB: above the disk size inside the file, at most 1024; at
	// least 10 (Linux) or 20 (Windows).
	MinDisk int `json:"min_disk"`
	// OSVersion, exactly as ListOSVersions has it; required for system disks,
	// not sent for data disks.
	OSVersion string `json:"os_version,omitempty"`
	// Type is ECS (the default when empty), BMS or DataImage.
	Type string `json:"type,omitempty"`
	// OSType is Linux or Windows. For data disks it is sent as Linux when
	// empty; system disks take their OS from OSVersion.
	OSType string `json:"os_type,omitempty"`
	// LicenseType is platform or byol (Windows).
	LicenseType         string     `json:"license_type,omitempty"`
	Tags                []string   `json:"tags,omitempty"`
	ImageTags           []ImageTag `json:"image_tags,omitempty"`
	EnterpriseProjectID string     `json:"enterprise_project_id,omitempty"`
	Architecture        string     `json:"architecture,omitempty"`
	HWFirmwareType      string     `json:"hw_firmware_type,omitempty"`
}

// Validate returns the documented rules r breaks (see [ValidationError]).
func (r *QuickImportRequest) Validate() error {
	if r == nil {
		return nilRequest()
	}
	var v validator
	v.name("name", r.Name)
	v.description("description", r.Description)
	v.bucketURL("image_url", r.ImageURL)
	v.enum("type", "IMG.0024", r.Type, TypeECS, TypeBMS, TypeDataImage)
	dataDisk := r.Type == TypeDataImage
	windows := isWindows(r.OSVersion)
	if dataDisk {
		v.enum("os_type", "IMG.0122", r.OSType, OSLinux, OSWindows)
		windows = r.OSType == OSWindows
		if r.OSVersion != "" {
			v.add("os_version", "conflict", "IMG.0056", "applies to system disks only; leave it empty for type DataImage (use os_type)")
		}
	} else {
		if r.OSVersion == "" {
			v.add("os_version", "required", "IMG.0056", "is required for a system disk (type %s); pick one from ListOSVersions", orDefault(r.Type, TypeECS))
		}
		v.enum("os_type", "IMG.0122", r.OSType, OSLinux, OSWindows)
	}
	lo := QuickImportMinDiskLinux
	if windows {
		lo = QuickImportMinDiskWindows
	}
	v.minDisk("min_disk", r.MinDisk, lo, QuickImportMaxDisk, "quick imports")
	v.enum("license_type", "IMG.0001", r.LicenseType, LicensePlatform, LicenseBYOL)
	v.tags(r.Tags, r.ImageTags)
	v.platform(r.Architecture, r.HWFirmwareType)
	return v.err()
}

// DataImageRequest is the body of CreateDataImage: a data-disk image from a
// VMDK, VHD, QCOW2, RAW, VHDX, QED, VDI, QCOW, ZVHD2 or ZVHD file of up to
// 128 GB.
type DataImageRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// ImageURL is the file, "bucket:object-key", OBS Standard class, same region.
	ImageURL string `json:"image_url"`
	// MinDisk in GB, 40 to 2048, at least the disk inside the file.
	MinDisk int `json:"min_disk"`
	// OSType is Linux (the default when empty) or Windows.
	OSType              string     `json:"os_type,omitempty"`
	CMKID               string     `json:"cmk_id,omitempty"`
	EnterpriseProjectID string     `json:"enterprise_project_id,omitempty"`
	Tags                []string   `json:"tags,omitempty"`
	ImageTags           []ImageTag `json:"image_tags,omitempty"`
}

// Validate returns the documented rules r breaks (see [ValidationError]).
func (r *DataImageRequest) Validate() error {
	if r == nil {
		return nilRequest()
	}
	var v validator
	v.name("name", r.Name)
	v.description("description", r.Description)
	v.bucketURL("image_url", r.ImageURL)
	v.minDisk("min_disk", r.MinDisk, DataImageMinDisk, DataImageMaxDisk, "data images")
	v.enum("os_type", "IMG.0122", r.OSType, OSLinux, OSWindows)
	v.tags(r.Tags, r.ImageTags)
	return v.err()
}

// ImageRequest is the body of CreateImage for a system-disk image from a
// file (VMDK, VHD, QCOW2, RAW, VHDX, QED, VDI, QCOW, ZVHD2, ZVHD up to 128 GB,
// or an ISO with Type IsoImage).
type ImageRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// ImageURL is the file, "bucket:object-key", OBS Standard class, same region.
	ImageURL string `json:"image_url"`
	// MinDisk in GB, 40 to 1024, at least the disk inside the file.
	MinDisk int `json:"min_disk"`
	// OSVersion, exactly as ListOSVersions has it; required for ISO files and
	// with IsQuickImport, otherwise IMS detects it.
	OSVersion string `json:"os_version,omitempty"`
	// OSType is Linux, Windows or Other (documented by OTC, not in the SDK).
	OSType string `json:"os_type,omitempty"`
	// IsConfig true means the file's drivers are already configured; false
	// lets IMS configure them.
	IsConfig bool   `json:"is_config,omitempty"`
	CMKID    string `json:"cmk_id,omitempty"`
	// Type is ECS (the default when empty), BMS, FusionCompute, Ironic or IsoImage.
	Type                string     `json:"type,omitempty"`
	Tags                []string   `json:"tags,omitempty"`
	ImageTags           []ImageTag `json:"image_tags,omitempty"`
	EnterpriseProjectID string     `json:"enterprise_project_id,omitempty"`
	MaxRAM              int        `json:"max_ram,omitempty"` // MB, 0 for no limit
	MinRAM              int        `json:"min_ram,omitempty"` // MB, 0 for no limit
	Architecture        string     `json:"architecture,omitempty"`
	HWFirmwareType      string     `json:"hw_firmware_type,omitempty"`
	IsQuickImport       bool       `json:"is_quick_import,omitempty"`
}

// Validate returns the documented rules r breaks (see [ValidationError]).
func (r *ImageRequest) Validate() error {
	if r == nil {
		return nilRequest()
	}
	var v validator
	v.name("name", r.Name)
	v.description("description", r.Description)
	v.bucketURL("image_url", r.ImageURL)
	v.minDisk("min_disk", r.MinDisk, ImageMinDisk, ImageMaxDisk, "system images")
	v.enum("type", "IMG.0024", r.Type, TypeECS, TypeBMS, TypeFusionCompute, TypeIronic, TypeIsoImage)
	v.enum("os_type", "IMG.0122", r.OSType, OSLinux, OSWindows, OSOther)
	if r.OSVersion == "" && (r.Type == TypeIsoImage || r.IsQuickImport) {
		v.add("os_version", "required", "IMG.0056", "is required for an ISO file and for is_quick_import; pick one from ListOSVersions")
	}
	if r.MinRAM < 0 || r.MaxRAM < 0 {
		v.add("min_ram", "range", "IMG.0055", "min_ram and max_ram are MB and cannot be negative")
	} else if r.MaxRAM > 0 && r.MinRAM > r.MaxRAM {
		v.add("min_ram", "range", "IMG.0055", "min_ram %d MB is above max_ram %d MB", r.MinRAM, r.MaxRAM)
	}
	v.tags(r.Tags, r.ImageTags)
	v.platform(r.Architecture, r.HWFirmwareType)
	return v.err()
}

// platform checks architecture and firmware together: arm boots only UEFI.
func (v *validator) platform(arch, firmware string) {
	v.enum("architecture", "IMG.0212", arch, ArchX86, ArchARM)
	v.enum("hw_firmware_type", "IMG.0141", firmware, FirmwareBIOS, FirmwareUEFI)
	if arch == ArchARM && firmware == FirmwareBIOS {
		v.add("hw_firmware_type", "conflict", "IMG.0141", "arm images boot with uefi only; use uefi or leave it empty")
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// QuickImport starts a quick import of an image file (ImportImageQuick).
// It returns an error wrapping [ErrInvalidArgument] (with a
// [*ValidationError] per broken rule) before any I/O, an [*APIError] for a
// refusal, or a [*TransportError].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0605.html
//
//meta:operation POST /v2/cloudimages/quickimport/action
func (c *Client) QuickImport(ctx context.Context, r *QuickImportRequest) (*JobRef, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.Type == TypeDataImage && r.OSType == "" {
		// The SDK marks os_type required for data disks; Linux is its default.
		cp := *r
		cp.OSType = OSLinux
		r = &cp
	}
	return c.submit(ctx, OpQuickImport, "/v2/cloudimages/quickimport/action", r)
}

// ImportDataImage starts the import of a data-disk image from a file
// (CreateDataImage). Errors as for [Client.QuickImport].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0606.html
//
//meta:operation POST /v1/cloudimages/dataimages/action
func (c *Client) ImportDataImage(ctx context.Context, r *DataImageRequest) (*JobRef, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return c.submit(ctx, OpDataImageImport, "/v1/cloudimages/dataimages/action", r)
}

// ImportImage starts the import of a system-disk image from a file
// (CreateImage with image_url). Errors as for [Client.QuickImport].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0603.html
//
//meta:operation POST /v2/cloudimages/action
func (c *Client) ImportImage(ctx context.Context, r *ImageRequest) (*JobRef, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return c.submit(ctx, OpImageImport, "/v2/cloudimages/action", r)
}

// ErrNoJobID is returned when IMS accepted a submission but its answer
// carried no job_id. A job may have started: look for it before submitting
// again.
var ErrNoJobID = errors.New("imsapi: accepted answer without job_id")

func (c *Client) submit(ctx context.Context, op, path string, body any) (*JobRef, error) {
	return c.submitWith(ctx, op, http.MethodPost, path, body)
}

// submitWith sends an asynchronous submission with method (POST, or the
// PUT and DELETE of the member APIs) and returns its job.
func (c *Client) submitWith(ctx context.Context, op, method, path string, body any) (*JobRef, error) {
	var ref JobRef
	if err := c.do(ctx, op, method, path, nil, body, &ref); err != nil {
		if errors.Is(err, errUndecodable) {
			return nil, fmt.Errorf("%w: %w", ErrNoJobID, err)
		}
		return nil, err
	}
	if ref.JobID == "" {
		return nil, fmt.Errorf("%s %s: %w", method, path, ErrNoJobID)
	}
	return &ref, nil
}
