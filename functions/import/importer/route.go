package importer

import (
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// action is what routing decides for an object.
type action int

const (
	actSkip   action = iota // not an image: nothing to do
	actBitmap               // a RAW file's .mf bitmap: record it
	actReject               // will not import: publish rejected
	actSubmit               // import: submit the request

	actChecksum // an object's checksum file (<key>.sha256): not imported
)

// plan is routing's decision, computed from the event alone.
type plan struct {
	act        action
	reasonCode string // actReject
	reason     string // actReject, actSkip
	method     events.Method
	imageType  events.ImageType
	format     string
	name       string
	source     events.Source
	versionKey string
	hash       string // of versionKey: the provenance tag's value and KV key
	rule       Rule   // the rule that routed it, with the object's metadata applied

	quick  *imsapi.QuickImportRequest
	data   *imsapi.DataImageRequest
	system *imsapi.ImageRequest

	// needsBitmap: a RAW quick import waits for <key without ext>.mf;
	// fallback is the normal import to use when the wait ends without it
	// (nil when the file is too large for one: reject missing_bitmap).
	needsBitmap bool
	fallback    *plan
}

// routeConfig is what routing depends on besides the event.
type routeConfig struct {
	Rules Rules
	// ImgAsRaw treats .img files as RAW.
	ImgAsRaw bool
}

// Formats by extension. RAW and ZVHD2 are imported quickly; the others
// take the normal import, up to 128 GB.
var formats = map[string]string{
	"raw": "raw", "zvhd2": "zvhd2", "zvhd": "zvhd", "qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vhd",
	"vhdx": "vhdx", "qed": "qed", "vdi": "vdi", "qcow": "qcow", "iso": "iso",
}

// Rejection sentences; each names what to do about it.
const (
	provenanceTag = "imsflow-src"
	nameHashLen   = 8
	tagHashLen    = 40
)

// route decides, from the event alone, what to do with one object.
func route(o events.ObjectCreated, cfg routeConfig) plan { return routeContent(o, cfg, 0) }

// routeContent is route with the virtual disk size read from the file's
// header (0 when unknown), which then sets the floor of min_disk.
func routeContent(o events.ObjectCreated, cfg routeConfig, virtualSize int64) plan {
	src := o.Source()
	p := plan{source: src, versionKey: src.VersionKey(o.Sequencer)}
	p.hash = events.Hash(p.versionKey, 64)
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(o.Key), "."))
	if ext == "mf" {
		p.act, p.reason = actBitmap, "bitmap file of a RAW image"
		return p
	}
	if "."+ext == ChecksumSuffix {
		p.act, p.reason = actChecksum, "checksum file of "+strings.TrimSuffix(o.Key, path.Ext(o.Key))+", read when that object is imported"
		return p
	}
	format, ok := formats[ext]
	if ext == "img" && cfg.ImgAsRaw {
		format, ok = "raw", true
	}
	if v := strings.ToLower(strings.TrimSpace(o.Metadata[MetaFormat])); v != "" {
		format, ok = formats[v]
		if !ok {
			return reject(p, events.ReasonInvalidRequest, fmt.Sprintf("metadata %s=%q is not a format IMS imports (raw, zvhd2, zvhd, qcow2, vmdk, vhd, vhdx, qed, vdi, qcow, iso)", MetaFormat, v))
		}
	}
	if !ok {
		p.act, p.reason = actSkip, fmt.Sprintf("%q is not an image file extension", "."+ext)
		return p
	}
	p.format = format
	p.source.Format = format
	rule, err := cfg.Rules.match(o.Bucket, o.Key).withMetadata(o.Metadata)
	if err != nil {
		return reject(p, events.ReasonInvalidRequest, err.Error())
	}
	p.imageType = rule.ImageType
	p.rule = rule
	p.name = imageName(o.Key, p.hash)
	switch {
	case o.Size == 0:
		return reject(p, events.ReasonEmptyFile, "the file is empty; upload it again")
	case o.Size > imsapi.MaxQuickImportSize:
		return reject(p, events.ReasonTooLarge, fmt.Sprintf("the file is %s; IMS imports at most 1 TB", gb(o.Size)))
	}
	switch format {
	case "raw", "zvhd2":
		p = quickPlan(p, o, rule, diskSize(o.Size, virtualSize))
		if format == "raw" && p.act == actSubmit {
			p.needsBitmap = true
			if o.Size <= imsapi.MaxNormalImportSize {
				fb := normalPlan(p, o, rule, diskSize(o.Size, virtualSize))
				p.fallback = &fb
			}
		}
		return p
	case "iso":
		if rule.ImageType != events.ImageSystem {
			return reject(p, events.ReasonISONeedsSystem, "ISO files become system images only: give the object a system-disk rule or metadata ims-type=system with ims-os-version")
		}
		fallthrough
	default:
		if o.Size > imsapi.MaxNormalImportSize {
			if format == "iso" {
				return reject(p, events.ReasonTooLarge, fmt.Sprintf("the ISO file is %s; IMS imports ISO files up to 128 GB", gb(o.Size)))
			}
			return reject(p, events.ReasonNeedsConversion, fmt.Sprintf(
				"the %s file is %s; above 128 GB IMS imports only quickly: convert it to ZVHD2 (qemu-img-hw convert -O zvhd2), or to RAW and create its bitmap (CreateMF.jar), and upload that", strings.ToUpper(format), gb(o.Size)))
		}
		return normalPlan(p, o, rule, diskSize(o.Size, virtualSize))
	}
}

// diskSize is the size of the disk inside the file: the header's virtual
// size when known, else the file's size.
func diskSize(fileSize, virtualSize int64) int64 {
	if virtualSize > 0 {
		return virtualSize
	}
	return fileSize
}

func reject(p plan, code, reason string) plan {
	p.act, p.reasonCode, p.reason = actReject, code, reason
	p.quick, p.data, p.system, p.fallback, p.needsBitmap = nil, nil, nil, nil, false
	return p
}

func gb(size int64) string { return fmt.Sprintf("%.1f GB", float64(size)/float64(imsapi.GiB)) }

// minDisk is a normal import's min_disk: the rule's, checked against the
// disk, or the disk's size rounded up to whole GB ("at least the disk inside
// the file") raised to the API's lower bound.
func minDisk(rule Rule, disk int64, lo int) (int, error) {
	floor := imsapi.ImportMinDiskFor(disk)
	if rule.MinDisk > 0 {
		if rule.MinDisk < floor {
			return 0, fmt.Errorf("min_disk %d GB is below the %d GB disk in the file; raise it", rule.MinDisk, floor)
		}
		return rule.MinDisk, nil
	}
	return max(floor, lo), nil
}

// quickMinDisk is a quick import's min_disk: the rule's (checked against the
// disk with the request, see quickPlan), or the smallest whole GB strictly
// above the disk ("must exceed the disk size in the file"),
// floor(disk/GiB)+1, raised to the API's lower bound.
func quickMinDisk(rule Rule, disk int64, lo int) int {
	if rule.MinDisk > 0 {
		return rule.MinDisk
	}
	return max(imsapi.QuickImportMinDiskFor(disk), lo)
}

func description(o events.ObjectCreated, rule Rule) string {
	d := rule.Description
	if d == "" {
		d = "imported by imsflow from " + o.Bucket + ":" + o.Key
	}
	d = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '<' || r == '>' {
			return ' '
		}
		return r
	}, d)
	if utf8.RuneCountInString(d) > imsapi.MaxDescriptionLength {
		d = string([]rune(d)[:imsapi.MaxDescriptionLength])
	}
	return d
}

func (p plan) tags(rule Rule) []imsapi.ImageTag {
	return imageTags(rule.Tags, imsapi.ImageTag{Key: provenanceTag, Value: p.hash[:tagHashLen]})
}

func quickPlan(p plan, o events.ObjectCreated, rule Rule, disk int64) plan {
	p.method = events.MethodQuick
	r := &imsapi.QuickImportRequest{
		Name: p.name, Description: description(o, rule), ImageURL: o.Bucket + ":" + o.Key,
		ImageTags: p.tags(rule), EnterpriseProjectID: rule.EnterpriseProjectID,
		Architecture: rule.Architecture, HWFirmwareType: rule.Firmware,
	}
	windows := false
	if rule.ImageType == events.ImageSystem {
		r.Type = orDefault(rule.SystemType, imsapi.TypeECS)
		r.OSVersion = rule.OSVersion
		windows = strings.HasPrefix(strings.ToLower(rule.OSVersion), "windows")
	} else {
		r.Type = imsapi.TypeDataImage
		r.OSType = orDefault(rule.OSType, imsapi.OSLinux)
		windows = r.OSType == imsapi.OSWindows
	}
	lo := imsapi.QuickImportMinDiskLinux
	if windows {
		lo = imsapi.QuickImportMinDiskWindows
	}
	if disk > imsapi.MaxQuickImportDisk {
		// Within the 1 TB a quick import takes, but no min_disk up to 1024
		// GB exceeds the disk, whatever the metadata says.
		return reject(p, events.ReasonTooLarge, fmt.Sprintf(
			"the disk in the file is %s; quick import needs a min_disk above the disk and takes at most %d GB, so only disks under %d GB: shrink the disk below %d GB and upload it again",
			gb(disk), imsapi.QuickImportMaxDisk, imsapi.QuickImportMaxDisk, imsapi.QuickImportMaxDisk))
	}
	r.MinDisk = quickMinDisk(rule, disk, lo)
	if err := r.ValidateForDisk(disk); err != nil {
		return reject(p, events.ReasonInvalidRequest, validationReason(err))
	}
	p.act, p.quick = actSubmit, r
	return p
}

func normalPlan(p plan, o events.ObjectCreated, rule Rule, disk int64) plan {
	p.method, p.quick, p.needsBitmap, p.fallback = events.MethodNormal, nil, false, nil
	url := o.Bucket + ":" + o.Key
	if rule.ImageType == events.ImageSystem {
		r := &imsapi.ImageRequest{
			Name: p.name, Description: description(o, rule), ImageURL: url, OSVersion: rule.OSVersion,
			IsConfig: rule.IsConfig, CMKID: rule.CMKID, Type: orDefault(rule.SystemType, imsapi.TypeECS),
			ImageTags: p.tags(rule), EnterpriseProjectID: rule.EnterpriseProjectID,
			Architecture: rule.Architecture, HWFirmwareType: rule.Firmware,
		}
		if p.format == "iso" {
			r.Type = imsapi.TypeIsoImage
		}
		n, err := minDisk(rule, disk, imsapi.ImageMinDisk)
		if err != nil {
			return reject(p, events.ReasonInvalidRequest, err.Error())
		}
		r.MinDisk = n
		if err := r.Validate(); err != nil {
			return reject(p, events.ReasonInvalidRequest, validationReason(err))
		}
		p.act, p.system = actSubmit, r
		return p
	}
	r := &imsapi.DataImageRequest{
		Name: p.name, Description: description(o, rule), ImageURL: url, OSType: rule.OSType,
		CMKID: rule.CMKID, EnterpriseProjectID: rule.EnterpriseProjectID, ImageTags: p.tags(rule),
	}
	n, err := minDisk(rule, disk, imsapi.DataImageMinDisk)
	if err != nil {
		return reject(p, events.ReasonInvalidRequest, err.Error())
	}
	r.MinDisk = n
	if err := r.Validate(); err != nil {
		return reject(p, events.ReasonInvalidRequest, validationReason(err))
	}
	p.act, p.data = actSubmit, r
	return p
}

// validationReason words IMS's rules broken by a request for a person.
func validationReason(err error) string {
	var parts []string
	for _, ve := range imsapi.ValidationErrors(err) {
		parts = append(parts, ve.Field+" "+ve.Message+" ("+ve.Code+")")
	}
	if len(parts) == 0 {
		return err.Error()
	}
	return "IMS would refuse the request: " + strings.Join(parts, "; ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// imageName derives a deterministic, valid IMS image name from the object
// key: its base name without extension, characters IMS refuses replaced by
// '-', cut to fit, and the first characters of the version hash, so that
// two versions or two keys with one base name never share a name.
func imageName(key, hash string) string {
	base := path.Base(key)
	base = strings.TrimSuffix(base, path.Ext(base))
	var b strings.Builder
	for _, r := range base {
		switch {
		case r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ' '),
			unicode.Is(unicode.Han, r):
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	name := strings.TrimSpace(b.String())
	suffix := "-" + hash[:nameHashLen]
	if runes := []rune(name); len(runes) > imsapi.MaxNameLength-len(suffix) {
		name = strings.TrimSpace(string(runes[:imsapi.MaxNameLength-len(suffix)]))
	}
	if name == "" || name == "." || name == ".." {
		name = "image"
	}
	return name + suffix
}

// Route is routing's decision for one object, for people and tools
// ("imsflow bulk import --dry-run").
type Route struct {
	// Action is skip, bitmap, reject, quick or normal.
	Action     string           `json:"action"`
	ImageType  events.ImageType `json:"image_type,omitempty"`
	Format     string           `json:"format,omitempty"`
	ImageName  string           `json:"image_name,omitempty"`
	MinDisk    int              `json:"min_disk,omitempty"`
	ReasonCode string           `json:"reason_code,omitempty"`
	Reason     string           `json:"reason,omitempty"`
	// WaitsForBitmap: a RAW file that needs its .mf bitmap.
	WaitsForBitmap bool `json:"waits_for_bitmap,omitempty"`
}

// Describe returns the route the import function would give o under rules.
func Describe(o events.ObjectCreated, rules Rules, imgAsRaw bool) Route {
	p := route(o, routeConfig{Rules: rules, ImgAsRaw: imgAsRaw})
	r := Route{ImageType: p.imageType, Format: p.format, ImageName: p.name, ReasonCode: p.reasonCode, Reason: p.reason, WaitsForBitmap: p.needsBitmap}
	switch p.act {
	case actSkip:
		r.Action = "skip"
	case actChecksum:
		// A checksum file is read from the bucket by its object's import;
		// its own notification only wakes an object waiting for it.
		r.Action = "checksum"
	case actBitmap:
		r.Action = "bitmap"
	case actReject:
		r.Action = "reject"
	default:
		r.Action = string(p.method)
		switch {
		case p.quick != nil:
			r.MinDisk = p.quick.MinDisk
		case p.data != nil:
			r.MinDisk = p.data.MinDisk
		case p.system != nil:
			r.MinDisk = p.system.MinDisk
		}
	}
	return r
}
