package exporter

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// plan is what an export request becomes once its image is known.
type plan struct {
	quick     bool
	format    string // file_format sent; "" for a quick export
	fileExt   string // the target's format: the file_format, or zvhd2
	bucketURL string
}

// rejection is a request that will not be exported, and why.
type rejection struct {
	code, reason string
}

// decideConfig is what the rules depend on besides request and image.
type decideConfig struct {
	DefaultBucket string
	KeyPrefix     string
}

// DefaultFormat is the export format when a request names none.
const DefaultFormat = imsapi.FormatQCOW2

// decide applies SPEC section 4 to a request and its image: refuse what
// IMS would refuse, choose quick export above 128 GB (or when asked),
// default the format and the target object.
func decide(req events.ExportRequest, im *imsapi.Image, cfg decideConfig) (plan, *rejection) {
	size, ok := im.SizeBytes()
	if !ok {
		size = int64(im.MinDisk) * imsapi.GiB
	}
	switch {
	case im.Status != imsapi.ImageActive:
		return plan{}, &rejection{events.ReasonNotActive, fmt.Sprintf("image %s is %s; only active images can be exported: wait until it is active", im.ID, orUnknown(im.Status))}
	case im.ImageType != "private":
		return plan{}, &rejection{events.ReasonNotPrivate, fmt.Sprintf("image %s is not a private image (__imagetype %q); only private images can be exported", im.ID, im.ImageType)}
	case bool(im.WholeImage):
		return plan{}, &rejection{events.ReasonWholeImage, fmt.Sprintf("image %s is a full-ECS image, which IMS cannot export; export its system-disk image instead", im.ID)}
	case im.VirtualEnvType == imsapi.TypeIsoImage:
		return plan{}, &rejection{events.ReasonISOImage, fmt.Sprintf("image %s is an ISO image, which IMS cannot export", im.ID)}
	case size >= imsapi.MaxExportSize:
		return plan{}, &rejection{events.ReasonExportTooLarge, fmt.Sprintf("image %s is %s; IMS exports images under 1 TB only", im.ID, gb(size))}
	}
	quick := req.Quick == events.QuickTrue
	if size > imsapi.MaxNormalExportSize {
		switch {
		case req.Quick == events.QuickFalse:
			return plan{}, &rejection{events.ReasonNeedsQuickExport, fmt.Sprintf("image %s is %s; above 128 GB only quick export works: send quick auto or true", im.ID, gb(size))}
		case req.FileFormat != "" && req.Quick != events.QuickTrue:
			return plan{}, &rejection{events.ReasonNeedsQuickExport, fmt.Sprintf("image %s is %s; above 128 GB only quick export works, and it writes ZVHD2, not %s: drop file_format", im.ID, gb(size), req.FileFormat)}
		}
		quick = true
	}
	if quick && im.Encrypted() {
		why := "quick export was asked for"
		if req.Quick != events.QuickTrue {
			why = fmt.Sprintf("the image is %s, above the 128 GB of a normal export", gb(size))
		}
		return plan{}, &rejection{events.ReasonEncryptedQuick, fmt.Sprintf("image %s is encrypted, and IMS cannot quick export encrypted images (%s): decrypt it first, or export it normally if it is under 128 GB", im.ID, why)}
	}
	if quick && req.FileFormat != "" {
		return plan{}, &rejection{events.ReasonInvalidRequest, "a quick export always writes ZVHD2: drop file_format or set quick to false"}
	}
	p := plan{quick: quick, format: req.FileFormat, fileExt: req.FileFormat}
	if quick {
		p.format, p.fileExt = "", "zvhd2"
	} else if p.format == "" {
		p.format, p.fileExt = DefaultFormat, DefaultFormat
	}
	p.bucketURL = req.BucketURL
	if strings.HasSuffix(p.bucketURL, "/") {
		// A prefix: the file is named from the image and the format.
		p.bucketURL += objectName(im) + "." + p.fileExt
	}
	if p.bucketURL == "" {
		if cfg.DefaultBucket == "" {
			return plan{}, &rejection{events.ReasonNoBucket, "the request has no bucket_url and no default export bucket is configured (EXPORT_BUCKET)"}
		}
		p.bucketURL = cfg.DefaultBucket + ":" + cfg.KeyPrefix + objectName(im) + "." + p.fileExt
	}
	check := imsapi.ExportRequest{BucketURL: p.bucketURL, FileFormat: p.format, IsQuickExport: p.quick}
	if err := check.Validate(); err != nil {
		var parts []string
		for _, ve := range imsapi.ValidationErrors(err) {
			parts = append(parts, ve.Field+" "+ve.Message)
		}
		return plan{}, &rejection{events.ReasonInvalidRequest, "IMS would refuse the export: " + strings.Join(parts, "; ")}
	}
	return p, nil
}

// objectName derives a target file name from the image's name and ID:
// characters outside [A-Za-z0-9._-] (spaces included, which IMS refuses in
// export file names) become '-'.
func objectName(im *imsapi.Image) string {
	var b strings.Builder
	for _, r := range im.Name {
		if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			b.WriteRune(r)
		} else {
			b.WriteRune('-')
		}
	}
	name := strings.Trim(b.String(), "-.")
	if len(name) > 100 {
		name = name[:100]
	}
	if name == "" {
		return im.ID
	}
	return name + "-" + im.ID
}

func gb(size int64) string { return fmt.Sprintf("%.1f GB", float64(size)/float64(imsapi.GiB)) }

func orUnknown(s string) string {
	if s == "" {
		return "of unknown status"
	}
	return s
}
