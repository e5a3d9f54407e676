package imsemu

import (
	"strconv"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// imageAnswer is an image as IMS writes it in ListImages (ImageInfo) and
// GlanceShowImage: each field has the JSON type Huawei's Go SDK
// (services/ims/v2/model, ImageInfo and GlanceShowImageResponse) decodes it
// into. The extension flags are strings ("true"/"false"; "True"/"False" for
// __lazyloading, as the SDK documents it), protected is a boolean, min_disk
// and min_ram are numbers. The fields the SDK's ImageInfo has without
// omitempty are always written. size and virtual_size, unused by IMS and
// int32 in the SDK, are not written: a 300 GiB size would not fit.
//
// imsapi.Image, the client's type, stays the emulator's record: it decodes
// what IMS sends leniently (imsapi.FlexBool), but encodes flags as JSON
// booleans, which the SDK cannot read.
type imageAnswer struct {
	BackupID          string `json:"__backup_id,omitempty"`
	DataOrigin        string `json:"__data_origin,omitempty"`
	Description       string `json:"__description,omitempty"`
	ImageSize         string `json:"__image_size"`
	ImageSourceType   string `json:"__image_source_type"`
	ImageType         string `json:"__imagetype"`
	IsRegistered      string `json:"__isregistered"`
	OriginalImageName string `json:"__originalimagename,omitempty"`
	OSBit             string `json:"__os_bit,omitempty"`
	OSType            string `json:"__os_type"`
	OSVersion         string `json:"__os_version,omitempty"`
	Platform          string `json:"__platform,omitempty"`
	ProductCode       string `json:"__productcode,omitempty"`
	ContainerFormat   string `json:"container_format"`
	CreatedAt         string `json:"created_at"`
	DiskFormat        string `json:"disk_format,omitempty"`
	EnterpriseProject string `json:"enterprise_project_id"`
	File              string `json:"file"`
	ID                string `json:"id"`
	MinDisk           int    `json:"min_disk"`
	MinRAM            int    `json:"min_ram"`
	Name              string `json:"name"`
	Owner             string `json:"owner"`
	Protected         bool   `json:"protected"`
	Schema            string `json:"schema"`
	Self              string `json:"self"`
	Status            string `json:"status"`
	// Tags is [] rather than null for an image without tags.
	Tags           []string `json:"tags"`
	UpdatedAt      string   `json:"updated_at"`
	VirtualEnvType string   `json:"virtual_env_type"`
	Visibility     string   `json:"visibility"`
	HWFirmwareType string   `json:"hw_firmware_type,omitempty"`
	SupportARM     string   `json:"__support_arm,omitempty"`
	MaxRAM         string   `json:"max_ram,omitempty"`
	SystemCMKID    string   `json:"__system__cmkid,omitempty"`
	AccountCode    string   `json:"__account_code,omitempty"`
	LazyLoading    string   `json:"__lazyloading"`
	RootOrigin     string   `json:"__root_origin,omitempty"`
	// ActiveAt is when the image became active; "" before (and for an
	// image that never did).
	ActiveAt      string `json:"active_at"`
	ImageLocation string `json:"__image_location,omitempty"`
	IsConfigInit  string `json:"__is_config_init"`
	// Not in the SDK's model; IMS's attribute table has them.
	Architecture string `json:"architecture,omitempty"`
	WholeImage   string `json:"__whole_image,omitempty"`
}

// flag is an IMS string flag: "true" or "false".
func flag(b bool) string { return strconv.FormatBool(b) }

// answer is im as IMS writes it.
func answer(im imsapi.Image) imageAnswer {
	a := imageAnswer{
		BackupID: im.BackupID, DataOrigin: im.DataOrigin, Description: im.Description,
		ImageSize: cmpOr(im.ImageSize, "0"), ImageSourceType: cmpOr(im.ImageSourceType, "uds"),
		ImageType: im.ImageType, IsRegistered: "true", OriginalImageName: im.OriginalImageName,
		OSBit: im.OSBit, OSType: im.OSType, OSVersion: im.OSVersion, Platform: im.Platform,
		ProductCode: im.ProductCode, ContainerFormat: cmpOr(im.ContainerFormat, "bare"),
		CreatedAt: im.CreatedAt, DiskFormat: im.DiskFormat,
		EnterpriseProject: cmpOr(im.EnterpriseProjectID, "0"),
		File:              cmpOr(im.File, "/v2/images/"+im.ID+"/file"),
		ID:                im.ID, MinDisk: im.MinDisk, MinRAM: im.MinRAM, Name: im.Name, Owner: im.Owner,
		Protected: bool(im.Protected), Schema: cmpOr(im.Schema, "/v2/schemas/image"),
		Self:   cmpOr(im.Self, "/v2/images/"+im.ID),
		Status: im.Status, Tags: cmpOrEmpty(im.Tags), UpdatedAt: im.UpdatedAt,
		VirtualEnvType: im.VirtualEnvType, Visibility: im.Visibility,
		HWFirmwareType: im.HWFirmwareType, MaxRAM: string(im.MaxRAM), SystemCMKID: im.SystemCMKID,
		AccountCode: im.AccountCode, LazyLoading: "False", RootOrigin: im.RootOrigin,
		ActiveAt: im.ActiveAt, ImageLocation: im.ImageLocation, IsConfigInit: flag(bool(im.IsConfigInit)),
		Architecture: im.Architecture,
	}
	if im.LazyLoading {
		a.LazyLoading = "True"
	}
	if im.SupportARM || im.Architecture == imsapi.ArchARM {
		a.SupportARM = "true"
	} else if im.Architecture != "" {
		a.SupportARM = "false"
	}
	if im.WholeImage {
		a.WholeImage = "true"
	}
	return a
}

func answers(ims []imsapi.Image) []imageAnswer {
	out := make([]imageAnswer, len(ims))
	for i, im := range ims {
		out[i] = answer(im)
	}
	return out
}
