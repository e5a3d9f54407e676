package imsapi

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidationError is one documented IMS rule that a request breaks. Methods
// of [Client] check their arguments before any I/O and return every broken
// rule, joined with [errors.Join]; use [errors.As] for the first, or
// [ValidationErrors] for all. errors.Is(err, [ErrInvalidArgument]) holds.
type ValidationError struct {
	Field   string // JSON field, e.g. "min_disk", "image_tags[2].key"
	Rule    string // "required", "length", "charset", "range", "enum", "exclusive", "format", "conflict"
	Code    string // the IMS error code the service answers for it, e.g. "IMG.0002"
	Message string // what is wrong and what is allowed, for a person
}

func (e *ValidationError) Error() string {
	return "imsapi: invalid " + e.Field + ": " + e.Message
}

// Is makes errors.Is(err, ErrInvalidArgument) hold.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidArgument }

// ValidationErrors returns every [*ValidationError] in err's tree.
func ValidationErrors(err error) []*ValidationError {
	var out []*ValidationError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *ValidationError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

func nilRequest() error {
	return &ValidationError{Field: "request", Rule: "required", Code: "IMG.0001", Message: "is nil"}
}

// Rules and the IMS codes that go with them.
const (
	// MaxNameLength is the longest image name, in characters.
	MaxNameLength = 128
	// MaxDescriptionLength is the longest description, in characters.
	MaxDescriptionLength = 1024
	// MaxTagKeyLength and MaxTagValueLength bound tag keys and values.
	MaxTagKeyLength   = 36
	MaxTagValueLength = 43
)

// Minimum disk ranges, in GB, per operation. The documentation disagrees on
// some lower bounds (see README "IMS facts and choices"); these are the
// strictest documented ones, so IMS does not refuse what passes here.
const (
	DataImageMinDisk          = 40
	DataImageMaxDisk          = 2048
	ImageMinDisk              = 40
	ImageMaxDisk              = 1024
	QuickImportMinDiskLinux   = 10
	QuickImportMinDiskWindows = 20
	QuickImportMaxDisk        = 1024
)

// Enumerations of the request fields.
const (
	TypeECS           = "ECS"
	TypeBMS           = "BMS"
	TypeFusionCompute = "FusionCompute"
	TypeIronic        = "Ironic"
	TypeIsoImage      = "IsoImage"
	TypeDataImage     = "DataImage"

	OSLinux   = "Linux"
	OSWindows = "Windows"
	OSOther   = "Other"

	ArchX86 = "x86"
	ArchARM = "arm"

	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"

	LicensePlatform = "platform"
	LicenseBYOL     = "byol"

	FormatQCOW2 = "qcow2"
	FormatVHD   = "vhd"
	FormatZVHD  = "zvhd"
	FormatVMDK  = "vmdk"
)

// validator collects the rules a request breaks.
type validator struct{ errs []error }

func (v *validator) add(field, rule, code, format string, args ...any) {
	v.errs = append(v.errs, &ValidationError{Field: field, Rule: rule, Code: code, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error { return errors.Join(v.errs...) }

// name: 1-128 characters, letters (Latin or Chinese), digits, space, "-",
// "." and "_", no leading or trailing space.
func (v *validator) name(field, s string) {
	n := utf8.RuneCountInString(s)
	switch {
	case s == "":
		v.add(field, "required", "IMG.0001", "is required")
		return
	case n > MaxNameLength:
		v.add(field, "length", "IMG.0002", "has %d characters, at most %d are allowed", n, MaxNameLength)
	case s != strings.TrimSpace(s):
		v.add(field, "format", "IMG.0003", "must not start or end with a space")
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return !nameRune(r) }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		v.add(field, "charset", "IMG.0003", "contains %q; allowed are letters, digits, Chinese characters, space, '-', '.' and '_'", r)
	}
}

func nameRune(r rune) bool {
	return r < utf8.RuneSelf && (asciiAlnum(r) || strings.ContainsRune("-._ ", r)) || unicode.Is(unicode.Han, r)
}

func asciiAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

// description: at most 1024 characters, no carriage return (nor, as the
// SDK reads "回车", a line feed), '<' or '>'.
func (v *validator) description(field, s string) {
	if n := utf8.RuneCountInString(s); n > MaxDescriptionLength {
		v.add(field, "length", "IMG.0004", "has %d characters, at most %d are allowed", n, MaxDescriptionLength)
	}
	if strings.ContainsAny(s, "\r\n<>") {
		v.add(field, "charset", "IMG.0054", "must not contain a line break, '<' or '>'")
	}
}

// tags: tags ("key.value" strings) and image_tags ({key, value}) are
// mutually exclusive; at most 10; keys 1-36 of [A-Za-z0-9_-], unique;
// values 0-43 of [A-Za-z0-9_.-]; Chinese characters are allowed in both.
func (v *validator) tags(tags []string, imageTags []ImageTag) {
	if len(tags) > 0 && len(imageTags) > 0 {
		v.add("tags", "exclusive", "IMG.0115", "tags and image_tags cannot both be set; use one of them")
	}
	list, kv := "image_tags", imageTags
	if len(tags) > 0 {
		list, kv = "tags", make([]ImageTag, 0, len(tags))
		for _, t := range tags {
			k, val, _ := strings.Cut(t, ".")
			kv = append(kv, ImageTag{Key: k, Value: val})
		}
	}
	v.tagList(list, kv)
}

// tagList checks the {key, value} tags of one list field: at most 10; keys
// 1-36 of [A-Za-z0-9_-], unique; values 0-43 of [A-Za-z0-9_.-]; Chinese
// characters are allowed in both.
func (v *validator) tagList(list string, kv []ImageTag) {
	if len(kv) > MaxTags {
		v.add(list, "length", "IMG.0116", "has %d tags, at most %d are allowed", len(kv), MaxTags)
	}
	seen := make(map[string]bool, len(kv))
	for i, t := range kv {
		f := fmt.Sprintf("%s[%d]", list, i)
		switch n := utf8.RuneCountInString(t.Key); {
		case n == 0:
			v.add(f+".key", "required", "IMG.0115", "tag key is empty")
		case n > MaxTagKeyLength:
			v.add(f+".key", "length", "IMG.0115", "tag key %q has %d characters, at most %d are allowed", t.Key, n, MaxTagKeyLength)
		}
		if !allRunes(t.Key, tagRune) {
			v.add(f+".key", "charset", "IMG.0115", "tag key %q: allowed are letters, digits, Chinese characters, '-' and '_'", t.Key)
		}
		if n := utf8.RuneCountInString(t.Value); n > MaxTagValueLength {
			v.add(f+".value", "length", "IMG.0115", "tag value %q has %d characters, at most %d are allowed", t.Value, n, MaxTagValueLength)
		}
		if !allRunes(t.Value, func(r rune) bool { return tagRune(r) || r == '.' }) {
			v.add(f+".value", "charset", "IMG.0115", "tag value %q: allowed are letters, digits, Chinese characters, '-', '_' and '.'", t.Value)
		}
		if t.Key != "" && seen[t.Key] {
			v.add(f+".key", "format", "IMG.0115", "tag key %q appears twice", t.Key)
		}
		seen[t.Key] = true
	}
}

func tagRune(r rune) bool {
	return r < utf8.RuneSelf && (asciiAlnum(r) || r == '-' || r == '_') || unicode.Is(unicode.Han, r)
}

func allRunes(s string, ok func(rune) bool) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !ok(r) }) < 0
}

func (v *validator) minDisk(field string, n, lo, hi int, why string) {
	if n < lo || n > hi {
		v.add(field, "range", "IMG.0055", "is %d GB; %s take %d to %d GB", n, why, lo, hi)
	}
}

// The disk rule of min_disk differs by call. Normal import (CreateImage,
// CreateDataImage) wants min_disk "at least the disk inside the file";
// quick import (ImportImageQuick) wants it to "exceed the disk size in the
// file", read here strictly: min_disk GB > the disk's bytes. So a disk of
// exactly 200 GiB takes min_disk 200 in a normal import and 201 in a quick
// one, and a disk of 1024 GiB or more cannot be quick-imported at all (no
// min_disk up to QuickImportMaxDisk exceeds it), although the file itself is
// within the 1 TB that quick import takes.

// ImportMinDiskFor is the smallest min_disk, in GB, a normal import accepts
// for a disk of diskBytes (the virtual size, or the file's size for RAW):
// the size rounded up to whole GB, ceil(diskBytes / GiB). The API's lower
// bound is not applied.
func ImportMinDiskFor(diskBytes int64) int {
	if diskBytes <= 0 {
		return 0
	}
	return int((diskBytes + GiB - 1) / GiB)
}

// QuickImportMinDiskFor is the smallest min_disk, in GB, a quick import
// accepts for a disk of diskBytes: the smallest whole GB strictly above the
// disk's size, floor(diskBytes / GiB) + 1. The API's lower bound (10 or 20)
// is not applied; a result above [QuickImportMaxDisk] means the disk cannot
// be quick-imported.
func QuickImportMinDiskFor(diskBytes int64) int {
	if diskBytes <= 0 {
		return 0
	}
	return int(diskBytes/GiB) + 1
}

// MaxQuickImportDisk is the largest disk, in bytes, that quick import can
// take: one byte under QuickImportMaxDisk GB, the largest disk that
// min_disk 1024 still exceeds.
const MaxQuickImportDisk = QuickImportMaxDisk*GiB - 1

// ValidateForDisk is [QuickImportRequest.Validate] with the disk rule the
// request alone cannot carry: IMS's ImportImageQuick has no size field, so
// Validate (and so [Client.QuickImport]) checks only min_disk's range, and a
// caller that knows the size of the disk inside the file (diskBytes: the
// virtual size, or the file's size for RAW) checks here that min_disk
// exceeds it. diskBytes 0 means unknown: then only Validate's rules apply.
// The broken disk rule is a [*ValidationError] on min_disk, rule "range",
// code IMG.0055, as IMS answers it.
func (r *QuickImportRequest) ValidateForDisk(diskBytes int64) error {
	err := r.Validate()
	if r == nil || diskBytes <= 0 {
		return err
	}
	var v validator
	v.quickMinDisk("min_disk", r.MinDisk, diskBytes)
	return errors.Join(err, v.err())
}

func (v *validator) quickMinDisk(field string, n int, diskBytes int64) {
	if need := QuickImportMinDiskFor(diskBytes); n < need {
		if need > QuickImportMaxDisk {
			v.add(field, "range", "IMG.0055", "is %d GB; quick import needs min_disk above the disk in the file (%s), and no min_disk up to %d GB is: the disk must be under %d GB",
				n, gbString(diskBytes), QuickImportMaxDisk, QuickImportMaxDisk)
			return
		}
		v.add(field, "range", "IMG.0055", "is %d GB, not above the disk in the file (%s); quick import needs min_disk to exceed the disk, at least %d GB",
			n, gbString(diskBytes), need)
	}
}

// gbString words a size for a message: "200 GB" when whole, else the bytes
// and GB to one decimal, which alone could hide the remainder that matters.
func gbString(bytes int64) string {
	if bytes%GiB == 0 {
		return fmt.Sprintf("%d GB", bytes/GiB)
	}
	return fmt.Sprintf("%d bytes, %.1f GB", bytes, float64(bytes)/float64(GiB))
}

// enum checks an optional enumerated field ("" passes).
func (v *validator) enum(field, code, s string, allowed ...string) {
	if s != "" && !slices.Contains(allowed, s) {
		v.add(field, "enum", code, "is %q; allowed are %s", s, strings.Join(allowed, ", "))
	}
}

// ParseBucketURL splits an OBS "bucket:key" URL and checks both halves: the
// bucket name by OBS's rules (3-63 characters of a-z, 0-9, '-' and '.',
// starting and ending with a letter or digit, no "..", no IP address) and the
// key (1-1024 bytes of UTF-8, not starting with "/").
func ParseBucketURL(s string) (bucket, key string, err error) {
	var v validator
	bucket, key = v.bucketURL("image_url", s)
	return bucket, key, v.err()
}

func (v *validator) bucketURL(field, s string) (bucket, key string) {
	if s == "" {
		v.add(field, "required", "IMG.0017", "is required, as \"bucket:object-key\"")
		return "", ""
	}
	bucket, key, ok := strings.Cut(s, ":")
	if !ok {
		v.add(field, "format", "IMG.0017", "%q is not \"bucket:object-key\"", s)
		return "", ""
	}
	if msg := bucketNameProblem(bucket); msg != "" {
		v.add(field, "format", "IMG.0017", "bucket %q %s", bucket, msg)
	}
	switch {
	case key == "":
		v.add(field, "format", "IMG.0017", "%q has no object key after ':'", s)
	case len(key) > 1024:
		v.add(field, "format", "IMG.0017", "object key is %d bytes, at most 1024 are allowed", len(key))
	case strings.HasPrefix(key, "/"):
		v.add(field, "format", "IMG.0017", "object key %q must not start with '/'", key)
	case !utf8.ValidString(key):
		v.add(field, "format", "IMG.0017", "object key is not valid UTF-8")
	}
	return bucket, key
}

func bucketNameProblem(b string) string {
	switch {
	case len(b) < 3 || len(b) > 63:
		return "must have 3 to 63 characters"
	case !allRunes(b, func(r rune) bool { return 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '.' }):
		return "may contain only lower-case letters, digits, '-' and '.'"
	case !asciiAlnum(rune(b[0])) || !asciiAlnum(rune(b[len(b)-1])):
		return "must start and end with a letter or digit"
	case strings.Contains(b, "..") || strings.Contains(b, ".-") || strings.Contains(b, "-."):
		return "must not contain \"..\", \".-\" or \"-.\""
	case net.ParseIP(b) != nil:
		return "must not be an IP address"
	}
	return ""
}

// id checks an image or job ID that goes into a URL path.
func (v *validator) id(field, s string) {
	switch {
	case s == "":
		v.add(field, "required", "IMG.0001", "is required")
	case len(s) > 64 || !allRunes(s, func(r rune) bool { return asciiAlnum(r) || r == '-' || r == '_' }):
		v.add(field, "format", "IMG.0001", "%q is not an IMS ID (letters, digits, '-' and '_', at most 64)", s)
	}
}

func isWindows(osVersion string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(osVersion)), "windows")
}
