package importer

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

const gib = imsapi.GiB

func obj(key string, size int64, meta ...string) events.ObjectCreated {
	o := events.ObjectCreated{Shape: "minio", EventName: "s3:ObjectCreated:Put", Bucket: "images", Key: key, Size: size, ETag: "e1"}
	if len(meta) > 0 {
		o.Metadata = map[string]string{}
		for i := 0; i+1 < len(meta); i += 2 {
			o.Metadata[meta[i]] = meta[i+1]
		}
	}
	return o
}

var testRules = Rules{Rules: []Rule{
	{Bucket: "images", Prefix: "sys/", ImageType: events.ImageSystem, OSVersion: "Ubuntu 22.04 server 64bit", Tags: map[string]string{"team": "web"}},
	{Bucket: "images", Prefix: "sys/bare/", ImageType: events.ImageSystem, SystemType: imsapi.TypeBMS, OSVersion: "CentOS 7.9 64bit"},
	{Bucket: "images", Prefix: "sys/noos/", ImageType: events.ImageSystem},
	{Bucket: "images", Prefix: "win/", ImageType: events.ImageSystem, OSVersion: "Windows Server 2019 Standard 64bit"},
	{Bucket: "*", Prefix: "winData/", OSType: imsapi.OSWindows},
	{Bucket: "images", Prefix: "many/", Tags: map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": "8", "i": "9", "j": "10"}},
}}

// TestRoute: one case per routing branch and rejection of SPEC section 3.
func TestRoute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		o          events.ObjectCreated
		imgAsRaw   bool
		act        action
		reasonCode string
		method     events.Method
		imageType  events.ImageType
		check      func(t *testing.T, p plan)
	}{
		{name: "not an image", o: obj("docs/readme.txt", 10), act: actSkip},
		{name: ".img is not RAW by default", o: obj("disk.img", gib), act: actSkip},
		{name: ".img as RAW when configured", o: obj("disk.img", gib), imgAsRaw: true, act: actSubmit, method: events.MethodQuick, imageType: events.ImageData,
			check: func(t *testing.T, p plan) {
				if !p.needsBitmap || p.format != "raw" {
					t.Errorf("plan = %+v", p)
				}
			}},
		{name: "bitmap companion", o: obj("db/db-01.mf", 100), act: actBitmap},
		{name: "empty file", o: obj("a.qcow2", 0), act: actReject, reasonCode: events.ReasonEmptyFile},
		{name: "above 1 TB", o: obj("a.zvhd2", imsapi.TiB+1), act: actReject, reasonCode: events.ReasonTooLarge},
		{name: "zvhd2 is a quick data import", o: obj("web.zvhd2", 5*gib+1), act: actSubmit, method: events.MethodQuick, imageType: events.ImageData,
			check: func(t *testing.T, p plan) {
				r := p.quick
				if r == nil || r.Type != imsapi.TypeDataImage || r.OSType != imsapi.OSLinux || r.MinDisk != 10 || r.OSVersion != "" || r.ImageURL != "images:web.zvhd2" || p.needsBitmap {
					t.Errorf("quick = %+v", r)
				}
			}},
		{name: "quick min_disk is above the file's size when above 10", o: obj("big.zvhd2", 300*gib+5), act: actSubmit, method: events.MethodQuick,
			check: func(t *testing.T, p plan) {
				if p.quick.MinDisk != 301 {
					t.Errorf("min_disk = %d, want 301", p.quick.MinDisk)
				}
			}},
		{name: "raw needs its bitmap, normal import as fallback", o: obj("db/db-01.raw", 20*gib), act: actSubmit, method: events.MethodQuick,
			check: func(t *testing.T, p plan) {
				if !p.needsBitmap || p.fallback == nil || p.fallback.method != events.MethodNormal || p.fallback.data == nil || p.fallback.data.MinDisk != 40 {
					t.Errorf("plan = %+v, fallback %+v", p, p.fallback)
				}
			}},
		{name: "raw above 128 GB has no fallback", o: obj("db/huge.raw", 200*gib), act: actSubmit, method: events.MethodQuick,
			check: func(t *testing.T, p plan) {
				if !p.needsBitmap || p.fallback != nil {
					t.Errorf("plan = %+v", p)
				}
			}},
		{name: "qcow2 is a normal data import", o: obj("data/d.QCOW2", 4*gib), act: actSubmit, method: events.MethodNormal, imageType: events.ImageData,
			check: func(t *testing.T, p plan) {
				if p.data == nil || p.data.MinDisk != 40 || p.format != "qcow2" || p.source.Format != "qcow2" {
					t.Errorf("data = %+v", p.data)
				}
			}},
		{name: "vmdk of exactly 128 GB is normal", o: obj("data/d.vmdk", 128*gib), act: actSubmit, method: events.MethodNormal},
		{name: "vmdk above 128 GB needs conversion", o: obj("data/d.vmdk", 128*gib+1), act: actReject, reasonCode: events.ReasonNeedsConversion,
			check: func(t *testing.T, p plan) {
				if !strings.Contains(p.reason, "ZVHD2") {
					t.Errorf("reason %q gives no advice", p.reason)
				}
			}},
		{name: "iso on a data rule", o: obj("iso/x.iso", gib), act: actReject, reasonCode: events.ReasonISONeedsSystem},
		{name: "iso on a system rule", o: obj("sys/x.iso", gib), act: actSubmit, method: events.MethodNormal, imageType: events.ImageSystem,
			check: func(t *testing.T, p plan) {
				if p.system == nil || p.system.Type != imsapi.TypeIsoImage || p.system.OSVersion != "Ubuntu 22.04 server 64bit" {
					t.Errorf("system = %+v", p.system)
				}
			}},
		{name: "iso without os_version", o: obj("sys/noos/x.iso", gib), act: actReject, reasonCode: events.ReasonInvalidRequest},
		{name: "iso above 128 GB", o: obj("sys/x.iso", 129*gib), act: actReject, reasonCode: events.ReasonTooLarge},
		{name: "system rule zvhd2 is a quick ECS import", o: obj("sys/web.zvhd2", gib), act: actSubmit, method: events.MethodQuick, imageType: events.ImageSystem,
			check: func(t *testing.T, p plan) {
				r := p.quick
				if r.Type != imsapi.TypeECS || r.OSVersion != "Ubuntu 22.04 server 64bit" || r.OSType != "" || len(r.ImageTags) != 2 || r.ImageTags[1] != (imsapi.ImageTag{Key: "team", Value: "web"}) {
					t.Errorf("quick = %+v", r)
				}
			}},
		{name: "longest prefix wins: BMS", o: obj("sys/bare/b.zvhd2", gib), act: actSubmit, method: events.MethodQuick,
			check: func(t *testing.T, p plan) {
				if p.quick.Type != imsapi.TypeBMS || p.quick.OSVersion != "CentOS 7.9 64bit" {
					t.Errorf("quick = %+v", p.quick)
				}
			}},
		{name: "system quick import without os_version", o: obj("sys/noos/x.zvhd2", gib), act: actReject, reasonCode: events.ReasonInvalidRequest},
		{name: "system vmdk is a normal system import", o: obj("sys/c.vmdk", 50*gib), act: actSubmit, method: events.MethodNormal, imageType: events.ImageSystem,
			check: func(t *testing.T, p plan) {
				if p.system == nil || p.system.MinDisk != 50 || p.system.Type != imsapi.TypeECS {
					t.Errorf("system = %+v", p.system)
				}
			}},
		{name: "windows system quick import starts at 20 GB", o: obj("win/w.zvhd2", gib), act: actSubmit,
			check: func(t *testing.T, p plan) {
				if p.quick.MinDisk != 20 {
					t.Errorf("min_disk = %d", p.quick.MinDisk)
				}
			}},
		{name: "windows data quick import starts at 20 GB", o: obj("winData/w.zvhd2", gib), act: actSubmit,
			check: func(t *testing.T, p plan) {
				if p.quick.MinDisk != 20 || p.quick.OSType != imsapi.OSWindows {
					t.Errorf("quick = %+v", p.quick)
				}
			}},
		{name: "metadata makes a system disk", o: obj("any/x.qcow2", gib, MetaType, "system", MetaOSVersion, "CentOS 7.9 64bit", MetaMinDisk, "60"), act: actSubmit, imageType: events.ImageSystem,
			check: func(t *testing.T, p plan) {
				if p.system == nil || p.system.OSVersion != "CentOS 7.9 64bit" || p.system.MinDisk != 60 {
					t.Errorf("system = %+v", p.system)
				}
			}},
		{name: "metadata bad type", o: obj("x.qcow2", gib, MetaType, "boot"), act: actReject, reasonCode: events.ReasonInvalidRequest},
		{name: "metadata min_disk below the file", o: obj("x.qcow2", 50*gib, MetaMinDisk, "45"), act: actReject, reasonCode: events.ReasonInvalidRequest},
		{name: "metadata min_disk not a number", o: obj("x.qcow2", gib, MetaMinDisk, "lots"), act: actReject, reasonCode: events.ReasonInvalidRequest},
		{name: "metadata min_disk above the data range", o: obj("x.qcow2", gib, MetaMinDisk, "3000"), act: actReject, reasonCode: events.ReasonInvalidRequest},
		{name: "metadata format without extension", o: obj("exports/disk", gib, MetaFormat, "qcow2"), act: actSubmit, method: events.MethodNormal},
		{name: "metadata unknown format", o: obj("x.qcow2", gib, MetaFormat, "exe"), act: actReject, reasonCode: events.ReasonInvalidRequest},
		{name: "metadata tags", o: obj("x.qcow2", gib, MetaTags, "owner=ops,env=prod"), act: actSubmit,
			check: func(t *testing.T, p plan) {
				if len(p.data.ImageTags) != 3 || p.data.ImageTags[1] != (imsapi.ImageTag{Key: "env", Value: "prod"}) {
					t.Errorf("tags = %+v", p.data.ImageTags)
				}
			}},
		{name: "too many tags with the provenance tag", o: obj("many/x.qcow2", gib), act: actReject, reasonCode: events.ReasonInvalidRequest},
		{name: "bad architecture from metadata", o: obj("sys/x.zvhd2", gib, MetaArchitecture, "sparc"), act: actReject, reasonCode: events.ReasonInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := route(tt.o, routeConfig{Rules: testRules, ImgAsRaw: tt.imgAsRaw})
			if p.act != tt.act || p.reasonCode != tt.reasonCode {
				t.Fatalf("route = act %d code %q (%s), want act %d code %q", p.act, p.reasonCode, p.reason, tt.act, tt.reasonCode)
			}
			if tt.act == actReject && p.reason == "" {
				t.Error("a rejection without a reason")
			}
			if tt.method != "" && p.method != tt.method {
				t.Errorf("method = %s, want %s", p.method, tt.method)
			}
			if tt.imageType != "" && p.imageType != tt.imageType {
				t.Errorf("image type = %s, want %s", p.imageType, tt.imageType)
			}
			if p.act == actSubmit {
				n := 0
				for _, r := range []interface{ Validate() error }{p.quick, p.data, p.system} {
					if r != nil && !isNil(r) {
						n++
						if err := r.Validate(); err != nil {
							t.Errorf("submitted request is invalid: %v", err)
						}
					}
				}
				if n != 1 {
					t.Errorf("plan has %d requests, want 1", n)
				}
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

func isNil(v interface{ Validate() error }) bool {
	switch r := v.(type) {
	case *imsapi.QuickImportRequest:
		return r == nil
	case *imsapi.DataImageRequest:
		return r == nil
	case *imsapi.ImageRequest:
		return r == nil
	}
	return false
}

// TestImageName: deterministic, valid, distinct per version.
func TestImageName(t *testing.T) {
	t.Parallel()
	v1 := route(obj("dir/My Disk (final)#2.qcow2", gib), routeConfig{})
	v1again := route(obj("dir/My Disk (final)#2.qcow2", gib), routeConfig{})
	o2 := obj("dir/My Disk (final)#2.qcow2", gib)
	o2.ETag = "e2"
	v2 := route(o2, routeConfig{})
	if v1.name != v1again.name || v1.name == v2.name {
		t.Errorf("names %q, %q, %q: want the same for one version, different for another", v1.name, v1again.name, v2.name)
	}
	if !strings.HasPrefix(v1.name, "My Disk -final--2-") {
		t.Errorf("name = %q", v1.name)
	}
	long := route(obj(strings.Repeat("数", 300)+".qcow2", gib), routeConfig{})
	if n := utf8.RuneCountInString(long.name); n != imsapi.MaxNameLength {
		t.Errorf("long name has %d characters, want %d", n, imsapi.MaxNameLength)
	}
	for _, key := range []string{"....qcow2", " .qcow2", "a/b/ .qcow2"} {
		p := route(obj(key, gib), routeConfig{})
		if p.act != actSubmit {
			t.Errorf("%q: %s", key, p.reason)
		}
	}
}

// TestVersionIdentity: the provenance tag and KV key follow the version.
func TestVersionIdentity(t *testing.T) {
	t.Parallel()
	a := obj("x.qcow2", gib)
	a.VersionID = "v1"
	b := a
	b.VersionID = "v2"
	pa, pb := route(a, routeConfig{}), route(b, routeConfig{})
	if pa.hash == pb.hash || pa.data.ImageTags[0].Value == pb.data.ImageTags[0].Value {
		t.Error("two versions share a hash")
	}
	if pa.data.ImageTags[0].Key != provenanceTag || len(pa.data.ImageTags[0].Value) != tagHashLen {
		t.Errorf("provenance tag = %+v", pa.data.ImageTags[0])
	}
}

func TestRulesFile(t *testing.T) {
	t.Parallel()
	for _, bad := range []Rules{
		{Rules: []Rule{{ImageType: "boot"}}},
		{Rules: []Rule{{SystemType: "KVM"}}},
		{Rules: []Rule{{MinDisk: -1}}},
	} {
		if err := bad.check(); err == nil {
			t.Errorf("rules %+v accepted", bad)
		}
	}
	if _, err := LoadRules("/nonexistent/rules.json"); err == nil {
		t.Error("missing rules file accepted")
	}
}

// TestVirtualSizeSetsMinDisk: the disk inside a small file sets min_disk;
// the file's own size still decides quick or normal.
func TestVirtualSizeSetsMinDisk(t *testing.T) {
	t.Parallel()
	if p := routeContent(obj("d.qcow2", gib), routeConfig{}, 300*gib); p.data == nil || p.data.MinDisk != 300 || p.method != events.MethodNormal {
		t.Errorf("qcow2 of 1 GiB with a 300 GiB disk: %+v", p.data)
	}
	if p := routeContent(obj("d.zvhd2", gib), routeConfig{}, 70*gib+1); p.quick == nil || p.quick.MinDisk != 71 {
		t.Errorf("zvhd2 with a 70 GiB disk: %+v", p.quick)
	}
	if p := routeContent(obj("d.qcow2", gib, MetaMinDisk, "100"), routeConfig{}, 300*gib); p.act != actReject || p.reasonCode != events.ReasonInvalidRequest {
		t.Errorf("min_disk metadata below the disk: act %d %s", p.act, p.reason)
	}
	if p := routeContent(obj("d.qcow2", gib), routeConfig{}, 3000*gib); p.act != actReject {
		t.Errorf("a 3000 GiB disk is beyond the data-image range: %+v", p)
	}
}

// TestQuickMinDiskExceedsDisk: a quick import's min_disk must exceed the
// disk in the file (ims-api: "must exceed the disk size in the file"): the
// smallest whole GB strictly above it, floor(bytes/GiB)+1, raised to 10
// (20 for Windows). No min_disk up to 1024 exceeds a disk of 1024 GiB or
// more: too_large before IMS. A normal import's stays "at least" (ceil).
func TestQuickMinDiskExceedsDisk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		o          events.ObjectCreated
		virtual    int64 // from the header; 0 unknown
		reasonCode string
		minDisk    int
		reason     string // in the reason when rejected
	}{
		{name: "1 byte", o: obj("e/byte.zvhd2", 1), minDisk: 10},
		{name: "1 byte windows", o: obj("win/byte.zvhd2", 1), minDisk: 20},
		{name: "exactly 1 GiB", o: obj("e/1g.zvhd2", gib), minDisk: 10},
		{name: "1 GiB + 1", o: obj("e/1g1.zvhd2", gib+1), minDisk: 10},
		{name: "exactly 10 GiB", o: obj("e/10g.zvhd2", 10*gib), minDisk: 11},
		{name: "exactly 200 GiB", o: obj("e/200g.zvhd2", 200*gib), minDisk: 201},
		{name: "exactly 200 GiB raw", o: obj("e/200g.raw", 200*gib), minDisk: 201},
		{name: "200 GiB + 1", o: obj("e/200g1.zvhd2", 200*gib+1), minDisk: 201},
		{name: "1023 GiB + 1", o: obj("e/1023g1.raw", 1023*gib+1), minDisk: 1024},
		{name: "1024 GiB - 1", o: obj("e/1024g-1.zvhd2", 1024*gib-1), minDisk: 1024},
		{name: "exactly 1024 GiB", o: obj("e/1024g.raw", 1024*gib), reasonCode: events.ReasonTooLarge, reason: "min_disk above the disk"},
		{name: "exactly 1024 GiB zvhd2", o: obj("e/1024g.zvhd2", 1024*gib), reasonCode: events.ReasonTooLarge, reason: "under 1024 GB"},
		{name: "1 TiB + 1", o: obj("e/1t1.zvhd2", imsapi.TiB+1), reasonCode: events.ReasonTooLarge},
		{name: "virtual 200 GiB in a small zvhd2", o: obj("e/v200.zvhd2", gib), virtual: 200 * gib, minDisk: 201},
		{name: "virtual 1024 GiB in a small zvhd2", o: obj("e/v1024.zvhd2", gib), virtual: 1024 * gib, reasonCode: events.ReasonTooLarge, reason: "1024.0 GB"},
		{name: "metadata equal to the size", o: obj("e/m200.zvhd2", 200*gib, MetaMinDisk, "200"), reasonCode: events.ReasonInvalidRequest,
			reason: "min_disk is 200 GB, not above the disk in the file (200 GB); quick import needs min_disk to exceed the disk, at least 201 GB (IMG.0055)"},
		{name: "metadata below the size", o: obj("e/m150.zvhd2", 200*gib, MetaMinDisk, "150"), reasonCode: events.ReasonInvalidRequest, reason: "at least 201 GB"},
		{name: "metadata equal to the virtual size", o: obj("e/mv.zvhd2", gib, MetaMinDisk, "300"), virtual: 300 * gib, reasonCode: events.ReasonInvalidRequest, reason: "not above the disk in the file (300 GB)"},
		{name: "metadata one above the size", o: obj("e/m201.zvhd2", 200*gib, MetaMinDisk, "201"), minDisk: 201},
		{name: "metadata 1024 on exactly 1024 GiB", o: obj("e/m1024.zvhd2", 1024*gib, MetaMinDisk, "1024"), reasonCode: events.ReasonTooLarge},
		{name: "metadata above the quick range", o: obj("e/m1025.zvhd2", 200*gib, MetaMinDisk, "1025"), reasonCode: events.ReasonInvalidRequest, reason: "10 to 1024 GB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := routeContent(tt.o, routeConfig{Rules: testRules}, tt.virtual)
			if tt.reasonCode != "" {
				if p.act != actReject || p.reasonCode != tt.reasonCode || !strings.Contains(p.reason, tt.reason) || p.reason == "" {
					t.Fatalf("route = act %d %q %q; want a %s rejection saying %q", p.act, p.reasonCode, p.reason, tt.reasonCode, tt.reason)
				}
				return
			}
			if p.act != actSubmit || p.quick == nil {
				t.Fatalf("route = act %d %q %q; want a quick import", p.act, p.reasonCode, p.reason)
			}
			if p.quick.MinDisk != tt.minDisk {
				t.Errorf("min_disk = %d, want %d", p.quick.MinDisk, tt.minDisk)
			}
			disk := tt.virtual
			if disk == 0 {
				disk = tt.o.Size
			}
			if int64(p.quick.MinDisk)*gib <= disk {
				t.Errorf("min_disk %d GB does not exceed the %d-byte disk", p.quick.MinDisk, disk)
			}
			if err := p.quick.ValidateForDisk(disk); err != nil {
				t.Errorf("submitted request is invalid: %v", err)
			}
		})
	}
}

// TestNormalMinDiskIsAtLeastDisk: normal import keeps "at least the disk
// inside the file": a disk of exactly N GiB takes min_disk N, and so does
// the RAW fallback of a quick import, whose own min_disk is N+1.
func TestNormalMinDiskIsAtLeastDisk(t *testing.T) {
	t.Parallel()
	if p := routeContent(obj("d.qcow2", gib), routeConfig{}, 200*gib); p.data == nil || p.data.MinDisk != 200 {
		t.Errorf("qcow2 with a 200 GiB disk: %+v (%s)", p.data, p.reason)
	}
	if p := route(obj("sys/c.vmdk", 100*gib), routeConfig{Rules: testRules}); p.system == nil || p.system.MinDisk != 100 {
		t.Errorf("system vmdk of 100 GiB: %+v (%s)", p.system, p.reason)
	}
	if p := route(obj("d.qcow2", 50*gib, MetaMinDisk, "50"), routeConfig{}); p.data == nil || p.data.MinDisk != 50 {
		t.Errorf("qcow2 of 50 GiB with metadata min_disk 50: %+v (%s)", p.data, p.reason)
	}
	p := route(obj("db/r.raw", 100*gib), routeConfig{})
	if p.quick == nil || p.quick.MinDisk != 101 || p.fallback == nil || p.fallback.data == nil || p.fallback.data.MinDisk != 100 {
		t.Errorf("raw of 100 GiB: quick %+v, fallback %+v", p.quick, p.fallback)
	}
}

// TestParseRulesStrict: a field the rules do not have is an error that
// names it, not a rule silently routed by the defaults.
func TestParseRulesStrict(t *testing.T) {
	if _, err := ParseRules([]byte(`{"rules": [{"bucket": "b", "prefix": "p/", "image_typ": "system"}]}`)); err == nil || !strings.Contains(err.Error(), "image_typ") {
		t.Errorf("a misspelt field: %v, want an error naming it", err)
	}
	r, err := ParseRules([]byte(`{"rules": [{"bucket": "b", "prefix": "p/", "image_type": "system", "os_version": "Ubuntu 22.04 server 64bit"}]}`))
	if err != nil || len(r.Rules) != 1 {
		t.Errorf("a valid rule: %+v, %v", r, err)
	}
}
