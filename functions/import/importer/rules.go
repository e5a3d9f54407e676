package importer

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Rule maps a bucket and key prefix to import settings. The rules file is
// JSON: {"rules": [Rule, ...]}. The longest matching prefix wins; a rule
// with bucket "" or "*" matches every bucket.
type Rule struct {
	// Name names the rule in events and refusals; "" is named by its
	// place, bucket and prefix (see Label).
	Name   string `json:"name,omitempty"`
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix"`
	// ImageType is data (default) or system.
	ImageType events.ImageType `json:"image_type,omitempty"`
	// SystemType is the quick-import type of a system disk: ECS (default)
	// or BMS; IsoImage is implied for ISO files.
	SystemType   string `json:"system_type,omitempty"`
	OSVersion    string `json:"os_version,omitempty"`
	OSType       string `json:"os_type,omitempty"`
	Architecture string `json:"architecture,omitempty"`
	Firmware     string `json:"firmware,omitempty"`
	// MinDisk in GB; 0 derives it from the file's size.
	MinDisk     int               `json:"min_disk,omitempty"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	IsConfig    bool              `json:"is_config,omitempty"`
	CMKID       string            `json:"cmk_id,omitempty"`
	// EnterpriseProjectID of the new images.
	EnterpriseProjectID string `json:"enterprise_project_id,omitempty"`
	// Lifecycle is what happens to the image once imported: copies to
	// regions, shares, tags, retention (docs/lifecycle.md).
	Lifecycle *lifecycle.Declaration `json:"lifecycle,omitempty"`
	// Verify is what is checked of the object before IMS is called: its
	// checksum and its storage class (verify.go; defaults there).
	Verify Verify `json:"verify,omitzero"`
}

// Label is how events and refusals name the rule: its Name, else
// "bucket/prefix" ("*/" for the default rule).
func (r Rule) Label() string {
	if r.Name != "" {
		return r.Name
	}
	return cmp.Or(r.Bucket, "*") + "/" + r.Prefix
}

// Rules are the routing rules, checked at load.
type Rules struct {
	Rules []Rule `json:"rules"`
}

// defaultRule imports data disks of Linux.
var defaultRule = Rule{ImageType: events.ImageData, OSType: imsapi.OSLinux}

// LoadRules reads a rules file; "" gives no rules (the default rule only).
func LoadRules(path string) (Rules, error) {
	var r Rules
	if path == "" {
		return r, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("rules file: %w", err)
	}
	if r, err = ParseRules(b); err != nil {
		return r, fmt.Errorf("rules file %s: %w", path, err)
	}
	return r, nil
}

// ParseRules reads and checks routing rules in the rules file's format.
// A field it does not know is an error: a misspelt one would otherwise
// route images silently by the defaults.
func ParseRules(b []byte) (Rules, error) {
	var r Rules
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return r, err
	}
	return r, r.check()
}

func (rs Rules) check() error {
	names := map[string]int{}
	for i, r := range rs.Rules {
		if r.Name != "" {
			if j, dup := names[r.Name]; dup {
				return fmt.Errorf("rule %d: name %q is also rule %d's", i, r.Name, j)
			}
			names[r.Name] = i
		}
		switch r.ImageType {
		case "", events.ImageData, events.ImageSystem:
		default:
			return fmt.Errorf("rule %d: image_type %q: want data or system", i, r.ImageType)
		}
		switch r.SystemType {
		case "", imsapi.TypeECS, imsapi.TypeBMS:
		default:
			return fmt.Errorf("rule %d: system_type %q: want ECS or BMS", i, r.SystemType)
		}
		if r.MinDisk < 0 {
			return fmt.Errorf("rule %d: min_disk %d is negative", i, r.MinDisk)
		}
		if err := r.Lifecycle.Check(); err != nil {
			return fmt.Errorf("rule %d (%s): lifecycle: %w", i, r.Label(), err)
		}
		if err := r.Verify.check(); err != nil {
			return fmt.Errorf("rule %d (%s): verify: %w", i, r.Label(), err)
		}
	}
	return nil
}

// match returns the rule for an object: the longest prefix among the
// rules of its bucket (or of every bucket), else the default rule.
func (rs Rules) match(bucket, key string) Rule {
	best, bestLen := defaultRule, -1
	for _, r := range rs.Rules {
		if r.Bucket != "" && r.Bucket != "*" && r.Bucket != bucket {
			continue
		}
		if strings.HasPrefix(key, r.Prefix) && len(r.Prefix) > bestLen {
			best, bestLen = r, len(r.Prefix)
		}
	}
	if best.ImageType == "" {
		best.ImageType = events.ImageData
	}
	return best
}

// Metadata keys an object can carry (x-obs-meta-*/x-amz-meta-*, lower case)
// to override its rule.
const (
	MetaType         = "ims-type"         // data | system
	MetaSystemType   = "ims-system-type"  // ECS | BMS
	MetaOSVersion    = "ims-os-version"   // e.g. "Ubuntu 22.04 server 64bit"
	MetaOSType       = "ims-os-type"      // Linux | Windows
	MetaArchitecture = "ims-architecture" // x86 | arm
	MetaFirmware     = "ims-firmware"     // bios | uefi
	MetaMinDisk      = "ims-min-disk"     // GB
	MetaFormat       = "ims-format"       // overrides the extension
	MetaDescription  = "ims-description"  // image description
	MetaTags         = "ims-tags"         // "k=v,k2=v2"
	MetaBatch        = "imsflow-batch"    // batch ID, stamped by imsflow bulk
	metaTagSeparator = ","
)

// withMetadata applies an object's metadata on top of its rule. Bad values
// are returned as errors, which reject the object with their reason.
func (r Rule) withMetadata(meta map[string]string) (Rule, error) {
	get := func(k string) (string, bool) {
		v, ok := meta[k]
		return strings.TrimSpace(v), ok && strings.TrimSpace(v) != ""
	}
	if v, ok := get(MetaType); ok {
		r.ImageType = events.ImageType(strings.ToLower(v))
		if r.ImageType != events.ImageData && r.ImageType != events.ImageSystem {
			return r, fmt.Errorf("metadata %s=%q: want data or system", MetaType, v)
		}
	}
	if v, ok := get(MetaSystemType); ok {
		r.SystemType = strings.ToUpper(v)
	}
	if v, ok := get(MetaOSVersion); ok {
		r.OSVersion = v
	}
	if v, ok := get(MetaOSType); ok {
		r.OSType = v
	}
	if v, ok := get(MetaArchitecture); ok {
		r.Architecture = v
	}
	if v, ok := get(MetaFirmware); ok {
		r.Firmware = v
	}
	if v, ok := get(MetaDescription); ok {
		r.Description = v
	}
	if v, ok := get(MetaMinDisk); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return r, fmt.Errorf("metadata %s=%q: want a whole number of GB", MetaMinDisk, v)
		}
		r.MinDisk = n
	}
	if v, ok := get(MetaTags); ok {
		tags := map[string]string{}
		for k, v := range r.Tags {
			tags[k] = v
		}
		for _, kv := range strings.Split(v, metaTagSeparator) {
			k, val, _ := strings.Cut(strings.TrimSpace(kv), "=")
			if k == "" {
				return r, fmt.Errorf("metadata %s=%q: want k=v,k2=v2", MetaTags, v)
			}
			tags[k] = val
		}
		r.Tags = tags
	}
	return r, nil
}

// imageTags turns the rule's tags plus the provenance tag into sorted
// image_tags.
func imageTags(rule map[string]string, extra ...imsapi.ImageTag) []imsapi.ImageTag {
	out := append([]imsapi.ImageTag(nil), extra...)
	keys := make([]string, 0, len(rule))
	for k := range rule {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, imsapi.ImageTag{Key: k, Value: rule[k]})
	}
	return out
}
