package imsapi

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func validQuick() QuickImportRequest {
	return QuickImportRequest{Name: "web-01", ImageURL: "images:web-01.zvhd2", MinDisk: 40, OSVersion: "CentOS 7.0 64bit"}
}

func validQuickData() QuickImportRequest {
	return QuickImportRequest{Name: "data-01", ImageURL: "images:data-01.raw", MinDisk: 40, Type: TypeDataImage}
}

func validData() DataImageRequest {
	return DataImageRequest{Name: "data-02", ImageURL: "images:data-02.qcow2", MinDisk: 40}
}

func validImage() ImageRequest {
	return ImageRequest{Name: "sys-01", ImageURL: "images:sys-01.vmdk", MinDisk: 40}
}

func validExport() ExportRequest {
	return ExportRequest{BucketURL: "exports:sys-01.qcow2", FileFormat: FormatQCOW2}
}

type validatable interface{ Validate() error }

func tags(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "k" + strings.Repeat("x", i) + ".v"
	}
	return out
}

// TestValidationRules: one case per documented rule, each naming the field,
// the rule and the IMS code it must report.
func TestValidationRules(t *testing.T) {
	t.Parallel()
	q := func(f func(*QuickImportRequest)) validatable { r := validQuick(); f(&r); return &r }
	qd := func(f func(*QuickImportRequest)) validatable { r := validQuickData(); f(&r); return &r }
	d := func(f func(*DataImageRequest)) validatable { r := validData(); f(&r); return &r }
	im := func(f func(*ImageRequest)) validatable { r := validImage(); f(&r); return &r }
	ex := func(f func(*ExportRequest)) validatable { r := validExport(); f(&r); return &r }
	tests := []struct {
		name  string
		req   validatable
		field string
		rule  string
		code  string
	}{
		// name
		{"name required", d(func(r *DataImageRequest) { r.Name = "" }), "name", "required", "IMG.0001"},
		{"name longer than 128", d(func(r *DataImageRequest) { r.Name = strings.Repeat("a", 129) }), "name", "length", "IMG.0002"},
		{"name leading space", d(func(r *DataImageRequest) { r.Name = " a" }), "name", "format", "IMG.0003"},
		{"name trailing space", q(func(r *QuickImportRequest) { r.Name = "a " }), "name", "format", "IMG.0003"},
		{"name bad character", im(func(r *ImageRequest) { r.Name = "a/b" }), "name", "charset", "IMG.0003"},
		{"name non-Latin letter", im(func(r *ImageRequest) { r.Name = "naïve" }), "name", "charset", "IMG.0003"},
		// description
		{"description longer than 1024", d(func(r *DataImageRequest) { r.Description = strings.Repeat("d", 1025) }), "description", "length", "IMG.0004"},
		{"description carriage return", d(func(r *DataImageRequest) { r.Description = "a\rb" }), "description", "charset", "IMG.0054"},
		{"description line feed", d(func(r *DataImageRequest) { r.Description = "a\nb" }), "description", "charset", "IMG.0054"},
		{"description <", q(func(r *QuickImportRequest) { r.Description = "<b>" }), "description", "charset", "IMG.0054"},
		{"description >", im(func(r *ImageRequest) { r.Description = "a>b" }), "description", "charset", "IMG.0054"},
		// tags
		{"tags and image_tags together", d(func(r *DataImageRequest) {
			r.Tags, r.ImageTags = []string{"a.b"}, []ImageTag{{Key: "c", Value: "d"}}
		}), "tags", "exclusive", "IMG.0115"},
		{"more than 10 tags", d(func(r *DataImageRequest) { r.Tags = tags(11) }), "tags", "length", "IMG.0116"},
		{"more than 10 image_tags", q(func(r *QuickImportRequest) {
			for i := range 11 {
				r.ImageTags = append(r.ImageTags, ImageTag{Key: "k" + strings.Repeat("x", i)})
			}
		}), "image_tags", "length", "IMG.0116"},
		{"tag key empty", d(func(r *DataImageRequest) { r.Tags = []string{".value"} }), "tags[0].key", "required", "IMG.0115"},
		{"tag key longer than 36", d(func(r *DataImageRequest) { r.Tags = []string{strings.Repeat("k", 37) + ".v"} }), "tags[0].key", "length", "IMG.0115"},
		{"tag key bad character", q(func(r *QuickImportRequest) { r.ImageTags = []ImageTag{{Key: "a=b"}} }), "image_tags[0].key", "charset", "IMG.0115"},
		{"tag value longer than 43", im(func(r *ImageRequest) { r.ImageTags = []ImageTag{{Key: "k", Value: strings.Repeat("v", 44)}} }), "image_tags[0].value", "length", "IMG.0115"},
		{"tag value bad character", d(func(r *DataImageRequest) { r.Tags = []string{"k.a b"} }), "tags[0].value", "charset", "IMG.0115"},
		{"tag key twice", d(func(r *DataImageRequest) { r.Tags = []string{"k.1", "k.2"} }), "tags[1].key", "format", "IMG.0115"},
		// min_disk per operation
		{"quick import min_disk above 1024", q(func(r *QuickImportRequest) { r.MinDisk = 1025 }), "min_disk", "range", "IMG.0055"},
		{"quick import linux min_disk below 10", q(func(r *QuickImportRequest) { r.MinDisk = 9 }), "min_disk", "range", "IMG.0055"},
		{"quick import windows min_disk below 20", q(func(r *QuickImportRequest) {
			r.OSVersion, r.MinDisk = "Windows Server 2019 Standard 64bit", 19
		}), "min_disk", "range", "IMG.0055"},
		{"quick import windows data disk below 20", qd(func(r *QuickImportRequest) { r.OSType, r.MinDisk = OSWindows, 19 }), "min_disk", "range", "IMG.0055"},
		{"data image min_disk below 40", d(func(r *DataImageRequest) { r.MinDisk = 39 }), "min_disk", "range", "IMG.0055"},
		{"data image min_disk above 2048", d(func(r *DataImageRequest) { r.MinDisk = 2049 }), "min_disk", "range", "IMG.0055"},
		{"system image min_disk below 40", im(func(r *ImageRequest) { r.MinDisk = 39 }), "min_disk", "range", "IMG.0055"},
		{"system image min_disk above 1024", im(func(r *ImageRequest) { r.MinDisk = 1025 }), "min_disk", "range", "IMG.0055"},
		// os_version
		{"quick import system disk needs os_version", q(func(r *QuickImportRequest) { r.OSVersion = "" }), "os_version", "required", "IMG.0056"},
		{"quick import BMS needs os_version", q(func(r *QuickImportRequest) { r.Type, r.OSVersion = TypeBMS, "" }), "os_version", "required", "IMG.0056"},
		{"quick import data disk takes no os_version", qd(func(r *QuickImportRequest) { r.OSVersion = "CentOS 7.0 64bit" }), "os_version", "conflict", "IMG.0056"},
		{"quick import system disk os_type", q(func(r *QuickImportRequest) { r.OSType = OSOther }), "os_type", "enum", "IMG.0122"},
		{"iso needs os_version", im(func(r *ImageRequest) { r.Type = TypeIsoImage }), "os_version", "required", "IMG.0056"},
		{"is_quick_import needs os_version", im(func(r *ImageRequest) { r.IsQuickImport = true }), "os_version", "required", "IMG.0056"},
		// enumerations
		{"quick import type", q(func(r *QuickImportRequest) { r.Type = "IsoImage" }), "type", "enum", "IMG.0024"},
		{"system image type", im(func(r *ImageRequest) { r.Type = "DataImage" }), "type", "enum", "IMG.0024"},
		{"data image os_type", d(func(r *DataImageRequest) { r.OSType = "Other" }), "os_type", "enum", "IMG.0122"},
		{"system image os_type", im(func(r *ImageRequest) { r.OSType = "linux" }), "os_type", "enum", "IMG.0122"},
		{"quick data os_type", qd(func(r *QuickImportRequest) { r.OSType = "Other" }), "os_type", "enum", "IMG.0122"},
		{"architecture", q(func(r *QuickImportRequest) { r.Architecture = "aarch64" }), "architecture", "enum", "IMG.0212"},
		{"hw_firmware_type", im(func(r *ImageRequest) { r.HWFirmwareType = "efi" }), "hw_firmware_type", "enum", "IMG.0141"},
		{"arm boots uefi only", im(func(r *ImageRequest) { r.Architecture, r.HWFirmwareType = ArchARM, FirmwareBIOS }), "hw_firmware_type", "conflict", "IMG.0141"},
		{"license_type", q(func(r *QuickImportRequest) { r.LicenseType = "free" }), "license_type", "enum", "IMG.0001"},
		{"file_format", ex(func(r *ExportRequest) { r.FileFormat = "raw" }), "file_format", "enum", "IMG.0072"},
		{"normal export needs file_format", ex(func(r *ExportRequest) { r.FileFormat = "" }), "file_format", "required", "IMG.0072"},
		{"quick export takes no file_format", ex(func(r *ExportRequest) { r.IsQuickExport = true }), "file_format", "conflict", "IMG.0072"},
		// ram
		{"negative ram", im(func(r *ImageRequest) { r.MinRAM = -1 }), "min_ram", "range", "IMG.0055"},
		{"min_ram above max_ram", im(func(r *ImageRequest) { r.MinRAM, r.MaxRAM = 4096, 1024 }), "min_ram", "range", "IMG.0055"},
		// bucket:key
		{"image_url required", d(func(r *DataImageRequest) { r.ImageURL = "" }), "image_url", "required", "IMG.0017"},
		{"image_url without colon", d(func(r *DataImageRequest) { r.ImageURL = "bucket/key.qcow2" }), "image_url", "format", "IMG.0017"},
		{"image_url without key", q(func(r *QuickImportRequest) { r.ImageURL = "bucket:" }), "image_url", "format", "IMG.0017"},
		{"image_url bucket too short", im(func(r *ImageRequest) { r.ImageURL = "ab:k.vmdk" }), "image_url", "format", "IMG.0017"},
		{"image_url bucket upper case", im(func(r *ImageRequest) { r.ImageURL = "Images:k.vmdk" }), "image_url", "format", "IMG.0017"},
		{"image_url bucket ip", im(func(r *ImageRequest) { r.ImageURL = "192.168.1.1:k.vmdk" }), "image_url", "format", "IMG.0017"},
		{"image_url bucket ends with dash", d(func(r *DataImageRequest) { r.ImageURL = "images-:k.qcow2" }), "image_url", "format", "IMG.0017"},
		{"image_url bucket double dot", d(func(r *DataImageRequest) { r.ImageURL = "im..ages:k.qcow2" }), "image_url", "format", "IMG.0017"},
		{"image_url key starts with slash", d(func(r *DataImageRequest) { r.ImageURL = "images:/k.qcow2" }), "image_url", "format", "IMG.0017"},
		{"image_url key too long", d(func(r *DataImageRequest) { r.ImageURL = "images:" + strings.Repeat("k", 1025) }), "image_url", "format", "IMG.0017"},
		{"bucket_url required", ex(func(r *ExportRequest) { r.BucketURL = "" }), "bucket_url", "required", "IMG.0017"},
		{"export file name with a space", ex(func(r *ExportRequest) { r.BucketURL = "exports:my image.qcow2" }), "bucket_url", "format", "IMG.0175"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.req.Validate()
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Validate() = %v, want ErrInvalidArgument", err)
			}
			all := ValidationErrors(err)
			if len(all) != 1 {
				t.Errorf("Validate() broke %d rules, want exactly 1: %v", len(all), err)
			}
			for _, ve := range all {
				if ve.Field == tt.field && ve.Rule == tt.rule && ve.Code == tt.code && ve.Message != "" {
					return
				}
			}
			t.Errorf("Validate() = %v; want field %q rule %q code %q", err, tt.field, tt.rule, tt.code)
		})
	}
}

func TestValidRequestsPass(t *testing.T) {
	t.Parallel()
	q, qd, d, im, ex := validQuick(), validQuickData(), validData(), validImage(), validExport()
	quickEx := ExportRequest{BucketURL: "exports:big.zvhd2", IsQuickExport: true}
	edge := DataImageRequest{
		Name: "数据盘 image_01.v2", Description: strings.Repeat("é", 1024), ImageURL: "a.b-c:目录/file name+1.qcow2",
		MinDisk: 2048, Tags: append(tags(9), "dotted.v.with.dots"),
	}
	win := QuickImportRequest{Name: "w", ImageURL: "abc:w.zvhd2", MinDisk: 20, OSVersion: "Windows Server 2019 Standard 64bit", LicenseType: LicenseBYOL}
	iso := ImageRequest{Name: "iso", ImageURL: "abc:i.iso", MinDisk: 40, Type: TypeIsoImage, OSVersion: "CentOS 7.0 64bit", Architecture: ArchARM, HWFirmwareType: FirmwareUEFI}
	for _, r := range []validatable{&q, &qd, &d, &im, &ex, &quickEx, &edge, &win, &iso} {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: Validate() = %v, want nil", r, err)
		}
	}
}

func TestValidationReportsEveryRule(t *testing.T) {
	t.Parallel()
	r := DataImageRequest{Name: "", ImageURL: "x", MinDisk: 1, OSType: "BeOS"}
	got := map[string]bool{}
	for _, ve := range ValidationErrors(r.Validate()) {
		got[ve.Field] = true
	}
	for _, f := range []string{"name", "image_url", "min_disk", "os_type"} {
		if !got[f] {
			t.Errorf("no error for %s; got %v", f, got)
		}
	}
}

func TestNilRequests(t *testing.T) {
	t.Parallel()
	for _, r := range []validatable{(*QuickImportRequest)(nil), (*DataImageRequest)(nil), (*ImageRequest)(nil), (*ExportRequest)(nil)} {
		if err := r.Validate(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%T(nil).Validate() = %v", r, err)
		}
	}
}

// TestValidationBeforeIO: an invalid argument never reaches the server.
func TestValidationBeforeIO(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, testAKSK())
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		t.Errorf("request %s %s reached the server", r.Method, r.URL.Path)
	})
	ctx := t.Context()
	calls := map[string]func() error{
		"QuickImport":     func() error { _, err := c.QuickImport(ctx, &QuickImportRequest{}); return err },
		"ImportDataImage": func() error { _, err := c.ImportDataImage(ctx, &DataImageRequest{}); return err },
		"ImportImage":     func() error { _, err := c.ImportImage(ctx, nil); return err },
		"ExportImage bad id": func() error {
			_, err := c.ExportImage(ctx, "../../v2/cloudimages", &ExportRequest{BucketURL: "b12:k", FileFormat: FormatVHD})
			return err
		},
		"ExportImage bad body": func() error { _, err := c.ExportImage(ctx, testImageID, &ExportRequest{}); return err },
		"JobProgress":          func() error { _, err := c.JobProgress(ctx, "a/b"); return err },
		"Job":                  func() error { _, err := c.Job(ctx, ""); return err },
		"Image":                func() error { _, err := c.Image(ctx, "x?y"); return err },
		"ListImages":           func() error { _, err := c.ListImages(ctx, &ListImagesOptions{Limit: -1}); return err },
		"ListOSVersions":       func() error { _, err := c.ListOSVersions(ctx, "ecs"); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if n := slot.calls.Load(); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}

func TestParseBucketURL(t *testing.T) {
	t.Parallel()
	b, k, err := ParseBucketURL("images:dir/a:b.qcow2")
	if err != nil || b != "images" || k != "dir/a:b.qcow2" {
		t.Errorf("ParseBucketURL = %q, %q, %v", b, k, err)
	}
	if _, _, err := ParseBucketURL("nocolon"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ParseBucketURL(nocolon) = %v", err)
	}
}

// TestMinDiskForDisk: quick import's min_disk exceeds the disk (the
// smallest whole GB strictly above it, floor+1); normal import's is at
// least the disk (rounded up, ceil). Both before the API's lower bound.
func TestMinDiskForDisk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		disk        int64
		quick, norm int
	}{
		{"unknown", 0, 0, 0},
		{"1 byte", 1, 1, 1},
		{"exactly 1 GiB", GiB, 2, 1},
		{"1 GiB + 1", GiB + 1, 2, 2},
		{"exactly 200 GiB", 200 * GiB, 201, 200},
		{"1023 GiB + 1", 1023*GiB + 1, 1024, 1024},
		{"exactly 1024 GiB", 1024 * GiB, 1025, 1024},
		{"1 TiB + 1", TiB + 1, 1025, 1025},
	}
	for _, tt := range tests {
		if got := QuickImportMinDiskFor(tt.disk); got != tt.quick {
			t.Errorf("%s: QuickImportMinDiskFor = %d, want %d", tt.name, got, tt.quick)
		}
		if got := ImportMinDiskFor(tt.disk); got != tt.norm {
			t.Errorf("%s: ImportMinDiskFor = %d, want %d", tt.name, got, tt.norm)
		}
		// The quick one is the least min_disk whose GB exceed the disk.
		if n := tt.quick; tt.disk > 0 && (int64(n)*GiB <= tt.disk || int64(n-1)*GiB > tt.disk) {
			t.Errorf("%s: %d GB is not the least whole GB above %d bytes", tt.name, n, tt.disk)
		}
	}
	if MaxQuickImportDisk != 1024*GiB-1 || QuickImportMinDiskFor(MaxQuickImportDisk) != QuickImportMaxDisk || QuickImportMinDiskFor(MaxQuickImportDisk+1) <= QuickImportMaxDisk {
		t.Errorf("MaxQuickImportDisk = %d is not the largest disk min_disk 1024 exceeds", MaxQuickImportDisk)
	}
}

// TestQuickImportValidateForDisk: with the disk's size known, min_disk
// must exceed it; equal is refused (IMG.0055, as IMS answers a bad min_disk).
func TestQuickImportValidateForDisk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		minDisk int
		disk    int64
		ok      bool
		msg     string // in the message when refused
	}{
		{"disk unknown: range only", 10, 0, true, ""},
		{"1 byte, lower bound", 10, 1, true, ""},
		{"exactly 1 GiB", 10, GiB, true, ""},
		{"equal to a 200 GiB disk", 200, 200 * GiB, false, "not above the disk in the file (200 GB)"},
		{"above a 200 GiB disk", 201, 200 * GiB, true, ""},
		{"below a 200 GiB disk", 150, 200 * GiB, false, "at least 201 GB"},
		{"1024 above 1023 GiB + 1", 1024, 1023*GiB + 1, true, ""},
		{"1023 on 1023 GiB + 1", 1023, 1023*GiB + 1, false, "(1098437885953 bytes, 1023.0 GB); quick import needs min_disk to exceed the disk, at least 1024 GB"},
		{"1024 on exactly 1024 GiB", 1024, 1024 * GiB, false, "no min_disk up to 1024 GB"},
		{"1024 on 1 TiB + 1", 1024, TiB + 1, false, "no min_disk up to 1024 GB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := validQuickData()
			r.MinDisk = tt.minDisk
			err := r.ValidateForDisk(tt.disk)
			if tt.ok {
				if err != nil {
					t.Fatalf("ValidateForDisk(%d) = %v, want nil", tt.disk, err)
				}
				return
			}
			all := ValidationErrors(err)
			if !errors.Is(err, ErrInvalidArgument) || len(all) != 1 {
				t.Fatalf("ValidateForDisk(%d) = %v, want one broken rule", tt.disk, err)
			}
			if ve := all[0]; ve.Field != "min_disk" || ve.Rule != "range" || ve.Code != "IMG.0055" || !strings.Contains(ve.Message, tt.msg) {
				t.Errorf("ValidateForDisk(%d) = %+v; want min_disk range IMG.0055 saying %q", tt.disk, ve, tt.msg)
			}
		})
	}
	// Validate's own rules still hold, joined with the disk rule.
	r := validQuickData()
	r.Name, r.MinDisk = "", 5
	got := map[string]int{}
	for _, ve := range ValidationErrors(r.ValidateForDisk(20 * GiB)) {
		got[ve.Field]++
	}
	if got["name"] != 1 || got["min_disk"] != 2 {
		t.Errorf("ValidateForDisk broke %v, want name once and min_disk twice (range and disk)", got)
	}
	if err := (*QuickImportRequest)(nil).ValidateForDisk(GiB); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("nil request: %v", err)
	}
	// The client alone cannot know the disk: Validate passes min_disk equal
	// to it, as long as it is in range.
	r = validQuickData()
	r.MinDisk = 200
	if err := r.Validate(); err != nil {
		t.Errorf("Validate() = %v; the request carries no disk size", err)
	}
}
