package imsemu

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
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

// faultyStore is fault injection around the real S3Store: Put can be held
// until a gate opens, or made to fail, while everything else goes to MinIO.
type faultyStore struct {
	*S3Store
	fail    atomic.Bool
	gate    chan struct{} // nil: Put goes ahead; else Put waits until it is closed
	started chan Object   // when not nil, each Put reports here first
}

func (st *faultyStore) Put(ctx context.Context, o Object, content []byte) error {
	if st.started != nil {
		select {
		case st.started <- o:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if st.gate != nil {
		select {
		case <-st.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if st.fail.Load() {
		return errors.New("injected store failure")
	}
	return st.S3Store.Put(ctx, o, content)
}

// TestS3StoreWrites: the write of an export to the store holds back only
// the answers reporting that export's SUCCESS, never a submission or any
// other request, and a failed write fails only those answers, until a
// retry succeeds.
func TestS3StoreWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	t.Parallel()
	m := testenv.StartMinIO(t)
	mc, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, b := range []string{"images", "exports"} {
		if err := mc.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := mc.PutObject(ctx, "images", "data/d.qcow2", bytes.NewReader(make([]byte, 1<<20)), 1<<20, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	inMinIO := func(key string) bool {
		_, err := mc.StatObject(ctx, "exports", key, minio.StatObjectOptions{})
		return err == nil
	}
	// within bounds a test that hangs, instead of the test binary's timeout.
	within := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	newStore := func(t *testing.T) *faultyStore {
		s3, err := NewS3Store(m.Endpoint, m.AccessKey, m.SecretKey, false)
		if err != nil {
			t.Fatal(err)
		}
		return &faultyStore{S3Store: s3}
	}
	importOne := func(f *fixture, c context.Context) error {
		_, err := f.c.ImportDataImage(c, &imsapi.DataImageRequest{Name: "d", ImageURL: "images:data/d.qcow2", MinDisk: 40})
		return err
	}

	t.Run("slow store", func(t *testing.T) {
		st := newStore(t)
		st.gate, st.started = make(chan struct{}), make(chan Object, 1)
		f := newEmu(t, func(c *Config) { c.Store = st })
		im := f.s.AddImage(imsapi.Image{Name: "slow", ImageSize: "1073741824"})
		ref, err := f.c.ExportImage(ctx, im.ID, &imsapi.ExportRequest{BucketURL: "exports:slow.qcow2", FileFormat: imsapi.FormatQCOW2})
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Hour)

		// Two callers that need the object: the job answer and Object.
		var released atomic.Bool
		type answer struct {
			what     string
			ok       bool
			err      error
			released bool
		}
		answers := make(chan answer, 2)
		go func() {
			j, err := f.c.JobProgress(ctx, ref.JobID)
			answers <- answer{"job answer", err == nil && j.Status == imsapi.JobSuccess, err, released.Load()}
		}()
		var put Object
		select {
		case put = <-st.started:
		case <-within(t).Done():
			t.Fatal("the export's write never started")
		}
		if put.Bucket != "exports" || put.Key != "slow.qcow2" {
			t.Fatalf("write of %+v", put)
		}
		go func() {
			_, ok := f.s.Object("exports", "slow.qcow2")
			answers <- answer{"Object", ok, nil, released.Load()}
		}()

		// While the write hangs, every other request is answered.
		c := within(t)
		if _, err := f.c.Quota(c); err != nil {
			t.Errorf("quota while the store hangs: %v", err)
		}
		if _, err := f.c.ListImages(c, nil); err != nil {
			t.Errorf("list while the store hangs: %v", err)
		}
		if err := importOne(f, c); err != nil {
			t.Errorf("import while the store hangs: %v", err)
		}
		if st := f.s.Stats(); st.JobsSucceeded != 1 {
			t.Errorf("stats while the store hangs: %+v", st)
		}
		select {
		case a := <-answers:
			t.Fatalf("%s came back before the object was written: %+v", a.what, a)
		default:
		}

		released.Store(true)
		close(st.gate)
		for range 2 {
			select {
			case a := <-answers:
				if !a.ok || !a.released {
					t.Errorf("%s: %+v; want success, after the write", a.what, a)
				}
			case <-within(t).Done():
				t.Fatal("no answer after the write")
			}
		}
		if !inMinIO("slow.qcow2") {
			t.Error("the object is not in MinIO after SUCCESS")
		}
	})

	t.Run("failing store", func(t *testing.T) {
		st := newStore(t)
		st.fail.Store(true)
		f := newEmu(t, func(c *Config) { c.Store = st })
		a := f.s.AddImage(imsapi.Image{Name: "a", ImageSize: "1073741824"})
		b := f.s.AddImage(imsapi.Image{Name: "b", ImageSize: "1073741824"})
		ref, err := f.c.ExportImage(ctx, a.ID, &imsapi.ExportRequest{BucketURL: "exports:failing.qcow2", FileFormat: imsapi.FormatQCOW2})
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Hour)

		// A submission is answered as accepted however the store fares,
		// so a caller has no reason to submit it twice.
		if err := importOne(f, ctx); err != nil {
			t.Fatalf("import after an export's write failed: %v", err)
		}
		var imports int
		for _, s := range f.s.Submissions() {
			if s.Operation == OpDataImageImport {
				imports++
			}
		}
		if imports != 1 {
			t.Errorf("%d import submissions, want 1", imports)
		}

		// The job answers do not report SUCCESS while the object is missing.
		for name, get := range map[string]func(context.Context, string) (*imsapi.Job, error){"JobProgress": f.c.JobProgress, "Job": f.c.Job} {
			j, err := get(ctx, ref.JobID)
			apiErr, _ := errors.AsType[*imsapi.APIError](err)
			if apiErr == nil || apiErr.StatusCode != 500 || apiErr.Code != "IMG.0061" {
				t.Errorf("%s while the store fails: %+v, %v; want 500 IMG.0061", name, j, err)
			}
		}
		// The finished export still holds its key (IMG.0070), though the
		// store has not got it yet.
		_, err = f.c.ExportImage(ctx, b.ID, &imsapi.ExportRequest{BucketURL: "exports:failing.qcow2", FileFormat: imsapi.FormatQCOW2})
		if apiErr, _ := errors.AsType[*imsapi.APIError](err); apiErr == nil || apiErr.Code != "IMG.0070" {
			t.Errorf("second export onto the unwritten key: %v, want IMG.0070", err)
		}
		if _, ok := f.s.Object("exports", "failing.qcow2"); !ok {
			t.Error("Object does not report the finished export")
		}
		if n := f.s.Stats().StoreErrors; n < 2 || inMinIO("failing.qcow2") {
			t.Errorf("%d store errors, in MinIO %v; want at least 2 failed writes and no object", n, inMinIO("failing.qcow2"))
		}

		// Once the store works, the next job answer writes the object.
		st.fail.Store(false)
		if j, err := f.c.JobProgress(ctx, ref.JobID); err != nil || j.Status != imsapi.JobSuccess {
			t.Fatalf("after the store recovered: %+v, %v", j, err)
		}
		if !inMinIO("failing.qcow2") {
			t.Error("the object is not in MinIO after SUCCESS")
		}

		// A key removed from the store is free again.
		if err := mc.RemoveObject(ctx, "exports", "failing.qcow2", minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.c.ExportImage(ctx, b.ID, &imsapi.ExportRequest{BucketURL: "exports:failing.qcow2", FileFormat: imsapi.FormatQCOW2}); err != nil {
			t.Errorf("export onto a key removed from the store: %v", err)
		}
	})
}
