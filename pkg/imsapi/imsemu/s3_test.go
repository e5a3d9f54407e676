package imsemu

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// TestS3Store runs the emulator against a real MinIO: imports are checked
// against the bucket's objects and an export's file is in the bucket by the
// time its job reports SUCCESS.
func TestS3Store(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	t.Parallel()
	m := testenv.StartMinIO(t)
	ctx := t.Context()
	mc, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"images", "exports"} {
		if err := mc.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put := func(bucket, key string, size int, meta map[string]string) {
		t.Helper()
		if _, err := mc.PutObject(ctx, bucket, key, bytes.NewReader(make([]byte, size)), int64(size), minio.PutObjectOptions{UserMetadata: meta}); err != nil {
			t.Fatal(err)
		}
	}
	put("images", "web/web-01.zvhd2", 1<<20, nil)
	put("images", "db/db-01.raw", 1<<20, nil)
	put("images", "big-disk.qcow2", 1<<20, map[string]string{MetaVirtualSize: strconv.FormatInt(50*gib, 10)})
	put("exports", "taken.qcow2", 10, nil)

	store, err := NewS3Store(m.Endpoint, m.AccessKey, m.SecretKey, false)
	if err != nil {
		t.Fatal(err)
	}
	f := newEmu(t, func(c *Config) { c.Store = store })

	quick := func(url string) error {
		_, err := f.c.QuickImport(ctx, &imsapi.QuickImportRequest{Name: "q", ImageURL: url, MinDisk: 10, Type: imsapi.TypeDataImage})
		return err
	}
	code := func(err error) string {
		if apiErr, ok := errors.AsType[*imsapi.APIError](err); ok {
			return apiErr.Code
		}
		return "no APIError: " + errFmt(err)
	}
	if err := quick("images:web/web-01.zvhd2"); err != nil {
		t.Fatalf("import of an object in MinIO: %v", err)
	}
	if c := code(quick("images:web/missing.zvhd2")); c != "IMG.0057" {
		t.Errorf("missing object: %s, want IMG.0057", c)
	}
	if c := code(quick("nosuchbucket:web.zvhd2")); c != "IMG.0069" {
		t.Errorf("missing bucket: %s, want IMG.0069", c)
	}
	if c := code(quick("images:db/db-01.raw")); c != "IMG.0057" {
		t.Errorf("RAW without bitmap: %s, want IMG.0057", c)
	}
	put("images", "db/db-01.mf", 100, nil)
	if err := quick("images:db/db-01.raw"); err != nil {
		t.Errorf("RAW once its bitmap is uploaded: %v", err)
	}
	_, err = f.c.ImportDataImage(ctx, &imsapi.DataImageRequest{Name: "big", ImageURL: "images:big-disk.qcow2", MinDisk: 40})
	if c := code(err); c != "IMG.0055" {
		t.Errorf("min_disk below the virtual size in the object's metadata: %s, want IMG.0055", c)
	}

	im := f.s.AddImage(imsapi.Image{Name: "to-export", ImageSize: strconv.FormatInt(3*gib, 10)})
	_, err = f.c.ExportImage(ctx, im.ID, &imsapi.ExportRequest{BucketURL: "exports:taken.qcow2", FileFormat: imsapi.FormatQCOW2})
	if c := code(err); c != "IMG.0070" {
		t.Errorf("export onto an existing object: %s, want IMG.0070", c)
	}
	ref, err := f.c.ExportImage(ctx, im.ID, &imsapi.ExportRequest{BucketURL: "exports:to-export.qcow2", FileFormat: imsapi.FormatQCOW2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.StatObject(ctx, "exports", "to-export.qcow2", minio.StatObjectOptions{}); err == nil {
		t.Fatal("the export's object exists before its job ended")
	}
	f.clock.Advance(time.Hour)
	if j := f.job(t, ref.JobID); j.Status != imsapi.JobSuccess {
		t.Fatalf("export job = %s", j.Status)
	}
	info, err := mc.StatObject(ctx, "exports", "to-export.qcow2", minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("after SUCCESS the exported object is not in MinIO: %v", err)
	}
	if got := info.UserMetadata[MetaVirtualSize]; got != strconv.FormatInt(3*gib, 10) {
		t.Errorf("exported object metadata %v", info.UserMetadata)
	}
}

func errFmt(err error) string {
	if err == nil {
		return "nil"
	}
	return strings.TrimPrefix(err.Error(), "imsapi: ")
}
