package exporter

import (
	"strconv"
	"strings"
	"testing"

	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

const gib = imsapi.GiB

func image(size int64, mutate func(*imsapi.Image)) *imsapi.Image {
	im := &imsapi.Image{ID: "698a61e2-abde-4151-a778-f9035e214c92", Name: "web 01", Status: imsapi.ImageActive,
		ImageType: "private", ImageSize: strconv.FormatInt(size, 10), MinDisk: 40}
	if mutate != nil {
		mutate(im)
	}
	return im
}

// TestDecide: one case per export rule of SPEC section 4.
func TestDecide(t *testing.T) {
	t.Parallel()
	cfg := decideConfig{DefaultBucket: "exports", KeyPrefix: "out/"}
	req := func(quick, format, bucketURL string) events.ExportRequest {
		return events.ExportRequest{ImageID: "698a61e2-abde-4151-a778-f9035e214c92", Quick: quick, FileFormat: format, BucketURL: bucketURL}
	}
	tests := []struct {
		name   string
		req    events.ExportRequest
		im     *imsapi.Image
		cfg    decideConfig
		reject string
		want   plan
	}{
		{name: "normal export, default format and bucket", req: req("auto", "", ""), im: image(10*gib, nil), cfg: cfg,
			want: plan{format: "qcow2", fileExt: "qcow2", bucketURL: "exports:out/web-01-698a61e2-abde-4151-a778-f9035e214c92.qcow2"}},
		{name: "normal export, given format and target", req: req("auto", "vmdk", "mine:disk.vmdk"), im: image(10*gib, nil),
			want: plan{format: "vmdk", fileExt: "vmdk", bucketURL: "mine:disk.vmdk"}},
		{name: "a bucket_url ending in / is a prefix", req: req("auto", "", "mine:nightly/"), im: image(200*gib, nil),
			want: plan{quick: true, fileExt: "zvhd2", bucketURL: "mine:nightly/web-01-698a61e2-abde-4151-a778-f9035e214c92.zvhd2"}},
		{name: "128 GB exactly is normal", req: req("auto", "", "b12:k.qcow2"), im: image(128*gib, nil),
			want: plan{format: "qcow2", fileExt: "qcow2", bucketURL: "b12:k.qcow2"}},
		{name: "above 128 GB: quick automatically, no file_format", req: req("auto", "", ""), im: image(200*gib, nil), cfg: cfg,
			want: plan{quick: true, fileExt: "zvhd2", bucketURL: "exports:out/web-01-698a61e2-abde-4151-a778-f9035e214c92.zvhd2"}},
		{name: "quick asked for a small image", req: req("true", "", "b12:k.zvhd2"), im: image(gib, nil),
			want: plan{quick: true, fileExt: "zvhd2", bucketURL: "b12:k.zvhd2"}},
		{name: "above 128 GB with quick false", req: req("false", "", "b12:k"), im: image(200*gib, nil), reject: events.ReasonNeedsQuickExport},
		{name: "above 128 GB with a file_format", req: req("auto", "vhd", "b12:k"), im: image(200*gib, nil), reject: events.ReasonNeedsQuickExport},
		{name: "quick with a file_format", req: req("true", "vhd", "b12:k"), im: image(gib, nil), reject: events.ReasonInvalidRequest},
		{name: "1 TB", req: req("true", "", "b12:k"), im: image(imsapi.TiB, nil), reject: events.ReasonExportTooLarge},
		{name: "encrypted above 128 GB", req: req("auto", "", "b12:k"), im: image(200*gib, func(i *imsapi.Image) { i.SystemCMKID = "k" }), reject: events.ReasonEncryptedQuick},
		{name: "encrypted quick asked", req: req("true", "", "b12:k"), im: image(gib, func(i *imsapi.Image) { i.SystemCMKID = "k" }), reject: events.ReasonEncryptedQuick},
		{name: "encrypted normal is fine", req: req("auto", "", "b12:k.qcow2"), im: image(gib, func(i *imsapi.Image) { i.SystemCMKID = "k" }),
			want: plan{format: "qcow2", fileExt: "qcow2", bucketURL: "b12:k.qcow2"}},
		{name: "not active", req: req("auto", "", "b12:k"), im: image(gib, func(i *imsapi.Image) { i.Status = imsapi.ImageSaving }), reject: events.ReasonNotActive},
		{name: "public image", req: req("auto", "", "b12:k"), im: image(gib, func(i *imsapi.Image) { i.ImageType = "gold" }), reject: events.ReasonNotPrivate},
		{name: "shared image", req: req("auto", "", "b12:k"), im: image(gib, func(i *imsapi.Image) { i.ImageType = "shared" }), reject: events.ReasonNotPrivate},
		{name: "full-ECS image", req: req("auto", "", "b12:k"), im: image(gib, func(i *imsapi.Image) { i.WholeImage = true }), reject: events.ReasonWholeImage},
		{name: "ISO image", req: req("auto", "", "b12:k"), im: image(gib, func(i *imsapi.Image) { i.VirtualEnvType = imsapi.TypeIsoImage }), reject: events.ReasonISOImage},
		{name: "no bucket anywhere", req: req("auto", "", ""), im: image(gib, nil), reject: events.ReasonNoBucket},
		{name: "space in the target key", req: req("auto", "", "b12:my disk.qcow2"), im: image(gib, nil), reject: events.ReasonInvalidRequest},
		{name: "size from min_disk when __image_size is missing", req: req("false", "", "b12:k"), im: image(0, func(i *imsapi.Image) { i.ImageSize, i.MinDisk = "", 200 }), reject: events.ReasonNeedsQuickExport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, rej := decide(tt.req, tt.im, tt.cfg)
			switch {
			case tt.reject != "" && (rej == nil || rej.code != tt.reject || rej.reason == ""):
				t.Errorf("decide = %+v, %+v; want rejection %s", got, rej, tt.reject)
			case tt.reject == "" && rej != nil:
				t.Errorf("decide rejected: %+v", rej)
			case tt.reject == "" && got != tt.want:
				t.Errorf("decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestObjectName(t *testing.T) {
	t.Parallel()
	im := image(gib, func(i *imsapi.Image) { i.Name = "数据 disk/01" })
	if got := objectName(im); got != "disk-01-"+im.ID || strings.Contains(got, " ") {
		t.Errorf("objectName = %q", got)
	}
	im.Name = "数据"
	if got := objectName(im); got != im.ID {
		t.Errorf("objectName of an all-Chinese name = %q, want the ID", got)
	}
}
