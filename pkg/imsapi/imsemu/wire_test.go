package imsemu

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// sdkImageInfo mirrors model.ImageInfo of Huawei's Go SDK
// (github.com/huaweicloud/huaweicloud-sdk-go-v3, services/ims/v2/model,
// model_image_info.go, as of 0.1.188): the same JSON names, the same Go
// types, the same omitempty. The SDK's enum types (ImageInfoStatus,
// ImageInfoSupportArm, ...) hold a string and are written as string here.
// The last group is not in ImageInfo: GlanceShowImageResponse has
// __image_location and __is_config_init (*string); architecture and
// __whole_image are in IMS's attribute table only. With every field the
// emulator writes listed, decoding with DisallowUnknownFields catches a
// field the emulator adds without checking its type.
type sdkImageInfo struct {
	BackupId                    *string  `json:"__backup_id,omitempty"`
	DataOrigin                  *string  `json:"__data_origin,omitempty"`
	Description                 *string  `json:"__description,omitempty"`
	ImageSize                   string   `json:"__image_size"`
	ImageSourceType             string   `json:"__image_source_type"`
	Imagetype                   string   `json:"__imagetype"`
	Isregistered                string   `json:"__isregistered"`
	Originalimagename           *string  `json:"__originalimagename,omitempty"`
	OsBit                       *string  `json:"__os_bit,omitempty"`
	OsType                      string   `json:"__os_type"`
	OsVersion                   *string  `json:"__os_version,omitempty"`
	Platform                    *string  `json:"__platform,omitempty"`
	Productcode                 *string  `json:"__productcode,omitempty"`
	SupportDiskintensive        *string  `json:"__support_diskintensive,omitempty"`
	SupportHighperformance      *string  `json:"__support_highperformance,omitempty"`
	SupportKvm                  *string  `json:"__support_kvm,omitempty"`
	SupportKvmGpuType           *string  `json:"__support_kvm_gpu_type,omitempty"`
	SupportKvmInfiniband        *string  `json:"__support_kvm_infiniband,omitempty"`
	SupportLargememory          *string  `json:"__support_largememory,omitempty"`
	SupportXen                  *string  `json:"__support_xen,omitempty"`
	SupportXenGpuType           *string  `json:"__support_xen_gpu_type,omitempty"`
	SupportXenHana              *string  `json:"__support_xen_hana,omitempty"`
	SystemSupportMarket         *bool    `json:"__system_support_market,omitempty"`
	Checksum                    *string  `json:"checksum,omitempty"`
	ContainerFormat             string   `json:"container_format"`
	CreatedAt                   string   `json:"created_at"`
	DiskFormat                  *string  `json:"disk_format,omitempty"`
	EnterpriseProjectId         *string  `json:"enterprise_project_id,omitempty"`
	File                        *string  `json:"file,omitempty"`
	Id                          string   `json:"id"`
	MinDisk                     int32    `json:"min_disk"`
	MinRam                      int32    `json:"min_ram"`
	Name                        string   `json:"name"`
	Owner                       string   `json:"owner"`
	Protected                   bool     `json:"protected"`
	Schema                      *string  `json:"schema,omitempty"`
	Self                        string   `json:"self"`
	Size                        *int32   `json:"size,omitempty"`
	Status                      string   `json:"status"`
	Tags                        []string `json:"tags"`
	UpdatedAt                   string   `json:"updated_at"`
	VirtualEnvType              string   `json:"virtual_env_type"`
	VirtualSize                 *int32   `json:"virtual_size,omitempty"`
	Visibility                  string   `json:"visibility"`
	SupportFcInject             *string  `json:"__support_fc_inject,omitempty"`
	HwFirmwareType              *string  `json:"hw_firmware_type,omitempty"`
	SupportArm                  *string  `json:"__support_arm,omitempty"`
	MaxRam                      *string  `json:"max_ram,omitempty"`
	SystemCmkid                 *string  `json:"__system__cmkid,omitempty"`
	OsFeatureList               *string  `json:"__os_feature_list,omitempty"`
	AccountCode                 *string  `json:"__account_code,omitempty"`
	HwVifMultiqueueEnabled      *string  `json:"hw_vif_multiqueue_enabled,omitempty"`
	IsOffshelved                *string  `json:"__is_offshelved,omitempty"`
	Lazyloading                 *string  `json:"__lazyloading,omitempty"`
	RootOrigin                  *string  `json:"__root_origin,omitempty"`
	SequenceNum                 *string  `json:"__sequence_num,omitempty"`
	ActiveAt                    string   `json:"active_at"`
	SupportAgentList            *string  `json:"__support_agent_list,omitempty"`
	ImageDisplayname            *string  `json:"__image_displayname,omitempty"`
	SupportAmd                  *string  `json:"__support_amd,omitempty"`
	SupportKvmHi1822Hisriov     *string  `json:"__support_kvm_hi1822_hisriov,omitempty"`
	SupportKvmHi1822Hivirtionet *string  `json:"__support_kvm_hi1822_hivirtionet,omitempty"`
	OsShutdownTimeout           *string  `json:"os_shutdown_timeout,omitempty"`

	ImageLocation *string `json:"__image_location,omitempty"`
	IsConfigInit  *string `json:"__is_config_init,omitempty"`
	Architecture  *string `json:"architecture,omitempty"`
	WholeImage    *string `json:"__whole_image,omitempty"`
}

// decodeSDK decodes one image object as the SDK would, strictly: a field
// of another JSON type, an unknown field, or a field the SDK has without
// omitempty missing from the object, fails the test.
func decodeSDK(t *testing.T, raw json.RawMessage) sdkImageInfo {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var v sdkImageInfo
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("the SDK's ImageInfo cannot decode %s: %v", raw, err)
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(raw, &present); err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[sdkImageInfo]()
	for i := range typ.NumField() {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if opts == "omitempty" {
			continue
		}
		if _, ok := present[name]; !ok {
			t.Errorf("image %s: %q, always present in the SDK's ImageInfo, is missing", v.Id, name)
		}
	}
	return v
}

// listRaw is ListImages (GET /v2/cloudimages?query) as raw image objects.
func listRaw(t *testing.T, s *Server, query string) []json.RawMessage {
	t.Helper()
	status, b := callRaw(t, s, http.MethodGet, "/v2/cloudimages?"+query, "")
	if status != http.StatusOK {
		t.Fatalf("ListImages?%s: %d %s", query, status, b)
	}
	var page struct {
		Images []json.RawMessage `json:"images"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	return page.Images
}

func deref[T any](p *T) (v T) {
	if p != nil {
		v = *p
	}
	return v
}

// TestImageJSONMatchesTheSDK: ListImages and GlanceShowImage write every
// image (a quick-imported one, a killed one, an ARM one, a seeded
// full-ECS one) in the JSON types Huawei's SDK decodes, with the fields it
// takes as always present, and imsflow's client still reads them.
func TestImageJSONMatchesTheSDK(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	f.s.PutObject(Object{Bucket: "images", Key: "big/big-01.zvhd2", Size: 300 * gib})
	f.s.PutObject(Object{Bucket: "images", Key: "broken/b.qcow2", Size: gib})
	if err := f.s.AddFailureRule(FailureRule{KeyPattern: "broken/*"}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	quick, err := f.c.QuickImport(ctx, &imsapi.QuickImportRequest{Name: "quick", ImageURL: "images:big/big-01.zvhd2",
		MinDisk: 300, OSVersion: "Ubuntu 22.04 server 64bit"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.ImportImage(ctx, &imsapi.ImageRequest{Name: "killed", ImageURL: "images:broken/b.qcow2", MinDisk: 40}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.ImportImage(ctx, &imsapi.ImageRequest{Name: "arm", ImageURL: "images:data/d.qcow2", MinDisk: 40,
		OSVersion: "EulerOS 2.5 64bit", Architecture: imsapi.ArchARM, IsConfig: true}); err != nil {
		t.Fatal(err)
	}
	whole := f.s.AddImage(imsapi.Image{Name: "whole", WholeImage: true, ImageSize: "1073741824", MinDisk: 40})

	// While the imports run: queued, no active_at yet.
	for _, raw := range listRaw(t, f.s, "") {
		v := decodeSDK(t, raw)
		if v.Name != "whole" && (v.Status != imsapi.ImageQueued || v.ActiveAt != "") {
			t.Errorf("%s while queued: status %s, active_at %q", v.Name, v.Status, v.ActiveAt)
		}
	}

	f.clock.Advance(time.Hour)
	j := f.job(t, quick.JobID)
	byName := map[string]sdkImageInfo{}
	for _, raw := range listRaw(t, f.s, "") {
		v := decodeSDK(t, raw)
		byName[v.Name] = v
		if v.Isregistered != "true" || v.ImageSourceType != "uds" || v.Self != "/v2/images/"+v.Id ||
			deref(v.File) != "/v2/images/"+v.Id+"/file" || deref(v.Schema) != "/v2/schemas/image" || v.Tags == nil {
			t.Errorf("%s: __isregistered %q, __image_source_type %q, self %q, file %q, schema %q, tags %v",
				v.Name, v.Isregistered, v.ImageSourceType, v.Self, deref(v.File), deref(v.Schema), v.Tags)
		}
	}
	if len(byName) != 4 {
		t.Fatalf("images = %v", byName)
	}
	q := byName["quick"]
	if q.Status != imsapi.ImageActive || deref(q.Lazyloading) != "True" || q.ImageSize != "322122547200" ||
		q.ActiveAt != j.EndTime.UTC().Format(time.RFC3339) || deref(q.RootOrigin) != "file" || deref(q.SupportArm) != "false" {
		t.Errorf("quick-imported image = status %s, __lazyloading %q, __image_size %s, active_at %q (job ended %s), __root_origin %q, __support_arm %q",
			q.Status, deref(q.Lazyloading), q.ImageSize, q.ActiveAt, j.EndTime, deref(q.RootOrigin), deref(q.SupportArm))
	}
	if k := byName["killed"]; k.Status != imsapi.ImageKilled || k.ActiveAt != "" || deref(k.Lazyloading) != "False" || deref(k.IsConfigInit) != "false" {
		t.Errorf("killed image = status %s, active_at %q, __lazyloading %q, __is_config_init %q", k.Status, k.ActiveAt, deref(k.Lazyloading), deref(k.IsConfigInit))
	}
	if a := byName["arm"]; deref(a.SupportArm) != "true" || deref(a.HwFirmwareType) != imsapi.FirmwareUEFI ||
		deref(a.IsConfigInit) != "true" || deref(a.Architecture) != imsapi.ArchARM || a.ActiveAt == "" {
		t.Errorf("ARM image = __support_arm %q, hw_firmware_type %q, __is_config_init %q, architecture %q, active_at %q",
			deref(a.SupportArm), deref(a.HwFirmwareType), deref(a.IsConfigInit), deref(a.Architecture), a.ActiveAt)
	}
	if w := byName["whole"]; deref(w.WholeImage) != "true" || w.ActiveAt == "" || w.Protected {
		t.Errorf("seeded full-ECS image = __whole_image %q, active_at %q, protected %v", deref(w.WholeImage), w.ActiveAt, w.Protected)
	}

	// GlanceShowImage: the same object, flat; an unknown image is 404.
	status, b := callRaw(t, f.s, http.MethodGet, "/v2/images/"+q.Id, "")
	if status != http.StatusOK {
		t.Fatalf("GET /v2/images/%s: %d %s", q.Id, status, b)
	}
	if v := decodeSDK(t, b); !reflect.DeepEqual(v, q) {
		t.Errorf("GlanceShowImage = %+v\nListImages = %+v", v, q)
	}
	if status, code := call(t, f.s, http.MethodGet, "/v2/images/1ab4df10-fe18-48b7-91c9-53695fcd9df5", ""); status != http.StatusNotFound || code != imsapi.CodeImageNotExist {
		t.Errorf("unknown image: %d %s", status, code)
	}

	// imsflow's client reads the string flags (FlexBool) as it read booleans.
	for _, c := range []struct {
		name string
		ok   func(imsapi.Image) bool
	}{
		{"quick", func(im imsapi.Image) bool {
			return bool(im.LazyLoading) && bool(im.IsRegistered) && im.ActiveAt == q.ActiveAt
		}},
		{"arm", func(im imsapi.Image) bool {
			return bool(im.SupportARM) && bool(im.IsConfigInit) && !bool(im.LazyLoading)
		}},
		{"whole", func(im imsapi.Image) bool { return bool(im.WholeImage) && im.ID == whole.ID }},
		{"killed", func(im imsapi.Image) bool { return !bool(im.LazyLoading) && im.ActiveAt == "" }},
	} {
		if im := f.image(t, &imsapi.ListImagesOptions{Name: c.name}); !c.ok(im) {
			t.Errorf("client's view of %s = %+v", c.name, im)
		}
	}
}

// TestCreateImageQuickPath: is_quick_import on POST /v2/cloudimages/action
// applies quick import's rules (RAW with its bitmap or ZVHD2, up to 1 TB)
// instead of the normal ones (any format, up to 128 GB).
func TestCreateImageQuickPath(t *testing.T) {
	t.Parallel()
	f := newEmu(t, nil)
	f.s.PutObject(Object{Bucket: "images", Key: "big/big-01.zvhd2", Size: 300 * gib})
	f.s.PutObject(Object{Bucket: "images", Key: "big/huge.zvhd2", Size: 1025 * gib})
	f.s.PutObject(Object{Bucket: "images", Key: "nobitmap.raw", Size: gib})
	body := func(name, key string, minDisk int, quick bool) string {
		b, _ := json.Marshal(map[string]any{"name": name, "image_url": "images:" + key, "min_disk": minDisk,
			"os_version": "CentOS 7.9 64bit", "is_quick_import": quick})
		return string(b)
	}
	tests := []struct {
		name, body string
		code       string // "" for accepted
	}{
		{"300 GiB ZVHD2 quick", body("big-quick", "big/big-01.zvhd2", 300, true), ""},
		{"RAW with its bitmap quick", body("raw-quick", "db/db-01.raw", 40, true), ""},
		{"300 GiB ZVHD2 without is_quick_import", body("big-normal", "big/big-01.zvhd2", 300, false), "IMG.0059"},
		{"QCOW2 quick", body("qcow2-quick", "data/d.qcow2", 40, true), "IMG.0057"},
		{"VMDK quick", body("vmdk-quick", "sys/centos.vmdk", 40, true), "IMG.0057"},
		{"RAW without bitmap quick", body("nobitmap-quick", "nobitmap.raw", 40, true), "IMG.0057"},
		{"ZVHD2 above 1 TB quick", body("huge-quick", "big/huge.zvhd2", 1024, true), "IMG.0059"},
		{"quick without os_version", `{"name":"q","image_url":"images:big/big-01.zvhd2","min_disk":300,"is_quick_import":true}`, "IMG.0056"},
		{"QCOW2 without is_quick_import", body("qcow2-normal", "data/d.qcow2", 40, false), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, code := call(t, f.s, http.MethodPost, imagePath, tt.body)
			switch {
			case tt.code == "" && status != http.StatusOK:
				t.Errorf("answer %d %s, want 200", status, code)
			case tt.code != "" && (status != http.StatusBadRequest || code != tt.code):
				t.Errorf("answer %d %s, want 400 %s", status, code, tt.code)
			}
		})
	}
	t.Cleanup(func() {
		lazy := map[string]bool{}
		for _, im := range f.s.Images() {
			lazy[im.Name] = bool(im.LazyLoading)
		}
		want := map[string]bool{"big-quick": true, "raw-quick": true, "qcow2-normal": false}
		if !reflect.DeepEqual(lazy, want) {
			t.Errorf("images (name: lazily loaded) = %v, want %v", lazy, want)
		}
	})
}
